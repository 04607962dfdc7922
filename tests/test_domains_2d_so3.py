"""The paper's 2D and SO(3) tasks, pure layers: rotation forms, programs, samplers,
metrics and tokenizer pieces (no bpy, no torch; scipy is the reference for rotations)."""
import math
import random

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ig_llm.scene import rotations
from ig_llm.scene.domain import load_domain
from ig_llm.scene.program import (ProgramError, Scene, format_program, parse, scene_from_clevr,
                                  scene_to_clevr)
from ig_llm.scene.task_program import DotObject, PoseObject
from ig_llm.training.data import task_sampler as ts
from ig_llm.training.eval.metrics import evaluate_scenes, scene_metrics

D2 = load_domain("2d")
SO3 = load_domain("so3")
REPS = tuple(rotations.REPRESENTATIONS)

# igllm.md, "Program formats of the other tasks": true rotation xyz = (0.3, -1.1, 2.0)
WORKED = {"euler": "(+0.300, -1.100, +2.000)", "euler_int": "(+0.984, +0.673, +1.815)",
          "aa": "(+1.280, -0.437, +1.910)", "6d": "(-0.189, -0.759, +0.623, +0.412, -0.637, -0.651)"}


def scipy_params(r: Rotation, rep: str) -> np.ndarray:
    return {"euler": lambda: r.as_euler("xyz"), "euler_int": lambda: r.as_euler("XYZ"),
            "aa": r.as_rotvec, "6d": lambda: r.as_matrix()[:2].ravel()}[rep]()


def scipy_matrix(p, rep: str) -> np.ndarray:
    if rep == "6d":
        rows = np.asarray(p).reshape(2, 3)
        return Rotation.from_matrix(np.vstack([rows, np.cross(rows[0], rows[1])])).as_matrix()
    return {"euler": lambda: Rotation.from_euler("xyz", p), "euler_int": lambda: Rotation.from_euler("XYZ", p),
            "aa": lambda: Rotation.from_rotvec(p)}[rep]().as_matrix()


# --------------------------------------------------------------------------------------- rotations
@pytest.mark.parametrize("rep", REPS)
def test_worked_example_program(rep):
    obj = PoseObject.from_euler("tripod", (0.3, -1.1, 2.0))
    text = format_program(Scene([obj]), "char", domain=load_domain(f"so3:{rep}"))
    assert text == f"add(shape='tripod', rotation={WORKED[rep]})"


@pytest.mark.parametrize("rep", REPS)
def test_conversions_match_scipy(rep):
    rng = np.random.default_rng(0)
    for r in Rotation.random(200, random_state=1):
        m = r.as_matrix()
        mine = np.array(rotations.to_params(m, rep))
        ref = scipy_params(r, rep)
        if rep == "aa" and abs(np.linalg.norm(ref) - math.pi) < 1e-6:
            continue   # at exactly pi, +axis and -axis are the same rotation
        np.testing.assert_allclose(mine, ref, atol=1e-9)
        np.testing.assert_allclose(rotations.from_params(mine, rep), m, atol=1e-9)
        # from arbitrary parameters (not only canonical ones) both agree on the matrix
        p = ref + (rng.normal(0, 0.05, ref.shape) if rep == "6d" else 0)
        np.testing.assert_allclose(rotations.from_params(p, rep), scipy_matrix(p, rep), atol=1e-9)


@pytest.mark.parametrize("rep", ["euler", "euler_int"])
@pytest.mark.parametrize("middle", [math.pi / 2, -math.pi / 2])
def test_euler_gimbal_lock_round_trips(rep, middle):
    m = scipy_matrix([0.4, middle, 0.9], rep)
    np.testing.assert_allclose(rotations.from_params(rotations.to_params(m, rep), rep), m, atol=1e-9)


def test_geodesic_matches_scipy():
    a, b = Rotation.random(2, random_state=3)
    ref = math.degrees((a * b.inv()).magnitude())
    assert rotations.geodesic_deg(a.as_matrix(), b.as_matrix()) == pytest.approx(ref, abs=1e-7)
    assert rotations.geodesic_deg(a.as_matrix(), a.as_matrix()) == pytest.approx(0.0, abs=1e-6)


def test_domain_suffix():
    assert load_domain("so3:6d").rotation == "6d" and load_domain("so3:6d").name == "so3:6d"
    assert SO3.rotation == "euler"
    with pytest.raises(FileNotFoundError, match="only pose domains"):
        load_domain("2d:aa")
    with pytest.raises(FileNotFoundError, match="one of euler"):
        load_domain("so3:quat")


# --------------------------------------------------------------------------------------- programs
def test_2d_program_round_trip():
    scene = Scene([DotObject(0.123, 0.456)])
    text = format_program(scene, "char", domain=D2)
    assert text == "add(x=0.123, y=0.456)"     # the paper's {:.3f}, no sign
    back = parse(text, domain=D2)
    assert back.objects == [DotObject(0.123, 0.456)]
    assert format_program(back, "char", domain=D2) == text
    ph, values = format_program(scene, "placeholder", domain=D2)
    assert ph == "add(x=<num>, y=<num>)" and values == [0.123, 0.456]
    assert parse(ph, domain=D2, numbers=values).objects == back.objects
    # y first (the paper shuffles attribute order), synonyms of form: same scene
    assert parse("add(y=0.456, x=0.123)", domain=D2).objects == back.objects
    orders = {format_program(scene, "char", domain=D2, rng=random.Random(s), shuffle_attributes=True)
              for s in range(20)}
    assert orders == {text, "add(y=0.456, x=0.123)"}


@pytest.mark.parametrize("rep", REPS)
def test_so3_program_round_trip(rep):
    domain = load_domain(f"so3:{rep}")
    rng = random.Random(7)
    for _ in range(20):
        obj = PoseObject("tripod", rotations.as_tuple(rotations.random_rotation(rng)))
        ph, values = format_program(Scene([obj]), "placeholder", domain=domain)
        assert ph == "add(shape='tripod', rotation=(" + ", ".join(["<num>"] * len(values)) + "))"
        back = parse(ph, domain=domain, numbers=values).objects[0]
        np.testing.assert_allclose(back.matrix, obj.matrix, atol=1e-9)   # exact through the head
        text = format_program(Scene([obj]), "char", domain=domain)
        again = parse(text, domain=domain).objects[0]
        assert rotations.geodesic_deg(again.matrix, obj.matrix) < 0.5   # 3 decimals
        retext = format_program(Scene([again]), "char", domain=domain)
        if rep == "6d":   # rounded rows are projected back onto SO(3): the last digit may move
            nums = lambda t: np.array([float(v) for v in t.split("=(")[1].rstrip(")").split(", ")])
            np.testing.assert_allclose(nums(retext), nums(text), atol=0.0021)
        else:
            assert retext == text


@pytest.mark.parametrize("text, domain, where", [
    ("add(x=0.1)", "2d", "missing y"),
    ("add(x=0.1, y=0.2, z=0.3)", "2d", "unknown attribute 'z'"),
    ("add(x=0.1, x=0.2)", "2d", "given twice"),
    ("add(x=0.1, y=9.0)", "2d", "out of range"),
    ("add(x=0.1, y=0.2)\nadd(x=0.3, y=0.4)", "2d", "more than 1 objects"),
    ("add(shape='tripod', rotation=(0.1, 0.2))", "so3", "has 3 numbers, found 2"),
    ("add(shape='tripod', rotation=(0.1, 0.2, 0.3))", "so3:6d", "has 6 numbers, found 3"),
    ("add(shape='cube', rotation=(0.1, 0.2, 0.3))", "so3", "unknown shape"),
    ("add(shape='tripod', rotation=(0.1, 0.2, 9.3))", "so3", "out of range"),
    ("add(shape='tripod', loc=(0, 0, 0))", "so3", "unknown attribute 'loc'"),
])
def test_task_parse_errors(text, domain, where):
    with pytest.raises(ProgramError, match=where) as info:
        parse(text, domain=load_domain(domain))
    assert info.value.line is not None or "objects" not in where


def test_records_round_trip():
    dot = Scene([DotObject(0.25, 0.75)])
    rec = scene_to_clevr(dot, image_filename="a.png")
    assert rec["objects"] == [{"shape": "dot", "x": 0.25, "y": 0.75}]
    assert scene_from_clevr(rec).objects == dot.objects
    pose = Scene([PoseObject.from_euler("tripod", (0.3, -1.1, 2.0))])
    rec = scene_to_clevr(pose, image_filename="b.png")
    np.testing.assert_allclose(rec["objects"][0]["rotation_xyz"], (0.3, -1.1, 2.0), atol=1e-12)
    np.testing.assert_allclose(scene_from_clevr(rec).objects[0].matrix, pose.objects[0].matrix, atol=1e-12)
    del rec["objects"][0]["rotation_matrix"]        # Euler angles alone are enough
    np.testing.assert_allclose(scene_from_clevr(rec).objects[0].matrix, pose.objects[0].matrix, atol=1e-12)


# --------------------------------------------------------------------------------------- samplers
def test_checkerboard_never_yields_a_held_out_cell():
    n = ts.grid_size(D2)
    assert n == 8
    seen = set()
    for i in range(3000):
        s = ts.sample_task_image(0, i, domain=D2, condition="checkerboard", split="train")
        d = s.scene.objects[0]
        assert 0 <= d.x < 1 and 0 <= d.y < 1
        cell = ts.cell_of(d.x, d.y, n)
        assert (cell[0] + cell[1]) % 2 == 0, (d, cell)
        seen.add(cell)
    assert len(seen) == n * n // 2            # every training cell is used
    for i in range(500):
        d = ts.sample_task_image(0, i, domain=D2, condition="heldout", split="heldout").scene.objects[0]
        assert not ts.is_training_point(d.x, d.y, n)
    pts = [ts.sample_task_image(0, i, domain=D2, condition="uniform", split="test").scene.objects[0]
           for i in range(2000)]
    share = sum(ts.is_training_point(d.x, d.y, n) for d in pts) / len(pts)
    assert 0.45 < share < 0.55                 # the test split covers both halves


def test_cell_edges():
    assert ts.cell_of(0.125, 0.0, 8) == (1, 0) and ts.cell_of(1.0, 1.0, 8) == (7, 7)
    assert ts.is_training_point(0.0, 0.0, 8) and not ts.is_training_point(0.13, 0.0, 8)


def test_so3_ood_never_overlaps_training():
    center, radius = ts.ood_center(SO3), ts.ood_radius_deg(SO3)
    assert radius == 60.0
    np.testing.assert_allclose(rotations.matrix_to_rotvec(center), [math.pi / 2 / math.sqrt(3)] * 3, atol=1e-4)
    train = [ts.sample_task_image(0, i, domain=SO3, condition="id", split="train").scene.objects[0]
             for i in range(1500)]
    ood = [ts.sample_task_image(0, i, domain=SO3, condition="ood", split="ood").scene.objects[0]
           for i in range(300)]
    d_train = [rotations.geodesic_deg(o.matrix, center) for o in train]
    d_ood = [rotations.geodesic_deg(o.matrix, center) for o in ood]
    assert min(d_train) >= radius > max(d_ood)
    assert not any(ts.is_ood_rotation(o.matrix, SO3) for o in train)
    assert all(ts.is_ood_rotation(o.matrix, SO3) for o in ood)
    # the OOD ball is (t - sin t) / pi of SO(3): about 5.8 % for 60 degrees
    rng = random.Random(5)
    share = sum(ts.is_ood_rotation(rotations.random_rotation(rng), SO3) for _ in range(4000)) / 4000
    t = math.radians(radius)
    assert share == pytest.approx((t - math.sin(t)) / math.pi, abs=0.015)


def test_samples_are_deterministic():
    a = ts.sample_task_image(3, 17, domain=SO3, condition="id", split="train").scene
    b = ts.sample_task_image(3, 17, domain=SO3, condition="id", split="train").scene
    c = ts.sample_task_image(3, 17, domain=SO3, condition="id", split="val").scene
    assert a.objects == b.objects and a.objects != c.objects


def test_unknown_condition():
    with pytest.raises(KeyError, match="known: checkerboard"):
        ts.sample_dot(random.Random(0), D2, "A")


# --------------------------------------------------------------------------------------- metrics
def test_metrics_2d_l2_in_canvas_units():
    m = scene_metrics(Scene([DotObject(0.1, 0.2)]), Scene([DotObject(0.4, 0.6)]))
    assert m["l2"] == pytest.approx(0.5) and m["count_acc"] == 1.0
    assert m["color_acc"] is None and m["rot_err_deg"] is None
    summary, _ = evaluate_scenes([Scene([DotObject(0.1, 0.2)]), Scene([DotObject(0.5, 0.5)])],
                                 [Scene([DotObject(0.1, 0.3)]), Scene([])])
    assert summary["l2"] == pytest.approx(0.1) and summary["scenes_l2"] == 1
    assert summary["ace"] == pytest.approx(0.5)


def test_metrics_so3_geodesic_degrees():
    t = PoseObject.from_euler("tripod", (0.3, -1.1, 2.0))
    p = PoseObject("tripod", rotations.as_tuple(np.asarray(t.matrix) @ rotations.rotvec_to_matrix((0, 0, math.radians(30)))))
    m = scene_metrics(Scene([t]), Scene([p]))
    assert m["rot_err_deg"] == pytest.approx(30.0) and m["shape_acc"] == 1.0 and m["l2"] is None
    # the official formula, written out
    r_t, r_p = np.asarray(t.matrix), np.asarray(p.matrix)
    assert m["rot_err_deg"] == pytest.approx(math.degrees(math.acos((np.trace(r_t @ r_p.T) - 1) / 2)))


# --------------------------------------------------------------------------------------- tokenizer + grammar
def _walk(domain_name: str, numbers: str, target: str, values=()):
    """Drive the constrained decoder along `target` as a model that always picks the true
    token would; head-mode values come in through store_number as the head would give them."""
    pytest.importorskip("tokenizers")
    from ig_llm.model.config import IGLLMConfig
    from ig_llm.model.grammar import ConstrainedSeq, ProgramGrammar, number_limits, store_number
    from ig_llm.model.tokenizer import ProgramTokenizer
    config = IGLLMConfig(domain=domain_name, numbers=numbers, max_objects=1)
    tok = ProgramTokenizer.build(domain_name)
    ids = tok.encode(target) + [tok.eos_id]
    assert tok.unk_id not in ids
    seq = ConstrainedSeq(ProgramGrammar(config, tok), 1, None)
    limits, vals, pos = number_limits(load_domain(domain_name)), iter(values), 0
    while True:
        for t, f in zip(seq.run, seq.run_fields):
            assert t == ids[pos], (tok.decode(ids[:pos + 1]), tok.decode([t]))
            pos += 1
            if f is not None:
                store_number(seq, f, next(vals) / config.num_scale(f), config, limits)
        seq.run, seq.run_fields = [], []
        if seq.done:
            break
        assert ids[pos] in seq.allowed, tok.decode(ids[:pos + 1])
        seq.choose(ids[pos])
    return seq.text_and_scene(config)


@pytest.mark.parametrize("domain_name", ["2d", "so3", "so3:euler_int", "so3:aa", "so3:6d"])
@pytest.mark.parametrize("numbers", ["char", "head"])
def test_grammar_writes_task_programs(domain_name, numbers):
    domain = load_domain(domain_name)
    obj = DotObject(0.123, 0.987) if domain.kind == "dot2d" else PoseObject.from_euler("tripod", (0.3, -1.1, 2.0))
    char = format_program(Scene([obj]), "char", domain=domain)
    if numbers == "char":
        text, scene = _walk(domain_name, "char", char)
    else:
        ph, values = format_program(Scene([obj]), "placeholder", domain=domain)
        text, scene = _walk(domain_name, "head", ph, values)
    assert text == char                       # the head's numbers are printed as the paper prints them
    assert len(scene.objects) == 1


def test_task_number_fields():
    from ig_llm.model.tokenizer import number_fields, split_pieces
    assert number_fields(split_pieces("add(y=0.456, x=0.123)")) == ["y", "x"]
    assert number_fields(split_pieces("add(shape='tripod', rotation=(<num>, <num>, <num>, <num>, <num>, <num>))")) \
        == [f"rotation{i}" for i in range(6)]
    assert number_fields(split_pieces("add(shape='cube', loc=(+1.000, -2.000, +0.700), rotation=-0.100)")) \
        == ["loc0", "loc1", "loc2", "rotation"]


def test_generic_world_is_uniform_and_never_the_task_look():
    """The 2d tower's generic samples: deterministic, anywhere on the canvas (both kinds of
    checkerboard cell), a visible disc of a random colour and radius."""
    looks = [ts.sample_task_image(0, i, domain=D2, condition="generic", split="generic") for i in range(400)]
    again = ts.sample_task_image(0, 7, domain=D2, condition="generic", split="generic")
    assert (again.style, again.scene.objects[0]) == (looks[7].style, looks[7].scene.objects[0])
    dots = [s.scene.objects[0] for s in looks]
    inside = sum(ts.is_training_point(p.x, p.y, 8) for p in dots)
    assert 120 < inside < 280                                  # about half in held-out cells
    for s in looks:
        st = s.style
        lo, hi = ts.GENERIC_RADIUS_PX
        assert lo <= st["dot_radius_px"] <= hi
        assert sum(abs(a - b) for a, b in zip(st["dot_rgb"], st["background_rgb"])) >= ts.MIN_CONTRAST
        assert all(0 <= c <= 255 for c in (*st["dot_rgb"], *st["background_rgb"]))
    assert len({tuple(s.style["dot_rgb"]) for s in looks}) > 390
    assert ts.sample_task_image(0, 0, domain=D2, condition="uniform", split="test").style is None
