"""Named configurations: ``tiny`` (the CPU default), ``tiny-vit`` (the earlier default) and
``paper`` (the paper's setting).

``make_config(name, **overrides)`` returns an IGLLMConfig; overrides are plain config
fields. ``tiny`` is sized to decode a 10-object CLEVR scene in well under half a second
on a 2-core CPU and to stay under ~20 MB on disk (fp16 storage).
"""
from __future__ import annotations

from .config import IGLLMConfig

PRESETS = {
    # conv tower at the renders' own 3:2 size (192x128, stride-8 grid, 96 LM tokens of 2x2
    # cells; stage 1 = dense per-pixel targets) + a 4-layer Llama; ~4 M parameters
    "tiny": dict(
        vision_model="conv", image_size=192, image_height=128, conv_channels=[32, 48, 96, 128, 128],
        projector="mlp2x_gelu",
        lm_path=None, lm_hidden=256, lm_layers=4, lm_heads=4, lm_intermediate=704,
        lm_max_positions=1024, dtype="float32", storage_dtype="float16",
        numbers="head", num_loss_weight=1.0),
    # the previous default (v1/v2): small custom ViT on a 192x192 letterbox (144 patch
    # tokens), stage 1 = contrastive captions; kept for the ablation
    "tiny-vit": dict(
        vision_model="custom", image_size=192, patch_size=16, vision_width=192, vision_layers=5,
        vision_heads=4, vision_embed_dim=128, projector="mlp2x_gelu",
        lm_path=None, lm_hidden=256, lm_layers=4, lm_heads=4, lm_intermediate=704,
        lm_max_positions=1024, dtype="float32", storage_dtype="float16",
        numbers="head", num_loss_weight=1.0),
    # CLIP ViT-L/14-336 + a local 7B-class LM (e.g. Vicuna-7B), LoRA r=128 alpha=256
    "paper": dict(
        vision_model="ViT-L-14-336", image_size=336, patch_size=14, projector="linear",
        lm_path=None,  # must be given: a local Hugging Face folder
        lora_r=128, lora_alpha=256, lora_dropout=0.05, gradient_checkpointing=True,
        dtype="bfloat16", storage_dtype="bfloat16", numbers="head", num_loss_weight=1.0,
        num_scales={"loc0": 1.0, "loc1": 1.0, "loc2": 1.0, "rotation": 1.0}),  # paper: raw values
}


def _cuda_bf16() -> bool:
    try:
        import torch
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    except Exception:
        return False


def make_config(name: str = "tiny", **overrides) -> IGLLMConfig:
    """Config of a preset with field overrides, e.g. ``make_config("paper", lm_path="/models/vicuna")``.

    ``paper`` computes in bf16 when a CUDA device with bf16 is present, else float32 (CPU
    bf16 matmuls are slow); override ``dtype`` to force either.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = dict(PRESETS[name])
    if name == "paper" and "dtype" not in overrides and not _cuda_bf16():
        fields["dtype"] = "float32"
    fields.update(overrides)
    cfg = IGLLMConfig(**fields)
    if name == "paper" and not cfg.lm_path:
        raise ValueError("the 'paper' preset needs lm_path: a local Hugging Face causal-LM folder "
                         "(e.g. Vicuna-7B); nothing is downloaded")
    return cfg
