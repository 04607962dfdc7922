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


# ---------------------------------------------------------------------------------------
# the convolutional tower (preset `tiny`): native 3:2 input, stride-8 feature grid
# ---------------------------------------------------------------------------------------
class ConvBN(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d; at inference the pair is one affine convolution."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class ResBlock(nn.Module):
    """Two 3x3 ConvBNs with a skip (a 1x1 ConvBN where the shape changes), ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.conv2 = ConvBN(cin, cout, 3, stride), ConvBN(cout, cout, 3)
        self.skip = ConvBN(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(y + (x if self.skip is None else self.skip(x)))


def coord_channels(b: int, h: int, w: int, device, dtype) -> torch.Tensor:
    """[B, 2, H, W] of x, y in [-1, 1]: tells the convolutions where in the image they are
    (ground position depends on it; padding alone gives a weak hint)."""
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([xs, ys], dim=1)


class ConvTower(nn.Module):
    """Image [B, 3, H, W] -> tokens [B, (H/16)(W/16), r*r*C], r = cells per token side.

    A 5x5 stride-2 stem and four residual blocks (strides 2, 2, 1, 1: total stride 8)
    give a dense grid `features()` [B, C, H/8, W/8] — at 192x128 a 16x24 grid, 8 px per
    cell, fine enough for CLEVR's smallest objects. Stage 1 trains dense heads on that
    grid (training/stages/tower.py). The LM gets the same features with each 2x2 group
    of cells stacked into one token (space-to-depth): 4x fewer tokens for the LM, nothing
    thrown away. ``tower_stride=4`` (blocks 2, 1, 1, 1) makes the grid twice as fine (stage 1
    took about 2x as long here); 4x4 cells then make a token, so the LM still gets one token per
    16x16 pixels.
    """

    def __init__(self, config: IGLLMConfig):
        super().__init__()
        c = list(config.conv_channels)
        if len(c) != 5:
            raise ValueError(f"conv_channels needs 5 widths (stem + 4 blocks), not {c}")
        self.stem = ConvBN(5, c[0], 5, 2)            # RGB + 2 coordinate channels
        self.blocks = nn.ModuleList([ResBlock(c[i], c[i + 1], s) for i, s in enumerate(config.conv_block_strides)])
        self.channels = c[4]
        self.cells = config.cells_per_token
        self.width = self.cells ** 2 * c[4]          # token size after space-to-depth

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixel_values.shape
        x = torch.cat([pixel_values, coord_channels(b, h, w, pixel_values.device, pixel_values.dtype)], 1)
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        f = self.features(pixel_values)                        # [B, C, h, w], h and w multiples of r
        b, c, h, w = f.shape
        r = self.cells
        f = f.view(b, c, h // r, r, w // r, r).permute(0, 2, 4, 3, 5, 1)   # B, h/r, w/r, r, r, C
        return f.reshape(b, (h // r) * (w // r), r * r * c)

    def load_stage1_weights(self, path: str) -> None:
        """Load the ``visual.*`` tensors (BatchNorm statistics included) of a stage-1 file."""
        path = Path(path)
        if not path.is_file():
            raise VisionWeightsError(f"Vision weight file {path} does not exist; run stage 1 (ig_llm train "
                                     "--stage 1) or set vision_weights to the right file.")
        try:
            from safetensors.torch import load_file
            state = load_file(str(path))
        except Exception as err:
            raise VisionWeightsError(f"Vision weight file {path} cannot be read ({err}); run stage 1 "
                                     "again.") from None
        visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        try:
            self.load_state_dict(visual, strict=True)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise VisionWeightsError(f"Vision weight file {path} does not fit the configured tower "
                                     f"({first}); check conv_channels.") from None


def build_vision_tower(config: IGLLMConfig, load_weights: bool = True) -> nn.Module:
    """The tower a config names: ``conv`` (ours) or an open_clip ViT (``custom`` or a name)."""
    if config.vision_model == "conv":
        tower = ConvTower(config)
        if load_weights and config.vision_weights:
            tower.load_stage1_weights(config.vision_weights)
        return tower
    return VisionTower(config, load_weights=load_weights)
