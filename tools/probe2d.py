"""The 2D experiment's tower, read directly: how precisely its stage 1 alone places the dot.

    .venv/bin/python tools/probe2d.py STAGE1_DIR TEST_DIR

STAGE1_DIR is ``experiment 2d``'s ``OUT/stage1/stage1``; TEST_DIR a 2d dataset (e.g. its
``OUT/data/test``). For every image the cell with the highest heat is the dot's, and the
position head there gives its canvas (x, y) (pretrain_dense: ground in [-1, 1]). Prints the
mean l2 over all test points, inside the checkerboard's training cells and between them —
the floor the LM's numeric head, reading the same frozen tower, is measured against.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def tower_errors(stage1: Path, test: Path) -> dict[str, float]:
    import torch
    from ig_llm.model.batching import preprocess_image
    from ig_llm.model.presets import make_config
    from ig_llm.scene.domain import load_domain
    from ig_llm.training.dataset import open_source
    from ig_llm.training.experiment_tasks import IMAGE_SIZE
    from ig_llm.training.pretrain_dense import load_dense_model
    from ig_llm.training.task_sampler import is_training_point
    config = make_config("tiny", domain="2d", max_objects=1, image_size=IMAGE_SIZE, image_height=IMAGE_SIZE)
    cells = int(load_domain("2d").task["checkerboard_cells"])
    model, source = load_dense_model(stage1, config), open_source(str(test))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage1", type=Path)
    p.add_argument("test", type=Path)
    a = p.parse_args(argv)
    from ig_llm.tools import report_missing
    if report_missing("probe2d", ((a.stage1 / "heads.safetensors", "experiment 2d's OUT/stage1/stage1 folder"),
                                  (a.test / "scenes.json", "a 2d dataset folder"))):
        return 2
    for k, v in tower_errors(a.stage1, a.test).items():
        print(f"{k:18s} {v:.4f}")
    return 0


if __name__ == "__main__":
    from ig_llm.tools import run_tool
    sys.exit(run_tool("probe2d", main))
