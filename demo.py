"""`python -m ig_llm demo` — the README's main job: an example image becomes a Blender scene.

Runs the shipped default model on `examples/clevr_example.png`, prints the program it
wrote, builds the scene (editable meshes + CLEVR stage) into a .blend and renders it, so
the reference image and the rebuilt scene can be compared side by side.

Runs in a plain Blender too (``blender --background --command ig_llm demo``): without
Pillow the images are read, scaled and written by Blender itself.
"""
from __future__ import annotations

import time
from pathlib import Path

EXAMPLE_IMAGE = Path(__file__).parent / "examples" / "clevr_example.png"


def add_arguments(parser) -> None:
    parser.add_argument("--image", default=str(EXAMPLE_IMAGE), help="reference image (default: the bundled example)")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--out", default="demo_scene.blend", help=".blend to write (default demo_scene.blend)")
    parser.add_argument("--render", default="demo_render.png",
                        help="render the rebuilt scene to this PNG ('' to skip; default demo_render.png)")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples for the render (default 32)")
    parser.add_argument("--compare", default="demo_compare.png",
                        help="reference | rebuilt render side by side ('' to skip; default demo_compare.png)")


def main(args) -> int:
    from .model.inference import Predictor
    from .scene.build_command import _check_output, write_blend
    from .scene.domain import load_domain
    from .training.eval.predict import read_image

    inputs = [args.image]
    out = _check_output(args.out, "--out", ".blend", inputs)
    render = _check_output(args.render, "--render", ".png", inputs) if args.render else None
    # every output path is checked before any work, so a bad one leaves nothing written
    compare = _check_output(args.compare, "--compare", ".png", inputs) if render and args.compare else None
    image = read_image(args.image)          # one sentence naming the file if it is unusable
    start = time.perf_counter()
    predictor = Predictor(args.model, device="cpu")
    pred = predictor.predict_full([image])[0]
    seconds = time.perf_counter() - start
    print(f"Program predicted from {args.image} in {seconds:.2f} s:\n{pred.program}\n")
    # the model's domain picks what is built: CLEVR objects + stage, or a 2d / so3 task scene
    # with the task's camera at its square canvas size
    domain = load_domain(pred.domain)
    size = {} if domain.kind == "clevr" else {"size": (domain.task["canvas_px"],) * 2}
    write_blend(pred.scene, out, render=render, samples=args.samples, collection_name=Path(args.image).stem,
                source=str(args.image), domain=domain, **size)
    if compare is not None:
        side_by_side(Path(args.image), render, compare)
        print(f"Wrote {compare} (left: reference, right: rebuilt scene)")
    return 0


def side_by_side(reference: Path, rendered: Path, out: Path, height: int = 320) -> None:
    """Reference image and the render of the rebuilt scene next to each other (atomic);
    with Pillow where it is installed, else with Blender's own image loading and scaling."""
    from .model.pixels import has_pillow

    if not has_pillow():
        _side_by_side_blender(reference, rendered, out, height)
        return
    from PIL import Image

    from .atomic import writing
    from .images import load_image

    left, right = (load_image(p) for p in (reference, rendered))
    left, right = (im.resize((round(im.width * height / im.height), height)) for im in (left, right))
    sheet = Image.new("RGB", (left.width + right.width + 8, height), (255, 255, 255))
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + 8, 0))
    with writing(out) as tmp:
        sheet.save(tmp, format="PNG")


def _side_by_side_blender(reference: Path, rendered: Path, out: Path, height: int) -> None:
    """:func:`side_by_side` in a Python without Pillow (Blender's): bpy reads, scales and saves;
    its temporary Image datablocks are removed again."""
    import bpy
    import numpy as np

    from .atomic import writing

    images = []
    try:
        parts = []
        for path in (reference, rendered):
            img = bpy.data.images.load(str(Path(path).resolve()), check_existing=False)
            images.append(img)
            w, h = img.size[:]
            img.scale(max(1, round(w * height / max(h, 1))), height)
            w, c = img.size[0], img.channels
            buf = np.empty(w * height * c, dtype=np.float32)
            img.pixels.foreach_get(buf)
            parts.append(buf.reshape(height, w, c))       # bottom row first, as Blender keeps it
        width = sum(p.shape[1] for p in parts) + 8
        sheet = np.ones((height, width, 4), dtype=np.float32)  # white gap, opaque
        x = 0
        for part in parts:
            rgb = part[:, :, :3] if part.shape[2] >= 3 else np.repeat(part[:, :, :1], 3, axis=2)
            sheet[:, x:x + part.shape[1], :3] = rgb
            x += part.shape[1] + 8
        result = bpy.data.images.new("ig_llm compare", width, height, alpha=False)
        images.append(result)
        result.pixels.foreach_set(sheet.ravel())
        with writing(out) as tmp:
            result.filepath_raw = str(tmp)
            result.file_format = "PNG"
            result.save()
    finally:
        for img in images:
            bpy.data.images.remove(img)
