"""The 2D and SO(3) tasks with the real bpy: program -> Blender objects -> program, and a
tiny `ig_llm generate --domain 2d|so3` (5 Workbench renders in all) with valid labels."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from ig_llm.scene import builder, rotations  # noqa: E402
from ig_llm.scene.domain import load_domain  # noqa: E402
from ig_llm.scene.program import ProgramError, Scene, format_program, parse, scene_from_clevr  # noqa: E402
from ig_llm.scene.task_program import DotObject, PoseObject  # noqa: E402
from ig_llm.training.data import task_sampler  # noqa: E402
from ig_llm.training.eval.evaluate import evaluate_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def test_2d_build_round_trip():
    d = load_domain("2d")
    text = "add(x=0.250, y=0.125)"
    coll = builder.build_scene(parse(text, domain=d), domain=d)
    kinds = sorted(o.get("ig_llm_kind") for o in coll.objects)
    assert kinds == ["canvas", "dot"]
    dot = next(o for o in coll.objects if o.get("ig_llm_kind") == "dot")
    assert tuple(dot.location)[:2] == pytest.approx((0.25, -0.125))   # image y points down
    assert dot.dimensions.x == pytest.approx(2 * 5 / 336, rel=1e-3)
    back = builder.scene_from_collection(coll)
    assert format_program(back, "char", domain=d) == "add(x=0.250, y=0.125)"
    dot.location.x = 0.5                     # an edit in Blender shows up in the program
    assert format_program(builder.scene_from_collection(coll), "char", domain=d) == "add(x=0.500, y=0.125)"


@pytest.mark.parametrize("rep", ["euler", "6d"])
def test_so3_build_round_trip(rep):
    d = load_domain(f"so3:{rep}")
    obj = PoseObject.from_euler("tripod", (0.3, -1.1, 2.0))
    text = format_program(Scene([obj]), "char", domain=d)
    coll = builder.build_scene(parse(text, domain=d), domain=d)
    (o,) = coll.objects
    assert o.rotation_mode == "XYZ" and tuple(o.rotation_euler) == pytest.approx((0.3, -1.1, 2.0), abs=2e-3)
    assert len(o.data.materials) == 4 and len(o.data.polygons) == 7 * 6
    back = builder.scene_from_collection(coll)
    assert rotations.geodesic_deg(back.objects[0].matrix, obj.matrix) < 0.2
    assert format_program(back, "char", domain=d) == text or rep == "6d"


def test_task_build_refuses_the_wrong_kind_and_creates_nothing():
    n = len(bpy.data.objects)
    with pytest.raises(ProgramError, match="DotObject.*so3 domain builds PoseObjects"):
        builder.build_scene(Scene([DotObject(0.1, 0.2)]), domain=load_domain("so3"))
    with pytest.raises(ProgramError, match="non-finite"):
        builder.build_scene(Scene([DotObject(float("nan"), 0.2)]), domain=load_domain("2d"))
    assert len(bpy.data.objects) == n and not bpy.data.collections


def _generate(out: Path, *args):
    argv = [sys.executable, "-m", "ig_llm", "generate", "--out", str(out), "--workers", "1", "--threads", "1",
            "--no-progress", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "scenes.json").read_text())["scenes"]


def test_generate_2d(tmp_path):
    from PIL import Image
    d = load_domain("2d")
    scenes = _generate(tmp_path / "d", "--domain", "2d", "--count", "3")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["condition"] == "checkerboard" and manifest["split"] == "train"
    assert (manifest["width"], manifest["height"]) == (336, 336)
    assert [s["image_filename"] for s in scenes] == [f"CLEVR_train_{i:06d}.png" for i in range(3)]
    for rec in scenes:
        (dot,) = scene_from_clevr(rec).objects
        parsed = parse(rec["program"], domain=d).objects[0]
        assert (parsed.x, parsed.y) == pytest.approx((dot.x, dot.y), abs=5e-4)
        assert rec["program"] == format_program(Scene([dot]), "char", domain=d)
        assert task_sampler.is_training_point(dot.x, dot.y, 8)
        # the red pixels' centre is the dot's canvas position (y down)
        img = np.asarray(Image.open(tmp_path / "d" / "images" / rec["image_filename"]).convert("RGB")).astype(int)
        red = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)
        assert 40 < red.sum() < 120                               # pi * 5^2 ~ 79 px
        ys, xs = np.nonzero(red)
        assert (xs.mean() + 0.5) / 336 == pytest.approx(dot.x, abs=1.5 / 336)
        assert (ys.mean() + 0.5) / 336 == pytest.approx(dot.y, abs=1.5 / 336)
        assert tuple(img[0, 0]) == (255, 255, 255) or red[0, 0]     # white canvas
    report = evaluate_files(tmp_path / "d", tmp_path / "d" / "scenes.json")
    assert report["summary"]["l2"] == 0.0 and report["summary"]["count_acc"] == 1.0


def test_generate_so3_ood(tmp_path):
    d = load_domain("so3:6d")
    scenes = _generate(tmp_path / "s", "--domain", "so3:6d", "--condition", "ood", "--count", "2")
    assert [s["split"] for s in scenes] == ["ood", "ood"]
    for rec in scenes:
        (pose,) = scene_from_clevr(rec).objects
        assert task_sampler.is_ood_rotation(pose.matrix, d)
        parsed = parse(rec["program"], domain=d).objects[0]
        assert rotations.geodesic_deg(parsed.matrix, pose.matrix) < 0.5
        assert (tmp_path / "s" / "images" / rec["image_filename"]).stat().st_size > 1000
    report = evaluate_files(tmp_path / "s", tmp_path / "s" / "scenes.json")
    assert report["summary"]["rot_err_deg"] == pytest.approx(0.0, abs=1e-4)


def test_generate_refuses_a_foreign_condition(tmp_path):
    argv = [sys.executable, "-m", "ig_llm", "generate", "--domain", "so3", "--condition", "A", "--count", "1",
            "--out", str(tmp_path / "x")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--condition A is not one of the so3 domain's (id, ood)" in proc.stderr


def test_build_command_with_a_task_domain(tmp_path):
    prog = tmp_path / "pose.txt"
    prog.write_text("add(shape='tripod', rotation=(+1.280, -0.437, +1.910))\n")
    argv = [sys.executable, "-m", "ig_llm", "build", str(prog), "--domain", "so3:aa", "--out", str(tmp_path / "p.blend")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert (tmp_path / "p.blend").stat().st_size > 0
    proc = subprocess.run([*argv[:5], "--domain", "so3:6d", "--out", str(tmp_path / "q.blend")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "a 6d rotation has 6 numbers, found 3" in proc.stderr


def test_generic_world_renders_its_own_look_and_leaves_the_task_look_alone(tmp_path):
    """The 2d tower's generic world: the disc's colour, radius and background as labelled;
    a task render after it in the same Blender session is red on white again (the
    materials are shared by name)."""
    from PIL import Image
    from ig_llm.training.data.task_render import TaskRenderer
    d = load_domain("2d")

    def pixels(renderer, i):
        rec = renderer.render_index(i, str(tmp_path / f"{renderer.condition}{i}.png"))
        return rec, np.asarray(Image.open(tmp_path / f"{renderer.condition}{i}.png").convert("RGB")).astype(int)

    generic = TaskRenderer(336, 336, 1, domain=d, condition="generic", split="generic")
    for i in range(2):
        rec, img = pixels(generic, i)
        style = rec["style"]
        (dot,) = scene_from_clevr(rec).objects
        cx, cy = int(dot.x * 336), int(dot.y * 336)
        assert np.abs(img[cy, cx] - style["dot_rgb"]).max() <= 2          # sRGB as labelled
        far = (int((dot.x + 0.5) % 1 * 336), int((dot.y + 0.5) % 1 * 336))
        assert np.abs(img[far[1], far[0]] - style["background_rgb"]).max() <= 2
        def distance(rgb):
            return np.abs(img - np.array(rgb)).sum(axis=2)
        disc = distance(style["dot_rgb"]) < distance(style["background_rgb"])
        assert disc.sum() == pytest.approx(np.pi * style["dot_radius_px"] ** 2, rel=0.25)
    task = TaskRenderer(336, 336, 1, domain=d, condition="uniform", split="test")
    rec, img = pixels(task, 0)
    assert "style" not in rec
    assert tuple(img[0, 0]) == (255, 255, 255) or tuple(img[-1, -1]) == (255, 255, 255)
    red = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert 40 < red.sum() < 120                                            # pi * 5^2 ~ 79 px
