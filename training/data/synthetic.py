"""Tiny stand-in datasets drawn with PIL (no bpy): for tests and GPU-box smoke runs.

Scenes come from the real CLEVR sampler; each object is drawn as a flat disc (sphere),
square (cube) or upright rectangle (cylinder) in its colour at its projected position,
far objects first, with a lighter rim for metal. Not a substitute for Cycles renders,
but a model can learn something from it, and the folder has the same layout as
`ig_llm generate` output (images/, index/, labels/, scenes.json, manifest.json).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...scene.camera import project
from ...scene.domain import load_domain
from ...scene.program import format_program, scene_to_clevr
from .sampler import sample_image


def draw_scene(scene, camera, width: int, height: int, index_map: bool = False):
    """The drawing; with `index_map` also its per-pixel truth as ``generate`` stores it
    (uint8 array, 0 = background, k = k-th object), drawn with the same shapes."""
    domain = load_domain()
    img = Image.new("RGB", (width, height), (128, 128, 128))
    index = Image.new("L", (width, height), 0)
    draw, draw_index = ImageDraw.Draw(img), ImageDraw.Draw(index)
    placed = [(project(o.loc, camera, width, height), k, o) for k, o in enumerate(scene.objects, start=1)]
    for (px, py, depth), k, o in sorted(placed, key=lambda t: -t[0][2]):
        r = domain.scale(o.size) * (35.0 / 32.0) * max(width, height) / depth
        fill = tuple(int(255 * c) for c in domain.rgb(o.color))
        outline = (235, 235, 235) if o.material == "metal" else (40, 40, 40)
        box = (px - r, py - r, px + r, py + r)
        if o.shape == "sphere":
            shape = draw.ellipse, draw_index.ellipse, box
        elif o.shape == "cube":
            shape = draw.rectangle, draw_index.rectangle, box
        else:
            shape = draw.rectangle, draw_index.rectangle, (px - 0.6 * r, py - 1.2 * r, px + 0.6 * r, py + r)
        shape[0](shape[2], fill=fill, outline=outline, width=2)
        shape[1](shape[2], fill=k)
    return (img, np.asarray(index, dtype=np.uint8)) if index_map else img


def make_synthetic_dataset(root, count: int, seed: int = 0, width: int = 96, height: int = 64,
                           condition: str = "A", split: str = "synthetic", max_objects: int = 10) -> Path:
    """Write `count` drawn images + CLEVR labels to `root` (same layout as `generate`)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "index").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        s = sample_image(seed, i, condition=condition, split=split, max_objects=max_objects,
                         min_objects=min(3, max_objects))
        camera = s.jitter.camera_location()
        name = f"CLEVR_{split}_{i:06d}.png"
        img, index = draw_scene(s.scene, camera, width, height, index_map=True)
        img.save(root / "images" / name)
        np.savez_compressed(root / "index" / name.replace(".png", ".npz"), index=index)
        pixel_coords = [list(project(o.loc, camera, width, height)) for o in s.scene.objects]
        rec = scene_to_clevr(s.scene, image_filename=name, image_index=i, split=split, pixel_coords=pixel_coords)
        rec.update({"program": format_program(s.scene, "char", camera=camera),
                    "camera_location": list(camera), "condition": condition, "width": width, "height": height})
        (root / "labels" / f"CLEVR_{split}_{i:06d}.json").write_text(json.dumps(rec))
        records.append(rec)
    (root / "scenes.json").write_text(json.dumps({"info": {"split": split, "synthetic": True}, "scenes": records}))
    (root / "manifest.json").write_text(json.dumps({"count": count, "seed": seed, "width": width, "height": height,
                                                    "condition": condition, "split": split, "synthetic": True}))
    return root


def _main():  # python -m ig_llm.training.data.synthetic DIR COUNT [SEED]
    import sys
    root, count = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    make_synthetic_dataset(root, count, seed)
    print(f"{count} synthetic images written to {os.path.abspath(root)}")


if __name__ == "__main__":
    _main()
