"""The tower's learning curve: what stage 1 sees, as a function of the number of scenes.

    python -m ig_llm.training.experiments.learning_curve --data data/trainA --val data/valA data/valB \
        --sizes 500 1000 2000 3000 --steps 300 --out runs/curve [--figure docs/learning_curve.png]

For each size N, stage 1 (dense targets, training/stages/tower.py) trains a tower on the
first N training images for the same number of steps (same compute: the curve isolates
data), then the *probe* — the dense heads decoded directly, one object per heat-map peak
(``stages/tower.probe_scenes``) — is scored with the paper's metrics on each held-out
set. The probe is not the product (the LM writes the program); it measures what the
frozen tower makes available to the LM, which bounds what stage 2 can learn from it.
Every run is a normal resumable ``ig_llm train --stage 1`` folder under ``--out``; scores
are cached beside it, so a rerun only does what is missing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ...atomic import write_json, write_text, writing

CURVE_METRICS = ("count_acc", "l2", "shape_acc", "color_acc")


def run_size(n: int, args) -> Path:
    from ..recipe import Runtime, TowerSpec, ig_command, stage1_argv
    run = Path(args.out) / f"n{n:05d}"
    weights = run / "stage1" / "vision.safetensors"
    if not weights.is_file():
        tower = TowerSpec(preset=args.preset, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                          hue_prob=-1.0 if args.hue_prob is None else args.hue_prob, model_overrides=tuple(args.set))
        cmd = ig_command(stage1_argv(args.data, run, tower, seed=args.seed, runtime=Runtime(workers=0, save_every=None),
                                     limit=n))
        print(f"[learning-curve] {' '.join(cmd)}", flush=True)
        if subprocess.call(cmd) != 0:
            raise SystemExit(f"learning_curve: stage 1 for N={n} failed; fix the cause above and rerun.")
    return weights


def score(weights: Path, n: int, args) -> dict:
    """{val set name: probe summary}, cached in the run folder."""
    cache = weights.parent.parent / "probe.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if set(cached) == {Path(v).name for v in args.val}:     # the same held-out sets: reuse
            return cached
    import torch
    from ...model.presets import make_config
    from ...scene.domain import load_domain
    from ..data.dataset import open_source
    from ..stages.tower import load_dense_model, probe_metrics
    from ..stages.model_config import parse_set
    config = make_config(args.preset, **parse_set(args.set))
    model = load_dense_model(weights.parent, config)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = {Path(v).name: probe_metrics(model, open_source(v), config.image_dims, load_domain(config.domain))
           for v in args.val}
    write_json(cache, out)
    return out


def write_outputs(results: dict, args) -> None:
    from ..eval.report import cell
    sizes = sorted(results)
    sets = list(next(iter(results.values())))
    lines = ["| scenes | set | " + " | ".join(CURVE_METRICS) + " |", "|---|---|" + "---|" * len(CURVE_METRICS)]
    for n in sizes:
        for s in sets:
            lines.append(f"| {n} | {s} | " + " | ".join(cell(m, results[n][s].get(m)) for m in CURVE_METRICS) + " |")
    out = Path(args.out)
    write_text(out / "learning_curve.md", "\n".join(lines) + "\n")
    write_json(out / "learning_curve.json", {str(n): results[n] for n in sizes})
    print("\n".join(lines))
    if args.figure:
        import matplotlib
        import matplotlib.ticker
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        for ax, (metric, title) in zip(axes, (("count_acc", "count accuracy"), ("l2", "l2 (scene units)"),
                                              ("shape_acc", "shape accuracy"))):
            for s in sets:
                ys = [results[n][s].get(metric) for n in sizes]
                ax.plot(sizes, [100 * y if metric != "l2" else y for y in ys], marker="o", label=s)
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # only the sizes as labels
            ax.set_xlabel("training scenes (condition A)")
            ax.set_title(title + (" %" if metric != "l2" else ""))
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(f"Tower probe vs training scenes ({args.steps} stage-1 steps x {args.batch_size} each)")
        fig.tight_layout()
        with writing(args.figure) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        print(f"[learning-curve] figure -> {args.figure}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ig_llm.training.experiments.learning_curve", description=__doc__.splitlines()[0])
    p.add_argument("--probe", metavar="STAGE1_DIR",
                   help="only score one finished tower (RUN_DIR/stage1) on --val: a table, and RUN_DIR/probe.json")
    p.add_argument("--data", nargs="+", default=[], help="condition-A training folder(s)")
    p.add_argument("--val", nargs="+", required=True, help="held-out dataset folders (e.g. valA valB)")
    p.add_argument("--sizes", nargs="+", type=int, default=[], help="training-set sizes N")
    p.add_argument("--steps", type=int, default=300, help="stage-1 steps per size (default 300)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to `train --set` (JSON value)")
    p.add_argument("--hue-prob", type=float, help="stage-1 hue rotation share (default: train's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="folder for the runs and the tables")
    p.add_argument("--figure", help="PNG path for the plot")
    args = p.parse_args(argv)
    missing = next((d for d in [*args.data, *args.val] if not Path(d).is_dir()), None)
    if missing:
        print(f"learning_curve: dataset folder {missing} does not exist; render it with `ig_llm generate`.",
              file=sys.stderr)
        return 2
    if args.probe:
        weights = Path(args.probe) / "vision.safetensors"
        if not weights.is_file():
            print(f"learning_curve: {weights} does not exist; finish that stage 1 first.", file=sys.stderr)
            return 2
        from ..eval.report import format_table
        from ..stages.runtime import TrainError
        try:
            print(format_table(score(weights, 0, args)))
        except TrainError as err:
            print(f"learning_curve: {err}", file=sys.stderr)
            return 2
        return 0
    if not (args.data and args.sizes and args.out):
        print("learning_curve: give --data, --sizes and --out (or --probe STAGE1_DIR).", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = {n: score(run_size(n, args), n, args) for n in sorted(set(args.sizes))}
    write_outputs(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
