"""Reports: model cards and metric tables — one cell formatter for every table.

``metric_table`` (metrics as rows, one column per held-out set; markdown for cards and
the README, plain text for the terminal) and ``ablation_table`` (one row per model and
set) both format numbers with ``cell``. Pure Python.
"""
from __future__ import annotations

import json
from pathlib import Path

from .metrics import METRICS
from ..stages.runtime import fmt_time


def cell(metric: str, value, plain: bool = False) -> str:
    """A metric value as the tables print it: percentages for accuracies, else 3 decimals."""
    if value is None:
        return "n/a"
    pct = METRICS.get(metric, (False, False))[0]
    if plain:
        return f"{100 * value:.2f} %" if pct else f"{value:.4f}"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}"


def metric_table(summaries: dict[str, dict], markdown: bool = True) -> str:
    """One column per named summary (e.g. {"A": ..., "B": ...}), one row per metric."""
    names = list(summaries)
    rows = [["metric", *names], ["scenes", *[str(summaries[n]["scenes"]) for n in names]]]
    for metric, (_, lower) in METRICS.items():
        label = metric if markdown else f"{metric} ({'lower' if lower else 'higher'} is better)"
        rows.append([label, *[cell(metric, summaries[n].get(metric), plain=not markdown) for n in names]])
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|---|" + "---|" * len(names))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_table(summaries: dict[str, dict]) -> str:
    """The plain-text metric table (terminal output of evaluate and train-default)."""
    return metric_table(summaries, markdown=False)


def metrics_markdown(summaries: dict) -> str:
    return metric_table(summaries, markdown=True)


def ablation_table(rows: dict) -> str:
    """Markdown: one row per (model variant, held-out set); 480x320 sets are left out."""
    cols = list(METRICS)
    out = ["| model | set | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for variant, summaries in rows.items():
        for set_name, s in summaries.items():
            if "480" in set_name:
                continue
            cells = [cell(m, s.get(m)).replace(" %", "") for m in cols]
            out.append(f"| {variant} | {set_name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n\nAccuracies in %; l2 in scene units; yaw error in degrees.\n"


def make_card(args, config, n_train: int, steps: int, seconds: float, hw: str, world: int,
              total_params: int, trainable: int, metrics: dict | None = None, warmup_steps: int = 0) -> str:
    """card.md text for a stage-2 model."""
    data = data_summary(args.data)
    lines = [
        "# IG-LLM model card", "",
        f"- preset: `{args.preset}`; numbers: `{args.numbers}`; visual tower: "
        f"{'trained in stage 2' if args.train_vision else 'frozen in stage 2'}",
        f"- vision weights: {vision_origin(args)}",
        f"- parameters: {total_params / 1e6:.2f} M ({trainable / 1e6:.2f} M trained in stage 2)",
        f"- data: {n_train} images ({data})",
        f"- steps: {steps} x batch {args.batch_size} x {world} process(es)"
        f"{f' (chosen to fit a {args.time_budget:g}-minute budget)' if args.time_budget else ''}; lr {args.lr:g}, "
        f"head lr {args.head_lr if args.head_lr is not None else args.lr:g}, warm-up {warmup_steps} steps, "
        f"cosine, clip {args.clip:g}, weight decay {args.weight_decay:g}, seed {args.seed}"
        f"{', bf16 autocast' if args.bf16 else ''}",
        f"- training time: {fmt_time(seconds)} on {hw}",
        "- image size: {}x{} ({})".format(*config.image_dims, "letterboxed to this aspect" if config.image_height
                                          else "letterboxed to a square"),
    ]
    if args.init_from:
        lines.insert(3, f"- initialised from: `{args.init_from}` (fine-tuned)")
    if args.mirror:
        lines.append(f"- augmentation: exact left-right mirror with probability {args.mirror:g}")
    if getattr(args, "recolour", 0.0):
        lines.append(f"- augmentation: per-object recolouring (colour words follow) with probability "
                     f"{args.recolour:g}")
    if getattr(args, "whiten_features", False):
        lines.append("- projector input: the tower's tokens ZCA-whitened in training (`--whiten-features`), "
                     "folded into the projector's first layer when saved")
    if metrics:
        lines += ["", "## Metrics", "", metrics_markdown(metrics)]
    return "\n".join(lines) + "\n"


def vision_origin(args) -> str:
    if args.init_from and not args.vision_weights:
        return f"the initial model's (`{args.init_from}`)"
    return f"`{args.vision_weights or 'random init'}`{stage1_summary(args.vision_weights)}"


def data_summary(paths) -> str:
    """'path (count, WxH, condition, seed, samples)' for each dataset folder or pack."""
    out = []
    for p in map(Path, paths):
        info = {}
        if (p / "manifest.json").is_file():
            try:
                info = json.loads((p / "manifest.json").read_text())
            except (OSError, ValueError):
                info = {}
        bits = [f"{info['width']}x{info['height']}" if "width" in info else "",
                f"condition {info['condition']}" if "condition" in info else "",
                f"seed {info['seed']}" if "seed" in info else "",
                f"{info['samples']} Cycles samples" if "samples" in info else ""]
        bits = [b for b in bits if b]
        out.append(f"{p.name} ({', '.join(bits)})" if bits else p.name)
    return "; ".join(out)


def stage1_summary(vision_weights) -> str:
    """' (stage 1: ...)' when the weights came from this trainer's stage 1."""
    if not vision_weights:
        return ""
    meta = Path(vision_weights).parent / "stage1.json"
    if not meta.is_file():
        return ""
    m = json.loads(meta.read_text())
    how = (f"dense per-cell targets, hue rotation p={m['hue_prob']}" if m.get("kind") == "dense"
           else f"contrastive, caption '{m['caption']}'")
    if m.get("recolour"):
        how += f", per-object recolouring p={m['recolour']}"
    if m.get("init"):
        how += f", continued from `{m['init']}`"
    return (f" (stage 1: {m['steps']} steps x batch {m['batch_size']} x {m['world']}, {how}, "
            f"{m['images']} images, {fmt_time(m['seconds'])} on {m['hardware']})")
