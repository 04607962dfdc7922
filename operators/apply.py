"""Main thread only: a predicted scene -> Blender data, as a good guest.

An import only *adds*: one new collection with the objects (and, when asked, a child
collection with a camera and lamps of its own) plus a Text datablock with the program.
It never touches the world, the active camera (unless ``set_active_camera``), render or
colour-management settings (unless ``picture_size``: Match the Picture), or anything
that was there before.

Every datablock an import creates is tagged ``ig_llm_owned`` the moment it exists (the
datablocks that were not there before the build). REPLACE, Rebuild and
:func:`remove_result` delete only tagged datablocks nothing else uses: an object the
user made or moved into an imported collection is moved out to the collection's parent
(or into the rebuilt collection), and a mesh or material of the user's that loses its
last user to the removal keeps a fake user, so saving the file does not drop it.

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
TAG_PREVIOUS_CAMERA = "ig_llm_previous_camera"       # on the collection: the camera it replaced as
TAG_PREVIOUS_CAMERA_SCENE = "ig_llm_previous_scene"  # active (by name), given back on removal
# the kinds of datablock an import can create
OWNED_KINDS = ("objects", "meshes", "materials", "cameras", "lights", "images", "texts", "collections")


def collection_name_for(image_name: str) -> str:
    """'renders/CLEVR_000012.png' -> 'CLEVR_000012' (Blender keeps names under 64 bytes)."""
    stem = os.path.splitext(os.path.basename(image_name))[0].strip() or "Image"
    return stem[:48]     # room for " cylinder 10" in the objects' names


def result_collections(bpy_scene) -> list:
    """Top-level results of this add-on linked to `bpy_scene` (not their camera children)."""
    return [c for c in bpy_scene.collection.children_recursive if TAG_SOURCE in c]


def is_owned(block) -> bool:
    return bool(block.get(TAG_OWNED))


# ---------------------------------------------------------------------------------------
# ownership: tag what a build created
# ---------------------------------------------------------------------------------------
def existing_datablocks() -> set[int]:
    """Pointers of every datablock an import could create, before it does."""
    return {b.as_pointer() for kind in OWNED_KINDS for b in getattr(bpy.data, kind)}


def tag_new_datablocks(before: set[int]) -> None:
    """Tag every datablock that did not exist in `before` as made by this import."""
    for kind in OWNED_KINDS:
        for block in getattr(bpy.data, kind):
            if block.as_pointer() not in before:
                block[TAG_OWNED] = True


def _drop_template_meshes() -> None:
    """The builder copies cached shape meshes; the unused templates would be orphans."""
    for mesh in [m for m in bpy.data.meshes if m.get(assets.CACHED) and m.users == 0]:
        bpy.data.meshes.remove(mesh)


# ---------------------------------------------------------------------------------------
# removing a result: only what the import made
# ---------------------------------------------------------------------------------------
def _parent_collection(col, bpy_scene=None):
    """Where the user's things go when `col` is removed: its first parent collection."""
    for scene in ([bpy_scene] if bpy_scene is not None else []) + list(bpy.data.scenes):
        if col.name in scene.collection.children:
            return scene.collection
    for parent in bpy.data.collections:
        if col.name in parent.children:
            return parent
    return bpy.context.scene.collection


def _blocks_of(block):
    for kind, blocks in ((bpy.types.Mesh, bpy.data.meshes), (bpy.types.Camera, bpy.data.cameras),
                         (bpy.types.Light, bpy.data.lights), (bpy.types.Material, bpy.data.materials),
                         (bpy.types.Image, bpy.data.images)):
        if isinstance(block, kind):
            return blocks
    return None   # something of the user's we never remove (a curve, a font, ...)


def _release(block) -> None:
    """`block` lost users to a removal: delete it if the import made it and nothing uses
    it; a user's datablock left without users gets a fake user instead (kept on save)."""
    if block.users > 0:
        return
    if is_owned(block):
        blocks = _blocks_of(block)
        if blocks is not None:
            blocks.remove(block)
    else:
        block.use_fake_user = True


def remove_result(col, keep_into=None) -> None:
    """Delete a result collection and every datablock the import made that nothing else
    uses. The user's own objects and collections inside it survive: moved into
    `keep_into` (Rebuild's new collection) or else into the result's parent collection."""
    cols = [col] + list(col.children_recursive)
    owned_cols = [c for c in cols if is_owned(c)]
    dest = keep_into if keep_into is not None else _parent_collection(col)
    for c in owned_cols:                     # the user's collections inside: moved out whole
        for child in list(c.children):
            if not is_owned(child):
                c.children.unlink(child)
                if child.name not in dest.children:
                    dest.children.link(child)
    removed_cols = {c.as_pointer() for c in owned_cols}
    cols = [c for c in cols if c.as_pointer() in removed_cols]
    objects = {o for c in cols for o in c.objects}
    for obj in objects:
        if not is_owned(obj) and obj.name not in dest.objects:
            dest.objects.link(obj)           # the user's object: it stays in the scene
    owned = [o for o in objects if is_owned(o)]
    data = {o.data for o in owned if o.data is not None}
    materials = {s.material for o in owned for s in o.material_slots if s.material is not None}
    materials |= {m for d in data if isinstance(d, bpy.types.Mesh) for m in d.materials if m is not None}
    images = {b.image for d in data if isinstance(d, bpy.types.Camera) for b in d.background_images
              if b.image is not None}
    if col.get(TAG_IMAGE) is not None:
        images.add(col[TAG_IMAGE])
    text = col.get(TAG_TEXT)
    prefix = col.name + " "
    camera = bpy.data.objects.get(col.get(TAG_PREVIOUS_CAMERA, ""))
    camera_scene = bpy.data.scenes.get(col.get(TAG_PREVIOUS_CAMERA_SCENE, ""))
    for obj in owned:
        bpy.data.objects.remove(obj)
    for c in reversed(cols):
        bpy.data.collections.remove(c)
    for block in list(data) + list(materials):
        _release(block)
    for kind in ("meshes", "materials", "cameras", "lights"):   # ours, already left unused by an edit
        blocks = getattr(bpy.data, kind)
        for block in [b for b in blocks if b.users == 0 and is_owned(b) and b.name.startswith(prefix)]:
            blocks.remove(block)
    if camera is not None and camera_scene is not None and camera_scene.camera is None:
        camera_scene.camera = camera    # the import took the active camera: give it back
    for img in images:
        if is_owned(img) and img.users == 0:
            bpy.data.images.remove(img)
    if text is not None and is_owned(text):
        for sc in bpy.data.scenes:      # the panel's pointer is ours too
            settings = getattr(sc, "ig_llm", None)
            if settings is not None and settings.program == text:
                settings.program = None
        if text.users - int(text.use_fake_user) == 0:   # new texts carry a fake user
            bpy.data.texts.remove(text)


def _owned_in(col):
    """Every datablock of the result `col` that the import made, for renaming."""
    cols = [col] + list(col.children_recursive)
    objects = [o for c in cols for o in c.objects if is_owned(o)]
    blocks = cols[1:] + objects + [o.data for o in objects if o.data is not None]
    blocks += [s.material for o in objects for s in o.material_slots if s.material is not None]
    if col.get(TAG_TEXT) is not None:
        blocks.append(col[TAG_TEXT])
    return [b for b in dict.fromkeys(blocks) if is_owned(b)]


def rename_result(col, name: str) -> None:
    """Give `col` the name `name` (when free) and rename every datablock the import made
    that carries the old name as its prefix: objects, meshes, per-import materials,
    camera, lamps, floor, program text."""
    old = col.name
    if old == name or name in bpy.data.collections:
        return
    col.name = name
    for block in _owned_in(col):
        if block.name.startswith(old + " "):
            block.name = name + block.name[len(old):]


def select_result(bpy_scene, col) -> None:
    """Select the new objects (only them) and make the first one active, as importers do."""
    view_layer = bpy.context.view_layer if bpy.context.scene == bpy_scene else bpy_scene.view_layers[0]
    for obj in bpy_scene.objects:   # (view_layer.objects can be stale right after removals)
        if obj.visible_get(view_layer=view_layer) and obj.select_get(view_layer=view_layer):
            obj.select_set(False, view_layer=view_layer)
    objects = sorted((o for o in col.objects if is_owned(o)), key=lambda o: (o.pass_index, o.name))
    for obj in objects:
        obj.select_set(True, view_layer=view_layer)
    if objects:
        view_layer.objects.active = objects[0]


# ---------------------------------------------------------------------------------------
# building a result
# ---------------------------------------------------------------------------------------
def apply_result(bpy_scene, scene: Scene, program: str, *, name: str, source: str,
                 replace: bool = False, add_camera: bool = False, set_active_camera: bool = False,
                 background_image=None, domain: str = "clevr", share_materials: bool = False,
                 picture_size: tuple[int, int] | None = None):
    """Build `scene` into a new collection called `name`; returns the collection.

    `domain` is the model's (its config's ``domain``): CLEVR objects, or the 2D task's
    canvas and dot, or the SO(3) task's posed object. `add_camera`: a child collection
    with the domain's camera (CLEVR's also gets its lamps), and `background_image` (an
    Image datablock) behind that camera; `set_active_camera` makes it the scene's camera
    (off by default: the user's camera stays). `share_materials`: one material per
    (colour, material) across imports instead of per import. `picture_size` (Match the
    Picture): also CLEVR's floor, the camera made active, and the scene's render size set
    to the picture's, with CLEVR's Standard view transform, so a render looks like it.
    Raises ProgramError (before creating anything) when the program is invalid.
    """
    dom = load_domain(domain)
    old = result_collections(bpy_scene) if replace else []
    before = existing_datablocks()
    col = build_scene(scene, collection_name=name, bpy_scene=bpy_scene, domain=dom,  # validates first
                      editable=True, share_materials=share_materials)
    _drop_template_meshes()
    col[TAG_SOURCE] = source
    col[TAG_DOMAIN] = domain
    text = bpy.data.texts.new(f"{col.name} program")
    text.write(program.rstrip("\n") + "\n")
    col[TAG_TEXT] = text
    if background_image is not None and background_image.get(TAG_OWNED):
        col[TAG_IMAGE] = background_image
    if add_camera or picture_size is not None:
        _add_rig(bpy_scene, col, dom, background_image, set_active_camera or picture_size is not None,
                 floor=picture_size is not None)
    if picture_size is not None:
        render = bpy_scene.render
        render.resolution_x, render.resolution_y = (int(v) for v in picture_size)
        render.resolution_percentage = 100
        bpy_scene.view_settings.view_transform = "Standard"   # CLEVR's (the training renders')
        bpy_scene.view_settings.look = "None"
    tag_new_datablocks(before)
    settings = getattr(bpy_scene, "ig_llm", None)
    if settings is not None:
        settings.program = text
    for c in old:
        remove_result(c)
    if old:
        rename_result(col, name)        # the replaced result had the name: take it back
    select_result(bpy_scene, col)
    return col


def _add_rig(bpy_scene, col, dom, background_image, make_active: bool, floor: bool) -> None:
    """The child collection "<name> Camera": the domain's camera (CLEVR's with its lamps,
    and its floor when asked), the reference image behind the camera."""
    from ..scene.stage import add_camera_and_lights, add_floor

    rig = bpy.data.collections.new(f"{col.name} Camera")
    col.children.link(rig)
    if dom.kind == "clevr":
        camera = add_camera_and_lights(rig, col.name)
        if floor:       # CLEVR's grey backdrop, or an asset kit's floor colour
            add_floor(rig, f"{col.name} Floor", dom.kit.stage.floor if dom.kit is not None else "clevr")
    else:       # the task's fixed render camera; it is lit by Workbench, so no lamps
        from ..scene.task_builder import add_task_camera
        camera = add_task_camera(rig, dom, f"{col.name} Camera")
    if background_image is not None:
        set_camera_background(camera, background_image)
    if make_active:
        if bpy_scene.camera is not None:
            col[TAG_PREVIOUS_CAMERA] = bpy_scene.camera.name
            col[TAG_PREVIOUS_CAMERA_SCENE] = bpy_scene.name
        bpy_scene.camera = camera


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


def rebuild_from_text(bpy_scene, text, *, share_materials: bool = False) -> "bpy.types.Collection":
    """Parse the (edited) program in `text` and rebuild the collection made from it.

    The old objects are removed only after the new program parsed and built, so a typo in
    the program leaves the scene as it was. The new objects take the old names; the
    camera rig and anything of the user's inside the old collection move over.
    Raises ProgramError with line and column.
    """
    old = next((c for c in result_collections(bpy_scene) if c.get(TAG_TEXT) == text), None)
    domain = old.get(TAG_DOMAIN, "clevr") if old is not None else "clevr"
    dom = load_domain(domain)
    scene = parse(text.as_string(), domain=dom)
    name = old.name if old is not None else text.name.removesuffix(" program")
    before = existing_datablocks()
    col = build_scene(scene, collection_name=name + ".rebuild", bpy_scene=bpy_scene, domain=dom,
                      editable=True, share_materials=share_materials)
    _drop_template_meshes()
    tag_new_datablocks(before)
    col[TAG_DOMAIN] = domain
    if old is not None:
        col[TAG_SOURCE] = old[TAG_SOURCE]
        for child in list(old.children):     # keep the camera rig and the reference image
            if is_owned(child):
                old.children.unlink(child)
                col.children.link(child)
        if old.get(TAG_IMAGE) is not None:
            col[TAG_IMAGE] = old[TAG_IMAGE]
        del old[TAG_TEXT]                    # the text stays: it is the program being rebuilt
        old.pop(TAG_IMAGE, None)
        remove_result(old, keep_into=col)    # the user's objects in it move to the new one
    else:
        col[TAG_SOURCE] = text.name
    col[TAG_TEXT] = text
    rename_result(col, name)
    select_result(bpy_scene, col)
    return col


__all__ = ["ProgramError", "apply_result", "collection_name_for", "load_image_datablock",
           "rebuild_from_text", "remove_result", "rename_result", "result_collections",
           "set_camera_background"]
