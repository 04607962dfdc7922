"""`python -m ig_llm demo` — the README's main job: an example image becomes a Blender scene.

Runs the shipped default model on `examples/clevr_example.png`, prints the program it
wrote, builds the scene (editable meshes + CLEVR stage) into a .blend and renders it, so
the reference image and the rebuilt scene can be compared side by side.
"""
from __future__ import annotations

import sys
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


def main(args) -> int:
    from .model.checkpoint import CheckpointError
    from .model.inference import predict_image
    from .scene.build_command import _UserError, _check_output, write_blend

    try:
        out = _check_output(args.out, "--out", ".blend")
        render = _check_output(args.render, "--render", ".png") if args.render else None
        start = time.perf_counter()
        scene, program = predict_image(args.image, model_dir=args.model, device="cpu")
        seconds = time.perf_counter() - start
        print(f"Program predicted from {args.image} in {seconds:.2f} s:\n{program}\n")
        write_blend(scene, out, render=render, samples=args.samples,
                    collection_name=Path(args.image).stem, source=str(args.image))
    except (_UserError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"ig_llm demo: {err}", file=sys.stderr)
        return 2
    return 0
