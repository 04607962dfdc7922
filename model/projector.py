"""Projector from vision features to LM embeddings, chosen by a string (LLaVA names)."""
from __future__ import annotations

from torch import nn


def build_projector(kind: str, vision_width: int, lm_hidden: int) -> nn.Module:
    """``linear`` (the paper's) or ``mlp2x_gelu`` (LLaVA-1.5's: Linear, GELU, Linear)."""
    if kind == "linear":
        return nn.Linear(vision_width, lm_hidden)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(vision_width, lm_hidden), nn.GELU(), nn.Linear(lm_hidden, lm_hidden))
    raise ValueError(f"unknown projector {kind!r}; use 'linear' or 'mlp2x_gelu'")
