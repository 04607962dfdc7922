"""Recipes: one training run as data (TOML), and the one runner that turns it into commands.

    python -m ig_llm train-default                    # recipes/clevr.toml: the shipped model's recipe
    python -m ig_llm train-recipe RECIPE.toml [--home DIR] [--device cuda] [--dry-run] [--install]

A recipe names the datasets (condition, seed, count, size, render settings), the tower
(stage 1: preset, grid stride, steps, lr, batch, augmentation), the program stage (stage
2: steps, lr, warm-up, schedule, recolour, mirror, whitening) and the evaluation sets. It
runs as one stage 1 and one stage 2, each with one schedule; whitening is fitted once on
the frozen tower when stage 2 starts. Every step is a command line built here, and only
here, from the recipe; each resumes from the data home and is skipped when its output is
complete, so the runner can be killed at any moment and rerun:

    HOME/datasets/<dataset name>/            `generate --resume` (scenes accumulate)
    HOME/runs/<recipe name>/tower/           stage 1 (`train --stage 1 --resume`)
    HOME/runs/<recipe name>/program/         stage 2 (`train --stage 2 --resume`); model/ when done
    HOME/runs/<recipe name>/eval/            predictions and metrics per evaluation set

What a run may change without changing the result (device, threads, loader workers) comes
from the command line, never from the recipe: the same file runs on a laptop CPU or a GPU
(tools/gpu_train.sh). The model card records the recipe and its hash.

A recipe is checked before any work: unknown keys, wrong types, and a training dataset of
any condition but the domain's training one (CoGenT: A) are refused in one sentence naming
the file and the key. Condition B is reachable only as an evaluation set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text, writing_folder
from ..errors import UserError
from ..home import add_home_argument, data_home

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
RECIPES = PACKAGE_ROOT / "recipes"
DEFAULT_RECIPE = RECIPES / "clevr.toml"
DEFAULT_MODEL_DIR = PACKAGE_ROOT / "model" / "default"
TOWER_FILE = Path("stage1") / "vision.safetensors"      # what `train --stage 1` leaves in its run folder
MAX_RECIPE_BYTES = 1 << 20                                 # a recipe is a page of TOML
DEFAULT_STRIDE = 8                                        # the config's tower_stride default
TRAINING_CONDITION = {"clevr": "A", "2d": "checkerboard", "so3": "id"}   # the only one a stage may read


class RecipeError(UserError, ValueError):
    """A recipe that cannot run; the message names the file, the key and the fix."""


# ---------------------------------------------------------------------------------------
# the recipe as dataclasses: each field is a key of the TOML table, with its type
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    role: str                   # "train" (stages read it) or "eval" (only scored)
    condition: str
    seed: int
    count: int
    size: str = "192x128"
    samples: int = 12
    bounces: int = 4
    split: str = ""             # file-name prefix; default train<condition> / the dataset's name
    domain: str = "clevr"


@dataclass(frozen=True)
class TowerSpec:
    preset: str = "tiny"
    grid_stride: int = 8        # conv tower: pixels per grid cell (8 or 4)
    steps: int = 800
    lr: float = 2e-3
    batch_size: int = 32
    recolour: float = 0.0       # per-object recolouring probability (training/data/recolour)
    hue_prob: float = -1.0      # hue rotation probability; < 0: the stage's default
    model_overrides: list = ()  # "KEY=VALUE" model config fields on top of the preset (`train --set`)


@dataclass(frozen=True)
class ProgramSpec:
    steps: int = 2000
    lr: float = 1e-3
    warmup_steps: int = 50      # < 0: train's default (3 % of the steps)
    schedule: str = "cosine"    # linear warm-up, then cosine decay (the one schedule `train` has)
    batch_size: int = 32
    recolour: float = 0.0
    mirror: float = 0.5
    whiten: bool = True
    numbers: str = "head"       # the numeric head, or "char" (the paper's baseline)


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    sha256: str                 # of the file's bytes: recorded in the model card
    seed: int
    datasets: tuple[DatasetSpec, ...]
    tower: TowerSpec
    program: ProgramSpec
    eval_sets: tuple[str, ...]

    def dataset(self, name: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.name == name)

    @property
    def train_sets(self) -> tuple[DatasetSpec, ...]:
        return tuple(d for d in self.datasets if d.role == "train")


SCHEDULES = ("cosine",)
ROLES = ("train", "eval")


def _check_table(path: Path, where: str, table, cls, skip=()) -> dict:
    """The values of `table` checked against the dataclass `cls`: keys and types."""
    if not isinstance(table, dict):
        raise RecipeError(f"{path}: [{where}] must be a table; write it as [{where}] with key = value lines.")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    for key, value in table.items():
        if key not in fields:
            raise RecipeError(f"{path}: unknown key {where}.{key}; known keys there: {', '.join(fields)}.")
        want = {"int": int, "float": float, "str": str, "bool": bool, "list": list}[fields[key].type]
        ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))) or \
             (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise RecipeError(f"{path}: {where}.{key} = {value!r} is a {type(value).__name__}; it must be a "
                              f"{want.__name__}.")
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING and k not in table]
    if missing:
        raise RecipeError(f"{path}: [{where}] lacks {', '.join(missing)}; add {missing[0]} = ... there.")
    return {k: float(v) if fields[k].type == "float" else tuple(v) if fields[k].type == "list" else v
            for k, v in table.items()}


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file; raises RecipeError (one sentence) before any work."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"Recipe file {path} does not exist; give a .toml recipe such as {DEFAULT_RECIPE}.")
    if not path.is_file():
        raise RecipeError(f"{path} is not a file; give a .toml recipe such as {DEFAULT_RECIPE}.")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"Recipe file {path} is {path.stat().st_size:,} bytes, too large for a recipe (at most "
                          f"{MAX_RECIPE_BYTES:,}); give the .toml recipe itself.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"Recipe file {path} is not UTF-8 text; save it as plain text.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path} is not valid TOML ({err}); fix that line.") from None
    top = {"recipe", "datasets", "tower", "program", "evaluate"}
    for key in data:
        if key not in top:
            raise RecipeError(f"{path}: unknown table [{key}]; a recipe has {', '.join(sorted(top))}.")
    head = _check_table(path, "recipe", data.get("recipe", {}), _RecipeHead)
    datasets = []
    for name, table in (data.get("datasets") or {}).items():
        values = _check_table(path, f"datasets.{name}", table, DatasetSpec, skip=("name",))
        spec = DatasetSpec(name=name, **values)
        datasets.append(_check_dataset(path, spec))
    if not any(d.role == "train" for d in datasets):
        raise RecipeError(f"{path}: no dataset has role = \"train\"; add one under [datasets.<name>].")
    tower = TowerSpec(**_check_table(path, "tower", data.get("tower", {}), TowerSpec))
    if not all(isinstance(v, str) and "=" in v for v in tower.model_overrides):
        raise RecipeError(f"{path}: tower.model_overrides must be a list of \"KEY=VALUE\" strings.")
    program = ProgramSpec(**_check_table(path, "program", data.get("program", {}), ProgramSpec))
    if program.schedule not in SCHEDULES:
        raise RecipeError(f"{path}: program.schedule = {program.schedule!r}; the one schedule is "
                          f"{', '.join(SCHEDULES)}.")
    if program.numbers not in ("head", "char"):
        raise RecipeError(f"{path}: program.numbers = {program.numbers!r}; use \"head\" or \"char\".")
    if tower.grid_stride not in (4, 8):
        raise RecipeError(f"{path}: tower.grid_stride = {tower.grid_stride}; use 8 or 4.")
    for key, value in (("tower.steps", tower.steps), ("program.steps", program.steps),
                       ("tower.batch_size", tower.batch_size), ("program.batch_size", program.batch_size)):
        if value < 1:
            raise RecipeError(f"{path}: {key} = {value}; it must be 1 or more.")
    evaluate = data.get("evaluate", {})
    _check_table(path, "evaluate", evaluate, _EvaluateTable)
    names = {d.name: d for d in datasets}
    for name in evaluate.get("sets", []):
        if not isinstance(name, str) or name not in names:
            raise RecipeError(f"{path}: evaluate.sets names {name!r}, which is not a dataset of this recipe; "
                              f"use one of {', '.join(names)}.")
        if names[name].role != "eval":
            raise RecipeError(f"{path}: evaluate.sets names {name}, a training dataset; scores come only from "
                              "held-out data: give it role = \"eval\" or drop it.")
    train_keys = {(d.domain, d.seed) for d in datasets if d.role == "train"}
    for d in datasets:
        if d.role == "eval" and (d.domain, d.seed) in train_keys:
            raise RecipeError(f"{path}: evaluation dataset {d.name} uses seed {d.seed}, as a training dataset; "
                              "held-out sets are rendered with other seeds: pick another seed.")
    return Recipe(name=head["name"], path=path.resolve(), sha256=hashlib.sha256(raw).hexdigest(),
                  seed=head.get("seed", 0), datasets=tuple(datasets), tower=tower, program=program,
                  eval_sets=tuple(evaluate.get("sets", [])))


@dataclass(frozen=True)
class _RecipeHead:
    name: str
    seed: int = 0


@dataclass(frozen=True)
class _EvaluateTable:
    sets: list = ()


def training_condition(path: Path, d: DatasetSpec) -> str:
    """The one condition training datasets of `d`'s domain may have: CoGenT's A, the 2D /
    SO(3) tasks' own, or an asset kit's (its "train": the held-out pairs kept out)."""
    if d.domain in TRAINING_CONDITION:
        return TRAINING_CONDITION[d.domain]
    from ..scene.domain import load_domain
    from ..scene.kits import KitError
    try:
        domain = load_domain(d.domain)
    except KitError as err:
        raise RecipeError(f"{path}: datasets.{d.name}.domain = {d.domain!r} is a kit that cannot be used "
                          f"({str(err).rstrip('.')}).") from None
    except FileNotFoundError:
        raise RecipeError(f"{path}: datasets.{d.name}.domain = {d.domain!r}; use one of "
                          f"{', '.join(TRAINING_CONDITION)}, or an asset kit's name or folder.") from None
    if domain.kit is None:
        raise RecipeError(f"{path}: datasets.{d.name}.domain = {d.domain!r}; use one of "
                          f"{', '.join(TRAINING_CONDITION)}, or an asset kit's name or folder.")
    if d.condition not in domain.conditions:
        raise RecipeError(f"{path}: datasets.{d.name}.condition = {d.condition!r} is not a condition of the kit "
                          f"{domain.name}; use one of {', '.join(domain.conditions)}.")
    return domain.default_condition


def _check_dataset(path: Path, d: DatasetSpec) -> DatasetSpec:
    if d.role not in ROLES:
        raise RecipeError(f"{path}: datasets.{d.name}.role = {d.role!r}; use \"train\" or \"eval\".")
    training = training_condition(path, d)
    if d.role == "train" and d.condition != training:
        raise RecipeError(f"{path}: datasets.{d.name} is a training dataset of condition {d.condition}; the "
                          f"stages only ever read condition {training} (other conditions are "
                          "held out): set role = \"eval\" or condition = "
                          f"\"{training}\".")
    if d.count < 1:
        raise RecipeError(f"{path}: datasets.{d.name}.count = {d.count}; it must be 1 or more.")
    if not d.name.replace("-", "").replace("_", "").isalnum():
        raise RecipeError(f"{path}: dataset name {d.name!r} may only hold letters, digits, '-' and '_'.")
    return d


# ---------------------------------------------------------------------------------------
# the command lines: every training command line is built here
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlaces:
    """Where one recipe's run lives in the data home."""
    home: Path
    name: str

    def dataset(self, spec: DatasetSpec) -> Path:
        return self.home / "datasets" / spec.name

    @property
    def run(self) -> Path:
        return self.home / "runs" / self.name

    @property
    def tower(self) -> Path:
        return self.run / "tower"

    @property
    def program(self) -> Path:
        return self.run / "program"

    @property
    def model(self) -> Path:
        return self.program / "model"

    @property
    def eval(self) -> Path:
        return self.run / "eval"


@dataclass(frozen=True)
class Runtime:
    """How the run executes (never what it learns): from the command line."""
    device: str = "auto"
    workers: int = 0            # DataLoader workers (0: images cached in memory)
    render_workers: int = 2
    threads: int | None = None
    bf16: bool = False
    save_every: int | None = 200  # training checkpoint cadence (what a kill can lose); None: train's
    cache_images: bool = True   # stage 2 keeps the decoded images in memory


def generate_argv(spec: DatasetSpec, out: Path, runtime: Runtime) -> list[str]:
    split = spec.split or (spec.name if spec.role == "eval" else
                           "train" if spec.condition == "train" else f"train{spec.condition}")
    return ["generate", "--domain", spec.domain, "--condition", spec.condition, "--count", str(spec.count),
            "--seed", str(spec.seed), "--split", split, "--size", spec.size, "--samples", str(spec.samples),
            "--bounces", str(spec.bounces), "--workers", str(runtime.render_workers), "--out", str(out),
            "--resume", "--no-progress"]


def _model_options(tower: TowerSpec) -> list[str]:
    sets = ([f"tower_stride={tower.grid_stride}"] if tower.grid_stride != DEFAULT_STRIDE else []) + \
        list(tower.model_overrides)
    return ["--preset", tower.preset, *(a for kv in sets for a in ("--set", kv))]


def _run_options(runtime: Runtime) -> list[str]:
    out = ["--device", runtime.device, "--workers", str(runtime.workers), "--quiet", "--resume"]
    if runtime.save_every:
        out += ["--save-every", str(runtime.save_every)]
    if runtime.threads:
        out += ["--threads", str(runtime.threads)]
    if runtime.bf16:
        out.append("--bf16")
    return out


def stage1_argv(data, out: Path, tower: TowerSpec, *, seed: int, runtime: Runtime,
                limit: int | None = None) -> list[str]:
    """The resumable ``train --stage 1`` line: a dense tower from `data` into `out`/stage1."""
    argv = ["train", "--stage", "1", "--data", *map(str, data), "--out", str(out), *_model_options(tower),
            "--stage1-steps", str(tower.steps), "--stage1-lr", str(tower.lr),
            "--stage1-batch-size", str(tower.batch_size), "--seed", str(seed), *_run_options(runtime)]
    if tower.recolour:
        argv += ["--recolour", str(tower.recolour)]
    if tower.hue_prob >= 0:
        argv += ["--hue-prob", str(tower.hue_prob)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def stage2_argv(data, out: Path, tower: TowerSpec, program: ProgramSpec, vision_weights, *, seed: int,
                runtime: Runtime, limit: int | None = None) -> list[str]:
    """The resumable ``train --stage 2`` line: the program on the frozen tower `vision_weights`."""
    argv = ["train", "--stage", "2", "--data", *map(str, data), "--out", str(out), *_model_options(tower),
            "--vision-weights", str(vision_weights), "--numbers", program.numbers,
            "--steps", str(program.steps), "--lr", str(program.lr), "--batch-size", str(program.batch_size),
            "--seed", str(seed), *_run_options(runtime)]
    if program.warmup_steps >= 0:
        argv += ["--warmup-steps", str(program.warmup_steps)]
    if program.mirror:
        argv += ["--mirror", str(program.mirror)]
    if program.recolour:
        argv += ["--recolour", str(program.recolour)]
    if program.whiten:
        argv.append("--whiten-features")
    if runtime.cache_images:
        argv.append("--cache-images")
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def _model_tower(recipe: Recipe) -> TowerSpec:
    """The recipe's tower spec, with ``domain=`` added for datasets of an asset kit (the
    model's words come from the kit) unless model_overrides names the domain already."""
    kits = {d.domain for d in recipe.train_sets if d.domain not in TRAINING_CONDITION}
    if not kits or any(o.startswith("domain=") for o in recipe.tower.model_overrides):
        return recipe.tower
    return dataclasses.replace(recipe.tower, model_overrides=(*recipe.tower.model_overrides,
                                                             f"domain={sorted(kits)[0]}"))


def tower_argv(recipe: Recipe, places: RunPlaces, runtime: Runtime) -> list[str]:
    return stage1_argv([places.dataset(d) for d in recipe.train_sets], places.tower, _model_tower(recipe),
                       seed=recipe.seed, runtime=runtime)


def program_argv(recipe: Recipe, places: RunPlaces, runtime: Runtime) -> list[str]:
    return stage2_argv([places.dataset(d) for d in recipe.train_sets], places.program, _model_tower(recipe),
                       recipe.program, places.tower / TOWER_FILE, seed=recipe.seed + 1, runtime=runtime)


def predict_argv(model: Path, data: Path, out: Path, runtime: Runtime) -> list[str]:
    return ["predict", str(data / "images"), "--model", str(model), "--out", str(out),
            "--device", runtime.device, "--batch-size", "32", "--quiet"]


def evaluate_argv(data: Path, pred: Path, out: Path) -> list[str]:
    return ["evaluate", "--truth", str(data / "scenes.json"), "--pred", str(pred), "--out", str(out)]


# ---------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------
def dataset_complete(path: Path, count: int) -> bool:
    labels = path / "labels"
    return (path / "scenes.json").is_file() and labels.is_dir() and \
        sum(1 for p in labels.glob("*.json") if not p.name.startswith(".")) >= count


@dataclass
class Step:
    what: str
    argv: list[str]
    done: bool


def plan(recipe: Recipe, places: RunPlaces, runtime: Runtime) -> list[Step]:
    """Every step of the recipe in order, each marked done when its output is complete."""
    steps = [Step(f"render {d.name}", generate_argv(d, places.dataset(d), runtime),
                  dataset_complete(places.dataset(d), d.count)) for d in recipe.datasets]
    steps.append(Step("stage 1 (tower)", tower_argv(recipe, places, runtime),
                      (places.tower / TOWER_FILE).is_file()))
    steps.append(Step("stage 2 (program)", program_argv(recipe, places, runtime),
                      (places.model / "config.json").is_file()))
    for name in recipe.eval_sets:
        data = places.dataset(recipe.dataset(name))
        pred, metrics = places.eval / f"{name}.predictions.json", places.eval / f"{name}.metrics.json"
        steps.append(Step(f"predict {name}", predict_argv(places.model, data, pred, runtime), pred.is_file()))
        steps.append(Step(f"evaluate {name}", evaluate_argv(data, pred, metrics), metrics.is_file()))
    return steps


def ig_command(argv: list[str]) -> list[str]:
    """A command line of this package's CLI as a subprocess."""
    return [sys.executable, "-m", "ig_llm", *argv]


def _run(step: Step) -> None:
    cmd = ig_command(step.argv)
    print(f"[recipe] {step.what}: {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise RecipeError(f"{step.what} failed (exit {rc}); fix the cause above and rerun the same command: "
                          "every step resumes where it stopped.")


def card_section(recipe: Recipe, summaries: dict) -> str:
    from .eval.report import metrics_markdown
    text = recipe.path.read_text()
    lines = ["## Recipe", "", f"`{recipe.path.name}` (sha256 `{recipe.sha256}`), one stage 1 and one stage 2:",
             "", "```toml", text.rstrip("\n"), "```", ""]
    if summaries:
        lines += ["## Metrics", "", "Held-out sets of the recipe, rendered with other seeds than training.", "",
                  metrics_markdown(summaries)]
    return "\n".join(lines) + "\n"


def write_card(recipe: Recipe, model: Path, summaries: dict) -> None:
    card = (model / "card.md").read_text().split("\n## Recipe")[0].rstrip("\n")
    write_text(model / "card.md", card + "\n\n" + card_section(recipe, summaries))


def run_recipe(recipe: Recipe, home: Path, runtime: Runtime, *, dry_run: bool = False) -> dict:
    """Run every step not yet done; returns {eval set: metric summary}."""
    places = RunPlaces(home, recipe.name)
    steps = plan(recipe, places, runtime)
    for step in steps:
        if dry_run:
            print(f"{'done' if step.done else 'todo'}  {step.what}: {' '.join(ig_command(step.argv))}")
        elif step.done:
            print(f"[recipe] {step.what}: done, skipped", flush=True)
        else:
            _run(step)
    if dry_run:
        return {}
    summaries = {name: json.loads((places.eval / f"{name}.metrics.json").read_text())["summary"]
                 for name in recipe.eval_sets}
    card = (places.model / "card.md").read_text()
    if f"sha256 `{recipe.sha256}`" not in card or (summaries and "## Metrics" not in card.split("## Recipe")[-1]):
        write_card(recipe, places.model, summaries)
    return summaries


def install(model: Path, target: Path = DEFAULT_MODEL_DIR) -> None:
    """Copy the model folder to `target`, swapping it in atomically."""
    with writing_folder(target) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
    print(f"[recipe] installed {model} -> {target}", flush=True)


# ---------------------------------------------------------------------------------------
# command
# ---------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("recipe", nargs="?", default=str(DEFAULT_RECIPE),
                        help=f"recipe file (default: {DEFAULT_RECIPE.relative_to(PACKAGE_ROOT)}, the shipped model's)")
    add_home_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0: images cached)")
    parser.add_argument("--render-workers", type=int, default=2, help="parallel Blender processes (default 2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per process")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--save-every", type=int, default=200, help="training checkpoint every N steps (default 200)")
    parser.add_argument("--dry-run", action="store_true", help="print every step's command and whether it is done")
    parser.add_argument("--install", action="store_true",
                        help="copy the finished model to model/default/ (what the extension ships)")


def main(args) -> int:
    recipe = load_recipe(args.recipe)
    runtime = Runtime(device=args.device, workers=args.workers, render_workers=args.render_workers,
                      threads=args.threads, bf16=args.bf16, save_every=args.save_every)
    home = data_home(args.home)
    summaries = run_recipe(recipe, home, runtime, dry_run=args.dry_run)
    if summaries:
        from .eval.report import format_table
        print(format_table(summaries))
    if args.install and not args.dry_run:
        install(RunPlaces(home, recipe.name).model)
    return 0
