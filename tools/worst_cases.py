"""The honest worst case: a contact sheet of the held-out scenes with the most errors.

    .venv/bin/python tools/worst_cases.py DATASET_DIR PREDICTIONS.json OUT.png [--count 8]

Ranks every scene of DATASET_DIR by its errors against PREDICTIONS.json (`ig_llm
predict` output) — missing or extra objects, then wrong attributes of matched objects,
then location error — and renders each of the worst predicted scenes with Cycles under
the input image's own camera and lamps (from its label), so the two pictures compare
directly. One row per scene: input | rebuilt render, with the error count written in.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())   # keep ~/.config clean
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp())


def scene_errors(true, pred) -> tuple[int, float]:
    """(object count error + wrong attributes of matched objects, mean location error)."""
    from ig_llm.training.eval.metrics import CATEGORICAL, match_objects
    pairs = match_objects(true.objects, pred.objects)
    wrong = sum(getattr(true.objects[i], a) != getattr(pred.objects[j], a) for i, j in pairs for a in CATEGORICAL)
    l2 = [sum((a - b) ** 2 for a, b in zip(true.objects[i].loc, pred.objects[j].loc)) ** 0.5 for i, j in pairs]
    return abs(len(true.objects) - len(pred.objects)) + wrong, (sum(l2) / len(l2) if l2 else 0.0)


def worst(dataset: Path, predictions: Path, count: int) -> list[tuple]:
    from ig_llm.scene.program import scene_from_clevr
    from ig_llm.training.eval.evaluate import load_scene_records   # damaged files: one sentence
    truth = {r["image_filename"]: r for r in load_scene_records(dataset / "scenes.json")}
    ranked = []
    for rec in load_scene_records(predictions):
        t = truth.get(rec["image_filename"])
        if t is None:
            continue
        true, pred = scene_from_clevr(t), scene_from_clevr(rec)
        errors, l2 = scene_errors(true, pred)
        ranked.append((errors, l2, t, pred))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]["image_filename"]))
    return ranked[:count]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("predictions", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--samples", type=int, default=32)
    a = p.parse_args(argv)
    from ig_llm.tools import report_missing
    if report_missing("worst_cases", ((a.dataset / "scenes.json", "a dataset folder from `ig_llm generate`"),
                                 (a.predictions, "`ig_llm predict` output"))):
        return 2
    from PIL import Image, ImageDraw

    from ig_llm.scene import builder, stage
    from ig_llm.scene.camera import StageJitter
    rows = worst(a.dataset, a.predictions, a.count)
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        import bpy
        scene = bpy.data.scenes.new("worst cases")
        stage.setup_stage(None, scene=scene)
        for k, (errors, l2, rec, pred) in enumerate(rows):
            w, h = rec.get("width", 480), rec.get("height", 320)
            stage.configure_render(w, h, a.samples, scene=scene)
            stage.setup_stage(StageJitter.from_dict(rec["jitter"]), scene=scene)
            coll = builder.build_scene(pred, collection_name=f"pred{k}", bpy_scene=scene)
            out = Path(tmp) / f"{k}.png"
            stage.render_to(str(out), scene=scene)
            builder.clear_scene_objects(coll)
            left = Image.open(a.dataset / "images" / rec["image_filename"]).convert("RGB")
            right = Image.open(out).convert("RGB").resize(left.size)
            cells.append((left, right, f"{rec['image_filename']}: {errors} errors, l2 {l2:.2f} "
                                       f"({len(rec['objects'])} true, {len(pred.objects)} predicted)"))
    w, h = cells[0][0].size
    sheet = Image.new("RGB", (2 * w + 8, len(cells) * (h + 22)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (left, right, text) in enumerate(cells):
        y = k * (h + 22)
        draw.text((4, y + 4), text, fill=(0, 0, 0))
        sheet.paste(left, (0, y + 20))
        sheet.paste(right, (w + 8, y + 20))
    from ig_llm.atomic import writing
    with writing(a.out) as tmp:
        sheet.save(tmp, format="PNG")
    print(f"Wrote {a.out}: the {len(cells)} worst of the predictions (left: input, right: rebuilt render)")
    return 0


if __name__ == "__main__":
    from ig_llm.tools import run_tool
    sys.exit(run_tool("worst_cases", main))
