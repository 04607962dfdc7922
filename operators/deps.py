"""The model runtime (torch & co.) and its first-run installer. No bpy here.

Why an installer instead of wheels inside the zip: torch alone is 200 MB to 2.5 GB per
platform (CPU, CUDA, MPS builds differ), so bundled wheels would make one enormous zip per
platform, and Blender unpacks extension wheels into a folder shared by all extensions.
Instead the zip stays small (code + the shipped model) and a Preferences button runs
``<Blender's python> -m pip install --target <extension user folder>/site-packages``
in a worker thread; that folder is appended to ``sys.path`` when the add-on registers.
It survives extension updates (it is the *user* folder) and is removed with
"Remove user data" when uninstalling.

The install is atomic: pip writes into a fresh temp folder (``atomic.writing_folder``),
which replaces ``site-packages`` only when pip succeeded; a failed or cancelled install
leaves the previous state untouched.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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
)
# import name -> what to install, for the "missing" message
RUNTIME_MODULES = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "open_clip": "open_clip_torch",
    "PIL": "pillow",
}


def install_hint(missing_modules) -> str:
    names = ", ".join(RUNTIME_MODULES.get(m, m) for m in missing_modules)
    return (f"IG-LLM needs its model runtime, which is not installed ({names} missing): open "
            "Edit > Preferences > Add-ons > IG-LLM and click 'Install Model Runtime' "
            "(downloads about 1 GB once).")


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
                constraints: str | None = None) -> list[str]:
    cmd = [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input", "--progress-bar", "off", "--target", str(target)]
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
            python: str | None = None, find_links: str | None = None, no_index: bool = False) -> str:
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
                          no_index=no_index, constraints=constraints)
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
            raise InstallError(f"Installing the model runtime failed ({reason}): check the internet "
                               "connection and free disk space, then click Install again.")
        progress(0.95, "Finishing")
    progress(1.0, "Installed")
    return str(target)
