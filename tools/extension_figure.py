"""Make the README picture through the extension itself: register the add-on in the bpy
module, run File > Import > Image to Scene's operator on the example image (with the CLEVR
stage), render the result and put it beside the reference.

    .venv/bin/python tools/extension_figure.py [OUT.png]
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())  # keep ~/.config clean
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp())

import bpy  # noqa: E402

import ig_llm  # noqa: E402
from ig_llm.demo import EXAMPLE_IMAGE, side_by_side  # noqa: E402
from ig_llm.scene.stage import configure_render, render_to, setup_stage  # noqa: E402


def main(out: Path) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ig_llm.register()
    # the import is a good guest (never the world, floor or render settings), so the picture's
    # CLEVR stage (floor, world, camera, lamps) is set up first, as the renderer does
    setup_stage()
    print(bpy.ops.import_scene.image_to_scene(filepath=str(EXAMPLE_IMAGE), add_camera=False))
    configure_render(480, 320, 32)
    with tempfile.TemporaryDirectory() as tmp:
        render = Path(tmp) / "render.png"
        render_to(render)
        side_by_side(EXAMPLE_IMAGE, render, out)
    print(f"Wrote {out} (left: reference, right: the scene the extension built)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/extension_compare.png").resolve())
