"""The paper's parameter-space experiments (issue #13): ``experiment 2d`` and ``experiment so3``.

    python -m ig_llm experiment 2d  [--out runs/experiments/2d]  [--results docs/results/2d]
    python -m ig_llm experiment so3 [--out runs/experiments/so3] [--results docs/results/so3]
        [--train-count N] [--test-count N] [--steps N] [--batch-size B] [--seeds S ...]

Each renders its datasets into ``OUT/data/`` when they are missing (``ig_llm generate
--resume``), trains one normal resumable ``ig_llm train`` run per variant and seed under
``OUT/<variant>_s<seed>/``, predicts every test set, scores it with the evaluator
(training/eval/evaluate.py) and writes ``table.md`` / ``table.json`` (2d also
``error_map.png``) under ``--results``. Every step skips what exists, so a rerun after a
kill continues where it stopped and a finished experiment only rewrites its table.

- ``2d``: numeric head vs characters on the same checkerboard renders, steps and seeds;
  l2 on uniform test points (split into points inside training cells and between them)
  and on a held-out-cells set.
- ``so3``: the four rotation representations x {head, char}; geodesic error on an
  in-distribution test set and on the held-out ball (OOD). One render serves all eight
  runs: labels hold the rotation matrix and each model formats it in its own domain.

Deviation from the paper, on purpose: no pre-trained CLIP exists here. So each experiment's
conv tower gets its own stage 1 first (``OUT/stage1``, ``--stage1-steps``, from the labels:
for ``2d`` a centre heat-map and the dot's canvas position at its cell; for ``so3`` the
rotation's 6D read from the pooled grid — training/stages/tower.py), then stays frozen in
stage 2 with whitened tokens, as for CLEVR. What that tower sees (``--tower-world``): by
default its task's training renders; for ``2d``, ``generic`` trains it instead on a generic
world (``OUT/data/tower``: a disc of random colour and radius on a random background,
anywhere on the canvas — never the task's red dot on white), as CLIP saw the web and not
the task: the checkerboard tower never saw a dot between the cells and regresses positions
there less well (README, "The paper's other experiments"); ``both`` trains it on the training
renders and the generic world together (its read-out keeps the first's precision in the cells
and the second's between them: docs/results/2d_generic/tower_probe.md). Every variant of an experiment shares that one
tower, so the table compares only what stage 2 changes. Input size: ``IMAGE_SIZE`` square
(the renders are 336 x 336).
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

from ...atomic import check_output, write_json, write_text, writing
from .common import ExperimentError, igllm_predictions, run_train

# 128 px: the 5-px-radius dot of a 336 px render keeps a ~1.9 px radius (~11 red pixels),
# visible to the stride-8 conv tower; 8 x 8 = 64 LM tokens keep a 2-core CPU step short
IMAGE_SIZE = 128
REPRESENTATIONS = ("euler", "euler_int", "aa", "6d")
NUMBERS = ("head", "char")
# experiment -> {dataset folder name: (generate --condition, --split, count option)}
DATASETS = {
    "2d": {"train": ("checkerboard", "train", "train_count"), "test": ("uniform", "test", "test_count"),
           "heldout": ("heldout", "heldout", "test_count"), "tower": ("generic", "generic", "tower_count")},
    "so3": {"train": ("id", "train", "train_count"), "test": ("id", "test", "test_count"),
            "ood": ("ood", "ood", "test_count")},
}
# size defaults, the sizes of the tables in docs/results/2d and docs/results/so3 (measured on
# this 2-core CPU: 2d ~15 min with its renders made, so3 ~1.5 h including its 2,400 renders;
# stage1_steps x 32 for the frozen tower: a few CPU-minutes at 128 px)
DEFAULTS = {"2d": dict(train_count=1000, test_count=250, steps=300, batch_size=32, stage1_steps=600,
                       tower_world="task", tower_count=1500),
            "so3": dict(train_count=2000, test_count=200, steps=300, batch_size=32, stage1_steps=1500,
                        tower_world="task")}
TRAINING_SETS = ("train", "tower")     # the others are test sets
TOWER_WORLDS = ("task", "generic", "both")   # --tower-world: what the frozen tower's stage 1 reads
LR = 1e-3            # small model trained from scratch, tower included: higher than train's default
SAVE_EVERY = 100     # a killed run loses at most this many steps


# ---------------------------------------------------------------------------------------
# plan (pure)
# ---------------------------------------------------------------------------------------
def variants(name: str, representations=REPRESENTATIONS) -> list[tuple[str, str, str]]:
    """[(label, --numbers, model domain)] of one experiment."""
    if name == "2d":
        return [(n, n, "2d") for n in NUMBERS]
    return [(f"{rep}-{n}", n, f"so3:{rep}") for rep in representations for n in NUMBERS]


def check_sizes(args) -> None:
    flags = ["train_count", "test_count", "steps", "batch_size", "stage1_steps"]
    if uses_generic_world(args):
        flags.append("tower_count")
    for flag in flags:
        value = getattr(args, flag)
        if value < 1:
            raise ExperimentError(f"--{flag.replace('_', '-')} {value} is too small; pass 1 or more.")


def uses_generic_world(args) -> bool:
    return args.tower_world in ("generic", "both")


def check_tower_world(name: str, args) -> None:
    if uses_generic_world(args) and "tower" not in DATASETS[name]:
        raise ExperimentError(f"experiment {name} has no generic world for its tower; drop --tower-world "
                              f"{args.tower_world} (its tower trains on its own renders).")


def check_dataset(folder: Path, domain: str, condition: str, split: str) -> None:
    """A folder already there must be the dataset this step renders (generate --resume extends it)."""
    if folder.exists() and not folder.is_dir():
        raise ExperimentError(f"{folder} is a file, not a dataset folder; move it away or pass another --out.")
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError):
        raise ExperimentError(f"{manifest} is unreadable; delete {folder} and rerun to render it again.") from None
    have = (old.get("domain"), old.get("condition"), old.get("split"))
    if have != (domain, condition, split):
        raise ExperimentError(f"{folder} holds a {'/'.join(map(str, have))} dataset, not the "
                              f"{domain}/{condition}/{split} one this experiment needs; delete it or pass "
                              "another --out.")


def dataset_ready(folder: Path, count: int) -> bool:
    try:
        return len(json.loads((folder / "scenes.json").read_text())["scenes"]) == count
    except (OSError, ValueError, KeyError, TypeError):
        return False


def generate_argv(folder: Path, domain: str, condition: str, split: str, count: int, workers: int) -> list[str]:
    return ["generate", "--domain", domain, "--condition", condition, "--split", split, "--count", str(count),
            "--out", str(folder), "--resume", "--workers", str(workers)]


def _tower(domain: str, args, steps: int = 1):
    """A task's tower: the tiny conv tower at the task's square canvas, one object, no hue rotation."""
    from ..recipe import TowerSpec
    sets = {"domain": domain, "max_objects": 1, "image_size": args.image_size, "image_height": args.image_size}
    return TowerSpec(steps=steps, lr=2e-3, batch_size=args.batch_size, hue_prob=0.0,
                     model_overrides=tuple(f"{k}={json.dumps(v)}" for k, v in sets.items()))


def _runtime():
    from ..recipe import Runtime
    return Runtime(device="auto", workers=0, save_every=SAVE_EVERY)


def stage1_argv(run: Path, data: list[Path], count: int, domain: str, args) -> list[str]:
    """The resumable dense stage-1 line of a task's frozen tower on the first `count` renders
    of the `data` folders (in order), seed 0, no hue rotation."""
    from ..recipe import stage1_argv as line
    return line(data, run, _tower(domain, args, args.stage1_steps), seed=0, runtime=_runtime(), limit=count)


def train_argv(run: Path, data: Path, numbers: str, domain: str, args, seed: int, tower: Path) -> list[str]:
    """The resumable ``ig_llm train`` line of one variant: stage 2 on the frozen, whitened
    `tower` (the experiment's stage-1 weights)."""
    from ..recipe import ProgramSpec, stage2_argv
    program = ProgramSpec(steps=args.steps, lr=LR, warmup_steps=-1, batch_size=args.batch_size, mirror=0.0,
                          whiten=True, numbers=numbers)
    return stage2_argv([data], run, _tower(domain, args), program, tower, seed=seed, runtime=_runtime(),
                       limit=args.train_count)


def tower_data(folders: dict[str, Path], args) -> tuple[list[Path], int]:
    """(folders, how many renders) the tower's stage 1 reads for ``--tower-world``; each folder
    holds exactly its count (generate refuses a smaller --count over more renders)."""
    if args.tower_world == "generic":
        return [folders["tower"]], args.tower_count
    if args.tower_world == "both":
        return [folders["train"], folders["tower"]], args.train_count + args.tower_count
    return [folders["train"]], args.train_count          # task (so3 has no tower_count at all)


def train_tower(out: Path, folders: dict[str, Path], domain: str, args) -> Path:
    """The experiment's dense stage 1 into ``OUT/stage1`` (resumed or skipped), on the world
    ``--tower-world`` names; returns its vision weights."""
    run = out / "stage1"
    data, count = tower_data(folders, args)
    return run_train(run, stage1_argv(run, data, count, domain, args), run / "stage1" / "vision.safetensors",
                     "its tower", args.threads)


def needed_sets(name: str, args) -> list[str]:
    """The experiment's datasets this run renders: the generic world only when the tower sees it."""
    return [s for s in DATASETS[name] if s != "tower" or uses_generic_world(args)]


# ---------------------------------------------------------------------------------------
# steps (each skips what exists)
# ---------------------------------------------------------------------------------------
def render_datasets(name: str, args) -> dict[str, Path]:
    """{set name: folder}, rendered where missing or incomplete."""
    root = Path(args.out) / "data"
    domain = name                      # so3 renders once in its default representation
    folders = {}
    for set_name in needed_sets(name, args):
        condition, split, count_opt = DATASETS[name][set_name]
        folder, count = root / set_name, getattr(args, count_opt)
        check_dataset(folder, domain, condition, split)
        if not dataset_ready(folder, count):
            argv = generate_argv(folder, domain, condition, split, count, args.render_workers)
            print(f"[experiment] ig_llm {' '.join(argv)}", flush=True)
            if subprocess.call([sys.executable, "-m", "ig_llm", *argv]) != 0:
                raise ExperimentError(f"Rendering {folder} failed (see above); fix the cause and rerun the same "
                                      "command to resume.")
        folders[set_name] = folder
    return folders


def train_variant(run: Path, argv: list[str], threads: int | None = None) -> Path:
    """Train (or resume, or skip) one run in process; returns its model folder."""
    return run_train(run, argv, run / "model" / "config.json", "its model", threads).parent


def predict_set(model: Path, dataset: Path, out: Path) -> None:
    if not out.is_file():
        print(f"[experiment] predicting {dataset} with {model}", flush=True)
        igllm_predictions(model, str(dataset), out)


# ---------------------------------------------------------------------------------------
# scores and tables (pure given the evaluator's reports)
# ---------------------------------------------------------------------------------------
def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else None


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def dot_points(truth_scenes: list[dict], report: dict) -> list[tuple[float, float, float | None]]:
    """[(true x, true y, l2 error)] per test image, from the evaluator's per-scene rows."""
    from ...scene.program import scene_from_clevr
    where = {}
    for rec in truth_scenes:
        (dot,) = scene_from_clevr(rec).objects
        where[rec["image_filename"]] = (dot.x, dot.y)
    return [(*where[row["image_filename"]], row["l2"]) for row in report["per_scene"]]


def dot_scores(points, heldout_report: dict | None, cells: int) -> dict:
    from ..data.task_sampler import is_training_point
    inside = [e for x, y, e in points if is_training_point(x, y, cells)]
    between = [e for x, y, e in points if not is_training_point(x, y, cells)]
    return {"l2_test": _mean(e for *_, e in points), "l2_test_in_cells": _mean(inside),
            "l2_test_between_cells": _mean(between),
            "l2_heldout": heldout_report["summary"]["l2"] if heldout_report else None,
            "count_acc_test": _mean(1.0 if e is not None else 0.0 for *_, e in points)}


def pose_scores(reports: dict[str, dict]) -> dict:
    out = {}
    for set_name, rep in reports.items():
        errs = [row["rot_err_deg"] for row in rep["per_scene"]]
        out[f"rot_err_{set_name}"] = _mean(errs)
        out[f"rot_err_{set_name}_median"] = _median(errs)
        out[f"count_acc_{set_name}"] = rep["summary"]["count_acc"]
    return out


def seed_mean(per_seed: list[dict]) -> dict:
    """Mean of each score over seeds (None where no seed has it)."""
    return {k: _mean(s.get(k) for s in per_seed) for k in per_seed[0]}


def _fmt(value, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


COLUMNS = {
    "2d": [("l2_test", "l2 uniform test", 4), ("l2_test_in_cells", "in training cells", 4),
           ("l2_test_between_cells", "between training cells", 4), ("l2_heldout", "held-out-cells set", 4),
           ("count_acc_test", "count acc", 3)],
    "so3": [("rot_err_test", "ID mean °", 1), ("rot_err_test_median", "ID median °", 1),
            ("rot_err_ood", "OOD mean °", 1), ("rot_err_ood_median", "OOD median °", 1),
            ("count_acc_test", "ID count acc", 3), ("count_acc_ood", "OOD count acc", 3)],
}


def markdown_table(name: str, rows: dict[str, dict]) -> str:
    cols = COLUMNS[name]
    lines = ["| variant | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for label, scores in rows.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(scores.get(k), d) for k, _, d in cols) + " |")
    return "\n".join(lines) + "\n"


def write_error_map(points: dict[str, list], cells: int, path: Path) -> None:
    """Per-test-point l2 error over the unit square, one panel per variant, training cells outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    errors = sorted(e for pts in points.values() for *_, e in pts if e is not None)
    # colour scale to the 95th percentile: a few wild misses must not flatten the map
    vmax = max(errors[int(0.95 * (len(errors) - 1))], 1e-3) if errors else 1.0
    fig, axes = plt.subplots(1, len(points), figsize=(5.2 * len(points), 4.8), squeeze=False)
    for ax, (label, pts) in zip(axes[0], points.items()):
        for i in range(cells):
            for j in range(cells):
                if (i + j) % 2 == 0:     # the checkerboard's training cells (task_sampler)
                    ax.add_patch(matplotlib.patches.Rectangle((i / cells, j / cells), 1 / cells, 1 / cells,
                                                              fill=True, facecolor="0.93", edgecolor="0.55", lw=0.8))
        ok = [(x, y, e) for x, y, e in pts if e is not None]
        sc = ax.scatter([p[0] for p in ok], [p[1] for p in ok], c=[p[2] for p in ok], cmap="magma_r",
                        vmin=0.0, vmax=vmax, s=22, edgecolors="none")
        missed = [(x, y) for x, y, e in pts if e is None]
        if missed:
            ax.scatter(*zip(*missed), marker="x", c="tab:blue", s=20, label="no dot predicted")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)                # y points down, as on the canvas
        ax.set_aspect("equal")
        ax.set_title(f"{label}: mean l2 {_fmt(_mean(p[2] for p in ok), 4)}")
        ax.set_xlabel("x")
        ax.set_ylabel("y (down)")
    fig.colorbar(sc, ax=list(axes[0]), label="l2 error (canvas units; x 336 = px)", shrink=0.85, extend="max")
    fig.suptitle("2D dot: error per uniform test point (grey: training cells)")
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------
def run_task_experiment(name: str, args) -> dict:
    """Render, train, predict and score every variant; returns the table.json content."""
    from ..eval.evaluate import evaluate_files, load_scene_records
    check_sizes(args)
    out = Path(args.out)
    folders = render_datasets(name, args)
    eval_sets = [s for s in DATASETS[name] if s not in TRAINING_SETS]
    reps = getattr(args, "representations", None) or REPRESENTATIONS
    rows, per_seed_rows, points = {}, {}, {}
    cells = _cells()
    truth_test = load_scene_records(folders["test"] / "scenes.json") if name == "2d" else None
    tower = train_tower(out, folders, name, args)
    for label, numbers, domain in variants(name, reps):
        per_seed = []
        for seed in args.seeds:
            run = out / f"{label}_s{seed}"
            model = train_variant(run, train_argv(run, folders["train"], numbers, domain, args, seed, tower),
                                  args.threads)
            reports = {}
            for set_name in eval_sets:
                pred = run / f"{set_name}.predictions.json"
                predict_set(model, folders[set_name], pred)
                reports[set_name] = evaluate_files(folders[set_name] / "scenes.json", pred)
            if name == "2d":
                pts = dot_points(truth_test, reports["test"])
                points.setdefault(label, []).append(pts)
                per_seed.append(dot_scores(pts, reports["heldout"], cells))
            else:
                per_seed.append(pose_scores(reports))
        rows[label], per_seed_rows[label] = seed_mean(per_seed), per_seed
    result = {"experiment": name, "rows": rows, "per_seed": per_seed_rows,
              "settings": {k: getattr(args, k) for k in ("train_count", "test_count", "steps", "batch_size",
                                                          "seeds", "image_size", "stage1_steps",
                                                          "tower_world", "tower_count")}}
    if name == "2d":
        # the map shows the mean error over seeds at each test point (same points every seed)
        result["error_points"] = {label: [(x, y, _mean(runs[k][i][2] for k in range(len(runs))))
                                          for i, (x, y, _) in enumerate(runs[0])]
                                  for label, runs in points.items()}
    return result


def add_size_arguments(parser) -> None:
    g = parser.add_argument_group("2d / so3 sizes (defaults: the tables in docs/results; "
                                  "2d ~15 min, so3 ~1.5 h on a 2-core CPU)")
    g.add_argument("--train-count", type=int, help="training renders (2d %d, so3 %d)"
                   % (DEFAULTS["2d"]["train_count"], DEFAULTS["so3"]["train_count"]))
    g.add_argument("--test-count", type=int, help="renders per test set (2d %d, so3 %d)"
                   % (DEFAULTS["2d"]["test_count"], DEFAULTS["so3"]["test_count"]))
    g.add_argument("--batch-size", type=int, help="training batch (default %d)" % DEFAULTS["2d"]["batch_size"])
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds, one run each (default 0)")
    g.add_argument("--stage1-steps", type=int, help="stage-1 steps of the experiment's frozen tower (2d %d, so3 %d)"
                   % (DEFAULTS["2d"]["stage1_steps"], DEFAULTS["so3"]["stage1_steps"]))
    g.add_argument("--tower-world", choices=TOWER_WORLDS,
                   help="what the frozen tower's stage 1 sees: task (default: the training renders) or, 2d only, "
                        "generic (random discs on random backgrounds, anywhere on the canvas) or both")
    g.add_argument("--tower-count", type=int, help="2d --tower-world generic/both: its generic renders (default %d)"
                   % DEFAULTS["2d"]["tower_count"])
    g.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"square model input (default {IMAGE_SIZE})")
    g.add_argument("--representations", nargs="+", choices=REPRESENTATIONS,
                   help="so3: the representations to run (default all four)")
    g.add_argument("--render-workers", type=int, default=2, help="generate worker processes (default 2)")
    g.add_argument("--threads", type=int, help="torch CPU threads for training")


def main(name: str, args) -> int:
    for key, value in DEFAULTS[name].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    check_tower_world(name, args)
    results = Path(args.results)
    table_md = check_output(str(results / "table.md"), "--results")
    check_output(args.out, "--out", folder=True)
    result = run_task_experiment(name, args)
    s = result["settings"]
    title = {"2d": "2D dot: numeric head vs characters (parameter-space generalisation)",
             "so3": "SO(3): rotation representations x numeric head / characters"}[name]
    metric = {"2d": "l2 = distance between true and predicted dot, canvas units (x 336 = px); "
                    "uniform test points split by whether they fall in a training cell",
              "so3": "geodesic rotation error in degrees; ID = rotations outside the 60° held-out ball, "
                     "OOD = inside it"}[name]
    text = (f"# {title}\n\n{s['train_count']} training renders, {s['test_count']} per test set, "
            f"{s['steps']} steps x {s['batch_size']}, seeds {s['seeds']}, {s['image_size']} px input, "
            + f"tower from a {s['stage1_steps']}-step stage 1 on "
            + {"task": "the same renders",
               "generic": f"{s['tower_count']} renders of a generic world (random disc colour, radius and "
                          "background, anywhere on the canvas; never the task's own look)",
               "both": f"the same renders and {s['tower_count']} renders of a generic world (random disc "
                       "colour, radius and background, anywhere on the canvas)"}[s["tower_world"]]
            + ", frozen and whitened in stage 2"
            + " (no frozen CLIP: see docs/experiments.md).\n"
            f"Metric: {metric}.\nCommand: `{command_line(name, args)}`\n\n"
            + markdown_table(name, result["rows"]))
    if name == "2d":
        write_error_map(result["error_points"], _cells(), results / "error_map.png")
        text += "\n![error map](error_map.png)\n"
    write_text(table_md, text)
    write_json(results / "table.json", result)
    print(text)
    return 0


def command_line(name: str, args) -> str:
    """The command that reproduces this table, sizes spelled out."""
    parts = [f"python -m ig_llm experiment {name} --out {args.out} --results {args.results}",
             f"--train-count {args.train_count} --test-count {args.test_count} --steps {args.steps}",
             f"--batch-size {args.batch_size} --seeds {' '.join(map(str, args.seeds))}"]
    if args.image_size != IMAGE_SIZE:
        parts.append(f"--image-size {args.image_size}")
    if args.stage1_steps != DEFAULTS[name]["stage1_steps"]:
        parts.append(f"--stage1-steps {args.stage1_steps}")
    if args.tower_world != DEFAULTS[name]["tower_world"]:
        parts.append(f"--tower-world {args.tower_world}")
    if uses_generic_world(args) and args.tower_count != DEFAULTS[name].get("tower_count"):
        parts.append(f"--tower-count {args.tower_count}")
    if name == "so3" and args.representations:
        parts.append("--representations " + " ".join(args.representations))
    return " ".join(parts)


def _cells() -> int:
    from ...scene.domain import load_domain
    return int(load_domain("2d").task["checkerboard_cells"])


__all__ = ["DATASETS", "DEFAULTS", "IMAGE_SIZE", "REPRESENTATIONS", "markdown_table", "run_task_experiment",
           "variants"]
