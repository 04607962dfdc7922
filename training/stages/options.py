"""The options of an `ig_llm train` run, parsed once into a dataclass.

Every training checkpoint stores them (``meta["options"]``), so ``--resume`` can check
that it continues the same run: an option that changes what is trained (model, data,
optimisation, augmentation) must match, or the resume is refused in one sentence naming
the option. Options that only change *how* it runs (device, threads, workers, logging,
checkpoint cadence, stopping early) may differ: that is what resuming on another machine
or in time slices needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunOptions:
    stage: str = "2"
    preset: str = "tiny"
    set: tuple = ()                       # --set KEY=VALUE overrides, as given
    numbers: str = "head"
    train_vision: bool = False
    vision_weights: str | None = None
    init_from: str | None = None
    whiten_features: bool = False
    data: tuple = ()
    limit: int | None = None
    seed: int = 0
    # stage 2
    steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float | None = None
    weight_decay: float = 0.0
    warmup: float = 0.03
    warmup_steps: int | None = None
    time_budget: float | None = None
    mirror: float = 0.0
    recolour: float = 0.0
    clip: float = 1.0
    # stage 1
    stage1_steps: int = 1000
    stage1_batch_size: int = 128
    stage1_lr: float = 1e-3
    caption: str = "words+loc"
    hue_prob: float | None = None
    stage1_init: str | None = None
    extra: dict = field(default_factory=dict, compare=False)   # room for later options

    @classmethod
    def from_args(cls, args) -> "RunOptions":
        """From the argparse namespace; lists become tuples, paths strings."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra" or not hasattr(args, f.name):
                continue
            v = getattr(args, f.name)
            values[f.name] = tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(**values)

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


# what each stage's weights depend on (a stage-2 resume may change stage-1 options, and so on)
MODEL = ("preset", "set", "numbers", "train_vision", "vision_weights", "init_from", "whiten_features")
STAGE1_SCOPE = ("preset", "set", "data", "limit", "seed", "stage1_steps", "stage1_batch_size", "stage1_lr",
                "caption", "hue_prob", "recolour", "stage1_init")
STAGE2_SCOPE = MODEL + ("data", "limit", "seed", "steps", "batch_size", "lr", "head_lr", "weight_decay",
                        "warmup", "warmup_steps", "time_budget", "mirror", "recolour", "clip")
