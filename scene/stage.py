"""The CLEVR stage in Blender: camera, lamps, world, backdrop, and the render settings.

Numbers come from scene/camera.py (pure Python, shared with the sampler and labels).
Everything lives in one collection, "IG-LLM Stage". `setup_stage` is idempotent: called
again (the dataset renderer calls it once per image with a new jitter) it only moves the
existing camera and lamps, so it costs well under a millisecond.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager

import bpy
from mathutils import Vector

from .camera import CAMERA_LOCATION, CLIP, LAMPS, LENS_MM, SENSOR_MM, SUN, StageJitter

STAGE_COLLECTION = "IG-LLM Stage"
ORIGIN_NAME = "IG-LLM Origin"        # empty at (0, 0, 0) that camera and lamps track
CAMERA_NAME = "IG-LLM Camera"
SUN_NAME = "IG-LLM Sun"
BACKDROP_NAME = "IG-LLM Backdrop"
WORLD_NAME = "IG-LLM World"
WORLD_GREY, WORLD_STRENGTH = 0.0509, 0.0   # CLEVR's world: contributes no light

# Backdrop ("sweep"): a floor that curves up into a wall behind the objects, so no view
# ray of a (jittered) CLEVR camera ever reaches a horizon. Built in a local frame whose
# +Y is the camera's viewing direction on the ground, then turned to face the camera.
SWEEP_HALF_WIDTH = 25.0              # local X: -25 .. 25          (50 units wide)
SWEEP_FRONT, SWEEP_BEND = -25.0, 6.0 # local Y: flat floor from -25 up to the bend
SWEEP_RADIUS, SWEEP_WALL = 10.0, 16.0  # quarter circle, then a vertical wall (≈63 units unrolled)
SWEEP_ARC_SEGMENTS = 16


def setup_stage(jitter: StageJitter | None = None, scene: bpy.types.Scene | None = None) -> bpy.types.Object:
    """Build (first call) or update (later calls) the CLEVR stage; returns the camera object.

    `jitter` offsets the camera and the three area lamps (CLEVR draws a new one per image);
    None means the base scene. The camera becomes the scene's active camera."""
    scene = scene or bpy.context.scene
    jitter = jitter or StageJitter()
    coll = _stage_collection(scene)
    origin = _get_or_create(coll, ORIGIN_NAME, None)
    origin.location = (0.0, 0.0, 0.0)

    cam = bpy.data.objects.get(CAMERA_NAME)
    if cam is None or cam.type != "CAMERA":
        data = bpy.data.cameras.new(CAMERA_NAME)
        data.lens, data.sensor_width, data.sensor_fit = LENS_MM, SENSOR_MM, "AUTO"
        data.clip_start, data.clip_end = CLIP
        cam = _get_or_create(coll, CAMERA_NAME, data)
    _track(cam, origin)
    cam.location = jitter.camera_location()
    scene.camera = cam

    for name, (_loc, size, color, power) in LAMPS.items():
        obj_name = f"IG-LLM {name}"
        lamp = bpy.data.objects.get(obj_name)
        if lamp is None or lamp.type != "LIGHT":
            data = bpy.data.lights.new(obj_name, type="AREA")
            data.shape, data.size = "SQUARE", size
            data.color, data.energy = color, power
            lamp = _get_or_create(coll, obj_name, data)
        _track(lamp, origin)
        lamp.location = jitter.lamp_location(name)

    sun = bpy.data.objects.get(SUN_NAME)
    if sun is None or sun.type != "LIGHT":
        data = bpy.data.lights.new(SUN_NAME, type="SUN")
        data.energy = SUN["strength"]
        sun = _get_or_create(coll, SUN_NAME, data)
        sun.location = SUN["location"]
        # CLEVR's sun has a fixed direction (not jittered, not tracking); -Z points along it
        sun.rotation_mode = "QUATERNION"
        sun.rotation_quaternion = Vector(SUN["direction"]).to_track_quat("-Z", "Y")

    if bpy.data.objects.get(BACKDROP_NAME) is None:
        _get_or_create(coll, BACKDROP_NAME, sweep_mesh())
    _world(scene)
    return cam


def _stage_collection(scene) -> bpy.types.Collection:
    coll = bpy.data.collections.get(STAGE_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(STAGE_COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def _get_or_create(coll, name: str, data) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is None:
        obj = bpy.data.objects.new(name, data)
    if obj.name not in coll.objects:
        coll.objects.link(obj)
    return obj


TRACK_NAME = "IG-LLM Track"


def _track(obj, target) -> None:
    """Track To the origin: -Z looks at the target, +Y stays up (as CLEVR's base scene).
    Re-applied on every call, so a stage whose constraint or origin a user deleted heals."""
    con = obj.constraints.get(TRACK_NAME)
    if con is not None and con.target == target:
        return
    if con is None:
        con = obj.constraints.new("TRACK_TO")
        con.name = TRACK_NAME
    con.target = target
    con.track_axis, con.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"


def _world(scene) -> None:
    world = bpy.data.worlds.get(WORLD_NAME) or bpy.data.worlds.new(WORLD_NAME)
    world.color = (WORLD_GREY,) * 3
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (WORLD_GREY, WORLD_GREY, WORLD_GREY, 1.0)
        bg.inputs["Strength"].default_value = WORLD_STRENGTH
    scene.world = world


def sweep_mesh(name: str = BACKDROP_NAME) -> bpy.types.Mesh:
    """The backdrop: floor, quarter-circle bend, wall; no material (default grey diffuse)."""
    profile = [(SWEEP_FRONT, 0.0)]   # (local y, z)
    for k in range(SWEEP_ARC_SEGMENTS + 1):
        a = k / SWEEP_ARC_SEGMENTS * math.pi / 2
        profile.append((SWEEP_BEND + SWEEP_RADIUS * math.sin(a), SWEEP_RADIUS * (1 - math.cos(a))))
    profile.append((SWEEP_BEND + SWEEP_RADIUS, SWEEP_RADIUS + SWEEP_WALL))
    # turn local +Y to point away from the camera (its viewing direction on the ground)
    fx, fy = -CAMERA_LOCATION[0], -CAMERA_LOCATION[1]
    n = math.hypot(fx, fy)
    fy_dir = (fx / n, fy / n)              # local +Y in world
    fx_dir = (fy_dir[1], -fy_dir[0])       # local +X in world (right-handed with +Z up)
    verts = []
    for y, z in profile:
        for x in (-SWEEP_HALF_WIDTH, SWEEP_HALF_WIDTH):
            verts.append((x * fx_dir[0] + y * fy_dir[0], x * fx_dir[1] + y * fy_dir[1], z))
    faces = [(2 * i, 2 * i + 1, 2 * i + 3, 2 * i + 2) for i in range(len(profile) - 1)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    # face the camera: flip if the first face's normal points down
    if mesh.polygons[0].normal.z < 0:
        mesh.flip_normals()
    for p in mesh.polygons:
        p.use_smooth = True
    return mesh


def configure_render(width: int, height: int, samples: int, *, denoise: bool = False,
                     engine: str = "CYCLES", threads: int | None = None, max_bounces: int = 12,
                     scene: bpy.types.Scene | None = None) -> bpy.types.Scene:
    """Render settings that reproduce CLEVR's look, tuned for CPU speed. Returns the scene.

    Matches CLEVR: Cycles, view transform Standard, Blackman-Harris 1.5 px filter, max
    bounces 12 (default). Speed knobs (each changes noise, not the look):
    - adaptive sampling (threshold 0.01): stops converged pixels early;
    - light tree: samples the 4 lamps by importance;
    - caustics off + filter glossy 1.0: no fireflies from metal-to-diffuse paths;
    - persistent data: keeps the BVH and shaders between renders of the same file;
    - `denoise`: OpenImageDenoise, off by default (it smears small objects at low samples).
    """
    scene = scene or bpy.context.scene
    r = scene.render
    r.engine = engine
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(width), int(height), 100
    r.use_persistent_data = True
    r.film_transparent = False
    if threads:
        r.threads_mode, r.threads = "FIXED", int(threads)
    else:
        r.threads_mode = "AUTO"
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 15
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
    if engine == "CYCLES":
        c = scene.cycles
        c.device = "CPU"
        c.samples = int(samples)
        c.use_adaptive_sampling = True
        c.adaptive_threshold = 0.01
        c.use_denoising = bool(denoise)
        if denoise:
            c.denoiser = "OPENIMAGEDENOISE"
        c.pixel_filter_type = "BLACKMAN_HARRIS"
        c.filter_width = 1.5
        c.max_bounces = int(max_bounces)
        c.use_light_tree = True
        c.caustics_reflective = c.caustics_refractive = False
        c.blur_glossy = 1.0
        c.seed = 0
    return scene


@contextmanager
def quiet_stdout():
    """Silence Blender's per-render chatter on fd 1 (progress bars, `make demo`)."""
    try:
        import sys
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextmanager
def _no_op():
    yield


def render_to(path: str | os.PathLike, scene: bpy.types.Scene | None = None, quiet: bool = False) -> str:
    """Render the scene's camera view to a PNG at `path`, atomically (temp file + rename).
    `quiet`: no per-tile chatter from Blender on stdout."""
    scene = scene or bpy.context.scene
    from ..atomic import writing

    path = os.fspath(path)
    old = scene.render.filepath
    try:
        with writing(path) as tmp:
            scene.render.filepath = str(tmp)
            with (quiet_stdout() if quiet else _no_op()):
                bpy.ops.render.render(write_still=True, scene=scene.name)
            if not os.path.getsize(tmp):
                raise RuntimeError(f"Blender did not write the render to {tmp}")
    finally:
        scene.render.filepath = old
    return path


# ---------------------------------------------------------------------------------------
# a guest's stage: the extension's import adds its own camera and lamps to a collection
# and changes nothing else (no world, no active camera, no backdrop, no render settings)
# ---------------------------------------------------------------------------------------
def _look_at(obj, target=(0.0, 0.0, 0.0)) -> None:
    """Aim -Z at `target` with +Y up, as the renderer's Track To does, without a constraint
    or a target object (nothing else to keep in the user's scene)."""
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = (Vector(target) - obj.location).to_track_quat("-Z", "Y")


def add_camera_and_lights(collection, name: str) -> bpy.types.Object:
    """CLEVR's base camera, three area lamps and sun as new objects in `collection`;
    returns the camera. Names start with `name` (Blender makes them unique)."""
    jitter = StageJitter()
    data = bpy.data.cameras.new(f"{name} Camera")
    data.lens, data.sensor_width, data.sensor_fit = LENS_MM, SENSOR_MM, "AUTO"
    data.clip_start, data.clip_end = CLIP
    cam = bpy.data.objects.new(f"{name} Camera", data)
    cam.location = jitter.camera_location()
    collection.objects.link(cam)
    _look_at(cam)
    for lamp_name, (_loc, size, color, power) in LAMPS.items():
        light = bpy.data.lights.new(f"{name} {lamp_name}", type="AREA")
        light.shape, light.size = "SQUARE", size
        light.color, light.energy = color, power
        obj = bpy.data.objects.new(f"{name} {lamp_name}", light)
        obj.location = jitter.lamp_location(lamp_name)
        collection.objects.link(obj)
        _look_at(obj)
    sun = bpy.data.lights.new(f"{name} Sun", type="SUN")
    sun.energy = SUN["strength"]
    obj = bpy.data.objects.new(f"{name} Sun", sun)
    obj.location = SUN["location"]
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = Vector(SUN["direction"]).to_track_quat("-Z", "Y")
    collection.objects.link(obj)
    return cam


def add_floor(collection, name: str, floor="clevr") -> bpy.types.Object:
    """CLEVR's backdrop (floor curving into a wall) as a new object in `collection`;
    `floor` is a kit's stage floor: "clevr" (no material) or an (r, g, b) 0-255 colour."""
    obj = bpy.data.objects.new(name, sweep_mesh(name))
    collection.objects.link(obj)
    set_floor_colour(obj, floor)
    return obj


FLOOR_MATERIAL = "IG-LLM Floor"


def set_floor_colour(obj=None, floor="clevr") -> None:
    """Give the backdrop (default: the stage's) a kit's floor colour: a diffuse material
    of that 0-255 RGB (fed straight in, as the object colours are); "clevr" leaves CLEVR's
    material-less grey."""
    obj = obj or bpy.data.objects.get(BACKDROP_NAME)
    if obj is None or floor == "clevr" or floor is None:
        return
    rgba = (*(c / 255.0 for c in floor), 1.0)
    mat = bpy.data.materials.new(FLOOR_MATERIAL)
    mat.use_nodes = True
    mat.diffuse_color = rgba
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 1.0
    obj.data.materials.clear()
    obj.data.materials.append(mat)
