"""``ig_llm experiment numbers``: CLEVR data efficiency, numeric head vs characters (issue #13).

    python -m ig_llm experiment numbers --data data/trainA --val data/valA data/valB \
        --tower runs/v7/stage1/vision.safetensors --sizes 1000 2500 5000 11000 --steps 1500

The paper's data-efficiency claim on CLEVR: for each training-set size N (the first N
scenes of ``--data``) and each number format (``head``, ``char``), one stage-2 run —
the same frozen, whitened tower (``--tower``, a stage-1 ``vision.safetensors``), the same
steps, batch, learning rate, seed and mirror augmentation — so N and the number format
are all that differ. Every run is a normal resumable ``ig_llm train`` folder
``OUT/<numbers>_n<N>``; its predictions and scores on each ``--val`` set are cached beside
it, so a rerun only does what is missing. Writes ``table.md`` / ``table.json`` and
``curve.png`` (count accuracy and l2 vs N) under ``--results``.

The tower is fixed across sizes on purpose (as CLIP is in the paper): it measures what the
LM needs, not what the tower needs (``training/experiments/learning_curve.py`` measures the tower).
"""
from __future__ import annotations

import json
from pathlib import Path

from ...atomic import check_output, write_json, write_text, writing
from .common import ExperimentError, igllm_predictions, run_train

NUMBERS = ("head", "char")
METRICS = ("count_acc", "l2", "shape_acc", "color_acc")
DEFAULT_STEPS = 1500       # per run; the table's own size is in its command line
DEFAULT_BATCH = 32
LR, MIRROR, SEED = 1e-3, 0.5, 1


def run_dir(out: Path, numbers: str, n: int) -> Path:
    return out / f"{numbers}_n{n:05d}"


def train_argv(run: Path, args, numbers: str, n: int) -> list[str]:
    """The resumable stage-2 line of one (numbers, N) run on the frozen, whitened tower."""
    from ..recipe import ProgramSpec, Runtime, TowerSpec, stage2_argv
    program = ProgramSpec(steps=args.steps, lr=LR, warmup_steps=50, batch_size=args.batch_size, mirror=MIRROR,
                          whiten=True, numbers=numbers)
    return stage2_argv(args.data, run, TowerSpec(), program, args.tower, seed=SEED,
                       runtime=Runtime(workers=0, save_every=100), limit=n)


def score_run(model: Path, run: Path, val: list[str]) -> dict:
    """{val set name: evaluator summary}, predictions and reports cached in `run`."""
    from ..eval.evaluate import evaluate_files
    out = {}
    for folder in val:
        name = Path(folder).name
        pred, report = run / f"{name}.predictions.json", run / f"{name}.metrics.json"
        if not pred.is_file():
            print(f"[experiment] predicting {folder} with {model}", flush=True)
            igllm_predictions(model, folder, pred)
        if not report.is_file():
            write_json(report, evaluate_files(Path(folder) / "scenes.json", pred))
        out[name] = json.loads(report.read_text())["summary"]
    return out


def check_inputs(args) -> None:
    if not args.data or not args.val:
        raise ExperimentError("experiment numbers needs --data (condition-A training folders) and --val "
                              "(held-out folders); pass both.")
    if not args.tower:
        raise ExperimentError("experiment numbers needs --tower, a stage-1 vision.safetensors (e.g. "
                              "runs/v7/stage1/vision.safetensors from `ig_llm train --stage 1`); pass one.")
    if not Path(args.tower).is_file():
        raise ExperimentError(f"Tower file {args.tower} does not exist; train one with `ig_llm train --stage 1` "
                              "or pass another --tower.")
    try:    # read the header now: a damaged file must not leave a half-made run behind
        from safetensors import safe_open
        with safe_open(args.tower, "numpy") as f:
            has_tower = any(k.startswith("visual.") for k in f.keys())
    except Exception as err:
        raise ExperimentError(f"Tower file {args.tower} cannot be read ({err}); train it again with "
                              "`ig_llm train --stage 1` or pass another --tower.") from None
    if not has_tower:
        raise ExperimentError(f"Tower file {args.tower} holds no stage-1 tower (no visual.* tensors); pass the "
                              "vision.safetensors a `train --stage 1` run wrote.")
    missing = next((d for d in [*args.data, *args.val] if not (Path(d) / "scenes.json").is_file()), None)
    if missing:
        raise ExperimentError(f"Dataset folder {missing} has no scenes.json; render it with `ig_llm generate`.")
    bad = next((n for n in args.sizes if n < 1), None)
    if bad is not None or not args.sizes:
        raise ExperimentError(f"--sizes needs training-set sizes of 1 or more, not {bad if bad is not None else 'none'};"
                              " pass e.g. --sizes 1000 2500 5000.")
    if args.steps < 1:
        raise ExperimentError(f"--steps {args.steps} is too small; pass 1 or more.")


def markdown(results: dict) -> str:
    """One row per (numbers, N, val set)."""
    from ..eval.report import cell
    lines = ["| numbers | scenes | set | " + " | ".join(METRICS) + " |", "|---|---:|---|" + "---:|" * len(METRICS)]
    for numbers, by_size in results.items():
        for n, sets in sorted(by_size.items()):
            for s, summary in sets.items():
                lines.append(f"| {numbers} | {n} | {s} | "
                             + " | ".join(cell(m, summary.get(m)) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def write_figure(results: dict, path: Path, steps: int) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for ax, (metric, title) in zip(axes, (("count_acc", "count accuracy %"), ("l2", "l2 (scene units)"))):
        for numbers, by_size in results.items():
            sizes = sorted(by_size)
            for s in next(iter(by_size.values())):
                ys = [by_size[n][s].get(metric) for n in sizes]
                ax.plot(sizes, [100 * y if metric != "l2" and y is not None else y for y in ys], marker="o",
                        linestyle="-" if numbers == "head" else "--", label=f"{numbers}, {s}")
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training scenes (condition A)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"CLEVR: numeric head vs characters ({steps} stage-2 steps each, frozen tower)")
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(args) -> int:
    args.steps = args.steps or DEFAULT_STEPS
    args.batch_size = args.batch_size or DEFAULT_BATCH
    check_inputs(args)
    results_dir = Path(args.results)
    table_md = check_output(str(results_dir / "table.md"), "--results")
    check_output(args.out, "--out", folder=True)
    out = Path(args.out)
    results: dict[str, dict[int, dict]] = {}
    for numbers in NUMBERS:
        for n in sorted(set(args.sizes)):
            run = run_dir(out, numbers, n)
            model = run_train(run, train_argv(run, args, numbers, n), run / "model" / "config.json",
                              "its model", args.threads).parent
            results.setdefault(numbers, {})[n] = score_run(model, run, args.val)
    command = (f"python -m ig_llm experiment numbers --data {' '.join(args.data)} --val {' '.join(args.val)} "
               f"--tower {args.tower} --sizes {' '.join(map(str, sorted(set(args.sizes))))} --steps {args.steps} "
               f"--batch-size {args.batch_size} "
               f"--out {args.out} --results {args.results}")
    text = ("# CLEVR: numeric head vs characters vs training scenes\n\n"
            f"Each run: stage 2 on the first N scenes, {args.steps} steps x {args.batch_size}, lr {LR}, seed {SEED}, mirror "
            f"{MIRROR}, the same frozen whitened tower ({args.tower}).\nCommand: `{command}`\n\n"
            + markdown(results) + "\n![curve](curve.png)\n")
    write_figure(results, results_dir / "curve.png", args.steps)
    write_text(table_md, text)
    write_json(results_dir / "table.json", {k: {str(n): v for n, v in by.items()} for k, by in results.items()})
    print(text)
    return 0
