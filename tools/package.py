"""`ig_llm package --out dist`: build the installable extension zip with Blender's own tool.

Blender's `blender_ext.py` (the script behind `blender --command extension build`) ships
inside the `bpy` wheel and inside every Blender; this command finds it, builds
``<out>/ig_llm-<version>.zip`` from the repository root following the manifest's
``[build]`` excludes (tests, docs, datasets, dev files stay out; the shipped model in
``model/default/`` goes in when present), validates the zip, and moves it into place
atomically. No bpy import is needed (it would cost a second and ~250 MB).
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from ..atomic import check_output, writing
from ..errors import UserError

ROOT = Path(__file__).resolve().parent.parent
# Paths that must never reach users (checked after the build, so a manifest typo fails loudly).
FORBIDDEN_PREFIXES = ("tests/", "docs/", "data/", "runs/", "dist/", ".venv/", ".git/")


class PackageError(UserError):
    """The zip cannot be built; the message names the file and the fix."""


def find_blender_ext() -> Path:
    """Blender's extension build script: from the `bpy` module, else from a running Blender."""
    candidates = []
    spec = importlib.util.find_spec("bpy") if "bpy" not in sys.modules else None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if "bpy" in sys.modules:
        import bpy  # already loaded (inside Blender): ask it where its scripts are

        locations.append(bpy.utils.resource_path("LOCAL"))
        locations += [os.path.dirname(p) for p in bpy.utils.script_paths()]
    for loc in locations:
        candidates += glob.glob(os.path.join(loc, "**", "addons_core", "bl_pkg", "cli", "blender_ext.py"),
                                recursive=True)
    if not candidates:
        raise PackageError("Blender's blender_ext.py was not found: install the bpy module "
                           "(pip install bpy==4.5.15) or run `blender --command ig_llm package`.")
    return Path(sorted(candidates)[0])


def manifest(source: Path = ROOT) -> dict:
    path = Path(source) / "blender_manifest.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PackageError(f"{path} cannot be read ({err}); restore it from the repository.") from None


def build(out_dir: str | os.PathLike, source: str | os.PathLike = ROOT, python: str | None = None) -> Path:
    """Build and validate the zip; returns its path in `out_dir`."""
    source, out_dir = Path(source), check_output(out_dir, "--out", folder=True)
    if not (source / "blender_manifest.toml").is_file():
        raise PackageError(f"{source} has no blender_manifest.toml; run `ig_llm package` from an "
                           "intact copy of the extension.")
    tool = find_blender_ext()
    meta = manifest(source)
    name = f"{meta['id']}-{meta['version']}.zip"
    out_dir.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".package-") as tmp:
        for cmd in ([python, str(tool), "validate", str(source)],
                    [python, str(tool), "build", "--source-dir", str(source), "--output-dir", tmp]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise PackageError(f"`blender_ext.py {cmd[2]}` failed: "
                                   f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
        built = Path(tmp) / name
        if not built.is_file():
            raise PackageError(f"blender_ext.py did not write {name}")
        with zipfile.ZipFile(built) as zf:
            names = zf.namelist()
        leaked = sorted({n.split("/")[0] + "/" for n in names if n.startswith(FORBIDDEN_PREFIXES)})
        if leaked:
            raise PackageError(f"the zip would contain {', '.join(leaked)}: fix [build] in blender_manifest.toml")
        proc = subprocess.run([python, str(tool), "validate", str(built)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PackageError(f"the built zip does not validate: {proc.stdout.strip()} {proc.stderr.strip()}")
        final = out_dir / name
        with writing(final) as tmp:
            os.replace(built, tmp)
    return final


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="dist", help="output folder (default: dist)")
    parser.add_argument("--source", default=str(ROOT), help=argparse.SUPPRESS)  # tests only


def main(args) -> int:
    path = build(args.out, args.source)
    with zipfile.ZipFile(path) as zf:
        files = zf.namelist()
    model = [f for f in files if f.startswith("model/default/")]
    size_mb = path.stat().st_size / 1e6
    print(f"{path}  ({size_mb:.1f} MB, {len(files)} files, shipped model: "
          f"{'yes' if model else 'NO (model/default/ missing)'})")
    print("Install: Blender > Edit > Preferences > Get Extensions > Install from Disk…")
    return 0
