"""Make the README picture through the extension itself: register the add-on in the bpy
module, run File > Import > Image to Scene's operator on the example image with **Match the
Picture** (CLEVR's camera, lamps and floor, the render size of the picture), render the
result with Cycles and put it beside the reference.

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
from ig_llm.scene.stage import render_to  # noqa: E402


def main(out: Path) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ig_llm.register()
    # Match the Picture: everything a render needs to look like the input, from the import
    # itself; the factory scene's engine and samples are the only settings set here
    print(bpy.ops.import_scene.image_to_scene(filepath=str(EXAMPLE_IMAGE), match_picture=True,
                                              set_background=False))
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.device = 32, "CPU"
    scene.world = None                  # the empty factory file's world would add its grey light
    with tempfile.TemporaryDirectory() as tmp:
        render = Path(tmp) / "render.png"
        render_to(render)
        side_by_side(EXAMPLE_IMAGE, render, out)
    print(f"Wrote {out} (left: reference, right: the scene the extension built)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/match_the_picture.png").resolve())
