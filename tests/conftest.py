"""Session-wide test isolation: bpy and HF caches go to temporary folders, no hub access."""
import os
import tempfile

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="ig_llm_blender_user_")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ig_llm_cache_")
os.environ["HF_HUB_OFFLINE"] = "1"


import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def python_without_torch():
    """A Python with `bpy` (and the NumPy it pulls) but no torch, Pillow or safetensors —
    what a Blender user has. Built once into .cache/venv-bpy from requirements.txt's bpy
    pin (pip's cache makes it quick after the first time); IG_LLM_NO_TORCH_PYTHON may
    name an existing one. Skips with the reason when it cannot be made (no network)."""
    given = os.environ.get("IG_LLM_NO_TORCH_PYTHON")
    venv = ROOT / ".cache" / "venv-bpy"
    py = Path(given) if given else venv / "bin" / "python"
    check = "import bpy, importlib.util as u; assert not any(u.find_spec(m) for m in ('torch', 'PIL', 'safetensors'))"
    if py.exists() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0:
        return str(py)
    if given:
        pytest.skip(f"IG_LLM_NO_TORCH_PYTHON={given} is not a Python with bpy and without torch/Pillow/safetensors")
    pin = next(ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("bpy=="))
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", pin]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.skip(f"cannot build a torch-free Python with {pin} ({proc.stderr.strip()[-300:]})")
    if subprocess.run([str(py), "-c", check], capture_output=True).returncode != 0:
        pytest.skip(f"{py} pulled in torch, Pillow or safetensors; the no-torch check needs a clean one")
    return str(py)


# the add-on registered for a whole test module, and a factory-empty scene per test (bpy tests
# opt in with ``pytestmark = pytest.mark.usefixtures("registered_addon", "empty_scene")``)
@pytest.fixture(scope="module")
def registered_addon():
    import ig_llm
    ig_llm.register()
    yield
    ig_llm.unregister()


@pytest.fixture
def empty_scene():
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)


# the extension as users get it (tests/test_extension_install.py, tests/test_cli_plain_blender.py)
@pytest.fixture(scope="session")
def extension_dist(tmp_path_factory):
    """A folder with the extension zips — ig_llm-<version>.zip (all platforms) and one per
    platform (ig_llm-<version>-linux_x64.zip, …) — built once per session with Blender's own
    tool, as `make extension` builds them."""
    from ig_llm.tools import package

    dist = tmp_path_factory.mktemp("dist")
    package.build(dist, split_platforms=True)
    return dist


@pytest.fixture(scope="session")
def fresh_blender_env():
    """``env(folder)``: the environment for a child Python whose Blender user folder and caches
    are fresh folders under `folder` (so an installed extension is really new there), with no
    hub access and no PYTHONPATH leaking this checkout in."""
    def env(folder) -> dict:
        folder = Path(folder)
        return dict(os.environ, BLENDER_USER_RESOURCES=str(folder / "blender_user"),
                    XDG_CACHE_HOME=str(folder / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    return env
