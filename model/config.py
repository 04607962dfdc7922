"""IGLLMConfig: every choice that shapes an IG-LLM model, in one flat dataclass.

nanoGPT style: plain fields with defaults, saved verbatim as ``config.json`` inside a
checkpoint, so a checkpoint rebuilds its own model. Presets (``model/presets.py``) are
just named sets of overrides. Pure Python: no torch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

NUMBER_MODES = ("head", "char")
PROJECTORS = ("linear", "mlp2x_gelu")
TOWER_STRIDES = (8, 4)                    # conv tower grid: 8 px per cell, or 4 (finer; stage 1 about 2x as long here)
TOKEN_PX = 16                             # conv tower: every LM token covers 16x16 pixels
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class IGLLMConfig:
    # -- vision tower (open_clip) ---------------------------------------------------------
    # an open_clip model name (e.g. "ViT-L-14-336"), "custom" (a small ViT from the fields
    # below) or "conv" (model/vision.py ConvTower: native aspect, stride-8 grid)
    vision_model: str = "custom"
    image_size: int = 192                 # width (and height, unless image_height is set)
    image_height: int | None = None       # None: square input, images padded (the paper's)
    conv_channels: list = field(default_factory=lambda: [32, 48, 96, 128, 128])
    tower_stride: int = 8                 # conv: pixels per grid cell, 8 or 4 (finer); a token is 16x16 px
    patch_size: int = 16
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp_ratio: float = 4.0
    vision_embed_dim: int = 128           # CLIP joint-space size; unused here except by weight files
    vision_weights: str | None = None     # local open_clip checkpoint (keys "visual.*"), optional
    freeze_vision: bool = True
    # -- projector --------------------------------------------------------------------------
    projector: str = "mlp2x_gelu"
    # -- language model ---------------------------------------------------------------------
    lm_path: str | None = None            # local HF causal-LM folder; None builds the Llama below
    lm_hidden: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    lm_kv_heads: int | None = None        # None: same as lm_heads
    lm_intermediate: int | None = None    # None: about 2.75 x hidden, rounded to 32
    lm_max_positions: int = 1024
    lora_r: int = 0                       # >0 wraps the LM with peft LoRA (loaded LMs)
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False
    dtype: str = "float32"                # compute dtype of the LM/projector/head
    storage_dtype: str = "float32"        # dtype of floating tensors in model.safetensors
    # -- numbers ----------------------------------------------------------------------------
    numbers: str = "head"                 # "head": <num> + numeric head; "char": digits
    num_loss_weight: float = 1.0
    # per-field divisor applied to targets before the MSE (and undone at decoding);
    # see docs/model.md for why. Keys: loc0, loc1, loc2, rotation.
    num_scales: dict = field(default_factory=lambda: {
        "loc0": 3.0, "loc1": 3.0, "loc2": 1.0, "rotation": math.pi / 4})
    # -- domain -----------------------------------------------------------------------------
    domain: str = "clevr"                 # a domain name, or an asset kit's name or folder (scene/kits.py)
    # an asset kit's record: {"name", "sha256", "vocabulary": {attribute: words}} (training
    # fills it in; None for the JSON domains). Loading checks the kit is there with these words.
    kit: dict | None = None
    max_objects: int = 10
    train_synonyms: bool = False          # collate(rng=...) then picks random synonyms

    def __post_init__(self):
        if self.vision_model == "conv" and self.tower_stride not in TOWER_STRIDES:
            raise ValueError(f"tower_stride must be one of {TOWER_STRIDES}, not {self.tower_stride!r}")
        if self.numbers not in NUMBER_MODES:
            raise ValueError(f"numbers must be one of {NUMBER_MODES}, not {self.numbers!r}")
        if self.projector not in PROJECTORS:
            raise ValueError(f"projector must be one of {PROJECTORS}, not {self.projector!r}")
        for name in ("dtype", "storage_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"{name} must be one of {DTYPES}, not {getattr(self, name)!r}")

    @property
    def intermediate_size(self) -> int:
        if self.lm_intermediate:
            return int(self.lm_intermediate)
        return int(math.ceil(self.lm_hidden * 2.75 / 32) * 32)

    @property
    def image_dims(self) -> tuple[int, int]:
        """(width, height) the tower takes; images are letterboxed to this aspect."""
        return self.image_size, self.image_height or self.image_size

    @property
    def conv_block_strides(self) -> tuple[int, int, int, int]:
        """Strides of the conv tower's four blocks (after its stride-2 stem)."""
        return (2, 2, 1, 1) if self.tower_stride == 8 else (2, 1, 1, 1)

    @property
    def cells_per_token(self) -> int:
        """Grid cells per token side (space-to-depth): 2 at stride 8, 4 at stride 4."""
        return TOKEN_PX // self.tower_stride

    @property
    def num_image_tokens(self) -> int:
        if self.vision_model == "conv":     # the grid, then cells_per_token^2 cells per token
            w, h = self.image_dims
            return (w // TOKEN_PX) * (h // TOKEN_PX)
        return (self.image_size // self.patch_size) ** 2

    def num_scale(self, field_name: str) -> float:
        return float(self.num_scales.get(field_name, 1.0))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "IGLLMConfig":
        """Build from a dict; unknown keys raise a ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)
