"""`ig_llm predict`: images -> scene programs -> CLEVR scenes JSON.

    python -m ig_llm predict IMAGE_OR_DIR... [--model DIR] --out predictions.json [--batch-size N] [--device auto]

Writes ``{"model": ..., "scenes": [{"image_filename", "program", "objects": [{"shape", "size",
"material", "color", "3d_coords", "rotation"}], "confidence", "in_domain"}]}`` (rotation: yaw in
radians; confidence 0-1, higher = more like the training scenes, null when the model
folder has no calibration.json; in_domain false = the program is a guess). Without
`--model` the shipped default model (``model/default/``) is used. The file is written
atomically at the end. An image that cannot be read does not stop the run: it is listed
with its reason under ``"failed"``, and the command ends with exit code 2 and one sentence
(``--strict``: stop at the first one instead).

Runs in Blender's own Python as it ships (no Pillow, tqdm or torch): images are read by
Blender's loader, the shipped model runs on the NumPy runtime, progress is plain text.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ...atomic import check_output, write_json
from ...errors import UserError
from ...images import IMAGE_SUFFIXES
from ...operators import deps
from ...scene.program import Scene, scene_to_clevr


class PredictError(UserError, ValueError):
    """Bad input to predict; the message names the path and the fix."""


class ImageItem:
    """One input image: its file name (the join key for `evaluate`) and how to load it."""

    def __init__(self, name: str, path: Path | None = None, pack=None, index: int = 0):
        self.name, self.path, self.pack, self.index = name, path, pack, index

    def load(self):
        return self.pack.image(self.index) if self.pack is not None else read_image(self.path)


def _folder_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; hidden files (e.g. a killed writer's temp
    file) are not images of the set."""
    return sorted(q for q in folder.iterdir()
                  if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file() and not q.name.startswith("."))


def collect_images(paths) -> list[ImageItem]:
    """Image files named directly, the images directly inside named folders (sorted;
    a dataset folder's images/ too), and every image of a packed ``.npz`` dataset."""
    out: list[ImageItem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _folder_images(p)
            if not found and (p / "images").is_dir():   # a dataset folder
                found = _folder_images(p / "images")
            if not found:
                raise PredictError(f"Folder {p} contains no images ({', '.join(IMAGE_SUFFIXES)}); "
                                   "pass image files or a folder of images.")
            out.extend(ImageItem(q.name, q) for q in found)
        elif p.is_file() and p.suffix == ".npz":
            deps.require(f"Reading the packed dataset {p.name}", ["PIL"])   # before dataset.py imports it
            from ..data.dataset import DatasetError, PackSource
            try:
                pack = PackSource(p)
            except DatasetError as err:
                raise PredictError(str(err)) from None
            out.extend(ImageItem(Path(pack.record(i)["image_filename"]).name, pack=pack, index=i)
                       for i in range(len(pack)))
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise PredictError(f"{p} is not an image file ({', '.join(IMAGE_SUFFIXES)}) or a .npz pack; "
                                   "pass images.")
            out.append(ImageItem(p.name, p))
        else:
            raise PredictError(f"{p} does not exist; pass existing image files or folders.")
    return out


def read_image(path: Path):
    """An image file -> what the predictor takes: an RGB PIL image through the one loader
    (``..images.load_image``) where Pillow is; in Blender's own Python, which has no Pillow,
    the pixels as Blender's loader reads them (:func:`blender_pixels`, what File > Import >
    Image to Scene does without Pillow). Neither: one sentence naming Pillow."""
    from ...model.pixels import has_pillow

    if has_pillow():
        from ...images import load_image
        return load_image(path)
    if not deps.missing_modules(["bpy"]):
        return blender_pixels(path)
    raise PredictError(deps.requirement_sentence(f"Reading the image file {Path(path).name}", ["PIL"]))


def blender_pixels(path: Path):
    """An image file read by Blender (every format Blender opens) -> (H, W, C) float32
    display values in [0, 1], top row first; the temporary Image datablock is removed.
    Unusable files raise ``..images.ImageError`` sentences."""
    import bpy
    import numpy as np

    from ...images import ImageError, check_size

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"Image file {path} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise ImageError(f"Image file {path} is empty (0 bytes); re-export the image.")
    unreadable = f"Image file {path} cannot be read as an image; save it as PNG or JPEG."
    try:
        img = bpy.data.images.load(str(path.resolve()), check_existing=False)
    except RuntimeError:
        raise ImageError(unreadable) from None
    try:
        width, height = img.size[:]
        channels = img.channels
        if not width or not height or not channels:
            raise ImageError(unreadable)
        check_size(width, height, path)
        buf = np.empty(width * height * channels, dtype=np.float32)
        img.pixels.foreach_get(buf)
        return buf.reshape(height, width, channels)[::-1].copy()
    finally:
        bpy.data.images.remove(img)


def predict_records(predictor, images: list[ImageItem], batch_size: int = 8, progress: bool = True,
                    strict: bool = False) -> tuple[list[dict], list[dict]]:
    """Run `predictor` over images in batches: (one CLEVR scene record + program per readable
    image, one ``{"image_filename", "path", "error"}`` per unreadable one). `strict`: the
    first unreadable image raises its ImageError instead."""
    from ...images import ImageError
    from ..progress import progress_bar
    records, failed = [], []
    bar = progress_bar(len(images), desc="predict", unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(images), batch_size):
        chunk, pixels = [], []
        for item in images[start:start + batch_size]:
            try:
                pixels.append(item.load())
                chunk.append(item)
            except ImageError as err:
                if strict:
                    raise
                failed.append({"image_filename": item.name, "path": str(item.path or item.pack.path),
                               "error": str(err)})
        results = predictor.predict_full(pixels) if pixels else []
        for item, pred in zip(chunk, results):
            scene, text = pred.scene, pred.program
            # an unconstrained decode that does not parse gives no scene: score it as empty
            rec = scene_to_clevr(scene if scene is not None else Scene([]), image_filename=item.name,
                                 image_index=len(records))
            rec["program"] = text
            if getattr(predictor, "config", None) is not None and predictor.config.kit:
                rec["domain"] = pred.domain         # an asset kit's words (scene_from_clevr reads them)
            rec["confidence"], rec["in_domain"] = pred.confidence, pred.in_domain
            records.append(rec)
        bar.update(len(images[start:start + batch_size]))
    bar.close()
    return records, failed


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR",
                        help="image files, folders of images, and/or packed .npz datasets")
    parser.add_argument("--model", help="model folder (default: the shipped model/default/)")
    parser.add_argument("--out", required=True, help="predictions JSON to write")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "numpy", "torch"),
                        help="auto (default): NumPy on the CPU, torch on a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image (default: predict the rest, list it)")


def main(args) -> int:
    if args.batch_size < 1:
        raise PredictError("--batch-size is too small; pass --batch-size 1 or more.")
    images = collect_images(args.images)
    out = check_output(args.out, "--out", inputs=[i.path or i.pack.path for i in images])
    from ...model.inference import Predictor
    predictor = Predictor(model_dir=args.model, device=args.device, batch_size=args.batch_size,
                          runtime=args.runtime)
    records, failed = predict_records(predictor, images, args.batch_size, progress=not args.quiet,
                                      strict=args.strict)
    report = {"model": str(args.model or "default"), "scenes": records}
    if failed:
        report["failed"] = failed
    write_json(out, report)
    print(f"{len(records)} scene(s) written to {out}")
    if failed:
        first = failed[0]
        raise PredictError(f"{len(failed)} of {len(images)} image(s) could not be read and are listed under "
                           f"\"failed\" in {out} (first: {first['path']}): fix or remove them and predict "
                           "those again")
    return 0
