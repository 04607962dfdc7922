"""Builder, stage and build command with the real bpy module (small and fast)."""
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from ig_llm import cli  # noqa: E402
from ig_llm.scene import assets, builder, stage  # noqa: E402
from ig_llm.scene.camera import StageJitter, project  # noqa: E402
from ig_llm.scene.domain import load_domain  # noqa: E402
from ig_llm.scene.program import ProgramError, Scene, SceneObject, format_program  # noqa: E402

DOMAIN = load_domain()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def random_scene(seed: int, n: int = 6) -> Scene:
    rng = random.Random(seed)
    objs = []
    for _ in range(n):
        shape, size = rng.choice(DOMAIN.values("shape")), rng.choice(DOMAIN.values("size"))
        objs.append(SceneObject(shape, rng.choice(DOMAIN.values("color")), rng.choice(DOMAIN.values("material")),
                                size, (rng.uniform(-3, 3), rng.uniform(-3, 3), DOMAIN.scale(size)),
                                rng.uniform(-3, 3)))
    return Scene(objs)


# --------------------------------------------------------------------------------------- assets
@pytest.mark.parametrize("shape", ["cube", "sphere", "cylinder"])
def test_shape_meshes_span_unit_cube_and_are_cached(shape):
    mesh = assets.shape_mesh(shape)
    co = [v.co for v in mesh.vertices]
    for axis in range(3):
        assert min(c[axis] for c in co) == pytest.approx(-1, abs=1e-5)
        assert max(c[axis] for c in co) == pytest.approx(1, abs=1e-5)
    assert 50 < len(mesh.polygons) < 3000          # modest polycount for fast Cycles
    assert all(p.use_smooth for p in mesh.polygons)
    assert assets.shape_mesh(shape) == mesh
    mesh.validate()


def test_cube_is_flat_to_077_and_cylinder_cap_to_092():
    cube = assets.shape_mesh("cube")
    top = [v.co for v in cube.vertices if v.co.z > 1 - 1e-6]
    assert max(abs(c.x) for c in top) == pytest.approx(0.77, abs=1e-5)
    cyl = assets.shape_mesh("cylinder")
    cap = [v.co for v in cyl.vertices if v.co.z > 1 - 1e-6]
    assert max(math.hypot(c.x, c.y) for c in cap) == pytest.approx(0.92, abs=1e-5)


def test_materials_are_node_materials_reused_per_pair():
    metal = assets.material("red", "metal")
    rubber = assets.material("red", "rubber")
    assert metal != rubber and assets.material("red", "metal") == metal
    glossy = [n for n in metal.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfAnisotropic"]
    assert sorted(round(n.inputs["Roughness"].default_value, 3) for n in glossy) == [0.1, 0.447]
    assert tuple(glossy[0].inputs["Color"].default_value)[:3] == pytest.approx(DOMAIN.rgb("red"))
    kinds = {n.bl_idname for n in rubber.node_tree.nodes}
    assert {"ShaderNodeBsdfDiffuse", "ShaderNodeBsdfSheen", "ShaderNodeFresnel"} <= kinds
    assert tuple(rubber.diffuse_color)[:3] == pytest.approx(DOMAIN.rgb("red"))


# --------------------------------------------------------------------------------------- builder
@pytest.mark.parametrize("seed", range(3))
def test_build_round_trip(seed):
    scene = random_scene(seed, n=3 + 3 * seed)
    coll = builder.build_scene(scene)
    assert coll.name in bpy.context.scene.collection.children
    assert len(coll.objects) == len(scene)
    back = builder.scene_from_collection(coll)
    for i, (a, b) in enumerate(zip(scene.objects, back.objects)):
        assert (a.shape, a.color, a.material, a.size) == (b.shape, b.color, b.material, b.size)
        assert all(abs(p - q) < 1e-4 for p, q in zip(a.loc, b.loc))
        assert abs(a.rotation - b.rotation) < 1e-4
    for i, obj in enumerate(sorted(coll.objects, key=lambda o: o.pass_index)):
        so = scene.objects[i]
        assert obj.pass_index == i + 1 and obj.type == "MESH"
        assert obj["ig_llm_shape"] == so.shape and obj["ig_llm_color"] == so.color
        assert tuple(obj.scale) == pytest.approx((DOMAIN.scale(so.size),) * 3)
        assert obj.active_material == assets.material(so.color, so.material)
        assert obj.data != assets.shape_mesh(so.shape)   # own mesh copy: editable on its own
        assert len(obj.data.vertices) == len(assets.shape_mesh(so.shape).vertices)


def test_second_build_gets_a_new_collection_and_linked_meshes_work():
    a = builder.build_scene(random_scene(1, 2))
    b = builder.build_scene(random_scene(2, 2), linked_meshes=True)
    assert a != b and a.name != b.name
    obj = b.objects[0]
    assert obj.data == assets.shape_mesh(obj["ig_llm_shape"])
    assert obj.material_slots[0].link == "OBJECT" and obj.active_material is not None
    assert builder.scene_from_collection(b).objects[0].color == obj["ig_llm_color"]


@pytest.mark.parametrize("bad", [
    SceneObject("pyramid", "red", "metal", "large", (0, 0, 0.7)),
    SceneObject("cube", "pink", "metal", "large", (0, 0, 0.7)),
    SceneObject("cube", "red", "wood", "large", (0, 0, 0.7)),
    SceneObject("cube", "red", "metal", "huge", (0, 0, 0.7)),
    SceneObject("cube", "red", "metal", "large", (0, float("nan"), 0.7)),
    SceneObject("cube", "red", "metal", "large", (0, 1e6, 0.7)),
    SceneObject("cube", "red", "metal", "large", (0, 0)),
    SceneObject("cube", "red", "metal", "large", (0, 0, 0.7), float("inf")),
])
def test_invalid_scene_builds_nothing(bad):
    good = SceneObject("sphere", "blue", "rubber", "small", (1, 1, 0.35))
    before = (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.meshes), len(bpy.data.materials))
    with pytest.raises(ProgramError):
        builder.build_scene(Scene([good, bad]))
    after = (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.meshes), len(bpy.data.materials))
    assert after == before


def test_clear_scene_objects_keeps_cached_assets():
    coll = builder.build_scene(random_scene(3, 4))
    name = coll.name
    n_mat = len(bpy.data.materials)
    builder.clear_scene_objects(coll)
    assert name not in bpy.data.collections and len(bpy.data.objects) == 0
    assert len(bpy.data.materials) == n_mat
    assert {m.name for m in bpy.data.meshes} <= {assets.MESH_PREFIX + s for s in DOMAIN.values("shape")}


# --------------------------------------------------------------------------------------- stage
def test_setup_stage_is_reused_and_applies_jitter():
    cam = stage.setup_stage()
    n = len(bpy.data.objects)
    jitter = StageJitter.sample(random.Random(0))
    cam2 = stage.setup_stage(jitter)
    assert cam2 == cam and len(bpy.data.objects) == n and bpy.context.scene.camera == cam
    assert tuple(cam.location) == pytest.approx(jitter.camera_location())
    key = bpy.data.objects["IG-LLM Key"]
    assert tuple(key.location) == pytest.approx(jitter.lamp_location("Key"))
    assert key.data.type == "AREA" and key.constraints[0].type == "TRACK_TO"
    assert cam.data.lens == 35 and cam.data.sensor_width == 32
    assert bpy.context.scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value == 0
    assert len(bpy.data.collections[stage.STAGE_COLLECTION].objects) == n


def test_blender_camera_agrees_with_camera_project():
    """scene/camera.py's pinhole maths (used for labels) must match the Blender camera."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector
    jitter = StageJitter.sample(random.Random(5))
    cam = stage.setup_stage(jitter)
    stage.configure_render(480, 320, 1)
    bpy.context.view_layer.update()
    for point in [(0, 0, 0), (2.5, -1.0, 0.35), (-3, 3, 0.7)]:
        v = world_to_camera_view(bpy.context.scene, cam, Vector(point))
        px, py, depth = project(point, jitter.camera_location(), 480, 320)
        assert (px, py, depth) == pytest.approx((v.x * 480, (1 - v.y) * 320, v.z), abs=1e-3)


def _render(tmp_path, name):
    import numpy as np
    from PIL import Image
    path = stage.render_to(tmp_path / name)
    return np.asarray(Image.open(path).convert("RGB"), dtype=float) / 255.0


def test_render_shows_every_object(tmp_path):
    """A tiny Cycles render with and without the objects: each object's projected centre
    must look different from the bare stage there."""
    scene = Scene([SceneObject("cube", "red", "metal", "large", (-1.5, 1.5, 0.7), 0.3),
                   SceneObject("sphere", "cyan", "rubber", "small", (1.5, -1.0, 0.35)),
                   SceneObject("cylinder", "blue", "rubber", "large", (1.0, 2.0, 0.7)),
                   SceneObject("sphere", "yellow", "metal", "large", (-2.0, -2.0, 0.7))])
    stage.setup_stage()
    stage.configure_render(96, 64, 8, threads=2)
    empty = _render(tmp_path, "empty.png")
    builder.build_scene(scene)
    full = _render(tmp_path, "full.png")
    assert empty.shape == (64, 96, 3) and 0.1 < empty.mean() < 0.9   # lit, not black or blown out
    for obj in scene.objects:
        px, py, _ = project(obj.loc, width=96, height=64)
        x, y = int(px), int(py)
        assert 0 <= x < 96 and 0 <= y < 64
        diff = abs(full[y - 1:y + 2, x - 1:x + 2] - empty[y - 1:y + 2, x - 1:x + 2]).mean()
        assert diff > 0.05, (obj, diff)


@pytest.mark.parametrize("camera", [(0.5, 0.5, 0.5), (-0.5, -0.5, -0.5)])
def test_no_horizon_for_jittered_cameras(camera, tmp_path):
    """The world is black (strength 0): any dark pixel would be sky past the backdrop.
    A square image has the tallest field of view the AUTO sensor fit gives."""
    stage.setup_stage(StageJitter(camera))
    stage.configure_render(48, 48, 4, threads=2)
    image = _render(tmp_path, "stage.png")
    assert image.min() > 0.2


# --------------------------------------------------------------------------------------- build command
PROGRAM = format_program(Scene([SceneObject("cube", "red", "metal", "large", (-1, 1, 0.7), 0.2),
                                SceneObject("sphere", "green", "rubber", "small", (1, -1, 0.35))]))


def _cli(argv, capsys):
    rc = cli.main(["build", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_build_command_writes_blend(tmp_path, capsys):
    prog = tmp_path / "p.txt"
    prog.write_text(PROGRAM)
    rc, err = _cli([prog, "--out", tmp_path / "s.blend", "--render", tmp_path / "s.png",
                    "--size", "64x48", "--samples", "2"], capsys)
    assert rc == 0, err
    assert (tmp_path / "s.blend").is_file() and (tmp_path / "s.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt", "s.blend", "s.png"]   # no temp files left
    with bpy.data.libraries.load(str(tmp_path / "s.blend")) as (src, _dst):
        names = list(src.objects)
    assert sum(n.startswith(("cube_", "sphere_")) for n in names) == 2 and "IG-LLM Camera" in names


@pytest.mark.parametrize("case", ["missing", "malformed", "unknown_color", "absurd", "empty", "no_dir",
                                  "bad_size", "bad_samples", "not_blend"])
def test_build_command_bad_input(case, tmp_path, capsys):
    prog = tmp_path / "p.txt"
    texts = {"malformed": "add(shape='cube', color='red'",
             "unknown_color": PROGRAM.replace("'red'", "'pink'"),
             "absurd": PROGRAM.replace("-1.000", "-1000.0"),
             "empty": "# nothing here\n"}
    prog.write_text(texts.get(case, PROGRAM))
    out = tmp_path / "s.blend"
    args = {"missing": [tmp_path / "nope.txt", "--out", out],
            "no_dir": [prog, "--out", tmp_path / "nodir" / "s.blend"],
            "bad_size": [prog, "--out", out, "--size", "big"],
            "bad_samples": [prog, "--out", out, "--samples", "-3"],
            "not_blend": [prog, "--out", tmp_path / "s.txt"]}.get(case, [prog, "--out", out])
    rc, err = _cli(args, capsys)
    assert rc != 0
    assert err.startswith("ig_llm build: ") and len(err.splitlines()) == 1 and err.endswith(".")
    assert [p.name for p in tmp_path.iterdir()] == ["p.txt"]        # nothing written


def test_build_command_as_a_process(tmp_path):
    prog = tmp_path / "p.txt"
    prog.write_text("add(shape='cube', color='red', material='metal', size='large', loc=(0, 0))\n")
    proc = subprocess.run([sys.executable, "-m", "ig_llm", "build", str(prog), "--out", str(tmp_path / "s.blend")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "line 1, column" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.blend").exists()
