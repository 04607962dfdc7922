"""The options of an `ig_llm train` run, declared once.

Each option is one field of :class:`RunOptions`: its default, its help, its argparse group
and the scopes it belongs to. `add_arguments` generates the command line from the fields
(the `train` command has no other list of its flags), `RunOptions.from_args` reads a parsed
command line back, and every training checkpoint stores ``to_dict()`` (``meta["options"]``;
`from_dict` reads it), nanoGPT-style: a run folder says how it was made.

The scopes are what ``--resume`` checks: an option that changes what is trained (model,
data, optimisation, augmentation) must match the checkpoint's, or the resume is refused in
one sentence naming the option. Options with no scope only change *how* it runs (device,
threads, workers, logging, checkpoint cadence, stopping early) and may differ: that is what
resuming on another machine or in time slices needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...home import ENV as HOME_ENV

WHITEN_IMAGES = 1000  # --whiten-features: training images whose tower tokens give the statistics
GROUPS = ("data and output", "model", "optimisation (stage 2)", "stage 1 (visual tower)", "run control")
MODEL, STAGE1, STAGE2 = "model", "stage1", "stage2"      # the scopes


def option(default, help: str, group: int, scope=(), **argparse_kw):
    """One option: a dataclass field carrying its command-line declaration."""
    return field(default=default, metadata={"help": help, "group": GROUPS[group], "scope": tuple(scope),
                                            "argparse": argparse_kw})


D, M, O, S1, R = range(5)   # the groups, in GROUPS order


@dataclass(frozen=True)
class RunOptions:
    # data and output
    data: tuple = option((), "dataset folders (ig_llm generate) and/or packed .npz files", D, (STAGE1, STAGE2),
                         nargs="+", required=True, metavar="DIR_OR_PACK")
    out: str | None = option(None, "run folder (log, checkpoints, model/); default: the data home's "
                                   "runs/<first --data folder's name>-stage<--stage>", D, metavar="RUN_DIR")
    limit: int | None = option(None, "train on the first N images of --data only (learning curves)", D,
                               (STAGE1, STAGE2), metavar="N")
    stage: str = option("2", "1: pre-train the visual tower; 2: train the program model; both: 1 then 2 "
                             "(default 2)", D, choices=("1", "2", "both"))
    resume: bool = option(False, "continue from the last checkpoint in RUN_DIR", D)
    # model
    preset: str = option("tiny", "model preset (model/presets.py; default tiny)", M, (MODEL, STAGE1))
    vision_weights: str | None = option(
        None, "visual tower weights from stage 1 (default with --stage both: RUN_DIR/stage1/vision.safetensors)",
        M, (MODEL,), metavar="FILE")
    numbers: str = option("head", "numbers via the numeric head (<num> placeholders) or as characters "
                                  "(default head)", M, (MODEL,), choices=("head", "char"))
    train_vision: bool = option(False, "train the visual tower too in stage 2 (ablation)", M, (MODEL,))
    init_from: str | None = option(
        None, "start stage 2 from a finished model folder's weights and config (fine-tuning; --preset, "
              "--numbers, --vision-weights and --set are then taken from that folder)", M, (MODEL,),
        metavar="MODEL_DIR")
    set: tuple = option((), "override a config field (JSON value), e.g. --set lm_layers=6", M, (MODEL, STAGE1),
                        action="append", metavar="KEY=VALUE")
    whiten_features: bool = option(
        False, "stage 2: whiten the frozen tower's tokens before the projector (statistics of the first "
               f"{WHITEN_IMAGES} training images; folded into the projector when saved)", M, (MODEL,))
    # optimisation (stage 2)
    steps: int | None = option(None, "optimiser steps (default 2000; with --time-budget: an upper bound)", O,
                               (STAGE2,))
    batch_size: int = option(32, "images per step per process (default 32)", O, (STAGE2,))
    lr: float = option(5e-4, "peak learning rate (default 5e-4)", O, (STAGE2,))
    head_lr: float | None = option(None, "numeric head learning rate (default: --lr)", O, (STAGE2,))
    weight_decay: float = option(0.0, "AdamW weight decay (default 0, as the paper)", O, (STAGE2,))
    warmup: float = option(0.03, "warm-up fraction of the steps (default 0.03)", O, (STAGE2,))
    warmup_steps: int | None = option(None, "warm-up steps (overrides --warmup; default 100 with --time-budget)",
                                      O, (STAGE2,))
    time_budget: float | None = option(
        None, "choose the step count so stage 2 ends after about MIN minutes (pace measured over steps 5-30; "
              "--steps is then an upper bound); the count is logged and checkpointed", O, (STAGE2,),
        metavar="MIN")
    mirror: float = option(0.0, "chance of training on an example's exact left-right mirror (image flipped, "
                                "scene reflected; default 0)", O, (STAGE2,), metavar="P")
    recolour: float = option(
        0.0, "both stages: chance that every object of an image is recoloured to a palette colour drawn at "
             "random, label included (training/data/recolour.py; needs the per-pixel truth and, in stage 2, "
             "--cache-images; default 0)", O, (STAGE1, STAGE2), metavar="P")
    clip: float = option(1.0, "gradient norm clip (default 1.0)", O, (STAGE2,))
    bf16: bool = option(False, "bf16 autocast (CUDA)", O)
    # stage 1 (visual tower)
    stage1_steps: int = option(1000, "contrastive steps (default 1000)", S1, (STAGE1,))
    stage1_batch_size: int = option(128, "images per step (default 128)", S1, (STAGE1,))
    stage1_lr: float = option(1e-3, "peak learning rate (default 1e-3)", S1, (STAGE1,))
    hue_prob: float | None = option(None, "conv tower: share of stage-1 images hue-rotated with their colour "
                                          "targets (default 0.75; 0 = off, the shortcut ablation)", S1, (STAGE1,),
                                    metavar="P")
    stage1_init: str | None = option(None, "conv tower: start stage 1 from a finished stage-1 folder (vision + "
                                           "heads safetensors) instead of random weights", S1, (STAGE1,),
                                     metavar="STAGE1_DIR")
    caption: str = option("words+loc", "stage 1 caption: object words + 0.5-unit position bins left to right "
                                       "(default), words only, or the character program", S1, (STAGE1,),
                          choices=("words+loc", "words", "program"))
    # run control: how it runs, never what it learns (no scope)
    seed: int = option(0, "seed (default 0)", R, (STAGE1, STAGE2))
    device: str = option("auto", "auto, cpu, cuda, cuda:0 ... (default auto)", R)
    workers: int = option(2, "DataLoader worker processes (default 2; 0 = in process)", R)
    cache_images: bool = option(False, "decode + preprocess every image once into RAM (uint8; 1 GB per 9000 "
                                       "images at 192 px)", R)
    save_every: int = option(500, "checkpoint every N steps (default 500)", R)
    log_every: int = option(20, "log every N steps (default 20)", R)
    keep: int = option(2, "checkpoints kept (default 2)", R)
    stop_at: int | None = option(None, "stop after step K with a checkpoint, as if killed (for time slices; "
                                       "resume later)", R, metavar="K")
    max_minutes: float | None = option(None, "stop with a checkpoint when this wall time is spent (resume "
                                             "later)", R)
    threads: int | None = option(None, "torch CPU threads per process", R)
    quiet: bool = option(False, "no progress bar", R)
    home: str | None = option(None, f"the data home, for the default --out (default: ${HOME_ENV}, else the user "
                                    "cache folder + ig_llm)", R)
    extra: dict = field(default_factory=dict, compare=False)   # room for later options

    @classmethod
    def from_args(cls, args) -> "RunOptions":
        """From the argparse namespace; lists become tuples, paths strings."""
        values = {}
        for f in _declared():
            if not hasattr(args, f.name):
                continue
            v = getattr(args, f.name)
            values[f.name] = tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(**values)

    @classmethod
    def from_dict(cls, saved: dict) -> "RunOptions":
        """From a checkpoint's ``meta["options"]`` (keys it lacks keep their defaults)."""
        names = {f.name for f in _declared()}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def mismatch(self, saved: dict | None, scope: tuple[str, ...]) -> str | None:
        """The first option in `scope` whose value differs from a checkpoint's `saved`
        options, as '--name was X, now Y'; None when they agree (or nothing was saved)."""
        if not saved:
            return None
        now = self.to_dict()
        for name in scope:
            if name in saved and saved[name] != now.get(name):
                return f"--{name.replace('_', '-')} was {saved[name]!r}, now {now.get(name)!r}"
        return None


def _declared():
    return [f for f in dataclasses.fields(RunOptions) if "group" in f.metadata]


def scope(name: str) -> tuple[str, ...]:
    """The options in one scope, in declaration order."""
    return tuple(f.name for f in _declared() if name in f.metadata["scope"])


# what each stage's weights depend on (a stage-2 resume may change stage-1 options, and so on)
MODEL_SCOPE = scope(MODEL)
STAGE1_SCOPE = scope(STAGE1)
STAGE2_SCOPE = MODEL_SCOPE + tuple(n for n in scope(STAGE2) if n not in MODEL_SCOPE)

_ARG_TYPES = {"int": int, "float": float, "str": str}


def add_arguments(parser) -> None:
    """The `train` command line, generated from the RunOptions fields."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in _declared():
        kw = dict(f.metadata["argparse"], help=f.metadata["help"])
        if f.type == "bool":
            kw["action"] = "store_true"
        elif kw.get("action") == "append":
            kw["default"] = []
        elif "choices" not in kw and "nargs" not in kw:
            kw["type"] = _ARG_TYPES[f.type.split(" |")[0]]
            kw["default"] = f.default
        else:
            kw["default"] = f.default
        if kw.get("required"):
            kw.pop("default", None)
        groups[f.metadata["group"]].add_argument("--" + f.name.replace("_", "-"), **kw)
