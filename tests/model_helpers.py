"""Shared helpers for the model tests: a very small config, random scenes and images."""
from __future__ import annotations

import random

import torch

from ig_llm.model.config import IGLLMConfig
from ig_llm.scene.domain import load_domain
from ig_llm.scene.program import Scene, SceneObject


def micro_config(**overrides) -> IGLLMConfig:
    """A model small enough to train in seconds on 2 CPU cores."""
    fields = dict(vision_model="custom", image_size=32, patch_size=8, vision_width=64, vision_layers=2,
                  vision_heads=2, vision_embed_dim=32, projector="mlp2x_gelu", lm_hidden=96, lm_layers=2,
                  lm_heads=4, lm_intermediate=192, lm_max_positions=512, storage_dtype="float32")
    fields.update(overrides)
    return IGLLMConfig(**fields)


def random_scene(rng: random.Random, n: int | None = None) -> Scene:
    domain = load_domain("clevr")
    n = rng.randint(1, 3) if n is None else n
    objs = []
    for _ in range(n):
        shape = rng.choice(domain.values("shape"))
        size = rng.choice(domain.values("size"))
        objs.append(SceneObject(shape=shape, color=rng.choice(domain.values("color")),
                                material=rng.choice(domain.values("material")), size=size,
                                loc=(round(rng.uniform(-3, 3), 3), round(rng.uniform(-3, 3), 3), domain.scale(size)),
                                rotation=round(rng.uniform(-0.78, 0.78), 3) if shape == "cube" else 0.0))
    return Scene(objs)


def random_images(n: int, size, seed: int = 0) -> torch.Tensor:
    """[n, 3, H, W] noise; `size` an int (square) or a config's (width, height)."""
    w, h = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g)


def assert_same_program(got: str, want: str, tol: float = 2e-3) -> None:
    """The NumPy and torch runtimes agree up to float32 noise: the same objects and words,
    every number within `tol`. Text equality is too strict: a number that falls on a
    rounding boundary (0.3475) prints as 0.347 on one machine and 0.348 on another."""
    from ig_llm.scene.program import parse

    a, b = parse(got).objects, parse(want).objects
    assert len(a) == len(b), (got, want)
    for x, y in zip(a, b):
        assert (x.shape, x.color, x.material, x.size) == (y.shape, y.color, y.material, y.size), (got, want)
        assert max(abs(p - q) for p, q in zip(x.loc + (x.rotation,), y.loc + (y.rotation,))) <= tol, (got, want)
