"""Scene program: parse/format round trips, accepted variations, and malformed programs.

Pure Python (no bpy, no torch)."""
import math
import random

import pytest

from ig_llm.scene.domain import load_domain
from ig_llm.scene.program import (NUM_TOKEN, ProgramError, Scene, SceneObject, format_program, parse,
                                  sort_left_to_right)

DOMAIN = load_domain()
GOOD = "add(shape='cube', color='red', material='metal', size='large', loc=(1.0, 2.0, 0.7), rotation=0.1)"
OBJ = "add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7)"  # no closing ')'


def random_scene(rng: random.Random, n: int | None = None) -> Scene:
    objs = []
    for _ in range(n or rng.randint(1, DOMAIN.max_objects)):
        shape = rng.choice(DOMAIN.values("shape"))
        size = rng.choice(DOMAIN.values("size"))
        yaw = rng.uniform(-math.pi / 4, math.pi / 4) if DOMAIN.has_rotation(shape) else 0.0
        objs.append(SceneObject(shape, rng.choice(DOMAIN.values("color")), rng.choice(DOMAIN.values("material")),
                                size, (rng.uniform(-3, 3), rng.uniform(-3, 3), DOMAIN.scale(size)), yaw))
    return Scene(objs)


def assert_same(a: list, b: list, tol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.shape, x.color, x.material, x.size) == (y.shape, y.color, y.material, y.size)
        assert all(abs(p - q) <= tol for p, q in zip(x.loc, y.loc)), (x.loc, y.loc)
        assert abs(DOMAIN.fold_yaw(x.shape, x.rotation) - y.rotation) <= tol


# --------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("seed", range(40))
def test_round_trip_char_numbers(seed):
    rng = random.Random(seed)
    scene = random_scene(rng)
    text = format_program(scene, "char")
    assert text.count("add(") == len(scene)
    back = parse(text)
    assert_same(sort_left_to_right(scene.objects), back.objects, tol=5e-4 + 1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_round_trip_placeholder_numbers(seed):
    rng = random.Random(1000 + seed)
    scene = random_scene(rng)
    text, values = format_program(scene, "placeholder")
    assert text.count(NUM_TOKEN) == len(values)
    assert not any(ch.isdigit() for ch in text)
    back = parse(text, numbers=values)
    assert_same(sort_left_to_right(scene.objects), back.objects, tol=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_with_synonyms_and_shuffled_attributes(seed):
    rng = random.Random(2000 + seed)
    scene = random_scene(rng)
    for numbers in ("char", "placeholder"):
        out = format_program(scene, numbers, rng=random.Random(seed), shuffle_attributes=True)
        text, values = out if numbers == "placeholder" else (out, None)
        back = parse(text, numbers=values)
        assert_same(sort_left_to_right(scene.objects), back.objects, tol=5e-4 + 1e-9)


def test_format_is_left_to_right_and_cubes_only_have_rotation():
    scene = Scene([SceneObject("sphere", "red", "rubber", "small", (0, 3, 0.35)),
                   SceneObject("cube", "blue", "metal", "large", (0, -3, 0.7), 0.2)])
    lines = format_program(scene).splitlines()
    # camera at (+x, -y) looking at the origin: its right axis is (0.65, 0.75, 0), so -y is left
    assert lines[0].startswith("add(shape='cube'") and lines[0].endswith("rotation=+0.200)")
    assert lines[1].startswith("add(shape='sphere'") and "rotation" not in lines[1]


def test_cube_yaw_is_folded():
    scene = Scene([SceneObject("cube", "blue", "metal", "large", (0, 0, 0.7), math.pi / 2 + 0.1)])
    assert parse(format_program(scene)).objects[0].rotation == pytest.approx(0.1, abs=5e-4)


# --------------------------------------------------------------------------------------- accepted variations
def test_synonyms_map_to_canonical_names():
    obj = parse("add(shape='block', color='grey', material='shiny', size='big', loc=(0, 0, 0.7))").objects[0]
    assert (obj.shape, obj.color, obj.material, obj.size) == ("cube", "gray", "metal", "large")
    obj = parse("add(shape='ball', color='RED', material='matte', size='tiny', loc=(0, 0, 0.35))").objects[0]
    assert (obj.shape, obj.color, obj.material, obj.size) == ("sphere", "red", "rubber", "small")


def test_double_quotes_fences_comments_blank_lines():
    text = ('```python\n# a comment\n\n'
            'add(shape="cube", color="red", material="metal", size="large", loc=(1.0, 2.0, 0.7), rotation=0.1)\n'
            "add(shape='sphere', color='blue', material='rubber', size='small', loc=(-1, -2, 0.35),)\n"
            "```\n")
    scene = parse(text)
    assert [o.shape for o in scene.objects] == ["cube", "sphere"]
    assert scene.objects[0].loc == (1.0, 2.0, 0.7) and scene.objects[0].rotation == 0.1


def test_any_attribute_order():
    a = parse(GOOD).objects[0]
    b = parse("add(rotation=0.1, loc=(1.0, 2.0, 0.7), size='large', material='metal', color='red', shape='cube')").objects[0]
    assert a == b


def test_rotation_tuple_takes_the_z_component():
    text = "add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), rotation=(0, 0, 0.3))"
    assert parse(text).objects[0].rotation == 0.3


def test_placeholder_values_taken_in_order():
    text = f"add(shape='cube', color='red', material='metal', size='large', loc=({NUM_TOKEN}, {NUM_TOKEN}, {NUM_TOKEN}), rotation={NUM_TOKEN})"
    obj = parse(text, numbers=[1.5, -2.0, 0.7, 0.25]).objects[0]
    assert obj.loc == (1.5, -2.0, 0.7) and obj.rotation == 0.25


# --------------------------------------------------------------------------------------- malformed programs
# (program, line, column, fragment of the message saying what was expected / wrong)
MALFORMED = [
    ("ad(shape='cube')", 1, 1, "expected 'add'"),
    ("add shape='cube'", 1, 5, "expected '(' after add"),
    ("add(shape='cube' color='red')", 1, 18, "expected ',' or ')'"),
    (OBJ, 1, 79, "expected ',' or ')', found end of line"),
    ("add(shap='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 5,
     "unknown attribute 'shap' (expected one of shape"),
    ("add(shape='cube', shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 19,
     "attribute 'shape' given twice"),
    ("add(shape='pyramid', color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 11,
     "unknown shape 'pyramid' (expected one of cube"),
    ("add(shape='cube', color='pink', material='metal', size='large', loc=(1, 2, 0.7))", 1, 25,
     "unknown color 'pink' (expected one of gray"),
    ("add(shape='cube', color='red', material='wood', size='large', loc=(1, 2, 0.7))", 1, 41,
     "unknown material 'wood' (expected one of rubber"),
    ("add(shape='cube', color='red', material='metal', size='huge', loc=(1, 2, 0.7))", 1, 55,
     "unknown size 'huge' (expected one of large"),
    ("add(shape=cube, color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 11,
     "expected a quoted shape name, found 'cube'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2))", 1, 74,
     "expected 3 numbers in the tuple, found 2"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7, 4))", 1, 80,
     "at most 3 numbers"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=1.0)", 1, 68,
     "expected '(' to start a tuple, found '1.0'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 'a'))", 1, 75,
     "expected a number"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 99))", 1, 75,
     "out of range (|value| <= 20)"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 1e9))", 1, 75,
     "out of range (|value| <= 20)"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, nan))", 1, 75,
     "expected a number, found 'nan'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), rotation=9)", 1, 90,
     "out of range (|value| <= 6.2832)"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), rotation=)", 1, 90,
     "expected a number, found ')'"),
    ("add(shape='cube', color='red', material='metal', size='large')", 1, 1, "missing loc"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7)) extra", 1, 81,
     "expected end of line after ')', found 'extra'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7));", 1, 80,
     "unexpected character ';'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1 2 0.7))", 1, 71,
     "expected ',' or ')' in the tuple, found '2'"),
    ("add(shape='cube', color='red\", material='metal', size='large', loc=(1, 2, 0.7))", 1, 61,
     "unexpected character"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), rotation=<num>)", 1, 90,
     "<num> placeholder but no numeric values were given"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), color='blue')", 1, 81,
     "attribute 'color' given twice"),
    ("add(shape 'cube', color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 11,
     "expected '=' after shape"),
    ("add(shape='cube',, color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 18,
     "expected an attribute name, found ','"),
    ("add(, shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7))", 1, 5,
     "expected an attribute name"),
    ("__import__('os').system('ls')", 1, 17, "unexpected character '.'"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=[1, 2, 0.7])", 1, 68,
     "unexpected character '['"),
    ("add(shape='cube', color='red', material='metal', size='large', loc=(1, 2, 0.7), rotation=(1, 2, 3, 4))",
     1, 100, "at most 3 numbers"),
    (GOOD + "\n\n" + OBJ, 3, 79, "expected ',' or ')', found end of line"),
    ("\n".join([GOOD] * 11), 11, 1, "more than 10 objects"),
]


def test_enough_distinct_malformed_cases():
    assert len({case[0] for case in MALFORMED}) >= 25


@pytest.mark.parametrize("text,line,column,fragment", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_program_raises_with_position(text, line, column, fragment):
    with pytest.raises(ProgramError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column)
    message = str(err)
    assert f"line {line}, column {column}" in message
    assert fragment in message
    assert "expected" in message  # every message says what was expected


def test_placeholder_count_mismatch():
    text = f"add(shape='sphere', color='red', material='metal', size='large', loc=({NUM_TOKEN}, {NUM_TOKEN}, {NUM_TOKEN}))"
    with pytest.raises(ProgramError, match="more <num> placeholders than numeric values"):
        parse(text, numbers=[1.0, 2.0])
    with pytest.raises(ProgramError, match="left over"):
        parse(text, numbers=[1.0, 2.0, 0.7, 5.0])


def test_non_text_is_rejected():
    with pytest.raises(ProgramError, match="must be text"):
        parse(None)
