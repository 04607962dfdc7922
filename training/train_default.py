"""`ig_llm train-default`: reproduce the shipped model from scratch, resuming whatever exists.

    python -m ig_llm train-default [--root DIR] [--train-count 9000] [--steps N | --time-budget MIN] ...

Steps, each skipped when its output is already there (so rerunning after a kill or on
another machine picks up where it stopped):

1. render the data with ``ig_llm generate`` (the generator's recommended size/samples):
   ``ROOT/data/trainA`` (CoGenT condition A, seed S), held-out ``valA`` (A, seed S+1) and
   ``valB`` (B, seed S+2) at the training size, and ``valA_480`` / ``valB_480`` (the same
   scenes: same seeds and split names) at CLEVR's 480x320;
2. ``ig_llm train --stage both`` (stage 1 tower, stage 2 program) into ``ROOT/runs/default``;
3. fine-tuning (skip with ``--finetune-count 0``): render more condition-A data
   ``ROOT/data/trainA2`` (seed S+4) and continue from step 2's model on trainA + trainA2
   with mirror augmentation (``train --init-from``) into ``ROOT/runs/finetune``;
4. ``predict`` + ``evaluate`` on the four held-out sets into ``ROOT/runs/eval``;
5. the metrics table goes into the model's ``card.md``; the model is copied to
   ``model/default/`` (atomically), unless ``--no-install``.

``--ablations`` also trains (same data, same steps) the character-number model and the
trainable-tower model and writes ``ROOT/runs/ablations.md``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ..atomic import write_text, writing_folder
from ..errors import UserError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = PACKAGE_ROOT / "model" / "default"


# the shipped model's fine-tuning (step 3), run on the 2-core CPU build machine
FINETUNE = {"count": 8000, "steps": 1500, "batch_size": 32, "lr": 3e-4, "mirror": 0.5}


class TrainDefaultError(UserError, RuntimeError):
    """A step failed; the message names it and how to continue."""


def add_arguments(parser) -> None:
    parser.add_argument("--root", default=".", help="work folder: ROOT/data, ROOT/runs/default, ROOT/runs/eval (default .)")
    parser.add_argument("--train-count", type=int, default=4226,
                        help="training images, condition A (default 4226: the shipped model saw 4212 of them)")
    parser.add_argument("--val-count", type=int, default=500, help="images per held-out set (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="data seed S (held-out sets use S+1 for A, S+2 for B; default 1)")
    parser.add_argument("--size", help="training render size WxH (default: the generator's)")
    parser.add_argument("--samples", type=int, help="Cycles samples (default: the generator's)")
    parser.add_argument("--render-workers", type=int, help="parallel Blender processes (default: the generator's)")
    parser.add_argument("--no-480", action="store_true", help="skip the 480x320 held-out sets")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, help="stage 2 steps (default 2655 as the shipped model, or what --time-budget picks)")
    parser.add_argument("--time-budget", type=float, metavar="MIN", help="stage 2 wall-time budget in minutes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stage1-steps", type=int, default=1000)
    parser.add_argument("--stage1-batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    g = parser.add_argument_group("fine-tuning (step 3)")
    g.add_argument("--finetune-count", type=int, default=FINETUNE["count"],
                   help=f"extra condition-A images, seed S+4 (default {FINETUNE['count']}: the shipped model's; 0 = skip)")
    g.add_argument("--finetune-steps", type=int, default=FINETUNE["steps"],
                   help=f"fine-tuning steps (default {FINETUNE['steps']})")
    g.add_argument("--finetune-batch-size", type=int, default=FINETUNE["batch_size"])
    g.add_argument("--finetune-lr", type=float, default=FINETUNE["lr"])
    g.add_argument("--mirror", type=float, default=FINETUNE["mirror"], help="mirror augmentation probability")
    parser.add_argument("--ablations", action="store_true", help="also train/evaluate char numbers and trainable tower")
    parser.add_argument("--no-install", action="store_true", help="do not copy the model to model/default/")


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


def train(run: Path, data: Path, args, extra: list[str] = (), stage: str = "both",
          vision: Path | None = None) -> Path:
    model = run / "model"
    if (model / "config.json").is_file():
        print(f"[train-default] {model} exists, skipped", flush=True)
        return model
    cmd = _ig("train", "--data", str(data), "--out", str(run), "--stage", stage, "--resume",
              "--preset", args.preset, "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--stage1-steps", str(args.stage1_steps), "--stage1-batch-size", str(args.stage1_batch_size),
              "--device", args.device, "--workers", str(args.workers), "--seed", str(args.seed))
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    elif args.time_budget:
        cmd += ["--time-budget", str(args.time_budget)]
    else:
        cmd += ["--steps", "2655"]
    if args.bf16:
        cmd.append("--bf16")
    if vision is not None:
        cmd += ["--vision-weights", str(vision)]
    _run(cmd + list(extra), f"train {run.name}")
    return model


def finetune(run: Path, init: Path, data: list[Path], args) -> Path:
    """Step 3: continue from `init` on more data with mirror augmentation (resumable)."""
    model = run / "model"
    if (model / "config.json").is_file():
        print(f"[train-default] {model} exists, skipped", flush=True)
        return model
    cmd = _ig("train", "--data", *map(str, data), "--out", str(run), "--init-from", str(init), "--resume",
              "--steps", str(args.finetune_steps), "--batch-size", str(args.finetune_batch_size),
              "--lr", str(args.finetune_lr), "--warmup-steps", "100", "--mirror", str(args.mirror),
              "--device", args.device, "--workers", str(args.workers), "--seed", str(args.seed),
              "--cache-images")
    _run(cmd, f"fine-tune {run.name}")
    return model


def evaluate(model: Path, sets: dict[str, Path], out_dir: Path, args) -> dict:
    """{set name: summary}; predictions and metrics files are reused when present."""
    out_dir.mkdir(parents=True, exist_ok=True)
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
    from .train import metrics_markdown
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
    data = root / "data"
    s = args.seed
    render(data / "trainA", "A", args.train_count, s, "trainA", args.size, args)
    # the 480x320 sets use the same split names and seeds: the same scenes, rendered larger
    held_out = {"A": (data / "valA", "A", s + 1, "valA", args.size),
                "B": (data / "valB", "B", s + 2, "valB", args.size)}
    if not args.no_480:
        held_out["A_480"] = (data / "valA_480", "A", s + 1, "valA", "480x320")
        held_out["B_480"] = (data / "valB_480", "B", s + 2, "valB", "480x320")
    for path, cond, seed, split, size in held_out.values():
        render(path, cond, args.val_count, seed, split, size, args)
    sets = {name: v[0] for name, v in held_out.items()}

    model = base = train(root / "runs" / "default", data / "trainA", args)
    if args.finetune_count > 0:
        render(data / "trainA2", "A", args.finetune_count, s + 4, "trainA2", args.size, args)
        model = finetune(root / "runs" / "finetune", model, [data / "trainA", data / "trainA2"], args)
    summaries = evaluate(model, sets, root / "runs" / "eval" / model.parent.name, args)
    add_metrics_to_card(model, summaries, args)
    from .metrics import format_table
    print(format_table(summaries))
    if not args.no_install:
        install(model)

    if args.ablations:
        vision = root / "runs" / "default" / "stage1" / "vision.safetensors"
        # same data and budget: the ablations are compared with the model before fine-tuning
        small = {k: v for k, v in sets.items() if "480" not in k}
        rows = {"default (head, frozen)": evaluate(base, small, root / "runs" / "eval" / "default", args)}
        for name, extra in (("char numbers", ["--numbers", "char"]), ("trainable tower", ["--train-vision"])):
            run = root / "runs" / name.replace(" ", "_")
            m = train(run, data / "trainA", args, extra, stage="2", vision=vision)
            rows[name] = evaluate(m, small, root / "runs" / "eval" / run.name, args)
        write_text(root / "runs" / "ablations.md", ablation_table(rows))
        print((root / "runs" / "ablations.md").read_text())
    return 0


def ablation_table(rows: dict) -> str:
    """Markdown: one row per (variant, held-out set)."""
    from .metrics import METRICS
    cols = list(METRICS)
    out = ["| model | set | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for variant, summaries in rows.items():
        for set_name, s in summaries.items():
            if "480" in set_name:
                continue
            cells = []
            for m in cols:
                v, pct = s.get(m), METRICS[m][0]
                cells.append("n/a" if v is None else (f"{100 * v:.1f}" if pct else f"{v:.3f}"))
            out.append(f"| {variant} | {set_name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n\nAccuracies in %; l2 in scene units; yaw error in degrees.\n"
