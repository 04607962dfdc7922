"""The 2D experiment's tower, read directly: how precisely its stage 1 alone places the dot.

    .venv/bin/python tools/probe2d.py STAGE1_DIR TEST_DIR

STAGE1_DIR is ``experiment 2d``'s ``OUT/stage1/stage1``; TEST_DIR a 2d dataset (e.g. its
``OUT/data/test``). For every image the cell with the highest heat is the dot's, and the
position head there gives its canvas (x, y) (stages/tower: ground in [-1, 1]). Prints the
mean l2 over all test points, inside the checkerboard's training cells and between them —
what the LM's numeric head, reading the same frozen tower, is measured against.

``--train DIR`` (the experiment's ``OUT/data/train``: checkerboard points only) adds the
token read: a ridge regression from the one LM token that holds the dot (the tower's
tokens as stage 2 feeds them to the projector) to (x, y), fitted on the training images and
scored on the test points. The LM only ever sees training-cell positions, so this is what a
linear read learned from them carries between the cells when the LM attends the right token
(the LM's own read is not linear and can do better: docs/results/2d_generic/tower_probe.md).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def load_tower(stage1: Path):
    """(the experiment's dense stage-1 network, its config, the checkerboard's cells per side)."""
    from ig_llm.model.presets import make_config
    from ig_llm.scene.domain import load_domain
    from ig_llm.training.experiments.tasks import IMAGE_SIZE
    from ig_llm.training.stages.tower import load_dense_model
    config = make_config("tiny", domain="2d", max_objects=1, image_size=IMAGE_SIZE, image_height=IMAGE_SIZE)
    return load_dense_model(stage1, config), config, int(load_domain("2d").task["checkerboard_cells"])


def tower_errors(stage1: Path, test: Path) -> dict[str, float]:
    import torch
    from ig_llm.model.batching import preprocess_image
    from ig_llm.training.data.dataset import open_source
    from ig_llm.training.data.task_sampler import is_training_point
    model, config, cells = load_tower(stage1)
    source = open_source(str(test))
    errors = {True: [], False: []}
    with torch.no_grad():
        for s in range(0, len(source), 64):
            idx = range(s, min(len(source), s + 64))
            out = model(torch.stack([preprocess_image(source.image(i), config.image_dims) for i in idx]))
            heat = out["heat"][:, 0]
            for b, i in enumerate(idx):
                r, c = divmod(int(heat[b].flatten().argmax()), heat.shape[2])
                gx, gy = out["ground"][b, :, r, c].tolist()
                dot = source.scene(i).objects[0]
                errors[is_training_point(dot.x, dot.y, cells)].append(
                    math.dist(((gx + 1) / 2, (gy + 1) / 2), (dot.x, dot.y)))
    every = errors[True] + errors[False]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")   # noqa: E731
    return {"l2_test": mean(every), "l2_in_cells": mean(errors[True]), "l2_between_cells": mean(errors[False])}


RIDGE = 1e-3       # the token read's ridge penalty (tokens are O(1) per channel)


def token_read_errors(stage1: Path, train: Path, test: Path, n_train: int = 1000) -> dict[str, float]:
    """Mean l2 of a linear read from the dot's LM token, fitted on `train`'s first `n_train`
    images, on `test` (all points, in training cells, between them)."""
    import torch
    from ig_llm.model.batching import preprocess_image
    from ig_llm.training.data.dataset import open_source
    from ig_llm.training.data.task_sampler import is_training_point
    model, config, cells = load_tower(stage1)

    def dot_tokens(source, n):
        """[n, width] the token holding each dot (from the truth: the read, not the search, is probed)."""
        rows, xy = [], []
        with torch.no_grad():
            for s in range(0, n, 64):
                idx = range(s, min(n, s + 64))
                tokens = model.visual(torch.stack([preprocess_image(source.image(i), config.image_dims) for i in idx]))
                side = int(round(tokens.shape[1] ** 0.5))         # square canvas: side x side tokens
                for b, i in enumerate(idx):
                    dot = source.scene(i).objects[0]
                    r, c = min(int(dot.y * side), side - 1), min(int(dot.x * side), side - 1)
                    rows.append(tokens[b, r * side + c]); xy.append((dot.x, dot.y))
        return torch.stack(rows).double(), torch.tensor(xy, dtype=torch.double)

    train_src, test_src = open_source(str(train)), open_source(str(test))
    x, y = dot_tokens(train_src, min(n_train, len(train_src)))
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    weights = torch.linalg.solve(x.T @ x + RIDGE * len(x) * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    xt, yt = dot_tokens(test_src, len(test_src))
    err = (torch.cat([xt, torch.ones(len(xt), 1, dtype=xt.dtype)], 1) @ weights - yt).norm(dim=1)
    inside = torch.tensor([is_training_point(float(a), float(b), cells) for a, b in yt])
    mean = lambda t: float(t.mean()) if len(t) else float("nan")   # noqa: E731
    return {"token_read_l2_test": mean(err), "token_read_l2_in_cells": mean(err[inside]),
            "token_read_l2_between_cells": mean(err[~inside])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage1", type=Path)
    p.add_argument("test", type=Path)
    p.add_argument("--train", type=Path, help="the training set (checkerboard points): also print the token read")
    a = p.parse_args(argv)
    from ig_llm.tools import report_missing
    if report_missing("probe2d", ((a.stage1 / "heads.safetensors", "experiment 2d's OUT/stage1/stage1 folder"),
                                  (a.test / "scenes.json", "a 2d dataset folder"),
                                  *([(a.train / "scenes.json", "the 2d training set")] if a.train else []))):
        return 2
    rows = tower_errors(a.stage1, a.test)
    if a.train:
        rows.update(token_read_errors(a.stage1, a.train, a.test))
    for k, v in rows.items():
        print(f"{k:28s} {v:.4f}")
    return 0


if __name__ == "__main__":
    from ig_llm.tools import run_tool
    sys.exit(run_tool("probe2d", main))
