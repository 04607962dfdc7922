"""Training data: rendered dataset folders and packed single files, as (image, Scene) pairs.

A dataset FOLDER is what `ig_llm generate` writes: ``images/CLEVR_{split}_{i:06d}.png``,
``labels/CLEVR_{split}_{i:06d}.json`` (CLEVR scene record + "program") and a merged
``scenes.json``. Labels are read per image, so a folder still being rendered can be used.

A PACK is one ``.npz`` file (no pickle) that travels to a GPU machine:

* ``jpeg``    uint8, every image's JPEG bytes concatenated (quality 95 by default, at the
  render size unless `size` is given),
* ``offsets`` int64, n + 1 byte offsets into ``jpeg``,
* ``labels``  uint8, UTF-8 JSON: ``{"format", "sources", "records": [...]}`` where each
  record is the CLEVR scene record cut to what training needs.

`pack(...)` writes it atomically; :class:`PackSource` reads it (all bytes in memory, so
DataLoader workers forked from the parent share them). :class:`SceneDataset` decodes and
preprocesses one image per item for a ``torch.utils.data.DataLoader``.
"""
from __future__ import annotations

import io
import json
import os
from bisect import bisect_right
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..scene.program import DEFAULT_CAMERA, Scene, scene_from_clevr

PACK_FORMAT = "ig_llm-pack-1"
PACK_SUFFIX = ".npz"
# what a packed record keeps of a CLEVR label (the rest is for analysis, not training)
KEEP_SCENE_KEYS = ("image_filename", "image_index", "split", "condition", "camera_location", "width", "height")
KEEP_OBJECT_KEYS = ("shape", "size", "material", "color", "3d_coords", "rotation")


class DatasetError(ValueError):
    """A dataset folder or pack that cannot be read; the message names it and the fix."""


def _round(v, digits: int = 6):
    """Floats (also inside lists) to `digits` decimals: 1e-6 units is far below any error."""
    if isinstance(v, float):
        return round(v, digits)
    if isinstance(v, list):
        return [_round(x, digits) for x in v]
    return v


def _slim(record: dict) -> dict:
    out = {k: _round(record[k]) for k in KEEP_SCENE_KEYS if k in record}
    out["objects"] = [{k: _round(o[k]) for k in KEEP_OBJECT_KEYS if k in o} for o in record.get("objects", [])]
    return out


def record_camera(record: dict) -> tuple:
    """The camera the image was rendered from (objects are ordered left to right from it)."""
    cam = record.get("camera_location")
    return tuple(float(c) for c in cam) if cam else DEFAULT_CAMERA


# ---------------------------------------------------------------------------------------
# sources: indexable (image, record) collections
# ---------------------------------------------------------------------------------------
class FolderSource:
    """A rendered dataset folder: labels/*.json (or scenes.json) + images/."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"Dataset folder {self.root} does not exist; render it with `ig_llm generate`.")
        labels = sorted((self.root / "labels").glob("*.json")) if (self.root / "labels").is_dir() else []
        if labels:
            self.records = [json.loads(p.read_text()) for p in labels]
        elif (self.root / "scenes.json").is_file():
            self.records = json.loads((self.root / "scenes.json").read_text())["scenes"]
        else:
            raise DatasetError(f"Dataset folder {self.root} has no labels/*.json and no scenes.json; "
                               "render it with `ig_llm generate` first.")
        # keep only images that exist (a render that stopped midway leaves labels first)
        self.records = [r for r in self.records if (self.root / "images" / r["image_filename"]).is_file()]
        if not self.records:
            raise DatasetError(f"Dataset folder {self.root} has labels but no images/; render it again.")

    def __len__(self) -> int:
        return len(self.records)

    def image_bytes(self, i: int) -> bytes:
        return (self.root / "images" / self.records[i]["image_filename"]).read_bytes()

    def image(self, i: int) -> Image.Image:
        return Image.open(self.root / "images" / self.records[i]["image_filename"]).convert("RGB")

    def record(self, i: int) -> dict:
        return self.records[i]

    def scene(self, i: int) -> Scene:
        return scene_from_clevr(self.records[i])


class PackSource:
    """A packed ``.npz`` (see the module docstring); every byte is held in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"Pack file {self.path} does not exist; write it with training.dataset.pack().")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self.jpeg, self.offsets = z["jpeg"], z["offsets"]
                meta = json.loads(z["labels"].tobytes().decode("utf-8"))
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"Pack file {self.path} is damaged or not a pack ({err}); pack it again.") from None
        if meta.get("format") != PACK_FORMAT or len(self.offsets) != len(meta["records"]) + 1:
            raise DatasetError(f"Pack file {self.path} is not a {PACK_FORMAT} pack; pack it again.")
        self.records, self.sources = meta["records"], meta.get("sources", [])

    def __len__(self) -> int:
        return len(self.records)

    def image_bytes(self, i: int) -> bytes:
        return self.jpeg[self.offsets[i]:self.offsets[i + 1]].tobytes()

    def image(self, i: int) -> Image.Image:
        return Image.open(io.BytesIO(self.image_bytes(i))).convert("RGB")

    def record(self, i: int) -> dict:
        return self.records[i]

    def scene(self, i: int) -> Scene:
        return scene_from_clevr(self.records[i])


class ConcatSource:
    """Several sources back to back, indexed 0..total-1."""

    def __init__(self, sources: Sequence):
        self.sources = list(sources)
        self.starts = np.cumsum([0] + [len(s) for s in self.sources]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect_right(self.starts, i) - 1
        return self.sources[k], i - self.starts[k]

    def image(self, i: int) -> Image.Image:
        s, j = self._locate(i)
        return s.image(j)

    def image_bytes(self, i: int) -> bytes:
        s, j = self._locate(i)
        return s.image_bytes(j)

    def record(self, i: int) -> dict:
        s, j = self._locate(i)
        return s.record(j)

    def scene(self, i: int) -> Scene:
        s, j = self._locate(i)
        return s.scene(j)


def open_source(path: str | os.PathLike):
    """A dataset folder or a pack file, by what `path` is."""
    p = Path(path)
    if p.is_dir():
        return FolderSource(p)
    if p.suffix == PACK_SUFFIX or p.is_file():
        return PackSource(p)
    raise DatasetError(f"{p} is neither a dataset folder nor a pack file; check the path.")


def open_sources(paths: Sequence) -> ConcatSource:
    if not paths:
        raise DatasetError("No training data given; pass dataset folders or pack files.")
    return ConcatSource([open_source(p) for p in paths])


# ---------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------
def pack(paths: Sequence, out: str | os.PathLike, quality: int = 95,
         size: tuple[int, int] | None = None, limit: int | None = None) -> dict:
    """Pack dataset folders (or packs) into one ``.npz``; returns stats (images, bytes).

    `size` (width, height) resizes the images first; `limit` keeps the first n images.
    Written to a temp file, then renamed, so a killed run leaves no half file.
    """
    out = Path(out)
    if out.suffix != PACK_SUFFIX:
        raise DatasetError(f"Pack file {out} must end in {PACK_SUFFIX}; rename it.")
    src = open_sources(paths)
    n = len(src) if limit is None else min(limit, len(src))
    chunks, offsets, records = [], [0], []
    for i in range(n):
        img = src.image(i)
        if size is not None and img.size != tuple(size):
            img = img.resize(tuple(size), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        chunks.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        offsets.append(offsets[-1] + len(buf.getvalue()))
        records.append(_slim(src.record(i)))
    meta = {"format": PACK_FORMAT, "quality": quality, "size": list(size) if size else None,
            "sources": [str(p) for p in paths], "records": records}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}{PACK_SUFFIX}")
    # compressed: the JPEG bytes do not shrink, but the JSON labels do (about 5x)
    np.savez_compressed(tmp, jpeg=np.concatenate(chunks) if chunks else np.zeros(0, np.uint8),
             offsets=np.asarray(offsets, dtype=np.int64),
             labels=np.frombuffer(json.dumps(meta, separators=(",", ":")).encode("utf-8"), dtype=np.uint8))
    os.replace(tmp, out)
    return {"images": n, "bytes": out.stat().st_size, "image_bytes": int(offsets[-1])}


# ---------------------------------------------------------------------------------------
# torch side
# ---------------------------------------------------------------------------------------
class SceneDataset:
    """Map-style dataset for a DataLoader: item -> (key, pixel tensor, Scene, camera).

    `key` may be an int index or a ``(step, index)`` pair (see :func:`step_batches`); the
    step travels with the item so the collate function can seed its randomness by step.
    `preprocess(img, image_size)` defaults to ``model.batching.preprocess_image``.
    """

    def __init__(self, source, image_size: int, preprocess=None):
        self.source, self.image_size = source, image_size
        if preprocess is None:
            from ..model.batching import preprocess_image as preprocess
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key):
        step, i = key if isinstance(key, tuple) else (None, key)
        img = self.source.image(i)
        return step, self.preprocess(img, self.image_size), self.source.scene(i), record_camera(self.source.record(i))


def stream_index(position: int, n: int, seed: int) -> int:
    """Dataset index at `position` of an endless stream of seeded epoch permutations.

    A pure function of (seed, position): a resumed run reads exactly the same data.
    """
    epoch, offset = divmod(position, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[offset])


class StepBatches:
    """Batch sampler for a DataLoader: yields this rank's ``[(step, index), ...]`` for steps
    ``start .. stop-1``. Rank r of w takes slice r of each global batch of ``batch * w``."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        if n <= 0:
            raise DatasetError("The training data is empty; render or pack some images first.")
        self.n, self.b, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def batch(self, step: int) -> list[tuple[int, int]]:
        first = step * self.b * self.world + self.rank * self.b
        out = []
        for pos in range(first, first + self.b):
            epoch, offset = divmod(pos, self.n)
            out.append((step, int(self._perm(epoch)[offset])))
        return out

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def measure_pack(paths: Sequence, quality: int = 95, sample: int = 200) -> dict:
    """Bytes per image at a JPEG quality on the first `sample` images (to size a pack)."""
    src = open_sources(paths)
    n = min(sample, len(src))
    total = 0
    for i in range(n):
        buf = io.BytesIO()
        src.image(i).save(buf, format="JPEG", quality=quality)
        total += len(buf.getvalue())
    return {"images": n, "bytes_per_image": total / max(n, 1)}
