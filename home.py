"""The data home: where datasets and runs live, outside the work tree, and what is there.

    python -m ig_llm home [--home DIR]

Renders take hours and must add up from one start of work to the next, so they never live
in a checkout (which may be laid anew) or in the extension folder. The home is, first
found: ``--home``, the ``IG_LLM_HOME`` environment variable, the platform's user cache
folder + ``ig_llm`` (Linux: ``$XDG_CACHE_HOME/ig_llm``, default ``~/.cache/ig_llm``;
macOS: ``~/Library/Caches/ig_llm``; Windows: ``%LOCALAPPDATA%\\ig_llm``). Layout::

    HOME/datasets/<name>/    one `ig_llm generate` dataset each (manifest.json, images, index, labels)
    HOME/runs/<name>/        one training run each (checkpoints/step_N, the finished model/)
    HOME/logs/               logs of background jobs

Moving the home is moving the folder (nothing in it holds an absolute path to itself);
point ``IG_LLM_HOME`` at the new place. Pure Python: no bpy, no torch.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import UserError

ENV = "IG_LLM_HOME"
DATASETS, RUNS, LOGS = "datasets", "runs", "logs"


def data_home(override: str | os.PathLike | None = None) -> Path:
    """The data home folder (not created here)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ig_llm"


def dataset_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    return data_home(home) / DATASETS / name


def run_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    return data_home(home) / RUNS / name


def add_home_argument(parser) -> None:
    """The one `--home` option every command that reads or writes the home shares."""
    parser.add_argument("--home", default=None,
                        help=f"the data home (default: ${ENV}, else the user cache folder + ig_llm; now "
                             f"{data_home()})")


# ---------------------------------------------------------------------------------------
# what is there
# ---------------------------------------------------------------------------------------
def _count(folder: Path, suffix: str) -> int:
    try:
        return sum(1 for p in folder.iterdir() if p.suffix == suffix and not p.name.startswith("."))
    except OSError:
        return 0


def describe_dataset(path: Path) -> dict:
    """Name, settings and how many scenes are complete (a scene is complete iff its label exists)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return {"name": path.name, "complete": _count(path / "labels", ".json"),
            "index_maps": _count(path / "index", ".npz"), "target": manifest.get("count"),
            "condition": manifest.get("condition"), "seed": manifest.get("seed"),
            "size": f"{manifest['width']}x{manifest['height']}" if "width" in manifest else None,
            "domain": manifest.get("domain", "clevr"), "readable": bool(manifest)}


def describe_run(path: Path) -> dict:
    """Name, the newest checkpoint's step and the state: finished (a model or a stage-1
    tower is there), stopped at step N (resumable), or empty."""
    steps = []
    ckpts = path / "checkpoints"
    if ckpts.is_dir():
        for p in ckpts.iterdir():
            if p.name.startswith("step_") and (p / "state.pt").is_file():
                try:
                    steps.append(int(p.name[len("step_"):]))
                except ValueError:
                    pass
    finished = [str(p.relative_to(path)) for p in (path / "model" / "config.json",
                                                    path / "stage1" / "vision.safetensors",
                                                    path / "vision.safetensors") if p.is_file()]
    step = max(steps) if steps else None
    state = ("finished" if finished else f"stopped at step {step} (resumable)" if step is not None else "empty")
    return {"name": path.name, "step": step, "state": state, "outputs": finished}


def describe_home(home: str | os.PathLike | None = None) -> dict:
    root = data_home(home)
    out = {"home": str(root), "datasets": [], "runs": []}
    for key, describe in ((DATASETS, describe_dataset), (RUNS, describe_run)):
        folder = root / key
        if folder.is_dir():
            out[key] = [describe(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return out


def format_home(info: dict) -> str:
    lines = [f"data home: {info['home']}", "", "datasets:"]
    if not info["datasets"]:
        lines.append("  (none)")
    for d in info["datasets"]:
        if not d["readable"]:
            lines.append(f"  {d['name']:<14} not a dataset (no readable manifest.json)")
            continue
        lines.append(f"  {d['name']:<14} {d['complete']:>7,} / {d['target'] or 0:,} scenes  "
                     f"{d['index_maps']:>7,} index maps  {d['domain']} {d['condition']} seed {d['seed']} "
                     f"{d['size']}")
    lines += ["", "runs:"]
    if not info["runs"]:
        lines.append("  (none)")
    for r in info["runs"]:
        lines.append(f"  {r['name']:<14} {r['state']}" + (f"  ({', '.join(r['outputs'])})" if r["outputs"] else ""))
    return "\n".join(lines)


def add_arguments(parser) -> None:
    add_home_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args) -> int:
    root = data_home(args.home)
    if root.exists() and not root.is_dir():
        raise UserError(f"The data home {root} is a file, not a folder; set {ENV} or --home to a folder.")
    info = describe_home(args.home)
    print(json.dumps(info, indent=2) if args.json else format_home(info))
    return 0
