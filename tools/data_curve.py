"""The shipped models' data curve: count, l2 and B shape vs training scenes, and what 95 % count would take.

    .venv/bin/python tools/data_curve.py [--figure docs/data_curve.png] [--json docs/results/data_curve.json]

Reads the held-out scores every shipped model left in ``docs/results/<version>/metrics_summary.json``
(valA / valB at 192x128 and valA_480 / valB_480, 500 scenes each; written when the model was
scored) — nothing is re-run. v7, v8 and v9 share one frozen tower (v7's recoloured one) and
one recipe; between them only the condition-A scenes stage 2 read grew (7,500 -> 11,000 ->
16,000; each part also added its own ~1,700-2,600 steps). The count *error* of those three is
fitted with a power law ``error = a * scenes ** -b`` per set (least squares in log-log), and
the fit says how many scenes would bring the error to 5 % (count 95 %). Three points make a
rough guide, not a promise: the README says so next to the number.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ig_llm.atomic import write_json, writing
from ig_llm.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"                       # the shipped model's
HISTORY_RESULTS = ROOT / "docs" / "history" / "results"   # the earlier models'
# version -> (condition-A scenes its last stage-2 part read, stage-2 steps x 32 in all its parts,
# its tower); from the README's model list and the training logs in docs/results/<version>/
MODELS = {
    "v6": (7500, 5435, "v5's (2,500 scenes, hue rotation)"),
    "v7": (7500, 8039, "recoloured (7,500 scenes)"),
    "v8": (11000, 9894, "recoloured (7,500 scenes)"),
    "v9": (16000, 11552, "recoloured (7,500 scenes)"),
}
FITTED = ("v7", "v8", "v9")            # the same tower and recipe: only the scenes (and steps) grew
SETS = ("A", "B", "A_480", "B_480")
TARGET_COUNT = 0.95
CLEVR_TRAIN_SCENES = 70000             # the original CLEVR training split, for scale


def summaries(version: str) -> dict:
    """{set: evaluator summary} of one shipped model (both file layouts in docs/results; v6's
    480x320 sets were first scored on 200 scenes, then on all 500 in metrics_480_full.json)."""
    folder = RESULTS / version if (RESULTS / version).is_dir() else HISTORY_RESULTS / version
    path = folder / "metrics_summary.json"
    try:
        data = json.loads(path.read_text())
        sets = data.get("summaries", data)
        full = folder / "metrics_480_full.json"
        if full.is_file():
            sets.update(json.loads(full.read_text()))
        scored = [sets[s]["scenes"] for s in SETS]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path} cannot be read or lacks a set's scores ({err!r}); restore it from git "
                        f"(git checkout -- {path}).") from None
    if any(n != 500 for n in scored):
        raise UserError(f"a set in {folder} was not scored on all 500 scenes; score it on the whole "
                        "held-out set (ig_llm predict + evaluate) before fitting.")
    return sets


def power_law_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(a, b) of ``y = a * x ** -b`` by least squares on (log x, log y)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    slope = sum((u - mx) * (v - my) for u, v in zip(lx, ly)) / sum((u - mx) ** 2 for u in lx)
    return math.exp(my - slope * mx), -slope


def scenes_for(error: float, a: float, b: float) -> float:
    """The scenes at which ``a * scenes ** -b`` reaches `error` (inf when the fit does not fall)."""
    return (a / error) ** (1 / b) if b > 0 else math.inf


def curve() -> dict:
    rows = {v: {"scenes": n, "steps": steps, "tower": tower, "sets": summaries(v)}
            for v, (n, steps, tower) in MODELS.items()}
    fits = {}
    for s in SETS:
        xs = [rows[v]["scenes"] for v in FITTED]
        errors = [1 - rows[v]["sets"][s]["count_acc"] for v in FITTED]
        a, b = power_law_fit(xs, errors)
        fits[s] = {"a": a, "b": b, "scenes_for_95": scenes_for(1 - TARGET_COUNT, a, b)}
    return {"models": rows, "fits": fits}


def markdown(result: dict) -> str:
    from ig_llm.training.eval.report import cell
    columns = (("count_acc", ("A", "B")), ("count_acc", ("A_480", "B_480")), ("l2", ("A_480", "B_480")),
               ("shape_acc", ("B_480",)))
    lines = ["| model | scenes | stage-2 steps | tower | count A / B | count A / B 480 | l2 A / B 480 | shape B 480 |",
             "|---|---:|---:|---|---|---|---|---|"]
    for v, row in result["models"].items():
        scores = [" / ".join(cell(metric, row["sets"][s][metric]) for s in sets) for metric, sets in columns]
        lines.append(f"| {v} | {row['scenes']:,} | {row['steps']:,} | {row['tower']} | " + " | ".join(scores) + " |")
    lines += ["", f"Power law on the count error of {', '.join(FITTED)} (error = a * scenes^-b):", "",
              "| set | b | scenes for count 95 % |", "|---|---:|---:|"]
    for s, fit in result["fits"].items():
        lines.append(f"| {s} | {fit['b']:.2f} | {fit['scenes_for_95']:,.0f} |")
    return "\n".join(lines) + "\n"


def write_figure(result: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, fits = result["models"], result["fits"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    far = max(max(f["scenes_for_95"] for f in fits.values() if math.isfinite(f["scenes_for_95"])), CLEVR_TRAIN_SCENES)
    xs = [rows[v]["scenes"] for v in FITTED]
    for s, style in zip(SETS, ("o-", "s-", "o--", "s--")):
        axes[0].plot(xs, [100 * rows[v]["sets"][s]["count_acc"] for v in FITTED], style, label=f"val{s}")
        a, b = fits[s]["a"], fits[s]["b"]
        grid = [xs[0] * (far * 1.2 / xs[0]) ** (i / 40) for i in range(41)]
        axes[0].plot(grid, [100 * (1 - a * g ** -b) for g in grid], ":", color=axes[0].lines[-1].get_color())
        axes[1].plot(xs, [rows[v]["sets"][s]["l2"] for v in FITTED], style, label=f"val{s}")
        axes[2].plot(xs, [100 * rows[v]["sets"][s]["shape_acc"] for v in FITTED], style, label=f"val{s}")
    v6 = rows["v6"]
    for ax, metric, scale in ((axes[0], "count_acc", 100), (axes[1], "l2", 1), (axes[2], "shape_acc", 100)):
        ax.plot([v6["scenes"]] * 2, [scale * v6["sets"][s][metric] for s in ("A", "B")], "kx",
                label="v6 (older tower)")
        ax.set_xscale("log")
        ticks = xs + ([25000, 50000, CLEVR_TRAIN_SCENES] if ax is axes[0] else [])
        ax.set_xticks(ticks, [f"{t // 1000}k" if t % 1000 == 0 else f"{t / 1000:.1f}k" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("condition-A training scenes")
        ax.grid(alpha=0.3, which="both")
    axes[0].axhline(100 * TARGET_COUNT, color="gray", lw=0.8)
    axes[0].axvline(CLEVR_TRAIN_SCENES, color="gray", lw=0.8, ls="--")   # CLEVR's own training split
    axes[0].set_title("count accuracy % (dotted: power-law fit)")
    axes[1].axhline(0.20, color="gray", lw=0.8)
    axes[1].set_title("l2 (scene units)")
    axes[2].axhline(85, color="gray", lw=0.8)
    axes[2].set_title("shape accuracy % (B: unseen pairs)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Shipped models v7-v9 (one tower, one recipe) vs training scenes; held-out, 500 scenes per set")
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", type=Path, help="write the plot (PNG) here")
    parser.add_argument("--json", type=Path, help="write the rows and fits (JSON) here")
    args = parser.parse_args(argv)
    result = curve()
    print(markdown(result), end="")
    if args.json:
        write_json(args.json, result)
    if args.figure:
        write_figure(result, args.figure)
    return 0


if __name__ == "__main__":
    from ig_llm.tools import run_tool
    sys.exit(run_tool("data_curve", main))
