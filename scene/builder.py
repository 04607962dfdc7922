"""Scene <-> Blender objects.

`build_scene` turns a :class:`~.program.Scene` into one new collection of editable mesh
objects with CLEVR-like node materials (or, for an asset kit's domain, the kit's meshes and
materials: scene/kits.py, scene/assets.py); `scene_from_collection` reads such a collection
back. Each object keeps its canonical attributes as custom properties
(``obj["ig_llm_shape"]`` …) and gets ``pass_index = i + 1`` so the dataset renderer can
count each object's visible pixels in the object-index pass. Scenes of the 2D and SO(3)
tasks (DotObject / PoseObject) are built by ``task_builder.py``.
"""
from __future__ import annotations

import math

import bpy
from mathutils import Matrix

from . import assets
from .domain import Domain, load_domain
from .program import ProgramError, Scene, SceneObject

DEFAULT_COLLECTION = "IG-LLM Scene"
PROPS = ("shape", "color", "material", "size")   # stored as obj["ig_llm_<attr>"]


def validate_scene(scene: Scene, domain: Domain | None = None) -> None:
    """Raise ProgramError if any object names something the domain lacks or has a
    non-finite / out-of-range number. Called before anything is created."""
    domain = domain or load_domain()
    if not isinstance(scene, Scene):
        raise ProgramError(f"expected a Scene, not {type(scene).__name__}")
    if len(scene.objects) > domain.max_objects:
        raise ProgramError(f"the scene has {len(scene.objects)} objects; at most {domain.max_objects} are allowed")
    limit = domain.max_abs_coordinate
    if domain.kind != "clevr":
        return _validate_task(scene, domain)
    for i, obj in enumerate(scene.objects, start=1):
        for attr in PROPS:
            value = getattr(obj, attr)
            if value not in domain.values(attr):
                raise ProgramError(f"object {i} has unknown {attr} {value!r} "
                                   f"(expected one of {', '.join(domain.values(attr))})")
        try:
            loc = tuple(float(c) for c in obj.loc)
            rot = float(obj.rotation)
        except (TypeError, ValueError):
            raise ProgramError(f"object {i} needs loc as three numbers and rotation as a number") from None
        if len(loc) != 3:
            raise ProgramError(f"object {i} has {len(loc)} loc values; expected 3")
        if not all(math.isfinite(c) and abs(c) <= limit for c in loc):
            raise ProgramError(f"object {i} has loc {loc} outside |value| <= {limit:g}")
        if not math.isfinite(rot):
            raise ProgramError(f"object {i} has a non-finite rotation")


def _validate_task(scene: Scene, domain: Domain) -> None:
    from .task_program import DotObject, PoseObject
    want = DotObject if domain.kind == "dot2d" else PoseObject
    for i, obj in enumerate(scene.objects, start=1):
        if not isinstance(obj, want):
            raise ProgramError(f"object {i} is a {type(obj).__name__}, but the {domain.name} domain builds "
                               f"{want.__name__}s; parse the program with domain {domain.name}")
        numbers = (obj.x, obj.y) if want is DotObject else [c for row in obj.matrix for c in row]
        if not all(isinstance(c, (int, float)) and math.isfinite(c) for c in numbers):
            raise ProgramError(f"object {i} has a non-finite number")
        if want is PoseObject and obj.shape not in domain.values("shape"):
            raise ProgramError(f"object {i} has unknown shape {obj.shape!r} "
                               f"(expected one of {', '.join(domain.values('shape'))})")


def build_scene(scene: Scene, *, collection_name: str = DEFAULT_COLLECTION, domain: Domain | None = None,
                bpy_scene: bpy.types.Scene | None = None, linked_meshes: bool = False,
                editable: bool = False, share_materials: bool = False) -> bpy.types.Collection:
    """Create one NEW collection (Blender makes the name unique) linked to `bpy_scene`
    with one mesh object per SceneObject; returns the collection.

    Each object gets its own copy of the shape mesh (edit one, the others stay) unless
    `linked_meshes` (faster, for throw-away renders). The default look is CLEVR's node
    setups with the size as object scale: what the dataset renderer needs. `editable` is
    what a user gets: names from the collection and the object's role (``<collection>
    cube 3``), the size applied to the mesh (scale 1), and Principled BSDF materials, one
    per (colour, material) pair of this build, or `share_materials` across builds.
    Validates first: on a ProgramError nothing has been created."""
    domain = domain or load_domain()
    validate_scene(scene, domain)
    bpy_scene = bpy_scene or bpy.context.scene
    coll = bpy.data.collections.new(collection_name)
    bpy_scene.collection.children.link(coll)
    if domain.kind != "clevr":
        from .task_builder import build_task_objects
        build_task_objects(scene, coll, domain)
        return coll
    materials = None if share_materials else {}
    for i, so in enumerate(scene.objects):
        if editable:
            obj = _editable_object(so, i, coll.name, domain, materials)
        else:
            obj = _clevr_object(so, i, domain, linked_meshes)
        obj.location = tuple(float(c) for c in so.loc)
        obj.rotation_mode = "XYZ"
        obj.rotation_euler = (0.0, 0.0, float(so.rotation))
        for attr in PROPS:
            obj[f"ig_llm_{attr}"] = getattr(so, attr)
        obj.pass_index = i + 1
        coll.objects.link(obj)
    return coll


def _clevr_object(so: SceneObject, i: int, domain: Domain, linked_meshes: bool):
    """The training renders' object: CLEVR's node material, the size as object scale."""
    src = assets.shape_mesh(so.shape, domain)
    mat = assets.material(so.color, so.material, domain)
    mesh = src if linked_meshes else assets.own_copy(src)
    if not linked_meshes:
        mesh.name = f"{so.shape}_{i + 1:02d}"
    obj = bpy.data.objects.new(f"{so.shape}_{i + 1:02d}_{so.color}_{so.material}", mesh)
    if linked_meshes:
        # shared mesh: keep the material on the object so each object can differ
        if not mesh.materials:
            mesh.materials.append(None)
        obj.material_slots[0].link = "OBJECT"
        obj.material_slots[0].material = mat
    else:
        mesh.materials.clear()
        mesh.materials.append(mat)
    s = domain.scale(so.size)
    obj.scale = (s, s, s)
    return obj


def _editable_object(so: SceneObject, i: int, prefix: str, domain: Domain, materials: dict | None):
    """A user's object: named by its role, the size in the mesh, a Principled material.
    `materials` caches this build's materials by (colour, material); None = shared ones."""
    name = f"{prefix} {so.shape} {i + 1}"
    mesh = assets.own_copy(assets.shape_mesh(so.shape, domain))   # a kit's own mesh: an appended copy
    mesh.name = name
    mesh.transform(Matrix.Scale(domain.scale(so.size), 4))   # scale applied: the object's is 1
    key = (so.color, so.material)
    if materials is None:
        mat = assets.editable_material(assets.shared_material_name(*key), *key, domain, reuse=True)
    else:
        mat = materials.get(key) or assets.editable_material(f"{prefix} {so.color} {so.material}", *key, domain)
        materials[key] = mat
    mesh.materials.clear()
    mesh.materials.append(mat)
    return bpy.data.objects.new(name, mesh)


def scene_from_collection(collection: bpy.types.Collection) -> Scene:
    """Read a collection made by `build_scene` back into a Scene (objects by pass_index;
    objects without ig_llm_* properties are skipped). Location and yaw are read from the
    objects, so moving or turning them in Blender shows up here."""
    from .task_builder import read_task_objects
    task = read_task_objects(collection)
    if task is not None:
        return Scene(task)
    objs = [o for o in collection.objects if "ig_llm_shape" in o]
    objs.sort(key=lambda o: (o.pass_index, o.name))
    out = []
    for o in objs:
        out.append(SceneObject(shape=str(o["ig_llm_shape"]), color=str(o["ig_llm_color"]),
                               material=str(o["ig_llm_material"]), size=str(o["ig_llm_size"]),
                               loc=tuple(float(c) for c in o.location),
                               rotation=float(o.rotation_euler.z)))
    return Scene(out)


def clear_scene_objects(collection: bpy.types.Collection | str | None = None) -> None:
    """Remove a built collection and its objects (and their per-object mesh copies).
    The cached shape meshes and materials stay for the next build. `collection` may be
    a name; None removes every collection named like the default ("IG-LLM Scene*")."""
    if collection is None:
        colls = [c for c in bpy.data.collections if c.name.startswith(DEFAULT_COLLECTION)]
    elif isinstance(collection, str):
        colls = [c for c in (bpy.data.collections.get(collection),) if c is not None]
    else:
        colls = [collection]
    for coll in colls:
        for obj in list(coll.objects):
            mesh = obj.data if obj.type == "MESH" else None
            bpy.data.objects.remove(obj, do_unlink=True)
            if mesh is not None and mesh.users == 0 and not mesh.get(assets.CACHED):
                bpy.data.meshes.remove(mesh)
        bpy.data.collections.remove(coll)
