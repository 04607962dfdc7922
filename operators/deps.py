"""The optional torch runtime and its installer; what the zip bundles. No bpy here.

The extension needs nothing to be installed: the shipped model runs in NumPy (Blender's
own) with the ``safetensors`` wheel the zip bundles for each platform (manifest
``wheels``). torch is *optional* — for training inside Blender and for large or GPU
models — and installed on request: a Preferences button runs ``<Blender's python> -m
pip install --target <extension user folder>/site-packages`` in a worker thread, with
the build :func:`torch_build` picks for this platform and GPU from the official
PyTorch indexes (CUDA / ROCm / CPU; Apple Silicon's PyPI build has MPS). The operator
shows the download size and asks first, and refuses when Blender's online access is off.

The install is atomic: pip writes into a fresh temp folder (``atomic.writing_folder``),
which replaces ``site-packages`` only when pip succeeded; a failed or cancelled install
leaves the previous state untouched. The folder survives extension updates (it is the
*user* folder) and is removed with "Remove user data" when uninstalling.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import writing_folder
from ..errors import UserError

# Same pins as the project's requirements.txt (a test keeps them equal). numpy is NOT
# here: Blender bundles it, and it is pinned to Blender's own version during the install.
RUNTIME_REQUIREMENTS = (
    "torch==2.13.0",
    "torchvision==0.28.0",
    "transformers==5.17.0",
    "tokenizers==0.23.2",
    "safetensors==0.8.0",
    "open_clip_torch==3.3.0",
    "pillow",
    "scipy==1.15.3",        # `evaluate` and the training commands' scoring (Hungarian matching)
)
# import name -> what to install, for the "missing" message
RUNTIME_MODULES = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "open_clip": "open_clip_torch",
    "PIL": "pillow",
    "scipy": "scipy",
}
# the Preferences button that installs all of the above (install_runtime.py's bl_label)
INSTALL_BUTTON = "Install PyTorch Runtime"


# what the NumPy runtime needs: numpy is Blender's, safetensors comes as a wheel in the zip
BUNDLED_MODULES = ("numpy", "safetensors")
BUNDLED_WHEELS = ("safetensors==0.8.0",)
# Blender itself, as a Python module (requirements.txt's pin): the dataset and .blend commands
BPY_REQUIREMENT = "bpy==4.5.15"


def bundled_hint(missing_modules) -> str:
    return (f"IG-LLM cannot find {', '.join(missing_modules)}, which its zip brings along: install the "
            "extension zip built for this platform again (Edit > Preferences > Get Extensions > "
            "Install from Disk).")


def install_hint(missing_modules) -> str:
    names = ", ".join(RUNTIME_MODULES.get(m, m) for m in missing_modules)
    return (f"This needs the optional torch runtime ({names} missing): open Edit > Preferences > "
            f"Add-ons > IG-LLM and click '{INSTALL_BUTTON}'.")


# ---------------------------------------------------------------------------------------
# what a command needs: checked before it imports anything or writes a file
# ---------------------------------------------------------------------------------------
# the optional runtime by import name: what the training commands need (torchvision comes with open_clip)
RUNTIME = tuple(RUNTIME_MODULES)


def missing_modules(modules) -> list[str]:
    """Import names of `modules` that this Python cannot find (nothing is imported)."""
    import importlib.util

    missing = []
    for module in modules:
        if sys.modules.get(module) is not None:   # already imported (e.g. bpy inside Blender): no lookup
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def pip_line(missing_modules) -> str:
    """``<this Python> -m pip install <pins>`` for import names (the pins of requirements.txt)."""
    import shlex

    pins = {r.split("==")[0].lower(): r for r in RUNTIME_REQUIREMENTS + BUNDLED_WHEELS + (BPY_REQUIREMENT,)}
    names = dict.fromkeys(RUNTIME_MODULES.get(m, m) for m in missing_modules)
    return f"{shlex.quote(sys.executable)} -m pip install " + " ".join(pins.get(n.lower(), n) for n in names)


def requirement_sentence(what: str, missing_modules) -> str:
    """One sentence for work that cannot run in this Python: the packages it lacks, the
    Preferences button that installs them, and the pip line that does the same."""
    missing_modules = list(missing_modules)
    names = ", ".join(dict.fromkeys(RUNTIME_MODULES.get(m, m) for m in missing_modules))
    verb = "is" if len(missing_modules) == 1 else "are"
    if "bpy" in missing_modules:                        # a Python without Blender's module
        how = "run it in Blender (`blender --background --command ig_llm ...`)"
    elif set(missing_modules) <= set(BUNDLED_MODULES):   # the zip brings it: the install is broken
        how = ("install the extension zip built for this platform again (Edit > Preferences > Get "
               "Extensions > Install from Disk)")
    else:
        how = f"click '{INSTALL_BUTTON}' in Edit > Preferences > Add-ons > IG-LLM (the optional runtime)"
    return f"{what} needs {names}, which {verb} not installed in this Python: {how}, or run `{pip_line(missing_modules)}`."


def require(what: str, modules) -> None:
    """Raise one :class:`UserError` sentence (:func:`requirement_sentence`) if any of
    `modules` (import names) is missing; imports nothing."""
    missing = missing_modules(modules)
    if missing:
        raise UserError(requirement_sentence(what, missing))


# ---------------------------------------------------------------------------------------
# which torch build
# ---------------------------------------------------------------------------------------
TORCH_VERSION, TORCHVISION_VERSION = "2.13.0", "0.28.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
PYPI = "https://pypi.org/simple"


@dataclass(frozen=True)
class TorchBuild:
    """One PyTorch build: the requirement pins (with the index's local label), where
    to get it, and about how much pip downloads (torch and its own libraries; the other
    runtime packages, SciPy included, add about 70 MB)."""
    label: str
    local: str | None             # "+cpu", "+cu128", "+rocm6.4"; None: PyPI's build
    index_url: str | None         # extra index; None: PyPI only
    download_mb: int
    unsupported: str = ""         # non-empty: no build exists; the sentence says why

    def requirements(self) -> list[str]:
        tag = self.local or ""
        pins = [f"torch=={TORCH_VERSION}{tag}", f"torchvision=={TORCHVISION_VERSION}{tag}"]
        return pins + [r for r in RUNTIME_REQUIREMENTS if not r.startswith(("torch==", "torchvision=="))]

    def pip_index_args(self) -> list[str]:
        # PyPI stays the main index (transformers & co.); the exact local label makes pip
        # take torch from the PyTorch index and nowhere else
        return ["--index-url", PYPI] + (["--extra-index-url", self.index_url] if self.index_url else [])


def detect_gpu(system: str | None = None) -> str:
    """'nvidia', 'amd' (Linux ROCm) or '' — from the driver tools on the PATH, no imports."""
    system = system or platform.system()
    if shutil.which("nvidia-smi") or (system == "Windows" and os.path.isfile(
            os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvidia-smi.exe"))):
        return "nvidia"
    if system == "Linux" and (shutil.which("rocminfo") or os.path.isdir("/opt/rocm")):
        return "amd"
    return ""


def torch_build(system: str | None = None, machine: str | None = None, gpu: str | None = None) -> TorchBuild:
    """The right PyTorch build for a platform and GPU (sizes: the wheels on the indexes,
    rounded up; CUDA and ROCm include the GPU libraries pip pulls with them)."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    gpu = detect_gpu(system) if gpu is None else gpu
    if system == "Darwin":
        if machine in ("arm64", "aarch64"):
            return TorchBuild("Apple Silicon (MPS)", None, None, 80)
        return TorchBuild("Intel Mac", None, None, 0, unsupported=(
            "PyTorch publishes no builds of this version for Intel Macs; the shipped model runs "
            "without it, so nothing needs to be installed."))
    if system not in ("Linux", "Windows") or machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        return TorchBuild(f"{system} {machine}", None, None, 0, unsupported=(
            f"No PyTorch build is known for {system} {machine}; the shipped model runs without it."))
    if gpu == "nvidia":
        return TorchBuild("NVIDIA CUDA 12.8", "+cu128", PYTORCH_INDEX + "cu128",
                          2900 if system == "Windows" else 3300)
    if gpu == "amd" and system == "Linux":
        return TorchBuild("AMD ROCm 6.4", "+rocm6.4", PYTORCH_INDEX + "rocm6.4", 4600)
    if machine in ("aarch64", "arm64"):   # Linux/Windows on ARM: PyPI's CPU build
        return TorchBuild("CPU", None, None, 200)
    return TorchBuild("CPU", "+cpu", PYTORCH_INDEX + "cpu", 250 if system == "Windows" else 200)


def offline_sentence() -> str:
    return ("Blender's online access is off (Edit > Preferences > System > Network), so the optional "
            "PyTorch runtime was not downloaded; the shipped model works without it.")


def add_to_sys_path(folder: str | os.PathLike) -> bool:
    """Append `folder` to sys.path (after Blender's own packages, so its numpy wins)."""
    folder = str(folder)
    if not os.path.isdir(folder) or folder in sys.path:
        return False
    sys.path.append(folder)
    import importlib

    importlib.invalidate_caches()
    return True


def remove_from_sys_path(folder: str | os.PathLike) -> None:
    folder = str(folder)
    while folder in sys.path:
        sys.path.remove(folder)


def pip_command(target: str | os.PathLike, requirements, *, python: str | None = None,
                find_links: str | None = None, no_index: bool = False,
                constraints: str | None = None, index_args=()) -> list[str]:
    cmd = [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input", "--progress-bar", "off", "--target", str(target), *index_args]
    if no_index:
        cmd.append("--no-index")
    if find_links:
        cmd += ["--find-links", str(find_links)]
    if constraints:
        cmd += ["--constraint", str(constraints)]
    return cmd + list(requirements)


def _bundled_numpy_constraint() -> str:
    try:
        import numpy
    except ImportError:
        return ""
    return f"numpy=={numpy.__version__}\n"


class InstallError(UserError):
    """pip failed; str() is one sentence with pip's last error line."""


def install(progress, target: str | os.PathLike, requirements=RUNTIME_REQUIREMENTS, *,
            python: str | None = None, find_links: str | None = None, no_index: bool = False,
            index_args=()) -> str:
    """Worker: pip-install `requirements` into `target` atomically. Returns `target`.

    `progress` is a :class:`..jobs.Progress`; cancelling stops pip and removes the
    temp folder, leaving `target` as it was.
    """
    target = Path(target)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(_bundled_numpy_constraint())
        constraints = fh.name
    # pip fills a temp folder that replaces `target` only when it succeeded (any failure or
    # a cancel removes it); no fsync of thousands of wheel files: a rerun repairs a crash
    with writing_folder(target, fsync=False) as partial:
        cmd = pip_command(partial, requirements, python=python, find_links=find_links,
                          no_index=no_index, constraints=constraints, index_args=index_args)
        env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        progress(0.01, "Starting pip")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1)
        lines: list[str] = []
        total = max(1, len(requirements))
        seen = 0
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if not line:
                    continue
                lines.append(line)
                if line.startswith("Collecting"):
                    seen += 1
                # pip also collects dependencies, so the fraction is a rough guide only
                fraction = 0.85 * min(1.0, seen / (total * 3))
                if line.startswith("Installing collected"):
                    fraction = 0.9
                progress(fraction, line[:120])
            code = proc.wait()
        except BaseException:  # Cancelled or anything else: stop pip, leave no half install
            proc.kill()
            proc.wait()
            raise
        finally:
            os.unlink(constraints)
        if code != 0:
            errors = [ln for ln in lines if "ERROR" in ln or "No module named pip" in ln] or lines[-1:]
            reason = errors[-1].strip() if errors else f"exit status {code}"
            raise InstallError(f"Installing the torch runtime failed ({reason}): check the internet "
                               "connection and free disk space, then click Install again.")
        progress(0.95, "Finishing")
    progress(1.0, "Installed")
    return str(target)
