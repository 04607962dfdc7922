"""The extension with a 2d or so3 model: the import builds that domain's objects (the
domain comes from the checkpoint's config), its camera, and Rebuild reads the program in
the same domain; `demo --model` does the same into a .blend."""
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy")
torch = pytest.importorskip("torch")

import ig_llm  # noqa: E402
from ig_llm.operators import apply  # noqa: E402
from ig_llm.scene.task_builder import KIND_PROP  # noqa: E402


pytestmark = pytest.mark.usefixtures("registered_addon", "empty_scene")


def _model(root, domain):
    """An untrained model of `domain` (constrained decoding still writes a valid program)."""
    from ig_llm.model.checkpoint import save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    torch.manual_seed(0)
    config = make_config("tiny", domain=domain, max_objects=1, image_size=64, image_height=64)
    return save_checkpoint(IGLLM(config, ProgramTokenizer.build(domain)), root / domain.replace(":", "_"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_models")
    img = root / "dot.png"
    from PIL import Image
    Image.new("RGB", (48, 48), (255, 255, 255)).save(img)
    return {d: _model(root, d) for d in ("2d", "so3:aa")}, img


def _kinds(col):
    return sorted(o.get(KIND_PROP, o.type) for o in col.objects)


@pytest.mark.parametrize("domain", ["2d", "so3:aa"])
def test_import_with_a_task_model_builds_its_domain(models, domain):
    from ig_llm.scene.program import parse
    from ig_llm.scene.domain import load_domain
    paths, img = models
    assert bpy.ops.import_scene.image_to_scene(filepath=str(img), model_dir=str(paths[domain]),
                                                add_camera=True) == {"FINISHED"}
    col = bpy.data.collections["dot"]
    assert col[apply.TAG_DOMAIN] == domain
    program = parse(col[apply.TAG_TEXT].as_string(), domain=load_domain(domain))
    n = len(program.objects)
    assert n == 1                                       # this untrained model writes one object
    cam = next(o for o in col.children[0].objects if o.type == "CAMERA")
    assert not bpy.data.lights                          # the task camera, not CLEVR's lamps
    if domain == "2d":
        assert _kinds(col) == sorted(["canvas"] + ["dot"] * n) and cam.data.type == "ORTHO"
    else:
        assert _kinds(col) == ["pose"] * n and cam.data.type == "PERSP"
    assert not any("ig_llm_color" in o for o in col.objects)   # nothing of CLEVR's


def test_rebuild_reads_the_task_program_in_its_domain():
    from ig_llm.scene.program import Scene
    from ig_llm.scene.task_program import DotObject
    col = apply.apply_result(bpy.context.scene, Scene([DotObject(0.25, 0.75)]), "add(x=0.250, y=0.750)",
                             name="dots", source="test", domain="2d")
    text = col[apply.TAG_TEXT]
    text.clear()
    text.write("add(y=0.100, x=0.900)\n")
    col = apply.rebuild_from_text(bpy.context.scene, text)
    dot = next(o for o in col.objects if o.get(KIND_PROP) == "dot")
    assert tuple(dot.location)[:2] == pytest.approx((0.9, -0.1)) and col[apply.TAG_DOMAIN] == "2d"
    text.clear()
    text.write("add(shape='cube', color='red', material='rubber', size='large', loc=(0, 0, 0.7))\n")
    with pytest.raises(apply.ProgramError):             # a CLEVR line is not a 2d program
        apply.rebuild_from_text(bpy.context.scene, text)
    assert bpy.data.collections["dots"] == col


def test_demo_with_a_so3_model_writes_its_scene(models, tmp_path):
    paths, img = models
    out = tmp_path / "pose.blend"
    proc = subprocess.run([sys.executable, "-m", "ig_llm", "demo", "--image", str(img), "--model",
                           str(paths["so3:aa"]), "--out", str(out), "--render", ""],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "add(shape='tripod', rotation=(" in proc.stdout
    bpy.ops.wm.open_mainfile(filepath=str(out))
    cams = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cams) == 1 and cams[0].data.type == "PERSP" and not bpy.data.lights
