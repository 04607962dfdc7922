"""``ig_llm experiment cogent``: compositional generalisation, IG-LLM vs an NS-VQA-style parser.

    python -m ig_llm experiment cogent --data data/trainA --val data/valA data/valB \
        [--model model/default] [--out runs/experiments/cogent] [--results docs/results/cogent]

``cogent`` — compositional generalisation: IG-LLM (the model folder given) next to an
NS-VQA-style per-object parser (training/experiments/baseline.py) trained on the same condition-A
renders, both scored by the same evaluator on held-out condition-A and condition-B sets.
The baseline is trained three times: as NS-VQA was (no colour augmentation), with the hue
rotation of the IG-LLM tower's first stage 1, and with hue rotation + per-object recolouring
(what the shipped tower and LM saw), so the table separates "language model vs per-object
parser" from "augmentation vs none". Every step skips what already exists in ``--out``
(stage-1 runs resume; IG-LLM's predictions are redone when the model's weights changed),
so a rerun only does what is missing.
"""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from ...atomic import check_output, write_json, write_text
from .common import ExperimentError, igllm_predictions

# baseline variant -> (stage-1 hue-rotation share, recolouring share); hue 0: as NS-VQA was
# trained, None: the tower's default; "recipe": recolouring as the shipped recipe's tower
BASELINE_SCENES = 2500   # the baselines' towers read the first 2,500 scenes, as v9's first tower did
BASELINES = {"NS-VQA-style": (0.0, 0.0), "NS-VQA-style + hue rotation": (None, 0.0),
             "NS-VQA-style + hue rotation + recolouring": (None, "recipe")}


def _stage1_dir(run: Path) -> Path:
    return run / "stage1"


def train_baseline(run: Path, args, augment: tuple) -> Path:
    """Train (or resume, or skip) one baseline variant; returns its stage-1 folder. Its tower
    trains as the shipped recipe's (recipes/clevr.toml [tower]) on the first BASELINE_SCENES."""
    from ..recipe import DEFAULT_RECIPE, Runtime, ig_command, load_recipe, stage1_argv
    from ..stages.runtime import VISION_FILE
    hue_prob, recolour = augment
    if not (_stage1_dir(run) / VISION_FILE).is_file():
        recipe_tower = load_recipe(DEFAULT_RECIPE).tower
        tower = dataclasses.replace(
            recipe_tower, steps=args.steps or recipe_tower.steps, hue_prob=-1.0 if hue_prob is None else hue_prob,
            recolour=recipe_tower.recolour if recolour == "recipe" else recolour)
        cmd = ig_command(stage1_argv(args.data, run, tower, seed=args.seed,
                                     runtime=Runtime(workers=0, save_every=None), limit=BASELINE_SCENES))
        print(f"[experiment] {' '.join(cmd)}", flush=True)
        if subprocess.call(cmd) != 0:
            raise ExperimentError(f"Training the baseline in {run} failed (see above); fix the cause and rerun "
                                  "the same command to resume.")
    return _stage1_dir(run)


def weights_fingerprint(model_dir) -> str:
    """sha256 of a model folder's weights: the shipped default changes under one path."""
    import hashlib
    from ...model.inference import DEFAULT_MODEL_DIR
    digest = hashlib.sha256()
    with open(Path(model_dir or DEFAULT_MODEL_DIR) / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def forget_other_models(folder: Path, model_dir) -> None:
    """Delete `folder`'s predictions when another model made them (``folder/model.txt``)."""
    stamp, now = folder / "model.txt", weights_fingerprint(model_dir)
    if not stamp.is_file() or stamp.read_text().strip() != now:
        for old in folder.glob("*.predictions.json"):
            old.unlink()
        write_text(stamp, now + "\n")


def run_cogent(args) -> dict:
    """{row name: {set name: summary}} for IG-LLM and each baseline."""
    from ..eval.evaluate import evaluate_files
    from .baseline import predict_baseline
    out = Path(args.out)
    missing = next((d for d in [*args.data, *args.val] if not Path(d).is_dir()), None)
    if missing:
        raise ExperimentError(f"Dataset folder {missing} does not exist; render it with `ig_llm generate`.")
    unfinished = next((d for d in args.val if not (Path(d) / "scenes.json").is_file()), None)
    if unfinished:
        raise ExperimentError(f"Held-out folder {unfinished} has no scenes.json; render it with `ig_llm generate` "
                              "(or finish it with --resume).")
    rows: dict[str, dict] = {}
    model_name = f"IG-LLM ({Path(args.model).name if args.model else 'shipped default'})"
    predictors = {model_name: (out / "igllm", lambda val, dst: igllm_predictions(args.model, val, dst))}
    for i, (name, augment) in enumerate(BASELINES.items()):
        run = out / f"baseline{i}"
        predictors[name] = (run, lambda val, dst, run=run, augment=augment:
                            predict_baseline(train_baseline(run, args, augment), val, dst))
    (out / "igllm").mkdir(parents=True, exist_ok=True)
    forget_other_models(out / "igllm", args.model)
    for name, (folder, predict) in predictors.items():
        folder.mkdir(parents=True, exist_ok=True)
        rows[name] = {}
        for val in args.val:
            set_name = Path(val).name
            pred = folder / f"{set_name}.predictions.json"
            if not pred.is_file():
                print(f"[experiment] {name}: predicting {val}", flush=True)
                predict(val, pred)
            rows[name][set_name] = evaluate_files(Path(val) / "scenes.json", pred)["summary"]
    return rows


def main(args) -> int:
    """The cogent table (``args.out`` / ``args.results`` defaults set by the command)."""
    if not args.data or not args.val:
        raise ExperimentError("experiment cogent needs --data (condition-A training folders) and --val "
                              "(held-out folders); pass both.")
    from ..eval.report import ablation_table
    results = Path(args.results)
    table_md = check_output(str(results / "table.md"), "--results")
    check_output(args.out, "--out", folder=True)
    rows = run_cogent(args)
    text = ("# CoGenT: IG-LLM vs an NS-VQA-style per-object parser\n\n"
            f"Training data: {', '.join(args.data)} (condition A only). Held-out: {', '.join(args.val)}.\n"
            "Command: `python -m ig_llm experiment cogent " + " ".join(
                [f"--data {' '.join(args.data)}", f"--val {' '.join(args.val)}"]
                + ([f"--model {args.model}"] if args.model else [])) + "`\n\n" + ablation_table(rows))
    write_text(table_md, text)
    write_json(results / "table.json", rows)
    print(text)
    return 0


__all__ = ["BASELINES", "ExperimentError", "run_cogent"]
