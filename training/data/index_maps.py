"""Add the per-pixel truth (``index/*.npz``) to a dataset rendered before it was kept.

    python -m ig_llm.training.data.index_maps DATASET_DIR [--threads N]

Every sample of ``ig_llm generate`` is a pure function of (split, seed, index, attempt),
all of which its label records, so its Object Index pass can be rendered again without
the image: one Cycles sample per pixel instead of the dataset's 12 or more. Maps that
exist are kept; a killed run resumes where it stopped (each map is written atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ...errors import UserError
from .sampler import image_name


class IndexMapError(UserError, RuntimeError):
    """A dataset folder this command cannot complete; the message says why and the fix."""


def missing_maps(root: Path) -> list[tuple[dict, Path]]:
    """(label, index-map path) of every labelled sample without a map."""
    labels = root / "labels"
    if not labels.is_dir():
        raise IndexMapError(f"{root} has no labels/ folder, so it is not a dataset from `ig_llm generate`; "
                            "check the path.")
    todo = []
    for p in sorted(labels.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            raise IndexMapError(f"Label {p} is unreadable; delete it and rerun `ig_llm generate --resume` "
                                "for that dataset.") from None
        target = root / "index" / image_name(rec["split"], rec["image_index"], "npz")
        if not target.is_file():
            todo.append((rec, target))
    return todo


def add_index_maps(root, threads: int | None = None, progress: bool = True) -> int:
    """Render the missing maps of dataset folder `root`; returns how many were written."""
    root = Path(root)
    todo = missing_maps(root)
    if not todo:
        return 0
    first = todo[0][0]
    if any(k not in first for k in ("seed", "condition", "split", "image_index")):
        raise IndexMapError(f"The labels in {root} do not record seed, condition and split, so their scenes "
                            "cannot be rendered again; render the dataset anew with `ig_llm generate`.")
    from ...scene.domain import load_domain
    from .render import Renderer
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    (root / "index").mkdir(exist_ok=True)
    renderer = Renderer(first["width"], first["height"], samples=1, domain=load_domain(manifest.get("domain", "clevr")),
                        condition=first["condition"], seed=first["seed"], split=first["split"], threads=threads,
                        max_bounces=0)
    t0 = time.time()
    try:
        for k, (rec, target) in enumerate(todo, start=1):
            renderer.index_only(rec, str(target))
            if progress and (k % 100 == 0 or k == len(todo)):
                print(f"index maps: {k}/{len(todo)} ({k / (time.time() - t0):.1f}/s)", file=sys.stderr)
    finally:
        renderer.close()
    return len(todo)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ig_llm.training.data.index_maps", description=__doc__.splitlines()[0])
    p.add_argument("dataset", help="a dataset folder written by `ig_llm generate`")
    p.add_argument("--threads", type=int, help="Cycles threads (default: all cores)")
    a = p.parse_args(argv)
    try:
        n = add_index_maps(a.dataset, a.threads)
    except IndexMapError as err:
        print(f"index_maps: {err}", file=sys.stderr)
        return 2
    print(f"index_maps: {n} index maps written to {Path(a.dataset) / 'index'}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
