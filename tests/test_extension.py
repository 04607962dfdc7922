"""The Blender extension in-process (bpy module): registration, errors, apply, rebuild,
runtime installer, packaging. Every error test checks that the scene is unchanged."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

import ig_llm  # noqa: E402
from ig_llm.jobs import Job, JobState  # noqa: E402
from ig_llm.operators import deps, task  # noqa: E402
from blender_helpers import png, snapshot  # noqa: E402

ROOT = Path(ig_llm.__file__).resolve().parent
PY = sys.executable


pytestmark = pytest.mark.usefixtures("registered_addon", "empty_scene")


@pytest.fixture
def fake_model(tmp_path):
    """A folder that passes the cheap checks (the image checks run before loading it)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"not a checkpoint")
    return d


def _run_import(**kw):
    with pytest.raises(RuntimeError) as exc:
        bpy.ops.import_scene.image_to_scene(**kw)
    return str(exc.value)


# -- registration ------------------------------------------------------------------------
def test_register_unregister_twice_in_a_fresh_process_without_importing_torch():
    code = ("import sys, bpy, ig_llm\n"
            "for _ in range(2):\n"
            "    ig_llm.register()\n"
            "    assert hasattr(bpy.types, 'IMPORT_SCENE_OT_image_to_scene')\n"
            "    assert hasattr(bpy.types, 'VIEW3D_PT_ig_llm')\n"
            "    ig_llm.unregister()\n"
            "    assert not hasattr(bpy.types, 'IMPORT_SCENE_OT_image_to_scene')\n"
            "assert 'torch' not in sys.modules, 'torch imported at registration'\n"
            "print('OK')\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


def test_operator_menu_panel_filehandler_and_cli_are_registered():
    for name in ("IMPORT_SCENE_OT_image_to_scene", "IG_LLM_OT_cancel_job", "IG_LLM_OT_rebuild",
                 "IG_LLM_OT_install_runtime", "VIEW3D_PT_ig_llm", "VIEW3D_PT_ig_llm_program",
                 "IMPORT_SCENE_FH_image_to_scene"):
        assert hasattr(bpy.types, name), name
    assert ig_llm._state["cli"] is not None
    fh = bpy.types.IMPORT_SCENE_FH_image_to_scene
    assert fh.bl_import_operator == "import_scene.image_to_scene" and ".png" in fh.bl_file_extensions


def test_cli_command_runs_the_shared_parser(capsys):
    assert ig_llm._cli(["--help"]) == 0
    assert "package" in capsys.readouterr().out


# -- errors leave the scene unchanged ------------------------------------------------------
def test_without_torch_the_import_runs_on_numpy(tmp_path, standin_model):
    """A real Python where torch cannot be imported (hidden by a meta-path finder): the
    import still builds the scene, with the NumPy runtime, and never imports torch."""
    img = tmp_path / "x.png"
    png(img, (64, 48))
    code = f"""
import sys, importlib.abc
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'open_clip', 'tokenizers'):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
import bpy, ig_llm
ig_llm.register()
print('RESULT', sorted(bpy.ops.import_scene.image_to_scene(filepath={str(img)!r}, model_dir={str(standin_model)!r})))
print('OBJECTS', len(bpy.data.collections['x'].objects), 'torch' in sys.modules)
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300)
    assert "RESULT ['FINISHED']" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.split("OBJECTS", 1)[1].split()[1] == "False"


def test_model_dir_missing(tmp_path):
    img = tmp_path / "a.png"
    png(img)
    before = snapshot()
    msg = _run_import(filepath=str(img), model_dir=str(tmp_path / "nope"))
    assert "Model folder not found" in msg
    assert snapshot() == before


def test_model_dir_not_a_checkpoint(tmp_path):
    img = tmp_path / "a.png"
    png(img)
    before = snapshot()
    msg = _run_import(filepath=str(img), model_dir=str(tmp_path))
    assert "is not an IG-LLM checkpoint" in msg and "config.json" in msg
    assert snapshot() == before


@pytest.mark.parametrize("case, expected", [
    ("missing", "Image not found"),
    ("empty", "is empty (0 bytes)"),
    ("unreadable", "cannot be read"),
    ("truncated", "cannot be read"),
    ("enormous", "is too large"),
])
def test_bad_images(tmp_path, fake_model, case, expected):
    img = tmp_path / "bad.png"
    if case == "empty":
        img.write_bytes(b"")
    elif case == "unreadable":
        img.write_bytes(b"this is not an image at all" * 10)
    elif case == "truncated":
        png(img, (64, 64))
        img.write_bytes(img.read_bytes()[:60])
    elif case == "enormous":
        png(img, (task.MAX_SIDE + 1, 2))
    before = snapshot()
    msg = _run_import(filepath=str(img), model_dir=str(fake_model))
    assert expected in msg, msg
    assert snapshot() == before
    assert img.exists() == (case != "missing")


def test_image_datablock_without_pixels(fake_model, tmp_path):
    path = tmp_path / "gone.png"
    png(path)
    img = bpy.data.images.load(str(path))
    path.unlink()  # the file behind the datablock disappeared
    img.reload()
    before = snapshot()
    msg = _run_import(image_name=img.name, model_dir=str(fake_model))
    assert "has no pixels" in msg
    assert snapshot() == before


def test_load_image_accepts_datablock_pixels():
    import numpy as np

    arr = np.zeros((4, 6, 4), np.float32)
    arr[:, :, 3] = 1.0  # opaque (transparent pixels become the model's background colour)
    arr[0, :, 0] = 1.0  # top row red
    im = task.load_image(arr)
    assert im.shape == (4, 6, 3) and im.dtype == np.uint8
    assert tuple(im[0, 0]) == (255, 0, 0) and tuple(im[3, 0]) == (0, 0, 0)


def test_cancelled_job_result_is_never_applied(fake_model, tmp_path):
    """Cancel from the main thread while the worker runs: poll hands nothing over."""
    import threading

    gate = threading.Event()

    def slow(progress):
        progress(0.1, "working")
        gate.wait(5)
        progress(0.9, "almost")
        return "a scene"

    before = snapshot()
    job = Job(slow).start()
    job.cancel()
    gate.set()
    job.wait(5)
    assert job.state is JobState.CANCELLED and job.result is None
    assert snapshot() == before


# -- runtime installer (offline, a wheel the test builds) ---------------------------------
def _make_wheel(folder: Path, name="igtinydep", version="0.1") -> Path:
    """A minimal valid pure-Python wheel, written by hand (no network, no build tools)."""
    import base64
    import hashlib

    files = {f"{name}/__init__.py": f"VALUE = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return whl


def test_installer_installs_offline_into_target_and_fails_cleanly(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _make_wheel(wheels)
    target = tmp_path / "user" / "site-packages"
    job = Job(deps.install, target, ["igtinydep==0.1"], find_links=str(wheels), no_index=True).start()
    assert job.wait(120), "pip did not finish"
    assert job.state is JobState.DONE, job.error
    assert (target / "igtinydep" / "__init__.py").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["site-packages"]   # no temp folder left
    try:
        assert deps.add_to_sys_path(target) and sys.path[-1] == str(target)
        import igtinydep

        assert igtinydep.VALUE == "0.1"
    finally:
        deps.remove_from_sys_path(target)
        sys.modules.pop("igtinydep", None)

    # a requirement that cannot be found: one sentence, previous install untouched
    job = Job(deps.install, target, ["igtinydep==9.9"], find_links=str(wheels), no_index=True).run_sync()
    assert job.state is JobState.FAILED and isinstance(job.error, deps.InstallError)
    assert "Installing the torch runtime failed" in str(job.error)
    assert (target / "igtinydep" / "__init__.py").is_file()


def test_runtime_pins_match_requirements_txt():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pins[line.split("==")[0].lower()] = line
    for req in deps.RUNTIME_REQUIREMENTS:
        name = req.split("==")[0].lower()
        assert name in pins, f"{name} is not in requirements.txt"
        if "==" in req:
            assert pins[name] == req


# -- packaging ---------------------------------------------------------------------------
def test_package_builds_a_valid_small_zip_without_dev_files(tmp_path):
    from ig_llm.tools import package

    zip_path = package.build(tmp_path)
    assert zip_path.name == "ig_llm-{}.zip".format(package.manifest()["version"])
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "operators/task.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "data/", "runs/", ".venv", "dist/"))
                or n in ("Makefile", "requirements.txt") or "__pycache__" in n]
    if (ROOT / "model" / "default" / "config.json").is_file():
        assert "model/default/config.json" in names
    assert not list(tmp_path.glob(".package-*"))  # no temp folders left behind


# -- the real model path (an untrained tiny checkpoint stands in for the shipped one) -----
@pytest.fixture(scope="module")
def standin_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from ig_llm.model.checkpoint import save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer

    torch.manual_seed(0)
    model = IGLLM(make_config("tiny"), ProgramTokenizer.build("clevr"))
    return save_checkpoint(model, tmp_path_factory.mktemp("standin") / "model")


def test_import_builds_one_collection_with_the_program_objects(tmp_path, standin_model):
    from ig_llm.scene.program import parse

    img = tmp_path / "photo_01.png"
    png(img, (64, 48))
    assert bpy.ops.import_scene.image_to_scene(filepath=str(img), model_dir=str(standin_model)) == {"FINISHED"}
    col = bpy.data.collections["photo_01"]
    program = parse(col["ig_llm_text"].as_string())
    assert len(col.objects) == len(program.objects)
    built = sorted((o["ig_llm_shape"], o["ig_llm_color"]) for o in col.objects)
    assert built == sorted((o.shape, o.color) for o in program.objects)
    settings = bpy.context.scene.ig_llm
    assert settings.result_objects == len(col.objects) and settings.result_collection == "photo_01"
    assert settings.program == col["ig_llm_text"]
    assert (settings.add_camera, settings.set_background) == (False, True)   # the shared CameraOptions
    assert bpy.context.scene.camera is None and not bpy.data.images   # nothing but the result

    # with its own camera (the reference behind it), then from a datablock, replacing it
    assert bpy.ops.import_scene.image_to_scene(filepath=str(img), model_dir=str(standin_model), mode="REPLACE",
                                                add_camera=True) == {"FINISHED"}
    col = bpy.data.collections["photo_01"]
    cam = next(o for o in col.children[0].objects if o.type == "CAMERA")
    assert cam.data.background_images[0].image.filepath == str(img)
    image = bpy.data.images[img.name]
    image.use_fake_user = True    # the user keeps it: a REPLACE must not remove their image
    assert bpy.ops.import_scene.image_to_scene(image_name=image.name, model_dir=str(standin_model),
                                                mode="REPLACE") == {"FINISHED"}
    from ig_llm.operators.apply import result_collections
    assert len(result_collections(bpy.context.scene)) == 1 and img.name in bpy.data.images


def test_corrupt_checkpoint(tmp_path, standin_model):
    import shutil

    bad = tmp_path / "corrupt"
    shutil.copytree(standin_model, bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    img = tmp_path / "a.png"
    png(img)
    before = snapshot()
    msg = _run_import(filepath=str(img), model_dir=str(bad))
    assert "is truncated or corrupt" in msg and str(bad) in msg, msg
    assert snapshot() == before
    assert (bad / "model.safetensors").read_bytes() == b"\x00garbage" * 100  # files untouched


def test_cancel_a_real_inference_job_leaves_the_scene_unchanged(tmp_path, standin_model):
    img = tmp_path / "a.png"
    png(img)
    before = snapshot()
    job = Job(task.infer, str(img), model_dir=standin_model, device="cpu").start()
    job.cancel()
    job.wait(120)
    assert job.state is JobState.CANCELLED and job.result is None and not job.worker_alive
    assert snapshot() == before


# -- the optional torch runtime -------------------------------------------------------------
def test_installer_refuses_when_online_access_is_off_and_changes_nothing(tmp_path):
    """The bpy module runs with online access off (as a user who unticked it)."""
    assert not bpy.app.online_access
    from ig_llm.jobs import REGISTRY

    user = Path(bpy.utils.resource_path("USER"))
    before = sorted(str(p) for p in user.rglob("*")) if user.exists() else []
    sys_path = list(sys.path)
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy.ops.ig_llm.install_runtime("INVOKE_DEFAULT")
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy.ops.ig_llm.install_runtime()
    assert REGISTRY.get("install") is None and sys.path == sys_path
    assert (sorted(str(p) for p in user.rglob("*")) if user.exists() else []) == before


@pytest.mark.parametrize("system, machine, gpu, label, index", [
    ("Linux", "x86_64", "nvidia", "NVIDIA CUDA 12.8", "cu128"),
    ("Windows", "AMD64", "nvidia", "NVIDIA CUDA 12.8", "cu128"),
    ("Linux", "x86_64", "amd", "AMD ROCm 6.4", "rocm6.4"),
    ("Linux", "x86_64", "", "CPU", "cpu"),
    ("Windows", "AMD64", "", "CPU", "cpu"),
    ("Darwin", "arm64", "", "Apple Silicon (MPS)", None),
])
def test_torch_build_per_platform_and_gpu(system, machine, gpu, label, index):
    build = deps.torch_build(system, machine, gpu)
    assert build.label == label and not build.unsupported and build.download_mb > 0
    reqs = build.requirements()
    assert reqs[0].startswith(f"torch=={deps.TORCH_VERSION}") and any(r.startswith("transformers==") for r in reqs)
    if index:
        assert reqs[0].endswith("+" + index) and build.pip_index_args()[-1] == deps.PYTORCH_INDEX + index
    else:
        assert build.pip_index_args() == ["--index-url", deps.PYPI]


def test_intel_mac_gets_one_sentence_instead_of_a_broken_install():
    build = deps.torch_build("Darwin", "x86_64", "")
    assert build.unsupported.startswith("PyTorch publishes no builds") and "runs without it" in build.unsupported
