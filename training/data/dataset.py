"""Training data: rendered dataset folders and packed single files, as (image, Scene) pairs.

A dataset FOLDER is what `ig_llm generate` writes: ``images/CLEVR_{split}_{i:06d}.png``,
``labels/CLEVR_{split}_{i:06d}.json`` (CLEVR scene record + "program") and a merged
``scenes.json``. Labels are read per image, so a folder still being rendered can be used.

A PACK is one ``.npz`` file (no pickle) that travels to a GPU machine:

* ``jpeg``    uint8, every image's JPEG bytes concatenated (quality 95 by default, at the
  render size unless `size` is given),
* ``offsets`` int64, n + 1 byte offsets into ``jpeg``,
* ``labels``  uint8, UTF-8 JSON: ``{"format", "sources", "records": [...]}`` where each
  record is the CLEVR scene record cut to what training needs,
* ``index``   uint8 [n, H, W], the per-pixel truth (Object Index maps, resized with the
  images), when every packed folder has it (stage 1 of the conv tower needs it).

`pack(...)` writes it atomically; :class:`PackSource` reads it (all bytes in memory, so
DataLoader workers forked from the parent share them). :class:`SceneDataset` decodes and
preprocesses one image per item for a ``torch.utils.data.DataLoader``.
"""
from __future__ import annotations

import io
import json
import os
import sys
from bisect import bisect_right
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ...atomic import check_output, writing
from ...errors import UserError
from ...images import load_image
from ...scene.program import DEFAULT_CAMERA, Scene, scene_from_clevr

PACK_FORMAT = "ig_llm-pack-1"
PACK_SUFFIX = ".npz"
# what a packed record keeps of a CLEVR label (the rest is for analysis, not training)
KEEP_SCENE_KEYS = ("image_filename", "image_index", "split", "condition", "camera_location", "width", "height",
                   "domain")     # an asset kit's renders name their kit
KEEP_OBJECT_KEYS = ("shape", "size", "material", "color", "3d_coords", "rotation", "pixel_coords",
                    "x", "y", "rotation_xyz", "rotation_matrix")   # the last four: 2D and SO(3) tasks


class DatasetError(UserError, ValueError):
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
            self.records = [_read_label(p) for p in labels]
        elif (self.root / "scenes.json").is_file():
            self.records = _read_label(self.root / "scenes.json", "scenes")
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
        return load_image(self.root / "images" / self.records[i]["image_filename"])

    def record(self, i: int) -> dict:
        return self.records[i]

    def scene(self, i: int) -> Scene:
        return scene_from_clevr(self.records[i])

    def index_map(self, i: int) -> np.ndarray:
        """The per-pixel truth of image i (see training/data/render.py save_index_map)."""
        name = Path(self.records[i]["image_filename"]).with_suffix(".npz").name
        path = self.root / "index" / name
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["index"]
        except FileNotFoundError:
            raise DatasetError(f"Dataset folder {self.root} has no per-pixel truth for {name} (index/ is "
                               f"missing or incomplete); add it with `python -m ig_llm.training.data.index_maps "
                               f"{self.root}`.") from None
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"Index map {path} is damaged ({err}); delete it and run `python -m "
                               f"ig_llm.training.data.index_maps {self.root}`.") from None


def _read_label(path: Path, key: str | None = None):
    """One label (or scenes.json's list under `key`) as parsed JSON; one sentence if damaged."""
    try:
        data = json.loads(path.read_text())
        return data[key] if key else data
    except (OSError, ValueError, KeyError, TypeError):
        raise DatasetError(f"Label file {path} is damaged; delete it and its image (or render the "
                           "dataset again with `ig_llm generate --resume`).") from None


class PackSource:
    """A packed ``.npz`` (see the module docstring); every byte is held in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"Pack file {self.path} does not exist; write it with training.data.dataset.pack().")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self.jpeg, self.offsets = z["jpeg"], z["offsets"]
                self.maps = z["index"] if "index" in z.files else None
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
        return load_image(self.image_bytes(i), name=f"{self.records[i].get('image_filename', i)} in {self.path}")

    def record(self, i: int) -> dict:
        return self.records[i]

    def scene(self, i: int) -> Scene:
        return scene_from_clevr(self.records[i])

    def index_map(self, i: int) -> np.ndarray:
        if self.maps is None:
            raise DatasetError(f"Pack file {self.path} carries no per-pixel truth; pack dataset folders that "
                               "have index/ (add it with `python -m ig_llm.training.data.index_maps DIR`).")
        return self.maps[i]


def resize_nearest(index: np.ndarray, height: int, width: int) -> np.ndarray:
    if index.shape == (height, width):
        return index
    rows = (np.arange(height) * index.shape[0] / height).astype(int)
    cols = (np.arange(width) * index.shape[1] / width).astype(int)
    return index[rows][:, cols]


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

    def index_map(self, i: int) -> np.ndarray:
        s, j = self._locate(i)
        if not hasattr(s, "index_map"):
            raise DatasetError(f"{getattr(s, 'path', s)} carries no per-pixel truth; train stage 1 on the "
                               "dataset folder instead.")
        return s.index_map(j)


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


HELD_OUT_CONDITIONS = ("B",)   # CoGenT condition B tests compositional generalisation


class FirstN:
    """The first `n` items of a source (learning curves train on growing prefixes)."""

    def __init__(self, source, n: int):
        self.source, self.n = source, min(n, len(source))

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name):        # image, image_bytes, record, scene, index_map
        return getattr(self.source, name)


def open_training_sources(paths: Sequence, limit: int | None = None):
    """`open_sources` for a training stage: refuses any held-out (condition B) image, so
    no training command can learn from the test condition, whatever folder it is given.
    `limit` keeps the first n images."""
    sources = open_sources(paths)
    if limit is not None and limit < len(sources):
        return FirstN(_refuse_held_out(sources, paths), limit)
    return _refuse_held_out(sources, paths)


def _refuse_held_out(sources: ConcatSource, paths: Sequence) -> ConcatSource:
    for src, path in zip(sources.sources, paths):
        bad = next((r for r in src.records if r.get("condition") in HELD_OUT_CONDITIONS), None)
        if bad is not None:
            raise DatasetError(f"{path} holds CoGenT condition-{bad['condition']} images ({bad.get('image_filename')}), "
                               "which are held out for testing; train on condition-A data only.")
    return sources


# ---------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------
QUALITIES = (95, 92, 90, 88, 85, 82, 80, 75)   # tried best first by quality="auto"
DEFAULT_MAX_BYTES = 45_000_000


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def choose_quality(src, n: int, max_bytes: int, size=None, sample: int = 100) -> int:
    """Highest JPEG quality whose estimated pack size (from `sample` images) fits `max_bytes`."""
    k = min(sample, n)
    imgs = [src.image(round(i * (n - 1) / max(k - 1, 1))) for i in range(k)]
    if size is not None:
        imgs = [im.resize(tuple(size), Image.BICUBIC) for im in imgs]
    for q in QUALITIES:
        per_image = sum(len(_jpeg(im, q)) for im in imgs) / max(k, 1)
        if per_image * n * 1.01 + 300 * n <= max_bytes:   # + labels, zip overhead
            return q
    return QUALITIES[-1]


def pack(paths: Sequence, out: str | os.PathLike, quality: int | str = 95,
         size: tuple[int, int] | None = None, limit: int | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Pack dataset folders (or packs) into one ``.npz``; returns stats (images, bytes, quality).

    `quality` is a JPEG quality or "auto": the highest of QUALITIES whose estimated size
    fits `max_bytes`. `size` (width, height) resizes the images first; `limit` keeps the
    first n images. Written to a temp file, then renamed, so a killed run leaves no half file.
    """
    out = Path(out)
    if out.suffix != PACK_SUFFIX:
        raise DatasetError(f"Pack file {out} must end in {PACK_SUFFIX}; rename it.")
    check_output(out, "the pack", inputs=paths)
    src = open_sources(paths)
    n = len(src) if limit is None else min(limit, len(src))
    if quality == "auto":
        quality = choose_quality(src, n, max_bytes, size)
    quality = int(quality)
    chunks, offsets, records, maps = [], [0], [], []
    for i in range(n):
        img = src.image(i)
        if size is not None and img.size != tuple(size):
            img = img.resize(tuple(size), Image.BICUBIC)
        data = _jpeg(img, quality)
        chunks.append(np.frombuffer(data, dtype=np.uint8))
        offsets.append(offsets[-1] + len(data))
        records.append(_slim(src.record(i)))
        if maps is not None:
            try:
                maps.append(resize_nearest(src.index_map(i), img.size[1], img.size[0]))
            except DatasetError:          # a folder without per-pixel truth: pack without it
                maps = None
    if maps and len({m.shape for m in maps}) > 1:
        maps = None                       # mixed sizes: pass `size` to pack them
    meta = {"format": PACK_FORMAT, "quality": quality, "size": list(size) if size else None,
            "sources": [str(p) for p in paths], "records": records}
    with writing(out) as tmp, open(tmp, "wb") as fh:
        # compressed: the JPEG bytes do not shrink, but the JSON labels do (about 5x)
        np.savez_compressed(fh, jpeg=np.concatenate(chunks) if chunks else np.zeros(0, np.uint8),
                            offsets=np.asarray(offsets, dtype=np.int64),
                            labels=np.frombuffer(json.dumps(meta, separators=(",", ":")).encode("utf-8"),
                                                 dtype=np.uint8),
                            **({"index": np.stack(maps)} if maps else {}))
    return {"images": n, "bytes": out.stat().st_size, "image_bytes": int(offsets[-1]), "quality": quality}


# ---------------------------------------------------------------------------------------
# torch side
# ---------------------------------------------------------------------------------------
class SceneDataset:
    """Map-style dataset for a DataLoader: item -> (key, pixel tensor, Scene, camera).

    `key` may be an int index or a ``(step, index)`` pair (see :class:`StepBatches`); the
    step travels with the item so the collate function can seed its randomness by step.
    `preprocess(img, image_size)` defaults to ``model.batching.preprocess_image``.

    `cache=True` preprocesses every image once (in `workers` processes) into one uint8
    tensor [N, 3, S, S] (N * 3 * S * S bytes: 1 GB for 9000 images at 192 px) and then
    only re-normalises per item, which gives exactly the same floats as `preprocess`
    (its resize output is 8-bit) at a fraction of the cost: use it on a fast GPU, where
    JPEG decoding would otherwise starve the model.
    """

    def __init__(self, source, image_size: int, preprocess=None, cache: bool = False, workers: int = 0,
                 raw: bool = False, index_maps: bool = False):
        # raw (with cache): items carry the 8-bit pixels; :func:`normalize_pixels` finishes
        # them on the device (4x less to stack, pin and copy than float32)
        self.source, self.image_size, self.raw = source, image_size, raw and cache
        # index_maps: items also carry each image's per-pixel truth at the pixels' size (for
        # recolouring); only for renders at the tower's aspect, where no letterbox shifts them
        self.index = None
        if index_maps:
            from ...model.batching import image_dims
            w, h = image_dims(image_size)
            self.index = []
            for i in range(len(source)):
                index = source.index_map(i)
                if abs(index.shape[0] * w - index.shape[1] * h) > 0.01 * index.shape[1] * h:
                    raise DatasetError(f"{source.record(i)['image_filename']} is {index.shape[1]}x{index.shape[0]}, "
                                       f"not the tower's {w}x{h} aspect, so its index map cannot follow the "
                                       "letterbox; drop --recolour or render at the tower's aspect.")
                self.index.append(resize_nearest(index, h, w))
        if preprocess is None:
            from ...model.batching import preprocess_image as preprocess
        self.preprocess = preprocess
        # labels parsed once (they are small); images decoded per item or cached
        self.scenes = [source.scene(i) for i in range(len(source))]
        self.cameras = [record_camera(source.record(i)) for i in range(len(source))]
        self.cache = self._fill_cache(workers) if cache else None

    def __len__(self) -> int:
        return len(self.source)

    def _fill_cache(self, workers: int):
        import torch
        from torch.utils.data import DataLoader
        from ...model.batching import image_dims
        n, (w, h) = len(self.source), image_dims(self.image_size)
        out = torch.empty((n, 3, h, w), dtype=torch.uint8)
        loader = DataLoader(_Uint8Images(self.source, self.image_size, self.preprocess), batch_size=64,
                            num_workers=workers, generator=torch.Generator())
        pos = 0
        for chunk in loader:
            out[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return out

    def pixels(self, i: int):
        if self.cache is None:
            return self.preprocess(self.source.image(i), self.image_size)
        if self.raw:
            return self.cache[i]
        return normalize_pixels(self.cache[i])

    def __getitem__(self, key):
        step, i = key if isinstance(key, tuple) else (None, key)
        if self.index is not None:
            return step, self.pixels(i), self.scenes[i], self.cameras[i], self.index[i]
        return step, self.pixels(i), self.scenes[i], self.cameras[i]


def normalize_pixels(x):
    """8-bit [.., 3, S, S] -> CLIP-normalised float32, exactly as preprocess_image computes
    it; float tensors pass through unchanged."""
    import torch
    if x.dtype != torch.uint8:
        return x
    from ...model.batching import CLIP_MEAN, CLIP_STD
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return ((x.float() / 255.0 - mean) / std).contiguous()


class _Uint8Images:
    """Preprocessed images back as 8-bit [3, S, S] (for SceneDataset's cache)."""

    def __init__(self, source, image_size: int, preprocess):
        self.source, self.image_size, self.preprocess = source, image_size, preprocess

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        import torch
        from ...model.batching import CLIP_MEAN, CLIP_STD
        x = self.preprocess(self.source.image(i), self.image_size)
        x = (x * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)) * 255.0
        return x.round().clamp(0, 255).to(torch.uint8)


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
        step = self.start
        while step < self.stop:          # `stop` may shrink while iterating (--time-budget)
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class LengthGroupedBatches(StepBatches):
    """StepBatches whose global batches hold examples of similar length (object count).

    A batch is padded to its longest program, and random batches of CLEVR scenes (3-10
    objects) almost always hold a 10-object one: about a third of every step's tokens
    would be padding. Here each group of `group` consecutive steps takes its examples
    from the same stream positions as StepBatches would, sorts them by length, cuts them
    into `group` batches and orders those batches at random — still a pure function of
    (seed, step), so resuming stays exact, and every image is still seen once per epoch."""

    def __init__(self, lengths, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1, group: int = 8):
        super().__init__(len(lengths), batch_size, seed, start, stop, rank, world)
        self.lengths, self.group = np.asarray(lengths), group
        self._groups: dict[int, list] = {}

    def _global_batches(self, g: int) -> list:
        if g not in self._groups:
            gb = self.b * self.world
            first = g * self.group * gb
            idx = []
            for pos in range(first, first + self.group * gb):
                epoch, offset = divmod(pos, self.n)
                idx.append(int(self._perm(epoch)[offset]))
            idx.sort(key=lambda i: self.lengths[i])          # stable: ties keep stream order
            chunks = [idx[k * gb:(k + 1) * gb] for k in range(self.group)]
            order = np.random.default_rng([self.seed, g, 1]).permutation(self.group)
            self._groups = {g: [chunks[k] for k in order]}
        return self._groups[g]

    def batch(self, step: int) -> list[tuple[int, int]]:
        chunk = self._global_batches(step // self.group)[step % self.group]
        return [(step, i) for i in chunk[self.rank * self.b:(self.rank + 1) * self.b]]


def _main(argv=None) -> int:
    """python -m ig_llm.training.data.dataset OUT.npz DIR... [--quality auto|N] [--max-mb 45] [--size WxH]"""
    import argparse
    p = argparse.ArgumentParser(prog="python -m ig_llm.training.data.dataset",
                                description="Pack dataset folders into one .npz for a training machine.")
    p.add_argument("out")
    p.add_argument("data", nargs="+")
    p.add_argument("--quality", default="auto", help="JPEG quality, or auto (fit --max-mb); default auto")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 1e6, help="size budget for auto (MB)")
    p.add_argument("--size", help="resize to WxH first")
    a = p.parse_args(argv)
    size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else None
    try:
        st = pack(a.data, a.out, a.quality if a.quality == "auto" else int(a.quality), size,
                  max_bytes=int(a.max_mb * 1e6))
    except UserError as err:
        print(f"pack: {err}", file=sys.stderr)
        return 2
    print(f"{st['images']} images at JPEG quality {st['quality']}: {st['bytes'] / 1e6:.1f} MB "
          f"({st['bytes'] / max(st['images'], 1) / 1e3:.1f} kB per image) -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
