"""Asset kits (issue #24): the kit.toml parser's refusals (one sentence naming the file and
the line), the built-in kits (`clevr` is CLEVR's domain field for field; `toys` is made of
Blender's primitives), and how a kit reaches the sampler, tokenizer, grammar, metrics and
the model config. Pure Python: no bpy, no torch (tests/test_kits_bpy.py renders and builds)."""
import dataclasses
import re
import textwrap

import pytest

from ig_llm.scene.domain import kit_domain, load_domain
from ig_llm.scene.kits import (BUILTIN_KITS, KitError, KitNotFound, find_kit, load_kit, packing_bound,
                               parse_kit)

GOOD = """\
[kit]
name = "mini"
rotation = "yaw"

[shapes]
box = { primitive = "cube", synonyms = ["block"] }
ring = "torus"

[colors]
red = [200, 40, 40]
blue = { rgb = [40, 80, 210] }

[materials]
rubber = "rubber"

[sizes]
large = 0.7
small = { scale = 0.35 }

[scene]
objects = [2, 4]
"""


def write_kit(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kit.toml").write_text(textwrap.dedent(text))
    return folder


def refusal(folder) -> str:
    with pytest.raises(KitError) as info:
        parse_kit(folder, check_assets=True)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg     # one sentence
    assert str(folder / "kit.toml") in msg, msg
    return msg


def line_of(msg: str) -> int:
    return int(re.search(r"kit\.toml, line (\d+):", msg).group(1))


# ---------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------
def test_a_good_kit_parses(tmp_path):
    kit = parse_kit(write_kit(tmp_path / "mini", GOOD))
    d = kit_domain(kit)
    assert d.kind == "clevr" and d.name == "mini" and d.kit is kit
    assert d.values("shape") == ("box", "ring") and d.all_words("shape") == ("box", "block", "ring")
    assert d.has_rotation("box") and not d.has_rotation("ring")
    assert d.scale("small") == 0.35 and d.rgb("red") == (200 / 255, 40 / 255, 40 / 255)
    assert d.max_objects == 4 and kit.rules.min_objects == 2
    assert d.conditions == {"none": {}} and d.default_condition == "none"
    assert kit.shapes["ring"].primitive == "torus" and kit.materials["rubber"].builtin == "rubber"
    assert len(kit.sha256) == 64
    # the content hash follows the bytes of kit.toml
    (tmp_path / "mini" / "kit.toml").write_text(GOOD + "\n# a comment\n")
    assert parse_kit(tmp_path / "mini").sha256 != kit.sha256


@pytest.mark.parametrize("edit, line, words", [
    # an unknown key, in a table and at the top
    (lambda t: t.replace('rotation = "yaw"', 'rotation = "yaw"\ncolour = "red"'), 4, ["unknown key kit.colour"]),
    (lambda t: t + "\n[lights]\nkey = 1\n", 23, ["unknown table or key 'lights'"]),
    (lambda t: t.replace('ring = "torus"', 'ring = { primitive = "torus", spin = 3 }'), 7, ["shapes.ring.spin"]),
    # a duplicate word: a synonym that is another word, and a word twice in one table
    (lambda t: t.replace('blue = { rgb = [40, 80, 210] }', 'blue = { rgb = [40, 80, 210], synonyms = ["red"] }'),
     11, ["'red' is used twice"]),
    (lambda t: t.replace('ring = "torus"', 'ring = "torus"\nbox = "sphere"'), 8, ["written twice"]),
    (lambda t: t.replace('small = { scale = 0.35 }', 'small = { scale = 0.35, synonyms = ["box"] }'),
     18, ["'box' is used twice"]),
    # an empty shape list, and none at all
    (lambda t: re.sub(r"\[shapes\]\n.*?\n.*?\n", "[shapes]\n", t), 5, ["[shapes] is empty"]),
    (lambda t: re.sub(r"\[shapes\]\n.*?\n.*?\n", "", t), 1, ["no shapes"]),
    # a count range the ground cannot hold, and a backwards one
    (lambda t: t.replace("objects = [2, 4]", "objects = [2, 200]"), 21, ["impossible", "at most"]),
    (lambda t: t.replace("objects = [2, 4]", "objects = [2, 40]\nground = 1.0"), 21, ["impossible"]),
    (lambda t: t.replace("objects = [2, 4]", "objects = [5, 4]"), 21, ["1 <= min <= max"]),
    # other strict checks
    (lambda t: t.replace('ring = "torus"', 'ring = "teapot"'), 7, ["not a built-in primitive"]),
    (lambda t: t.replace('rubber = "rubber"', 'rubber = "velvet"'), 14, ["not a built-in material"]),
    (lambda t: t.replace("red = [200, 40, 40]", "red = [300, 40, 40]"), 10, ["0..255"]),
    (lambda t: t.replace('rotation = "yaw"', 'rotation = "free"'), 3, ["three angles"]),
    (lambda t: t.replace('rotation = "yaw"', 'rotation = "spin"'), 3, ["not one of none, yaw, free"]),
    (lambda t: t.replace("large = 0.7", "Large = 0.7"), 17, ["not a program word"]),
    (lambda t: t + '\n[heldout]\npairs = [["ring", "red"], ["ring", "blue"]]\n', 24, ["every colour of shape ring"]),
    (lambda t: t + '\n[heldout]\npairs = [["ring", "green"]]\n', 24, ["not a [shape, colour] pair"]),
    (lambda t: t + '\n[conditions]\nA = { ring = ["green"] }\n', 24, ["not a non-empty list"]),
    (lambda t: t.replace('ring = "torus"', 'ring = { object = "Ring" }'), 7, ["names object 'Ring'", "has none"]),
], ids=["unknown-key", "unknown-table", "unknown-shape-key", "synonym-twice", "word-twice-in-table",
        "synonym-of-other-attribute", "empty-shapes", "no-shapes", "count-impossible", "count-small-ground",
        "count-backwards", "unknown-primitive", "unknown-material", "rgb-range", "free-rotation", "bad-rotation",
        "bad-word", "heldout-all-colours", "heldout-unknown", "condition-unknown-colour", "blend-missing"])
def test_malformed_kits_are_refused_in_one_sentence_naming_the_line(tmp_path, edit, line, words):
    folder = write_kit(tmp_path / "mini", edit(GOOD))
    msg = refusal(folder)
    for w in words:
        assert w in msg, msg
    assert line_of(msg) == line, msg
    text_line = (folder / "kit.toml").read_text().splitlines()[line - 1] if line > 1 else ""
    assert line == 1 or text_line.strip(), msg


def test_packing_bound_is_a_real_bound():
    # CLEVR: 10 objects of 0.35 on ±3 with 0.25 between them is far inside the bound
    assert packing_bound(3.0, 0.35, 0.25) > 30
    # one disc always fits; a ground of ±1 cannot hold 40 discs of radius 0.35
    assert packing_bound(0.0, 0.35, 0.25) >= 1 and packing_bound(1.0, 0.35, 0.25) < 40


def test_a_missing_kit_is_one_sentence(tmp_path):
    with pytest.raises(KitNotFound) as info:
        load_kit("no_such_kit")
    assert "no_such_kit" in str(info.value) and "known kits" in str(info.value) and "toys" in str(info.value)
    with pytest.raises(FileNotFoundError):       # load_domain keeps its error type
        load_domain(str(tmp_path / "nothing"))


def test_kits_are_found_by_name_in_the_kit_folders(tmp_path, monkeypatch):
    write_kit(tmp_path / "kits" / "mini", GOOD)
    assert find_kit("mini") is None
    monkeypatch.setenv("IG_LLM_KITS", str(tmp_path / "kits"))
    assert find_kit("mini") == (tmp_path / "kits" / "mini" / "kit.toml").resolve()
    assert load_domain("mini").values("shape") == ("box", "ring")
    monkeypatch.delenv("IG_LLM_KITS")
    monkeypatch.setenv("IG_LLM_HOME", str(tmp_path))      # the data home's kits/ folder
    assert load_domain("mini").name == "mini"
    assert load_domain(str(tmp_path / "kits" / "mini")).name == "mini"      # and by path


# ---------------------------------------------------------------------------------------
# the built-in kits
# ---------------------------------------------------------------------------------------
def test_clevr_kit_is_clevrs_domain_field_for_field():
    kit, clevr = load_kit("clevr"), load_domain("clevr")
    for f in dataclasses.fields(clevr):
        if f.compare:
            assert getattr(kit_domain(kit), f.name) == getattr(clevr, f.name), f.name
    assert kit_domain(kit) == clevr
    assert [s.primitive for s in kit.shapes.values()] == ["rounded_cube", "uv_sphere", "bevelled_cylinder"]
    assert kit.rules.min_objects == 3 and kit.rules.max_objects == 10 and kit.rules.ground == 3.0
    assert kit.rules.min_distance == 0.25 and kit.rules.margin == 0.4 and kit.rules.min_pixels == 200
    assert clevr.kit is None                   # load_domain("clevr") is still the JSON domain


def test_toys_kit_meets_the_issue():
    kit = load_kit("toys")
    d = kit_domain(kit)
    prims = {s.primitive for s in kit.shapes.values()}
    assert len(d.values("shape")) >= 6 and {"torus", "suzanne"} <= prims
    assert not kit.uses_blend and kit.blend is None                 # Blender's primitives only
    assert len(d.values("color")) >= 10 and len(d.values("material")) >= 3
    assert kit.rotation == "yaw" and d.has_rotation("cube") and d.has_rotation("monkey")
    assert kit.heldout and d.default_condition == "train"
    for shape, colour in kit.heldout:
        assert colour not in d.allowed_colors(shape, "train")
        assert d.allowed_colors(shape, "heldout") == (colour,)
        assert any(colour in d.allowed_colors(s, "train") for s in d.values("shape"))   # the colour is seen


def test_builtin_kits_all_parse():
    names = sorted(p.parent.name for p in BUILTIN_KITS.glob("*/kit.toml"))
    assert {"clevr", "toys"} <= set(names)
    for name in names:
        assert load_kit(name).name == name


# ---------------------------------------------------------------------------------------
# every part reads the kit
# ---------------------------------------------------------------------------------------
def test_clevr_kit_samples_and_speaks_exactly_as_clevr():
    from ig_llm.model.tokenizer import domain_pieces
    from ig_llm.scene.program import format_program
    from ig_llm.training.data.sampler import sample_image
    kit = kit_domain(load_kit("clevr"))
    for i in range(30):
        for cond in ("A", "B"):
            a, b = sample_image(5, i, condition=cond), sample_image(5, i, condition=cond, domain=kit)
            assert a.scene == b.scene and a.jitter == b.jitter
            assert format_program(a.scene, domain=load_domain("clevr")) == format_program(b.scene, domain=kit)
    assert domain_pieces("clevr") == domain_pieces(str(BUILTIN_KITS / "clevr"))


def test_the_sampler_follows_the_kits_rules(tmp_path):
    from ig_llm.training.data.sampler import default_min_pixels, sample_image
    text = GOOD.replace("objects = [2, 4]", "objects = [2, 4]\nground = 1.5\nmin_pixels = 50") \
        .replace('rotation = "yaw"', 'rotation = "none"')
    d = kit_domain(parse_kit(write_kit(tmp_path / "mini", text)))
    counts = set()
    for i in range(40):
        s = sample_image(1, i, condition="none", domain=d).scene
        counts.add(len(s.objects))
        assert all(abs(o.loc[0]) <= 1.5 and abs(o.loc[1]) <= 1.5 and o.rotation == 0.0 for o in s.objects)
        assert {o.shape for o in s.objects} <= {"box", "ring"}
    assert counts == {2, 3, 4}
    assert not d.has_rotation("box")                          # rotation "none": no rotation= written
    assert default_min_pixels(480, 320, d.kit.rules.min_pixels) == 50


def test_tokenizer_grammar_and_config_take_the_kits_words(tmp_path, monkeypatch):
    from ig_llm.model.config import IGLLMConfig
    from ig_llm.model.grammar import ProgramGrammar
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.training.stages.model_config import record_kit
    tok = ProgramTokenizer.build("toys")
    vocab = tok.backend.get_vocab()
    assert "'monkey'" in vocab and "'torus'" in vocab and "'plastic'" in vocab and "'cylinder'" in vocab
    config = record_kit(IGLLMConfig(domain="toys"))
    assert config.domain == "toys" and config.max_objects == 8
    assert config.kit == {"name": "toys", "sha256": load_kit("toys").sha256,
                          "vocabulary": load_kit("toys").vocabulary}
    grammar = ProgramGrammar(config, tok)
    assert grammar.words["shape"] == tuple(f"'{w}'" for w in load_domain("toys").values("shape"))
    # a kit found only by its folder is recorded by its folder; the JSON domains record no kit
    folder = write_kit(tmp_path / "mini", GOOD)
    assert record_kit(IGLLMConfig(domain=str(folder))).domain == str(folder.resolve())
    assert record_kit(IGLLMConfig(domain="clevr")).kit is None
    assert IGLLMConfig.from_dict(config.to_dict()).kit == config.kit


def test_metrics_use_the_kits_lists():
    import math

    from ig_llm.scene.program import Scene, SceneObject
    from ig_llm.training.eval.metrics import scene_metrics
    d = load_domain("toys")
    true = Scene([SceneObject("sphere", "red", "metal", "large", (0, 0, 0.7), 0.0),
                  SceneObject("monkey", "red", "metal", "large", (2, 0, 0.7), math.radians(170)),
                  SceneObject("gem", "red", "metal", "large", (-2, 0, 0.7), math.radians(10))])
    pred = Scene([SceneObject("cube", "red", "metal", "large", (0, 0, 0.7), 0.0),
                  SceneObject("monkey", "red", "metal", "large", (2, 0, 0.7), math.radians(-170)),
                  SceneObject("gem", "red", "metal", "large", (-2, 0, 0.7), math.radians(125))])
    m = scene_metrics(true, pred, d)
    assert m["shape_acc"] == pytest.approx(2 / 3)             # the sphere counts in a kit (not in CLEVR)
    # monkey: 340 degrees apart = 20 on a 360 period; gem: 115 apart = 5 on its 120 period
    assert m["yaw_err_deg"] == pytest.approx((20 + 5) / 2)
    assert scene_metrics(true, pred)["shape_acc"] == 1.0      # CLEVR's rule leaves spheres out


def test_records_of_a_kit_are_read_in_its_words(tmp_path):
    from ig_llm.scene.program import ProgramError, scene_from_clevr
    rec = {"objects": [{"shape": "ring", "color": "red", "material": "rubber", "size": "large",
                        "3d_coords": [0, 0, 0.7], "rotation": 0.0}]}
    with pytest.raises(ProgramError):
        scene_from_clevr(rec)                                  # CLEVR has no ring
    rec["domain"] = "toys"
    assert scene_from_clevr(rec).objects[0].shape == "torus"   # a synonym of the toys' torus


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('rotation = "yaw"', 'rotation = "yaw"\ncolour = "red"'),
    lambda t: t.replace('ring = "torus"', 'ring = "torus"\nring = "sphere"'),
    lambda t: t.replace('blue = { rgb = [40, 80, 210] }', 'blue = { rgb = [40, 80, 210], synonyms = ["red"] }'),
    lambda t: re.sub(r"\[shapes\]\n.*?\n.*?\n", "[shapes]\n", t),
    lambda t: t.replace("objects = [2, 4]", "objects = [2, 4]\nground = 0.4"),
], ids=["unknown-key", "duplicate-word", "duplicate-synonym", "empty-shapes", "impossible-count"])
def test_generate_refuses_a_malformed_kit_with_nothing_written(tmp_path, capsys, edit):
    from ig_llm.cli import main as cli_main
    folder = write_kit(tmp_path / "mini", edit(GOOD))
    out = tmp_path / "out"
    assert cli_main(["generate", "--kit", str(folder), "--count", "2", "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder / "kit.toml") + ", line " in err, err
    assert not out.exists()
    before = sorted(p.name for p in folder.iterdir())
    assert before == ["kit.toml"]                              # the kit folder is left as it was


def test_recipes_take_kit_datasets(tmp_path):
    from ig_llm.training.recipe import RecipeError, Runtime, RunPlaces, load_recipe, plan
    text = textwrap.dedent("""\
        [recipe]
        name = "toys-mini"
        [datasets.toys_train]
        role = "train"
        domain = "toys"
        condition = "train"
        seed = 1
        count = 4
        [datasets.toys_heldout]
        role = "eval"
        domain = "toys"
        condition = "heldout"
        seed = 2
        count = 2
        [evaluate]
        sets = ["toys_heldout"]
        """)
    path = tmp_path / "r.toml"
    path.write_text(text)
    steps = plan(load_recipe(path), RunPlaces(tmp_path, "toys-mini"), Runtime())
    render = steps[0].argv
    assert render[render.index("--domain") + 1] == "toys" and render[render.index("--split") + 1] == "train"
    for step in steps[2:4]:                                    # both stages learn the kit's words
        assert "domain=toys" in step.argv
    path.write_text(text.replace('condition = "train"', 'condition = "heldout"', 1))
    with pytest.raises(RecipeError, match="only ever read condition train"):
        load_recipe(path)
