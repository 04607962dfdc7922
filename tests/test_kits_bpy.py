"""Asset kits with bpy (issue #24): `generate --kit toys` renders per-pixel truth in the kit's
words; a malformed kit (one whose .blend lacks an object) is refused before anything is
written; the builder places the kit's primitives and a .blend's own meshes, editable; and a
user's kit runs end to end: a test-made .blend (a bevelled box, a lathe vase and a Suzanne
named "Teapot"), 20 renders, a few training steps, predict, build — and a model whose kit is
gone is refused in one sentence."""
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from ig_llm.cli import main as cli_main                       # noqa: E402
from ig_llm.scene.domain import load_domain                  # noqa: E402
from ig_llm.scene.kits import load_kit                       # noqa: E402
from ig_llm.scene.program import parse, scene_from_clevr     # noqa: E402

TINY_RENDER = ["--size", "96x64", "--samples", "2", "--bounces", "1", "--workers", "1", "--no-progress"]
TINY_MODEL = ["--set", "image_size=96", "--set", "image_height=64", "--set", "conv_channels=[8,8,16,16,16]",
              "--set", "lm_hidden=64", "--set", "lm_layers=2", "--set", "lm_intermediate=128",
              "--set", "storage_dtype=float32"]


def _one_sentence(text: str) -> str:
    line = text.strip().splitlines()[-1]
    assert len(text.strip().splitlines()) == 1, text
    return line


# ---------------------------------------------------------------------------------------
# toys: the built-in kit of Blender's primitives
# ---------------------------------------------------------------------------------------
def test_generate_toys_renders_per_pixel_truth_in_the_kits_words(tmp_path, capsys):
    out = tmp_path / "toys"
    assert cli_main(["generate", "--kit", "toys", "--count", "3", "--out", str(out), *TINY_RENDER]) == 0
    kit, domain = load_kit("toys"), load_domain("toys")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["domain"] == "toys" and manifest["condition"] == "train" and manifest["split"] == "train"
    assert manifest["kit"] == {"name": "toys", "sha256": kit.sha256}
    scenes = json.loads((out / "scenes.json").read_text())
    assert scenes["info"]["kit"]["name"] == "toys" and len(scenes["scenes"]) == 3
    for rec in scenes["scenes"]:
        assert rec["domain"] == "toys"
        scene = scene_from_clevr(rec)                      # read in the kit's words
        assert 3 <= len(scene.objects) <= 8
        assert parse(rec["program"], domain=domain).objects[0].shape in domain.values("shape")
        for o in scene.objects:
            assert (o.shape, o.color) not in kit.heldout            # training never sees a held-out pair
        with np.load(out / "index" / rec["image_filename"].replace(".png", ".npz")) as z:
            index = z["index"]
        assert index.shape == (64, 96) and set(np.unique(index)) == set(range(len(scene.objects) + 1))
    capsys.readouterr()
    # the held-out split: each listed shape only in its held-out colour
    held = tmp_path / "held"
    assert cli_main(["generate", "--kit", "toys", "--condition", "heldout", "--count", "2", "--out", str(held),
                     *TINY_RENDER]) == 0
    for rec in json.loads((held / "scenes.json").read_text())["scenes"]:
        for o in scene_from_clevr(rec).objects:
            assert o.color in domain.allowed_colors(o.shape, "heldout")
    capsys.readouterr()

    # stage 1's dense heads follow the kit: a class per shape, material and size word
    pytest.importorskip("torch")
    from safetensors.numpy import load_file
    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(out), "--out", str(run), "--stage", "1", "--stage1-steps", "2",
                     "--stage1-batch-size", "2", "--threads", "1", "--quiet", "--workers", "0",
                     "--set", "domain=\"toys\"", *TINY_MODEL]) == 0
    heads = load_file(str(run / "stage1" / "heads.safetensors"))
    weight = next(v for k, v in heads.items() if k.endswith("weight"))
    assert weight.shape[0] == 1 + 7 + 3 + 2 + 3 + 2 + 2      # heat, 7 shapes, 3 materials, 2 sizes, ...


def test_the_builder_places_the_toys_primitives_editable():
    from ig_llm.scene.builder import build_scene
    from ig_llm.scene.program import Scene, SceneObject
    bpy.ops.wm.read_factory_settings(use_empty=True)
    domain = load_domain("toys")
    shapes = domain.values("shape")
    scene = Scene([SceneObject(s, "red", m, "large", (i - 3.0, 0.0, 0.7), 0.3)
                   for i, (s, m) in enumerate(zip(shapes, ["rubber", "metal", "plastic"] * 3))])
    col = build_scene(scene, collection_name="Toys", domain=domain, editable=True)
    objs = sorted(col.objects, key=lambda o: o.pass_index)
    assert [o.name for o in objs] == [f"Toys {s} {i + 1}" for i, s in enumerate(shapes)]
    verts = [len(o.data.vertices) for o in objs]
    assert len(set(verts)) == len(verts)                     # seven different meshes
    for o in objs:
        assert o.data.users == 1 and tuple(o.scale) == (1.0, 1.0, 1.0)      # own mesh, size applied
        zs = [v.co.z for v in o.data.vertices]
        assert min(zs) == pytest.approx(-0.7, abs=1e-4)      # stands on the floor at z = size
        assert max(abs(c) for v in o.data.vertices for c in v.co) <= 0.7 + 1e-4
        assert any(n.type == "BSDF_PRINCIPLED" for n in o.data.materials[0].node_tree.nodes)
    assert objs[2].data.materials[0].roughness == pytest.approx(0.15)      # plastic


# ---------------------------------------------------------------------------------------
# a user's kit: a .blend of their own objects
# ---------------------------------------------------------------------------------------
def make_user_kit(folder: Path, teapot: str = "Teapot") -> Path:
    """A .blend with a bevelled box, a lathe-made vase, a Suzanne named `teapot` and a
    material "Glaze", plus its kit.toml (made here with bpy, no operators)."""
    import bmesh
    folder.mkdir(parents=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    coll = bpy.context.scene.collection

    bm = bmesh.new()                                   # a box with a bevel modifier (applied on import)
    bmesh.ops.create_cube(bm, size=1.0)
    bm.verts.ensure_lookup_table()
    for v in bm.verts:
        v.co.x *= 1.6
    me = bpy.data.meshes.new("BoxMesh")
    bm.to_mesh(me)
    bm.free()
    box = bpy.data.objects.new("Box", me)
    mod = box.modifiers.new("Bevel", "BEVEL")
    mod.width, mod.segments = 0.1, 3
    coll.objects.link(box)

    bm = bmesh.new()                                   # a vase: a profile spun about Z (a lathe)
    profile = [(0.0, 0.0), (0.5, 0.0), (0.7, 0.5), (0.45, 1.2), (0.3, 1.5), (0.4, 1.8)]
    verts = [bm.verts.new((r, 0.0, z)) for r, z in profile]
    edges = [bm.edges.new((a, b)) for a, b in zip(verts, verts[1:])]
    bmesh.ops.spin(bm, geom=verts + edges, cent=(0, 0, 0), axis=(0, 0, 1), angle=2 * math.pi, steps=24,
                   use_duplicate=False)
    bmesh.ops.remove_doubles(bm, verts=bm.verts[:], dist=1e-5)
    me = bpy.data.meshes.new("VaseMesh")
    bm.to_mesh(me)
    bm.free()
    vase = bpy.data.objects.new("Vase", me)
    vase.location = (3.0, 1.0, 0.0)                    # where it sits in the user's file does not matter
    coll.objects.link(vase)

    bm = bmesh.new()
    bmesh.ops.create_monkey(bm)
    me = bpy.data.meshes.new("MonkeyMesh")
    bm.to_mesh(me)
    bm.free()
    monkey = bpy.data.objects.new(teapot, me)
    coll.objects.link(monkey)

    glaze = bpy.data.materials.new("Glaze")
    glaze.use_nodes = True
    glaze.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.05
    glaze.use_fake_user = True
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "pottery.blend"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    (folder / "kit.toml").write_text(textwrap.dedent("""\
        [kit]
        name = "pottery"
        rotation = "yaw"

        [shapes]
        box = { object = "Box", symmetry = 180 }
        vase = { object = "Vase", symmetry = 0 }
        teapot = { object = "Teapot" }

        [colors]
        red = [200, 40, 40]
        blue = [40, 80, 210]
        cream = [235, 225, 190]

        [materials]
        clay = "rubber"
        glaze = { material = "Glaze" }

        [sizes]
        large = 0.7
        small = 0.4

        [scene]
        objects = [1, 3]
        min_pixels = 100
        """))
    return folder


def _mesh_signature(mesh) -> tuple:
    return (len(mesh.vertices), len(mesh.polygons))


def test_a_kit_whose_blend_lacks_an_object_is_refused_with_nothing_written(tmp_path):
    kit = make_user_kit(tmp_path / "kit", teapot="Kettle")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ig_llm", "generate", "--kit", str(kit), "--count", "2",
                           "--out", str(out), *TINY_RENDER], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    msg = _one_sentence(proc.stderr)
    assert "kit.toml, line 8" in msg and "'Teapot'" in msg and "Kettle" in msg, msg
    assert not out.exists()


def test_a_users_kit_end_to_end(tmp_path, capsys):
    """Make a kit, render 20 scenes, train a few steps, predict, build: the built scene holds
    the kit's own meshes and the program speaks the kit's words."""
    kit_dir = make_user_kit(tmp_path / "pottery")
    data = tmp_path / "data"
    assert cli_main(["generate", "--kit", str(kit_dir), "--count", "20", "--out", str(data), *TINY_RENDER]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["domain"] == str(kit_dir.resolve()) and manifest["kit"]["name"] == "pottery"
    labels = json.loads((data / "scenes.json").read_text())["scenes"]
    assert len(labels) == 20 and {o["shape"] for r in labels for o in r["objects"]} == {"box", "vase", "teapot"}

    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(data), "--out", str(run), "--stage", "2", "--steps", "30",
                     "--batch-size", "4", "--lr", "3e-3", "--threads", "1", "--quiet", "--workers", "0",
                     "--set", f"domain={kit_dir}", *TINY_MODEL]) == 0
    model = run / "model"
    config = json.loads((model / "config.json").read_text())["config"]
    kit = load_kit(kit_dir)
    assert config["kit"]["name"] == "pottery" and config["kit"]["sha256"] == kit.sha256
    assert config["kit"]["vocabulary"]["shape"] == ["box", "vase", "teapot"] and config["max_objects"] == 3
    tokens = json.loads((model / "tokenizer.json").read_text())
    assert "'teapot'" in json.dumps(tokens) and "'cylinder'" not in json.dumps(tokens)

    from ig_llm.model.inference import Predictor
    from ig_llm.scene.builder import build_scene
    predictor = Predictor(model_dir=model)
    image = data / "images" / labels[0]["image_filename"]
    pred = predictor.predict_full([str(image)])[0]
    assert pred.scene is not None and pred.scene.objects, pred.program
    assert "shape='" in pred.program
    words = {o.shape for o in pred.scene.objects}
    assert words <= {"box", "vase", "teapot"}

    bpy.ops.wm.read_factory_settings(use_empty=True)
    domain = load_domain(pred.domain)
    assert domain.kit is not None and domain.kit.name == "pottery"
    col = build_scene(pred.scene, collection_name="Pottery", domain=domain, editable=True)
    # the kit's meshes, appended from its .blend (modifiers applied), one own copy per object
    with bpy.data.libraries.load(str(kit.blend), link=False) as (src, dst):
        dst.objects = ["Box", "Vase", "Teapot"]
    deps = bpy.context.evaluated_depsgraph_get()
    expected = {}
    for word, obj in zip(("box", "vase", "teapot"), dst.objects):
        bpy.context.scene.collection.objects.link(obj)
        deps.update()
        expected[word] = _mesh_signature(obj.evaluated_get(deps).data)
    for o, so in zip(sorted(col.objects, key=lambda o: o.pass_index), pred.scene.objects):
        assert o.name.startswith(f"Pottery {so.shape} ") and o.data.users == 1
        assert _mesh_signature(o.data) == expected[so.shape]
    assert expected["box"][0] > 8                            # the bevel was applied
    # the whole set of the kit's shapes builds, glaze included
    from ig_llm.scene.program import Scene, SceneObject
    every = Scene([SceneObject(s, "cream", "glaze", "small", (i - 1.0, 0.0, 0.4), 0.2)
                   for i, s in enumerate(("box", "vase", "teapot"))])
    col = build_scene(every, collection_name="All", domain=domain, editable=True)
    for o in sorted(col.objects, key=lambda o: o.pass_index):
        assert _mesh_signature(o.data) == expected[o["ig_llm_shape"]]
        mat = o.data.materials[0]
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        assert bsdf.inputs["Roughness"].default_value == pytest.approx(0.05)          # the kit's Glaze
        assert tuple(bsdf.inputs["Base Color"].default_value)[:3] == pytest.approx((235 / 255, 225 / 255, 190 / 255))
    # the import's own path (operators/apply.py): the same meshes, the floor of Match the Picture
    from ig_llm.operators.apply import apply_result
    col = apply_result(bpy.context.scene, pred.scene, pred.program, name="Imported", source=str(image),
                       domain=pred.domain, picture_size=(96, 64))
    built = sorted((o for o in col.objects if "ig_llm_shape" in o), key=lambda o: o.pass_index)
    assert [_mesh_signature(o.data) for o in built] == [expected[so.shape] for so in pred.scene.objects]

    # predict + evaluate on the command line: the records name the kit, the metrics use its words
    pred_file, metrics = tmp_path / "pred.json", tmp_path / "metrics.json"
    assert cli_main(["predict", str(data / "images"), "--model", str(model), "--out", str(pred_file), "--quiet"]) == 0
    assert {r["domain"] for r in json.loads(pred_file.read_text())["scenes"]} == {pred.domain}
    assert cli_main(["evaluate", "--truth", str(data / "scenes.json"), "--pred", str(pred_file),
                     "--out", str(metrics)]) == 0
    summary = json.loads(metrics.read_text())["summary"]
    assert summary["scenes"] == 20 and summary["count_acc"] is not None
    # and `build` takes the kit's folder as its domain
    program = tmp_path / "program.txt"
    program.write_text("add(shape='teapot', color='cream', material='glaze', size='large', loc=(0, 0, 0.7), "
                       "rotation=0.5)\n")
    assert cli_main(["build", str(program), "--domain", str(kit_dir), "--out", str(tmp_path / "pottery.blend")]) == 0
    capsys.readouterr()

    # the model needs its kit: gone, or with other words, the load is refused in one sentence
    from ig_llm.model.checkpoint import CheckpointError
    moved = tmp_path / "elsewhere"
    shutil.move(str(kit_dir), str(moved))
    with pytest.raises(CheckpointError) as info:
        Predictor(model_dir=model)
    msg = str(info.value)
    assert "pottery" in msg and "not on this machine" in msg and "\n" not in msg, msg
    # found again by its name in $IG_LLM_KITS
    kits = tmp_path / "kits"
    kits.mkdir()
    shutil.move(str(moved), str(kits / "pottery"))
    os.environ["IG_LLM_KITS"] = str(kits)
    try:
        assert Predictor(model_dir=model).config.domain == "pottery"
        toml = kits / "pottery" / "kit.toml"
        toml.write_text(toml.read_text().replace("cream = [235, 225, 190]", "ivory = [235, 225, 190]"))
        with pytest.raises(CheckpointError) as info:
            Predictor(model_dir=model)
        assert "other words" in str(info.value) and "ivory" in str(info.value)
    finally:
        del os.environ["IG_LLM_KITS"]
