"""Done-when tests: build the zip, install it into a FRESH Blender user folder, import a
rendered image through the installed extension, check the collection, then disable and
uninstall. The install runs in a child process so its user folder is really fresh.

The second test is what an artist gets: a Python with bpy and NumPy but no torch, no
Pillow and no safetensors — the zip's bundled wheel and the NumPy runtime do the work —
and the same zip with torch present (runtime forced to PyTorch) writes the same program."""
import json
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy")
torch = pytest.importorskip("torch")

# the child: everything goes through the INSTALLED extension (bl_ext.user_default.ig_llm)
CHILD = r"""
import json, sys, bpy, addon_utils
zip_path, image, model_dir, runtime = sys.argv[-4:]
out = {}
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
mod = "bl_ext.user_default.ig_llm"
bpy.context.preferences.addons[mod].preferences.runtime = runtime
out["enabled"] = mod in bpy.context.preferences.addons
out["module_file"] = sys.modules[mod].__file__
assert hasattr(bpy.types, "IMPORT_SCENE_OT_image_to_scene")
before = {c.name for c in bpy.data.collections}
out["result"] = sorted(bpy.ops.import_scene.image_to_scene(filepath=image, model_dir=model_dir))
out["torch"] = "torch" in sys.modules
out["pil"] = "PIL" in sys.modules
new = [c for c in bpy.data.collections if c.name not in before and "ig_llm_source" in c]
out["collections"] = [c.name for c in new]
col = new[0]
out["program"] = col["ig_llm_text"].as_string()
out["objects"] = [{k: o["ig_llm_" + k] for k in ("shape", "color", "material", "size")}
                  | {"loc": list(o.location), "type": o.type,
                     "nodes": bool(o.active_material and o.active_material.use_nodes)}
                  for o in col.objects]
bpy.ops.preferences.addon_disable(module=mod)
out["disabled"] = mod not in bpy.context.preferences.addons
out["op_gone"] = not hasattr(bpy.types, "IMPORT_SCENE_OT_image_to_scene")
repos = bpy.context.preferences.extensions.repos
index = next(i for i, r in enumerate(repos) if r.module == "user_default")
bpy.ops.extensions.package_uninstall(repo_index=index, pkg_id="ig_llm")
out["uninstalled"] = not __import__("os").path.exists(__import__("os").path.dirname(out["module_file"]))
print("RESULT " + json.dumps(out))
"""


def test_install_zip_in_fresh_user_folder_and_import_a_rendered_image(tmp_path, extension_dist, fresh_blender_env):
    from ig_llm.model.checkpoint import save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.scene.builder import build_scene
    from ig_llm.scene.program import parse
    from ig_llm.scene.stage import configure_render, render_to, setup_stage

    # 1. a rendered reference image (tiny, few samples)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    build_scene(parse("add(shape='cube', color='red', material='metal', size='large', loc=(+0.500, -1.000, +0.700), rotation=+0.200)\n"
                      "add(shape='sphere', color='cyan', material='rubber', size='small', loc=(-1.500, +1.000, +0.350))"))
    setup_stage()
    configure_render(64, 48, 4, threads=2)
    image = render_to(tmp_path / "CLEVR_render.png")
    bpy.ops.wm.read_factory_settings(use_empty=True)

    # 2. a stand-in model (untrained tiny checkpoint; the shipped one is used when present)
    torch.manual_seed(0)
    model_dir = save_checkpoint(IGLLM(make_config("tiny"), ProgramTokenizer.build("clevr")), tmp_path / "model")

    # 3. the zip, built with Blender's own tool (all platforms)
    zip_path = _zip(extension_dist)
    assert zip_path.stat().st_size < 30e6

    # 4. install + run + disable + uninstall in a fresh Blender user folder
    out = _install_and_import(sys.executable, zip_path, image, model_dir, "auto", tmp_path, fresh_blender_env)
    assert out["enabled"] and str(tmp_path / "blender_user") in out["module_file"]
    assert out["result"] == ["FINISHED"] and out["collections"] == ["CLEVR_render"]
    program = parse(out["program"])
    assert len(out["objects"]) == len(program.objects)
    for built, want in zip(sorted(out["objects"], key=lambda o: o["loc"]),
                           sorted(program.objects, key=lambda o: list(o.loc))):
        assert (built["shape"], built["color"], built["material"], built["size"]) == \
            (want.shape, want.color, want.material, want.size)
        assert built["loc"] == pytest.approx(list(want.loc), abs=1e-3)
        assert built["type"] == "MESH" and built["nodes"]
    assert out["disabled"] and out["op_gone"] and out["uninstalled"]


def _zip(dist, platform: str = ""):
    """The all-platform zip in `dist`, or the one built for `platform` (e.g. linux_x64)."""
    from ig_llm.tools import package

    return dist / "ig_llm-{}{}.zip".format(package.manifest()["version"], f"-{platform}" if platform else "")


def _install_and_import(python, zip_path, image, model_dir, runtime, tmp, fresh_blender_env):
    proc = subprocess.run([python, "-c", CHILD, str(zip_path), str(image), str(model_dir), runtime],
                          capture_output=True, text=True, env=fresh_blender_env(tmp), timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][7:])


def test_zip_runs_the_shipped_model_without_torch_and_matches_torch(tmp_path, python_without_torch, extension_dist,
                                                                   fresh_blender_env):
    """Blender as shipped (bpy + NumPy, nothing installed): File > Import > Image to Scene on
    a CLEVR image with the zip's own shipped model builds the program's objects; the same
    zip with torch present and the PyTorch runtime writes the same program (numbers within
    float32 noise)."""
    from ig_llm.demo import EXAMPLE_IMAGE
    from ig_llm.scene.program import parse

    zip_path = _zip(extension_dist, "linux_x64")
    assert zip_path.is_file() and zip_path.stat().st_size < 20e6
    plain = _install_and_import(python_without_torch, zip_path, EXAMPLE_IMAGE, "", "auto", tmp_path / "a",
                                fresh_blender_env)
    assert not plain["torch"] and not plain["pil"]
    assert plain["enabled"] and plain["result"] == ["FINISHED"] and plain["collections"] == ["clevr_example"]
    program = parse(plain["program"])
    assert 1 <= len(program.objects) == len(plain["objects"])
    for built, want in zip(sorted(plain["objects"], key=lambda o: o["loc"]),
                           sorted(program.objects, key=lambda o: list(o.loc))):
        assert (built["shape"], built["color"], built["material"], built["size"]) == \
            (want.shape, want.color, want.material, want.size)
        assert built["loc"] == pytest.approx(list(want.loc), abs=1e-3) and built["nodes"]
    assert plain["disabled"] and plain["uninstalled"]

    with_torch = _install_and_import(sys.executable, zip_path, EXAMPLE_IMAGE, "", "torch", tmp_path / "b",
                                     fresh_blender_env)
    assert with_torch["torch"] and with_torch["result"] == ["FINISHED"]
    from model_helpers import assert_same_program
    assert_same_program(with_torch["program"], plain["program"])
