"""Tiny stand-in datasets drawn with PIL (no bpy): for tests and GPU-box smoke runs.

Scenes come from the real CLEVR sampler; each object is drawn as a flat disc (sphere),
square (cube) or upright rectangle (cylinder) in its colour at its projected position,
far objects first, with a lighter rim for metal. Not a substitute for Cycles renders,
but a model can learn something from it, and the folder has the same layout as
`ig_llm generate` output (images/, labels/, scenes.json, manifest.json).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, ImageDraw

from ..scene.camera import project
from ..scene.domain import load_domain
from ..scene.program import format_program, scene_to_clevr
from .sampler import sample_image


def draw_scene(scene, camera, width: int, height: int) -> Image.Image:
    domain = load_domain()
    img = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    placed = [(project(o.loc, camera, width, height), o) for o in scene.objects]
    for (px, py, depth), o in sorted(placed, key=lambda t: -t[0][2]):
        r = domain.scale(o.size) * (35.0 / 32.0) * max(width, height) / depth
        fill = tuple(int(255 * c) for c in domain.rgb(o.color))
        outline = (235, 235, 235) if o.material == "metal" else (40, 40, 40)
        box = (px - r, py - r, px + r, py + r)
        if o.shape == "sphere":
            draw.ellipse(box, fill=fill, outline=outline, width=2)
        elif o.shape == "cube":
            draw.rectangle(box, fill=fill, outline=outline, width=2)
        else:
            draw.rectangle((px - 0.6 * r, py - 1.2 * r, px + 0.6 * r, py + r), fill=fill, outline=outline, width=2)
    return img


def make_synthetic_dataset(root, count: int, seed: int = 0, width: int = 96, height: int = 64,
                           condition: str = "A", split: str = "synthetic", max_objects: int = 10) -> Path:
    """Write `count` drawn images + CLEVR labels to `root` (same layout as `generate`)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        s = sample_image(seed, i, condition=condition, split=split, max_objects=max_objects,
                         min_objects=min(3, max_objects))
        camera = s.jitter.camera_location()
        name = f"CLEVR_{split}_{i:06d}.png"
        draw_scene(s.scene, camera, width, height).save(root / "images" / name)
        rec = scene_to_clevr(s.scene, image_filename=name, image_index=i, split=split)
        rec.update({"program": format_program(s.scene, "char", camera=camera),
                    "camera_location": list(camera), "condition": condition, "width": width, "height": height})
        (root / "labels" / f"CLEVR_{split}_{i:06d}.json").write_text(json.dumps(rec))
        records.append(rec)
    (root / "scenes.json").write_text(json.dumps({"info": {"split": split, "synthetic": True}, "scenes": records}))
    (root / "manifest.json").write_text(json.dumps({"count": count, "seed": seed, "width": width, "height": height,
                                                    "condition": condition, "split": split, "synthetic": True}))
    return root


def _main():  # python -m ig_llm.training.synthetic DIR COUNT [SEED]
    import sys
    root, count = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    make_synthetic_dataset(root, count, seed)
    print(f"{count} synthetic images written to {os.path.abspath(root)}")


if __name__ == "__main__":
    _main()
