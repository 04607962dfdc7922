"""`ig_llm train-default`: reproduce the shipped model from scratch, resuming whatever exists.

    python -m ig_llm train-default [--root DIR] [--train-count N] [--steps N] ...

Steps, each skipped when its output is already there (so rerunning after a kill or on
another machine picks up where it stopped):

1. render the data with ``ig_llm generate`` (the generator's recommended size/samples),
   each image with its per-pixel truth (``index/``): ``ROOT/data/trainA`` (CoGenT
   condition A, seed S) — the only training data —, held-out ``valA`` (A, seed S+1) and
   ``valB`` (B, seed S+2) at the training size, and ``valA_480`` / ``valB_480`` (the same
   scenes: same seeds and split names) at CLEVR's 480x320;
2. stage 1: the conv tower learns to see from dense per-cell targets (``train --stage 1``,
   training/stages/tower.py) into ``ROOT/runs/default/stage1``;
3. stage 2: tower frozen, projector + LM + numeric head learn the program
   (``train --stage 2``, mirror augmentation) into ``ROOT/runs/default/model``, then
   continue from it with the tower's tokens whitened (``train --init-from …
   --whiten-features``, docs/model.md) into ``ROOT/runs/default/finetune/model``
   (``--ft-steps 0`` stops after the first part). Stage 1 and these two parts read only
   the first ``--first-count`` training scenes (``train --limit``); a third part, again
   whitened, continues on the first ``--mid-count`` into ``ROOT/runs/default/finetune2/model``
   (``--ft2-steps 0`` skips it);
4. CoGenT without the shortcut: the tower continues stage 1 with per-object recolouring
   (``train --stage 1 --stage1-init … --recolour``, training/data/recolour.py) on the first
   ``--mid-count`` scenes into ``ROOT/runs/default/recolour_tower/stage1``, and a fourth
   stage-2 part puts the LM on that tower, recolouring there too (``train --init-from …
   --vision-weights … --recolour``) into ``ROOT/runs/default/finetune3/model``
   (``--recolour-steps 0`` skips both); a fifth part continues it on the first
   ``--ft4-count`` scenes, recolouring still, into ``ROOT/runs/default/finetune4/model``, and a
   sixth on all of them into ``ROOT/runs/default/finetune5/model`` (``--ft4-steps 0`` /
   ``--ft5-steps 0`` skip them); every later part is one row of ``LATER_PARTS``;
5. ``predict`` + ``evaluate`` on the held-out sets into ``ROOT/runs/eval/default``;
6. the metrics table goes into the model's ``card.md``; the model is copied to
   ``model/default/`` (atomically), unless ``--no-install``.

``--ablations`` also trains, on the same data with the same stage-2 steps, the earlier
tower (preset ``tiny-vit``: a ViT on a 192x192 letterbox, contrastive stage 1) and the
character-number model, and writes ``ROOT/runs/ablations.md``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..atomic import write_text, writing_folder
from ..errors import UserError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = PACKAGE_ROOT / "model" / "default"
FT3_STEPS = 2604      # v7 part 4: what `--time-budget 85` chose on the 2-core CPU
FT4_STEPS = 1855      # v8 part 5: what `--time-budget 70` chose on the 2-core CPU
FT5_STEPS = 1658      # v9 part 6: what `--time-budget 65` chose on the 2-core CPU

# the default recipe: the shipped v9 (model/default/card.md), run on the 2-core CPU build machine
# (its parts 2, 4, 5 and 6 step counts came from `--time-budget`; here they are fixed). v5 = parts 1-2
# on the first 2,500 scenes; v6 adds part 3 on 7,500 (the first 2,500 + 5,000 more, same seed);
# v7 = the recoloured tower (7,500) + part 4 (7,500); v8 = part 5 on 11,000 (3,500 more, same seed);
# v9 = part 6 on 16,000 (5,000 more, same seed).
RECIPE = {"train_count": 16000, "first_count": 2500, "mid_count": 7500, "ft4_count": 11000,
          "stage1_steps": 800, "stage1_batch_size": 32, "stage1_lr": 2e-3,
          "steps": 1294, "warmup_steps": 50, "batch_size": 32, "lr": 1e-3, "mirror": 0.5,
          # stage 2, second part: whitened tower tokens, a fresh warm-up + cosine, the next seed
          "ft_steps": 2541, "ft_lr": 1e-3,
          # stage 2, third part: whitened again, on all the training scenes, a gentler peak
          "ft2_steps": 1600, "ft2_lr": 5e-4,
          # the tower again, continued with per-object recolouring; stage 2's fourth part on it
          "recolour": 0.5, "recolour_steps": 1000, "recolour_lr": 1e-3, "ft3_steps": FT3_STEPS, "ft3_lr": 1e-3,
          # stage 2, fifth and sixth parts: the same tower, on more scenes each, a gentler peak again
          "ft4_steps": FT4_STEPS, "ft4_lr": 5e-4, "ft5_steps": FT5_STEPS, "ft5_lr": 5e-4}


@dataclass(frozen=True)
class LaterPart:
    """A stage-2 part after the first: continue the previous model with whitened tower tokens."""
    folder: str             # ROOT/runs/default/<folder>
    option: str             # its options: --<option>-steps, --<option>-lr (0 steps = skip it)
    what: str               # for --help
    seed_offset: int        # its seed: --seed + this
    reads: str | None       # the option that says how many training scenes it reads (None: all)
    new_tower: bool = False  # the first part on the recoloured tower (trained just before it)


LATER_PARTS = (LaterPart("finetune", "ft", "second part, whitened tokens, the first --first-count images", 1,
                         "first_count"),
               LaterPart("finetune2", "ft2", "third part, the first --mid-count images", 2, "mid_count"),
               LaterPart("finetune3", "ft3", "fourth part, on the recoloured tower", 4, "mid_count", new_tower=True),
               LaterPart("finetune4", "ft4", "fifth part, the first --ft4-count images", 5, "ft4_count"),
               LaterPart("finetune5", "ft5", "sixth part, all training images", 6, None))


class TrainDefaultError(UserError, RuntimeError):
    """A step failed; the message names it and how to continue."""


def add_arguments(parser) -> None:
    parser.add_argument("--root", default=".", help="work folder: ROOT/data, ROOT/runs/default, ROOT/runs/eval (default .)")
    parser.add_argument("--train-count", type=int, default=RECIPE["train_count"],
                        help=f"training images, condition A (default {RECIPE['train_count']})")
    parser.add_argument("--first-count", type=int, default=RECIPE["first_count"],
                        help="stage 1 and stage 2 parts 1-2 read the first N training images only "
                             f"(default {RECIPE['first_count']})")
    parser.add_argument("--mid-count", type=int, default=RECIPE["mid_count"],
                        help="stage 2 parts 3-4 and the recoloured tower read the first N training images "
                             f"(default {RECIPE['mid_count']})")
    parser.add_argument("--ft4-count", type=int, default=RECIPE["ft4_count"],
                        help=f"stage 2 part 5 reads the first N training images (default {RECIPE['ft4_count']}; "
                             "the sixth part reads all)")
    parser.add_argument("--val-count", type=int, default=500, help="images per held-out set (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="data seed S (held-out sets use S+1 for A, S+2 for B; default 1)")
    parser.add_argument("--size", help="training render size WxH (default: the generator's)")
    parser.add_argument("--samples", type=int, help="Cycles samples (default: the generator's)")
    parser.add_argument("--render-workers", type=int, help="parallel Blender processes (default: the generator's)")
    parser.add_argument("--no-480", action="store_true", help="skip the 480x320 held-out sets")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"], help=f"stage 2 steps (default {RECIPE['steps']})")
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--mirror", type=float, default=RECIPE["mirror"], help="stage 2 mirror augmentation probability")
    for part in LATER_PARTS:
        steps = RECIPE[f"{part.option}_steps"]
        parser.add_argument(f"--{part.option}-steps", type=int, default=steps,
                            help=f"stage 2 {part.what} (default {steps}; 0 = skip)")
        parser.add_argument(f"--{part.option}-lr", type=float, default=RECIPE[f"{part.option}_lr"])
    parser.add_argument("--recolour", type=float, default=RECIPE["recolour"],
                        help=f"recolouring probability of step 4 (default {RECIPE['recolour']})")
    parser.add_argument("--recolour-steps", type=int, default=RECIPE["recolour_steps"],
                        help=f"stage-1 steps of the recoloured tower (default {RECIPE['recolour_steps']}; "
                             "0 = skip it and the fourth part)")
    parser.add_argument("--recolour-lr", type=float, default=RECIPE["recolour_lr"])
    parser.add_argument("--stage1-steps", type=int, default=RECIPE["stage1_steps"])
    parser.add_argument("--stage1-batch-size", type=int, default=RECIPE["stage1_batch_size"])
    parser.add_argument("--stage1-lr", type=float, default=RECIPE["stage1_lr"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0: images are cached)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--ablations", action="store_true",
                        help="also train/evaluate the earlier ViT tower and char numbers on the same data")
    parser.add_argument("--no-install", action="store_true", help="do not copy the model to model/default/")


def parse(argv: list[str]):
    import argparse
    p = argparse.ArgumentParser(prog="ig_llm train-default")
    add_arguments(p)
    return p.parse_args(argv)


def training_sets(args) -> list[tuple]:
    """(folder, condition, count, seed, split, size) of every set a training stage reads."""
    data = Path(args.root).resolve() / "data"
    return [(data / "trainA", "A", args.train_count, args.seed, "trainA", args.size)]


def held_out_sets(args) -> dict[str, tuple]:
    """name -> (folder, condition, count, seed, split, size); the 480x320 sets are the same
    scenes as the small ones (same seeds and split names), rendered larger."""
    data, s = Path(args.root).resolve() / "data", args.seed
    sets = {"A": (data / "valA", "A", args.val_count, s + 1, "valA", args.size),
            "B": (data / "valB", "B", args.val_count, s + 2, "valB", args.size)}
    if not args.no_480:
        sets["A_480"] = (data / "valA_480", "A", args.val_count, s + 1, "valA", "480x320")
        sets["B_480"] = (data / "valB_480", "B", args.val_count, s + 2, "valB", "480x320")
    return sets


def _run(cmd: list[str], what: str) -> None:
    print(f"[train-default] {what}: {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise TrainDefaultError(f"{what} failed (exit {rc}); fix the cause above and rerun "
                                "`ig_llm train-default` with the same options to continue.")


def _ig(*args: str) -> list[str]:
    return [sys.executable, "-m", "ig_llm", *args]


def dataset_complete(path: Path, count: int) -> bool:
    labels = path / "labels"
    return (path / "scenes.json").is_file() and labels.is_dir() and \
        sum(1 for _ in labels.glob("*.json")) >= count


def render(path: Path, condition: str, count: int, seed: int, split: str, size: str | None, args) -> None:
    if dataset_complete(path, count):
        print(f"[train-default] {path} complete, skipped", flush=True)
        return
    cmd = _ig("generate", "--condition", condition, "--count", str(count), "--seed", str(seed),
              "--split", split, "--out", str(path))
    if size:
        cmd += ["--size", size]
    if args.samples:
        cmd += ["--samples", str(args.samples)]
    if args.render_workers:
        cmd += ["--workers", str(args.render_workers)]
    if path.exists() and any(path.iterdir()):
        cmd.append("--resume")
    _run(cmd, f"render {path.name}")


def train(run: Path, data: Path, args, extra: list[str] = (), preset: str | None = None) -> Path:
    """Stage 1 then stage 2 into `run` (each resumable, each skipped when done)."""
    model = run / "model"
    if (model / "config.json").is_file():
        print(f"[train-default] {model} exists, skipped", flush=True)
        return model
    cmd = _ig("train", "--data", str(data), "--out", str(run), "--stage", "both", "--resume",
              "--preset", preset or args.preset, "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--steps", str(args.steps), "--warmup-steps", str(RECIPE["warmup_steps"]), "--mirror", str(args.mirror),
              "--stage1-steps", str(args.stage1_steps), "--stage1-batch-size", str(args.stage1_batch_size),
              "--stage1-lr", str(args.stage1_lr), "--device", args.device, "--workers", str(args.workers),
              "--seed", str(args.seed), "--cache-images") + _limit(args.first_count, args)
    if args.bf16:
        cmd.append("--bf16")
    _run(cmd + list(extra), f"train {run.name}")
    return model


def _limit(count: int, args) -> list[str]:
    """`train --limit` for a step that reads only the first `count` training scenes."""
    return ["--limit", str(count)] if count < args.train_count else []


def recolour_tower(run: Path, base_stage1: Path, data: Path, args, seed: int, extra: Sequence[str] = ()) -> Path:
    """Stage 1 again: continue the finished tower in `base_stage1` with per-object
    recolouring into ``run/stage1``; returns its vision weights."""
    weights = run / "stage1" / "vision.safetensors"
    if weights.is_file():
        print(f"[train-default] {weights} exists, skipped", flush=True)
        return weights
    cmd = _ig("train", "--data", str(data), "--out", str(run), "--stage", "1", "--resume", "--preset", args.preset,
              "--stage1-init", str(base_stage1), "--recolour", str(args.recolour),
              "--stage1-steps", str(args.recolour_steps), "--stage1-batch-size", str(args.stage1_batch_size),
              "--stage1-lr", str(args.recolour_lr), "--device", args.device, "--workers", str(args.workers),
              "--seed", str(seed), *extra)
    _run(cmd, f"recolour tower {run.name}")
    return weights


def fine_tune(run: Path, base: Path, data: Path, args, steps: int, lr: float, seed: int,
              extra: Sequence[str] = ()) -> Path:
    """Stage 2, a later part: continue `base` with whitened tower tokens into `run`; `extra`:
    more `train` options (--limit, or a new tower: --vision-weights, --recolour)."""
    model = run / "model"
    if (model / "config.json").is_file():
        print(f"[train-default] {model} exists, skipped", flush=True)
        return model
    cmd = _ig("train", "--data", str(data), "--out", str(run), "--init-from", str(base), "--whiten-features",
              "--resume", "--batch-size", str(args.batch_size), "--lr", str(lr), "--steps", str(steps),
              "--warmup-steps", str(RECIPE["warmup_steps"]), "--mirror", str(args.mirror), "--device", args.device,
              "--workers", str(args.workers), "--seed", str(seed), "--cache-images", *extra)
    if args.bf16:
        cmd.append("--bf16")
    _run(cmd, f"fine-tune {run.parent.name}")
    return model


def later_parts(run: Path, model: Path, data: Path, args) -> Path:
    """Stage 2's later parts (LATER_PARTS) in order from `model`, each skipped at 0 steps; the
    recoloured tower is trained (on the first --mid-count scenes) right before the part that
    first reads it, and every part after it recolours too (--recolour-steps 0: neither)."""
    recolour = ["--recolour", str(args.recolour)] if args.recolour_steps > 0 else []
    on_new_tower = False
    for part in LATER_PARTS:
        steps, lr = getattr(args, f"{part.option}_steps"), getattr(args, f"{part.option}_lr")
        if part.new_tower:
            on_new_tower = bool(recolour)
            if not recolour:
                continue
        if steps <= 0:
            continue
        extra = _limit(getattr(args, part.reads), args) if part.reads else []
        if part.new_tower:
            tower = recolour_tower(run / "recolour_tower", run / "stage1", data, args, args.seed + 3,
                                   _limit(args.mid_count, args))
            extra = ["--vision-weights", str(tower), *extra]
        model = fine_tune(run / part.folder, model, data, args, steps, lr, args.seed + part.seed_offset,
                          [*extra, *(recolour if on_new_tower else [])])
    return model


def evaluate(model: Path, sets: dict[str, Path], out_dir: Path, args) -> dict:
    """{set name: summary}; predictions and metrics files are reused when present and made
    by the same `model` (``out_dir/model.txt``; another model's are deleted first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = out_dir / "model.txt"
    if not stamp.is_file() or stamp.read_text().strip() != str(model):
        for old in [*out_dir.glob("*.predictions.json"), *out_dir.glob("*.metrics.json")]:
            old.unlink()
        write_text(stamp, str(model) + "\n")
    summaries = {}
    for name, data in sets.items():
        pred, metrics = out_dir / f"{name}.predictions.json", out_dir / f"{name}.metrics.json"
        if not pred.is_file():
            _run(_ig("predict", str(data / "images"), "--model", str(model), "--out", str(pred),
                     "--device", args.device, "--batch-size", "32"), f"predict {name}")
        if not metrics.is_file():
            _run(_ig("evaluate", "--truth", str(data / "scenes.json"), "--pred", str(pred),
                     "--out", str(metrics)), f"evaluate {name}")
        summaries[name] = json.loads(metrics.read_text())["summary"]
    return summaries


def add_metrics_to_card(model: Path, summaries: dict, args) -> None:
    from .eval.report import metrics_markdown
    card = (model / "card.md").read_text().split("\n## Metrics")[0].rstrip("\n")
    sets = (f"held-out sets of {args.val_count} images each, rendered by this project with other seeds: "
            "A = CoGenT condition A (as training), B = condition B (cube/cylinder colours swapped); "
            "*_480 = the same seeds at 480x320.")
    card += "\n\n## Metrics\n\n" + sets + "\n\n" + metrics_markdown(summaries) + "\n"
    write_text(model / "card.md", card)


def install(model: Path, target: Path = DEFAULT_MODEL_DIR) -> None:
    """Copy the model folder to `target`, swapping it in atomically."""
    with writing_folder(target) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
    print(f"[train-default] installed {model} -> {target}", flush=True)


def main(args) -> int:
    root = Path(args.root).resolve()
    for path, cond, count, seed, split, size in training_sets(args):
        render(path, cond, count, seed, split, size, args)
    held_out = held_out_sets(args)
    for path, cond, count, seed, split, size in held_out.values():
        render(path, cond, count, seed, split, size, args)
    sets = {name: v[0] for name, v in held_out.items()}
    train_data = root / "data" / "trainA"

    run = root / "runs" / "default"
    first = model = train(run, train_data, args)
    model = later_parts(run, first, train_data, args)
    summaries = evaluate(model, sets, root / "runs" / "eval" / "default", args)
    add_metrics_to_card(model, summaries, args)
    from .eval.report import format_table
    print(format_table(summaries))
    if not args.no_install:
        install(model)

    if args.ablations:
        small = {k: v for k, v in sets.items() if "480" not in k}
        # same data and stage-2 steps for every row: the default's first stage-2 part
        base = summaries if first == model else evaluate(first, small, root / "runs" / "eval" / "default_part1", args)
        rows = {"conv tower, dense stage 1 (default)": {k: v for k, v in base.items() if "480" not in k}}
        for name, run, extra, preset in (
                ("ViT tower, contrastive stage 1 (tiny-vit)", "vit_tower", [], "tiny-vit"),
                ("char numbers", "char_numbers", ["--numbers", "char"], None)):
            m = train(root / "runs" / run, train_data, args, extra, preset=preset)
            rows[name] = evaluate(m, small, root / "runs" / "eval" / run, args)
        from .eval.report import ablation_table
        write_text(root / "runs" / "ablations.md", ablation_table(rows))
        print((root / "runs" / "ablations.md").read_text())
    return 0
