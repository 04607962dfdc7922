"""Done-when test: build the zip, install it into a FRESH Blender user folder, import a
rendered image through the installed extension, check the collection, then disable and
uninstall. The install runs in a child process so its user folder is really fresh."""
import json
import os
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy")
torch = pytest.importorskip("torch")

# the child: everything goes through the INSTALLED extension (bl_ext.user_default.ig_llm)
CHILD = r"""
import json, sys, bpy, addon_utils
zip_path, image, model_dir = sys.argv[-3:]
out = {}
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
mod = "bl_ext.user_default.ig_llm"
out["enabled"] = mod in bpy.context.preferences.addons
out["module_file"] = sys.modules[mod].__file__
assert hasattr(bpy.types, "IMPORT_SCENE_OT_image_to_scene")
before = {c.name for c in bpy.data.collections}
out["result"] = sorted(bpy.ops.import_scene.image_to_scene(filepath=image, model_dir=model_dir))
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


def test_install_zip_in_fresh_user_folder_and_import_a_rendered_image(tmp_path):
    from ig_llm.model.checkpoint import save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.scene.builder import build_scene
    from ig_llm.scene.program import parse
    from ig_llm.scene.stage import configure_render, render_to, setup_stage
    from ig_llm.tools import package

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

    # 3. the zip, built with Blender's own tool
    zip_path = package.build(tmp_path / "dist")
    assert zip_path.stat().st_size < 30e6

    # 4. install + run + disable + uninstall in a fresh Blender user folder
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(zip_path), image, str(model_dir)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][7:])
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
