"""The visual tower: an open_clip ViT, frozen, giving patch tokens of its penultimate layer.

As in the paper (LLaVA's ``mm_vision_select_layer=-2``, ``patch`` features): the
hidden states after the second-to-last transformer block, CLS token dropped. The last
block, the final LayerNorm and the CLIP projection are never used, but stay in the
module so an open_clip checkpoint loads unchanged.
"""
from __future__ import annotations

from pathlib import Path

from . import compat  # noqa: F401 - must precede open_clip (imports torchvision)

import torch
from torch import nn

from .config import IGLLMConfig


class VisionWeightsError(ValueError):
    """A vision weight file that is missing or does not fit the configured tower."""


def vision_cfg(config: IGLLMConfig) -> tuple[int, dict]:
    """(embed_dim, open_clip vision_cfg dict) for the configured tower."""
    if config.vision_model == "custom":
        return config.vision_embed_dim, {
            "image_size": config.image_size, "patch_size": config.patch_size,
            "width": config.vision_width, "layers": config.vision_layers,
            "head_width": config.vision_width // config.vision_heads,
            "mlp_ratio": config.vision_mlp_ratio}
    import open_clip

    cfg = open_clip.get_model_config(config.vision_model)
    if cfg is None:
        raise ValueError(f"open_clip knows no model {config.vision_model!r}; use a name from "
                         "open_clip.list_models() or vision_model='custom'")
    vcfg = dict(cfg["vision_cfg"])
    if "timm_model_name" in vcfg or "hf_model_name" in vcfg:
        raise ValueError(f"{config.vision_model} is not an open_clip ViT; pick a ViT-* model")
    size = vcfg["image_size"] if isinstance(vcfg["image_size"], int) else vcfg["image_size"][0]
    if (size, vcfg["patch_size"]) != (config.image_size, config.patch_size):
        raise ValueError(f"{config.vision_model} works at image_size={size}, patch_size="
                         f"{vcfg['patch_size']}; set those in the config")
    return cfg["embed_dim"], vcfg


class VisionTower(nn.Module):
    """open_clip VisionTransformer -> [B, num_patches, width] penultimate-layer features."""

    def __init__(self, config: IGLLMConfig, load_weights: bool = True):
        super().__init__()
        from open_clip.model import _build_vision_tower  # the ViT alone, no text tower

        embed_dim, vcfg = vision_cfg(config)
        quick_gelu = config.vision_model.endswith("-quickgelu")
        self.visual = _build_vision_tower(embed_dim, vcfg, quick_gelu=quick_gelu)
        self.width = self.visual.transformer.width
        if load_weights and config.vision_weights:
            self.load_open_clip_weights(config.vision_weights)

    def load_open_clip_weights(self, path: str) -> None:
        """Load the ``visual.*`` tensors of an open_clip checkpoint (.pt/.bin/.safetensors)."""
        path = Path(path)
        if not path.is_file():
            raise VisionWeightsError(f"Vision weight file {path} does not exist; set vision_weights "
                                     "to an open_clip checkpoint file or to null.")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(path))
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt or foreign file
            raise VisionWeightsError(f"Vision weight file {path} cannot be read ({err}); "
                                     "re-export it from open_clip.") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        if not visual:  # a bare tower state dict
            visual = state
        try:
            self.visual.load_state_dict(visual, strict=True)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise VisionWeightsError(f"Vision weight file {path} does not fit the configured tower "
                                     f"({first}); check vision_model and its sizes.") from None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v._embeds(pixel_values)          # conv patches + CLS + positions + ln_pre
        tr = v.transformer
        if not tr.batch_first:
            x = x.transpose(0, 1)
        for block in tr.resblocks[:-1]:      # penultimate layer: skip the last block
            x = block(x)
        if not tr.batch_first:
            x = x.transpose(0, 1)
        return x[:, 1:, :]                    # drop CLS, keep patch tokens
