"""Blender objects of the paper's 2D and SO(3) tasks, and the fixed stage that renders them.

2D: a white 1 x 1 canvas plane spanning world x in [0, 1], y in [-1, 0] (image y points
down, world y up: a dot at canvas (x, y) sits at world (x, -y)) and a red disc of radius
``dot_radius_px / canvas_px`` canvas units; an orthographic camera looks straight down.

SO(3): the "tripod", one chiral object at the origin: a grey core cube with three arms of
unit cubes, 3 along +X (red), 2 along +Y (green), 1 along +Z (blue). Arms of different
lengths leave no rotation (other than the identity) that maps it onto itself, and the
colours tell the arms apart even at low resolution. The object's rotation is Blender's
XYZ Euler mode, which is the paper's extrinsic xyz. A fixed perspective camera looks at it.

``builder.build_scene`` calls :func:`build_task_objects` for scenes of DotObject /
PoseObject, and ``scene_from_collection`` reads them back with :func:`read_task_objects`.
Renders use Workbench (flat colours for 2D, studio light for SO(3)): exact colours, fast
on a CPU through software OpenGL.
"""
from __future__ import annotations

import math

import bpy
from mathutils import Vector

from .domain import Domain
from .task_program import DotObject, PoseObject

PREFIX = "IG-LLM "
KIND_PROP = "ig_llm_kind"            # "dot" | "canvas" | "pose"
TRIPOD_CELLS = {                      # (i, j, k) unit cubes -> part (material slot)
    "core": [(0, 0, 0)],
    "x": [(1, 0, 0), (2, 0, 0), (3, 0, 0)],
    "y": [(0, 1, 0), (0, 2, 0)],
    "z": [(0, 0, 1)],
}
TRIPOD_RGB = {"core": (0.35, 0.35, 0.35), "x": (0.80, 0.08, 0.08), "y": (0.08, 0.60, 0.10),
              "z": (0.10, 0.20, 0.85)}
TRIPOD_CELL = 0.4                    # edge of one cube in world units (object ~2 units long)
POSE_CAMERA = (2.8, -3.5, 2.1)       # looks at the origin, +Z up; the object fills ~60 %
POSE_LENS_MM = 50.0
DOT_Z = 0.001                        # the disc floats just above the canvas
DISC_SEGMENTS = 64


def _rgb01(rgb255) -> tuple[float, float, float, float]:
    return (*(c / 255.0 for c in rgb255), 1.0)


def _linear_rgba(srgb255) -> tuple[float, float, float, float]:
    """8-bit sRGB -> the linear RGBA Blender's colour properties hold, so the render shows
    the sRGB value asked for (0 and 255 are the same either way: the task's red and white)."""
    def lin(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    return (*(lin(c) for c in srgb255), 1.0)


def flat_material(name: str, rgba) -> bpy.types.Material:
    """A cached material with one colour for every engine: Principled base colour (Cycles,
    Eevee) and diffuse_color (Workbench, Solid view)."""
    full = PREFIX + name
    mat = bpy.data.materials.get(full)
    if mat is None:
        mat = bpy.data.materials.new(full)
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes.get("Principled BSDF")
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = rgba
            bsdf.inputs["Roughness"].default_value = 0.8
        mat.diffuse_color = rgba
    return mat


# -- meshes --------------------------------------------------------------------------------
def _disc_mesh(radius: float) -> bpy.types.Mesh:
    verts = [(0.0, 0.0, 0.0)] + [(radius * math.cos(2 * math.pi * k / DISC_SEGMENTS),
                                  radius * math.sin(2 * math.pi * k / DISC_SEGMENTS), 0.0)
                                 for k in range(DISC_SEGMENTS)]
    faces = [(0, 1 + k, 1 + (k + 1) % DISC_SEGMENTS) for k in range(DISC_SEGMENTS)]
    mesh = bpy.data.meshes.new("dot")
    mesh.from_pydata(verts, [], faces)
    return mesh


def _canvas_mesh() -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new("canvas")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, -1, 0), (0, -1, 0)], [], [(0, 3, 2, 1)])
    return mesh


def tripod_mesh() -> bpy.types.Mesh:
    """The tripod's cubes as one mesh, centred on its bounding box, one material slot per part."""
    cells = [c for part in TRIPOD_CELLS.values() for c in part]
    lo = [min(c[a] for c in cells) - 0.5 for a in range(3)]
    hi = [max(c[a] for c in cells) + 0.5 for a in range(3)]
    centre = [(lo[a] + hi[a]) / 2 for a in range(3)]
    corners = [(dx, dy, dz) for dx in (-.5, .5) for dy in (-.5, .5) for dz in (-.5, .5)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    verts, faces, slots = [], [], []
    for slot, part in enumerate(TRIPOD_CELLS):
        for cell in TRIPOD_CELLS[part]:
            base = len(verts)
            verts += [tuple((cell[a] + d[a] - centre[a]) * TRIPOD_CELL for a in range(3)) for d in corners]
            faces += [tuple(base + i for i in q) for q in quads]
            slots += [slot] * len(quads)
    mesh = bpy.data.meshes.new("tripod")
    mesh.from_pydata(verts, [], faces)
    mesh.polygons.foreach_set("material_index", slots)
    for part in TRIPOD_CELLS:
        mesh.materials.append(flat_material(f"tripod {part}", (*TRIPOD_RGB[part], 1.0)))
    mesh.update()
    return mesh


# -- building and reading back -------------------------------------------------------------
DOT_STYLE_DEFAULTS = {"dot_rgb": (255, 0, 0), "dot_radius_px": 5, "background_rgb": (255, 255, 255)}


def dot_style(domain: Domain, override: dict | None = None) -> dict:
    """The 2D look (8-bit sRGB colours, radius in canvas px): `override`'s keys (a generic
    pre-training sample's, training/data/task_sampler.sample_style), else the domain file's."""
    return {k: (override or {}).get(k, domain.task.get(k, v)) for k, v in DOT_STYLE_DEFAULTS.items()}


def dot_radius(domain: Domain, style: dict | None = None) -> float:
    """The dot's radius in canvas units (5 px of 336 in the paper)."""
    return float(dot_style(domain, style)["dot_radius_px"]) / float(domain.task.get("canvas_px", 336))


def apply_dot_style(coll: bpy.types.Collection, domain: Domain, style: dict | None, bpy_scene) -> None:
    """Give a built 2D scene `style`'s look (or the domain's own, undoing an earlier one:
    the materials are shared by name within a Blender session)."""
    look = dot_style(domain, style)
    scale = dot_radius(domain, style) / dot_radius(domain)
    for obj in coll.objects:
        kind = obj.get(KIND_PROP)
        if kind == "dot":
            obj.scale = (scale, scale, 1.0)
        if kind in ("dot", "canvas"):
            rgba = _linear_rgba(look["dot_rgb" if kind == "dot" else "background_rgb"])
            for mat in obj.data.materials:
                mat.diffuse_color = rgba
                bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
                if bsdf is not None:
                    bsdf.inputs["Base Color"].default_value = rgba
    if bpy_scene.world is not None:
        bpy_scene.world.color = _linear_rgba(look["background_rgb"])[:3]


def build_task_objects(scene, coll: bpy.types.Collection, domain: Domain) -> None:
    """Objects of a dot2d / pose scene into `coll` (validated by the caller)."""
    if domain.kind == "dot2d":
        canvas = bpy.data.objects.new("2D canvas", _canvas_mesh())
        canvas.data.materials.append(flat_material("2D canvas", _rgb01(dot_style(domain)["background_rgb"])))
        canvas[KIND_PROP] = "canvas"
        coll.objects.link(canvas)
    for i, so in enumerate(scene.objects):
        if isinstance(so, DotObject):
            obj = bpy.data.objects.new(f"dot_{i + 1:02d}", _disc_mesh(dot_radius(domain)))
            obj.data.materials.append(flat_material("2D dot", _rgb01(dot_style(domain)["dot_rgb"])))
            obj.location = (float(so.x), -float(so.y), DOT_Z)
            obj[KIND_PROP] = "dot"
        else:
            obj = bpy.data.objects.new(f"{so.shape}_{i + 1:02d}", tripod_mesh())
            obj.rotation_mode = "XYZ"
            obj.rotation_euler = so.euler
            obj[KIND_PROP] = "pose"
            obj["ig_llm_shape"] = so.shape
        obj.pass_index = i + 1
        coll.objects.link(obj)


def read_task_objects(collection: bpy.types.Collection) -> list | None:
    """DotObject / PoseObject of a collection built by `build_task_objects` (moved or
    turned by the user or not); None when the collection holds no task objects."""
    objs = [o for o in collection.objects if o.get(KIND_PROP) in ("dot", "pose")]
    if not objs:
        return None
    objs.sort(key=lambda o: (o.pass_index, o.name))
    out = []
    for o in objs:
        if o[KIND_PROP] == "dot":
            out.append(DotObject(float(o.location.x), -float(o.location.y)))
        else:
            m = o.matrix_basis.to_3x3().normalized()
            out.append(PoseObject(str(o["ig_llm_shape"]), tuple(tuple(float(c) for c in row) for row in m)))
    return out


# -- the stage the dataset renders from ----------------------------------------------------
def add_task_camera(coll: bpy.types.Collection, domain: Domain, name: str = "IG-LLM Camera") -> bpy.types.Object:
    """The task's fixed camera as a new object in `coll`; returns it."""
    data = bpy.data.cameras.new(name)
    cam = bpy.data.objects.new(name, data)
    if domain.kind == "dot2d":
        data.type, data.ortho_scale = "ORTHO", 1.0
        data.sensor_fit = "AUTO"
        cam.location = (0.5, -0.5, 5.0)          # straight down on the canvas' centre
        cam.rotation_euler = (0.0, 0.0, 0.0)
    else:
        data.lens = POSE_LENS_MM
        cam.location = POSE_CAMERA
        cam.rotation_mode = "QUATERNION"
        cam.rotation_quaternion = (-Vector(POSE_CAMERA)).to_track_quat("-Z", "Y")
    data.clip_start, data.clip_end = 0.1, 100.0
    coll.objects.link(cam)
    return cam


def configure_task_render(scene, domain: Domain, width: int, height: int, samples: int,
                          threads: int | None = None) -> None:
    """Workbench settings: white background, flat colours (2D) or studio light (SO(3)),
    `samples` anti-aliasing samples (rounded to what Workbench offers)."""
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(width), int(height), 100
    r.film_transparent = False
    if threads:
        r.threads_mode, r.threads = "FIXED", int(threads)
    r.image_settings.file_format, r.image_settings.color_mode = "PNG", "RGB"
    r.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    shading = scene.display.shading
    shading.light = "FLAT" if domain.kind == "dot2d" else "STUDIO"
    shading.color_type = "MATERIAL"
    world = bpy.data.worlds.get(PREFIX + "task world") or bpy.data.worlds.new(PREFIX + "task world")
    world.color = tuple(c / 255.0 for c in dot_style(domain)["background_rgb"])
    scene.world = world
    levels = ("OFF", "FXAA", "5", "8", "11", "16", "32")
    scene.display.render_aa = next((lv for lv in levels[2:] if int(lv) >= samples), "32") if samples > 1 else "FXAA"
