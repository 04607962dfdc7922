"""`ig_llm package --out dist`: build the installable extension zips with Blender's own tool.

The zip is built from an explicit list — the manifest's ``[build] paths`` — copied into a
clean staging folder (no ``__pycache__``, no hidden or stray files such as demo outputs),
plus the ``safetensors`` wheels the manifest lists, which :func:`fetch_wheels` downloads
into ``wheels/`` when missing (``pip download --only-binary=:all: --platform …``, once).
Blender's ``blender_ext.py`` (it ships inside the ``bpy`` wheel and every Blender) then
builds and validates ``<out>/ig_llm-<version>.zip`` (all platforms) and, with
``--split-platforms``, one smaller zip per platform. No bpy import is needed.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
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


# manifest platform -> the pip platform tag of its safetensors wheel
PIP_PLATFORMS = {"windows-x64": "win_amd64", "linux-x64": "manylinux2014_x86_64",
                 "macos-arm64": "macosx_11_0_arm64", "macos-x64": "macosx_10_12_x86_64"}
WHEEL_REQUIREMENT = "safetensors==0.8.0"


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


def manifest(source: str | os.PathLike = ROOT) -> dict:
    path = Path(source) / "blender_manifest.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PackageError(f"{path} cannot be read ({err}); restore it from the repository.") from None


def fetch_wheels(source: str | os.PathLike = ROOT, python: str | None = None) -> list[Path]:
    """Download the manifest's wheels that are not in ``<source>/wheels`` yet; returns all of them."""
    source = Path(source)
    meta = manifest(source)
    wanted = [source / w for w in meta.get("wheels", [])]
    missing = [w for w in wanted if not w.is_file()]
    for plat in meta.get("platforms", []) if missing else []:
        cmd = [python or sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--no-deps", "--platform", PIP_PLATFORMS[plat], "--python-version", "3.11",
               "--dest", str(source / "wheels"), WHEEL_REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PackageError(f"Downloading the {plat} wheel of {WHEEL_REQUIREMENT} failed "
                               f"({(proc.stderr.strip().splitlines() or ['no output'])[-1]}): check the network "
                               "or put the wheels the manifest lists into wheels/ by hand.")
    still = [w.name for w in wanted if not w.is_file()]
    if still:
        raise PackageError(f"{source / 'wheels'} lacks {', '.join(still)} after pip download: the manifest's wheel names "
                           f"do not match {WHEEL_REQUIREMENT}; update blender_manifest.toml.")
    return wanted


def staged_files(source: str | os.PathLike = ROOT) -> list[str]:
    """Every file the zip gets from the source tree (relative paths), from ``[build] paths``."""
    source = Path(source)
    out = ["blender_manifest.toml"]
    paths = manifest(source).get("build", {}).get("paths")
    if not paths:   # an installed extension: Blender's build dropped the list
        raise PackageError(f"{source / 'blender_manifest.toml'} has no [build] paths, so {source} is an installed "
                           "extension, not a source checkout: run `make extension` in a clone of the IG-LLM "
                           "repository to build the zips.")
    for entry in paths:
        p = source / entry
        if p.is_file():
            out.append(entry)
        elif p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
                for f in sorted(filenames):
                    if not f.startswith(".") and not f.endswith((".pyc", ".blend1")):
                        out.append(str((Path(dirpath) / f).relative_to(source)).replace(os.sep, "/"))
        else:
            raise PackageError(f"[build] paths in {source / 'blender_manifest.toml'} names {entry}, which does "
                               "not exist; fix the manifest or restore the file.")
    return out


def build(out_dir: str | os.PathLike, source: str | os.PathLike = ROOT, python: str | None = None,
          split_platforms: bool = False) -> Path:
    """Stage, build and validate the zip (and per-platform zips); returns the all-platform zip."""
    source, out_dir = Path(source), check_output(out_dir, "--out", folder=True)
    if not (source / "blender_manifest.toml").is_file():
        raise PackageError(f"{source} has no blender_manifest.toml; run `ig_llm package` from an "
                           "intact copy of the extension.")
    staged_files(source)        # an installed extension refuses here, before anything is written
    tool = find_blender_ext()
    meta = manifest(source)
    name = f"{meta['id']}-{meta['version']}.zip"
    out_dir.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    wheels = fetch_wheels(source, python)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".package-") as tmp:
        stage, built_dir = Path(tmp) / "src", Path(tmp) / "out"
        built_dir.mkdir()
        for rel in staged_files(source) + [str(w.relative_to(source)) for w in wheels]:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, stage / rel)
        # the stage already is the explicit list: its manifest needs no [build] (the last table)
        text = (source / "blender_manifest.toml").read_text()
        (stage / "blender_manifest.toml").write_text(text.split("\n[build]", 1)[0] + "\n")
        runs = [[python, str(tool), "validate", str(stage)],
                [python, str(tool), "build", "--source-dir", str(stage), "--output-dir", str(built_dir)]]
        if split_platforms:
            runs.append(runs[-1] + ["--split-platforms"])
        for cmd in runs:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise PackageError(f"`blender_ext.py {cmd[2]}` failed: "
                                   f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
        zips = sorted(built_dir.glob("*.zip"))
        if not (built_dir / name).is_file():
            raise PackageError(f"blender_ext.py did not write {name}")
        for z in zips:
            with zipfile.ZipFile(z) as zf:
                names = zf.namelist()
            leaked = sorted({n.split("/")[0] + "/" for n in names if n.startswith(FORBIDDEN_PREFIXES)})
            if leaked:
                raise PackageError(f"{z.name} would contain {', '.join(leaked)}: fix [build] in blender_manifest.toml")
            proc = subprocess.run([python, str(tool), "validate", str(z)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise PackageError(f"{z.name} does not validate: {proc.stdout.strip()} {proc.stderr.strip()}")
        for z in zips:
            with writing(out_dir / z.name) as tmp_zip:
                os.replace(z, tmp_zip)
    return out_dir / name


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="dist", help="output folder (default: dist)")
    parser.add_argument("--split-platforms", action="store_true",
                        help="also write one zip per platform (each with only its own wheel)")
    parser.add_argument("--source", default=str(ROOT), help=argparse.SUPPRESS)  # tests only


def main(args) -> int:
    path = build(args.out, args.source, split_platforms=args.split_platforms)
    meta = manifest(args.source)
    for z in sorted(path.parent.glob(f"{meta['id']}-{meta['version']}*.zip")):
        with zipfile.ZipFile(z) as zf:
            files = zf.namelist()
        model = any(f.startswith("model/default/") for f in files)
        wheels = sum(f.endswith(".whl") for f in files)
        print(f"{z}  ({z.stat().st_size / 1e6:.1f} MB, {len(files)} files, {wheels} wheel(s), shipped model: "
              f"{'yes' if model else 'NO (model/default/ missing)'})")
    print("Install: Blender > Edit > Preferences > Get Extensions > Install from Disk…")
    return 0
