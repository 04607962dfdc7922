"""Projector from vision features to LM embeddings, chosen by a string (LLaVA names)."""
from __future__ import annotations

import torch
from torch import nn


def build_projector(kind: str, vision_width: int, lm_hidden: int) -> nn.Module:
    """``linear`` (the paper's) or ``mlp2x_gelu`` (LLaVA-1.5's: Linear, GELU, Linear)."""
    if kind == "linear":
        return nn.Linear(vision_width, lm_hidden)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(vision_width, lm_hidden), nn.GELU(), nn.Linear(lm_hidden, lm_hidden))
    raise ValueError(f"unknown projector {kind!r}; use 'linear' or 'mlp2x_gelu'")


# ---------------------------------------------------------------------------------------
# feature whitening: a stage-2 preconditioner, folded into the projector when saved
# ---------------------------------------------------------------------------------------
WHITEN_EPS_SHARE = 1e-2     # eigenvalue floor, as a share of the mean eigenvalue (noise guard)


class FeatureWhitening(nn.Module):
    """x -> M (x - mean), M = the ZCA whitening of the frozen tower's tokens.

    Why: stage 1 packs what it learned unevenly into the tower's features — on the shipped
    conv tower, shape is linearly readable from the top 4 principal directions, colour needs
    about 64 of 128 (docs/model.md). Gradient descent learns high-variance directions
    first, so the LM learned shape quickly and colour barely. With whitened inputs every
    direction has (at most) unit variance, so the projector learns all of them at one pace.
    The map is linear, so a finished model folds it into the projector's first layer
    (``fold_whitening``): saved models, the NumPy runtime and the checkpoint format never
    see it."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("matrix", torch.eye(width))
        self.register_buffer("inverse", torch.eye(width))

    @classmethod
    def fit(cls, tokens: torch.Tensor) -> "FeatureWhitening":
        """From tokens [N, D] (float64 statistics)."""
        x = tokens.double()
        mean = x.mean(0)
        cov = torch.cov((x - mean).T)
        vals, vecs = torch.linalg.eigh(cov)
        vals = vals.clamp(min=0) + WHITEN_EPS_SHARE * vals.clamp(min=0).mean()
        w = cls(x.shape[1])
        w.mean.copy_(mean.float())
        w.matrix.copy_((vecs @ torch.diag(vals.rsqrt()) @ vecs.T).float())
        w.inverse.copy_((vecs @ torch.diag(vals.sqrt()) @ vecs.T).float())
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) @ self.matrix.to(x.dtype).T


def first_linear(projector: nn.Module) -> nn.Linear:
    return projector if isinstance(projector, nn.Linear) else projector[0]


@torch.no_grad()
def attach_whitening(model, whitening: FeatureWhitening, preserve: bool) -> None:
    """Put `whitening` between tower and projector. `preserve`: rewrite the projector's
    first layer so the model computes exactly what it did (fine-tuning a trained model):
    A' = A M^-1, b' = b + A mean."""
    lin = first_linear(model.projector)
    whitening = whitening.to(device=lin.weight.device)
    if preserve:
        a = lin.weight.double()
        lin.bias.add_((a @ whitening.mean.double()).to(lin.bias.dtype))
        lin.weight.copy_((a @ whitening.inverse.double()).to(lin.weight.dtype))
    model.feature_whitening = whitening


@torch.no_grad()
def fold_whitening(model) -> None:
    """Fold an attached whitening into the projector's first layer and drop it:
    A x' + b with x' = M (x - mean) is (A M) x + (b - A M mean)."""
    whitening = model.feature_whitening
    if whitening is None:
        return
    lin = first_linear(model.projector)
    am = lin.weight.double() @ whitening.matrix.double()
    lin.bias.sub_((am @ whitening.mean.double()).to(lin.bias.dtype))
    lin.weight.copy_(am.to(lin.weight.dtype))
    model.feature_whitening = None
