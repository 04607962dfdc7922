"""Main thread only: a predicted scene -> Blender data (collection, stage, text datablock).

Everything here runs inside one operator call, so Blender records it as one undo step.
The order is chosen so that an error leaves nothing behind: the builder validates the
whole program before it creates anything, and the text datablock, the stage and the
removal of replaced collections only happen once the new collection exists.
"""
from __future__ import annotations

import os

import bpy

from ..scene.builder import build_scene
from ..scene.program import ProgramError, Scene, parse

TAG_SOURCE = "ig_llm_source"   # on the collection: the image it came from
TAG_TEXT = "ig_llm_text"       # on the collection: the Text datablock with its program


def collection_name_for(image_name: str) -> str:
    """'renders/CLEVR_000012.png' -> 'CLEVR_000012' (Blender keeps names under 64 bytes)."""
    stem = os.path.splitext(os.path.basename(image_name))[0].strip() or "Image"
    return stem[:56]


def result_collections(bpy_scene) -> list:
    """Collections made by this add-on and linked to `bpy_scene`."""
    return [c for c in bpy_scene.collection.children_recursive if TAG_SOURCE in c]


def remove_collection(col) -> None:
    """Delete a result collection, its objects and the meshes only they used."""
    meshes = {o.data for o in col.objects if o.type == "MESH"}
    for obj in list(col.objects):
        bpy.data.objects.remove(obj)
    bpy.data.collections.remove(col)
    for mesh in meshes:
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def apply_result(bpy_scene, scene: Scene, program: str, *, name: str, source: str,
                 replace: bool = False, add_stage: bool = True, background_image=None):
    """Build `scene` into a new collection called `name`; returns the collection.

    `background_image` (an Image datablock) becomes the camera's background reference.
    Raises ProgramError (before creating anything) when the program is invalid.
    """
    old = result_collections(bpy_scene) if replace else []
    col = build_scene(scene, collection_name=name, bpy_scene=bpy_scene)  # validates first
    col[TAG_SOURCE] = source
    text = bpy.data.texts.new(f"{col.name} program")
    text.write(program.rstrip("\n") + "\n")
    col[TAG_TEXT] = text
    if add_stage:
        from ..scene.stage import setup_stage

        camera = setup_stage(scene=bpy_scene)
        if background_image is not None:
            set_camera_background(camera, background_image)
    for c in old:
        remove_collection(c)
    settings = getattr(bpy_scene, "ig_llm", None)
    if settings is not None:
        settings.program = text
    return col


def set_camera_background(camera, image) -> None:
    """Show `image` behind the camera view (the reference, for side-by-side comparison)."""
    data = camera.data
    data.show_background_images = True
    bg = next((b for b in data.background_images if b.image == image), None) or data.background_images.new()
    bg.image = image
    bg.alpha = 0.5
    bg.display_depth = "BACK"
    bg.frame_method = "FIT"


def load_image_datablock(path: str):
    """The Image datablock for `path` (reused when already loaded)."""
    return bpy.data.images.load(path, check_existing=True)


def rebuild_from_text(bpy_scene, text) -> "bpy.types.Collection":
    """Parse the (edited) program in `text` and rebuild the collection made from it.

    The old objects are removed only after the new program parsed and built, so a typo in
    the program leaves the scene as it was. Raises ProgramError with line and column.
    """
    scene = parse(text.as_string())
    old = next((c for c in result_collections(bpy_scene) if c.get(TAG_TEXT) == text), None)
    name = old.name if old is not None else text.name.removesuffix(" program")
    col = build_scene(scene, collection_name=name + ".rebuild", bpy_scene=bpy_scene)
    if old is not None:
        col[TAG_SOURCE] = old[TAG_SOURCE]
        remove_collection(old)
    else:
        col[TAG_SOURCE] = text.name
    col.name = name
    col[TAG_TEXT] = text
    return col


__all__ = ["ProgramError", "apply_result", "collection_name_for", "rebuild_from_text",
           "remove_collection", "result_collections", "set_camera_background"]
