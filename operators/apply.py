"""Main thread only: a predicted scene -> Blender data, as a good guest.

An import only *adds*: one new collection with the objects (and, when asked, a child
collection with a camera and lamps of its own) plus a Text datablock with the program.
It never touches the world, the active camera (unless ``set_active_camera``), render or
colour-management settings, or anything that was there before. Every datablock it makes
is remembered on the collection, so REPLACE (and :func:`remove_result`) takes all of it
away again — objects, meshes, materials, cameras, lights, texts, images and camera
backgrounds — and repeated imports leave no orphans behind.

Everything here runs inside one operator call, so Blender records it as one undo step.
The order is chosen so that an error leaves nothing behind: the builder validates the
whole program before it creates anything.
"""
from __future__ import annotations

import os

import bpy

from ..scene import assets
from ..scene.builder import build_scene
from ..scene.domain import load_domain
from ..scene.program import ProgramError, Scene, parse

TAG_SOURCE = "ig_llm_source"   # on the collection: the image it came from
TAG_TEXT = "ig_llm_text"       # on the collection: the Text datablock with its program
TAG_IMAGE = "ig_llm_image"     # on the collection: an Image datablock this import loaded
TAG_OWNED = "ig_llm_owned"     # on a datablock: made by an import (removed with it)
TAG_DOMAIN = "ig_llm_domain"   # on the collection: the model's domain (its program's language)


def collection_name_for(image_name: str) -> str:
    """'renders/CLEVR_000012.png' -> 'CLEVR_000012' (Blender keeps names under 64 bytes)."""
    stem = os.path.splitext(os.path.basename(image_name))[0].strip() or "Image"
    return stem[:56]


def result_collections(bpy_scene) -> list:
    """Top-level results of this add-on linked to `bpy_scene` (not their camera children)."""
    return [c for c in bpy_scene.collection.children_recursive if TAG_SOURCE in c]


def _drop_template_meshes() -> None:
    """The builder copies cached shape meshes; the unused templates would be orphans."""
    for shape in ("cube", "sphere", "cylinder"):
        mesh = bpy.data.meshes.get(assets.MESH_PREFIX + shape)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def _datablocks_of(block):
    for kind, blocks in ((bpy.types.Mesh, bpy.data.meshes), (bpy.types.Camera, bpy.data.cameras),
                         (bpy.types.Light, bpy.data.lights)):
        if isinstance(block, kind):
            return blocks
    return bpy.data.objects   # unreachable for what an import makes


def remove_result(col) -> None:
    """Delete a result collection and every datablock it made that nothing else uses."""
    cols = [col] + list(col.children_recursive)
    objects = {o for c in cols for o in c.objects}
    data = {o.data for o in objects if o.data is not None}
    materials = {s.material for o in objects for s in o.material_slots if s.material is not None}
    materials |= {m for d in data if isinstance(d, bpy.types.Mesh) for m in d.materials if m is not None}
    images = {b.image for d in data if isinstance(d, bpy.types.Camera) for b in d.background_images
              if b.image is not None and b.image.get(TAG_OWNED)}
    if col.get(TAG_IMAGE) is not None:
        images.add(col[TAG_IMAGE])
    text = col.get(TAG_TEXT)
    for obj in objects:
        bpy.data.objects.remove(obj)
    for c in reversed(cols):
        bpy.data.collections.remove(c)
    for block in data:
        if block.users == 0:
            _datablocks_of(block).remove(block)
    for mat in materials:
        if mat.users == 0:
            bpy.data.materials.remove(mat)
    for img in images:
        if img.users == 0:
            bpy.data.images.remove(img)
    if text is not None:
        for sc in bpy.data.scenes:      # the panel's pointer is ours too
            settings = getattr(sc, "ig_llm", None)
            if settings is not None and settings.program == text:
                settings.program = None
        if text.users - int(text.use_fake_user) == 0:   # new texts carry a fake user
            bpy.data.texts.remove(text)


def apply_result(bpy_scene, scene: Scene, program: str, *, name: str, source: str,
                 replace: bool = False, add_camera: bool = False, set_active_camera: bool = False,
                 background_image=None, domain: str = "clevr"):
    """Build `scene` into a new collection called `name`; returns the collection.

    `domain` is the model's (its config's ``domain``): CLEVR objects, or the 2D task's
    canvas and dot, or the SO(3) task's posed object. `add_camera`: a child collection
    with the domain's camera (CLEVR's also gets its lamps), and `background_image` (an
    Image datablock) behind that camera; `set_active_camera` makes it the scene's camera
    (off by default: the user's camera stays).
    Raises ProgramError (before creating anything) when the program is invalid.
    """
    dom = load_domain(domain)
    old = result_collections(bpy_scene) if replace else []
    col = build_scene(scene, collection_name=name, bpy_scene=bpy_scene, domain=dom)  # validates first
    _drop_template_meshes()
    col[TAG_SOURCE] = source
    col[TAG_DOMAIN] = domain
    text = bpy.data.texts.new(f"{col.name} program")
    text.write(program.rstrip("\n") + "\n")
    col[TAG_TEXT] = text
    if background_image is not None and background_image.get(TAG_OWNED):
        col[TAG_IMAGE] = background_image
    if add_camera:
        from ..scene.stage import add_camera_and_lights

        rig = bpy.data.collections.new(f"{col.name} Camera")
        col.children.link(rig)
        if dom.kind == "clevr":
            camera = add_camera_and_lights(rig, col.name)
        else:       # the task's fixed render camera; it is lit by Workbench, so no lamps
            from ..scene.task_builder import add_task_camera
            camera = add_task_camera(rig, dom, f"{col.name} Camera")
        if background_image is not None:
            set_camera_background(camera, background_image)
        if set_active_camera:
            bpy_scene.camera = camera
    settings = getattr(bpy_scene, "ig_llm", None)
    if settings is not None:
        settings.program = text
    for c in old:
        remove_result(c)
    if old and col.name != name and name not in bpy.data.collections:
        col.name = name                 # the replaced result had the name: take it back
        text.name = f"{name} program"
    return col


def set_camera_background(camera, image) -> None:
    """Show `image` behind the camera view (the reference, for side-by-side comparison);
    one background per image, however often it is set."""
    data = camera.data
    data.show_background_images = True
    bg = next((b for b in data.background_images if b.image == image), None) or data.background_images.new()
    bg.image = image
    bg.alpha = 0.5
    bg.display_depth = "BACK"
    bg.frame_method = "FIT"


def load_image_datablock(path: str):
    """The Image datablock for `path`: an existing one is reused (and stays the user's);
    a new one is marked as ours, so removing the result removes it too."""
    path = os.path.abspath(path)
    for img in bpy.data.images:
        if img.filepath and os.path.abspath(bpy.path.abspath(img.filepath)) == path:
            return img
    img = bpy.data.images.load(path, check_existing=False)
    img[TAG_OWNED] = True
    return img


def rebuild_from_text(bpy_scene, text) -> "bpy.types.Collection":
    """Parse the (edited) program in `text` and rebuild the collection made from it.

    The old objects are removed only after the new program parsed and built, so a typo in
    the program leaves the scene as it was. Raises ProgramError with line and column.
    """
    old = next((c for c in result_collections(bpy_scene) if c.get(TAG_TEXT) == text), None)
    domain = old.get(TAG_DOMAIN, "clevr") if old is not None else "clevr"
    dom = load_domain(domain)
    scene = parse(text.as_string(), domain=dom)
    name = old.name if old is not None else text.name.removesuffix(" program")
    col = build_scene(scene, collection_name=name + ".rebuild", bpy_scene=bpy_scene, domain=dom)
    _drop_template_meshes()
    col[TAG_DOMAIN] = domain
    if old is not None:
        col[TAG_SOURCE] = old[TAG_SOURCE]
        for child in list(old.children):     # keep the camera rig and the reference image
            old.children.unlink(child)
            col.children.link(child)
        if old.get(TAG_IMAGE) is not None:
            col[TAG_IMAGE] = old[TAG_IMAGE]
        del old[TAG_TEXT]                    # the text stays: it is the program being rebuilt
        old.pop(TAG_IMAGE, None)
        remove_result(old)
    else:
        col[TAG_SOURCE] = text.name
    col.name = name
    col[TAG_TEXT] = text
    return col


__all__ = ["ProgramError", "apply_result", "collection_name_for", "load_image_datablock",
           "rebuild_from_text", "remove_result", "result_collections", "set_camera_background"]
