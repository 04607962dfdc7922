"""Image -> scene program, the part that runs in the worker thread. No bpy here.

The model runs with what Blender already has (NumPy, and the safetensors wheel bundled
in the extension zip: ``model/numpy_runtime.py``); torch is used when installed and
faster (a GPU). Images are decoded with Pillow here when it is installed; otherwise the
operator reads them with Blender's own image loader on the main thread and hands the
pixels over.

The checks a user's input can fail (runtime missing, model folder missing or corrupt,
image missing/unreadable/empty/enormous) raise :class:`TaskError` with one sentence
naming the problem and the fix; the operator shows that sentence with ``self.report``.
The cheap checks (:func:`check_runtime`, :func:`check_model_dir`, :func:`check_image_file`)
run on the main thread before a job starts, so the user hears about a typo at once;
:func:`infer` repeats what only the worker can find out (decoding the whole image,
loading the checkpoint).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from .deps import BUNDLED_MODULES, bundled_hint

# An image larger than this is refused before decoding: the model sees it at a few
# hundred pixels anyway, and decoding a 20k x 20k photo would take GBs of memory.
MAX_SIDE = 12_000
MAX_PIXELS = 60_000_000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".tga")

# The shipped default model, inside the extension (model/default/).
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "model" / "default"


class TaskError(Exception):
    """A problem the user can fix; str() is the one sentence to show them."""


# ---------------------------------------------------------------------------------------
# main-thread checks (cheap; nothing is imported or decoded)
# ---------------------------------------------------------------------------------------
def missing_modules(modules) -> list[str]:
    """Import names of `modules` that this Python cannot find."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def check_runtime() -> None:
    """What the NumPy runtime needs: NumPy (Blender's) and safetensors (the zip's wheel)."""
    missing = missing_modules(BUNDLED_MODULES)
    if missing:
        raise TaskError(bundled_hint(missing))


def has_pillow() -> bool:
    return not missing_modules(["PIL"])


def resolve_model_dir(model_dir: str | os.PathLike | None) -> Path:
    """The folder to load: the user's choice, else the model shipped with the extension."""
    if model_dir is None or not str(model_dir).strip():
        return SHIPPED_MODEL_DIR
    return Path(os.path.expanduser(str(model_dir).strip())).resolve()


def check_model_dir(model_dir: str | os.PathLike | None) -> Path:
    path = resolve_model_dir(model_dir)
    if path == SHIPPED_MODEL_DIR and not path.is_dir():
        raise TaskError("This build of the extension has no shipped model (model/default is missing): "
                        "set a trained model folder in the add-on preferences or the Model field.")
    if not path.is_dir():
        raise TaskError(f"Model folder not found: {path}. Choose the folder of a trained IG-LLM "
                        "checkpoint (it holds config.json and model.safetensors).")
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).is_file()]
    if missing:
        raise TaskError(f"{path} is not an IG-LLM checkpoint ({' and '.join(missing)} missing): "
                        "choose the folder that `ig_llm train` wrote.")
    return path


def check_image_file(path: str | os.PathLike) -> Path:
    """Existence, size and extension; the header and pixels are checked by :func:`load_image`."""
    if not str(path).strip():
        raise TaskError("No image chosen: pick an image file (PNG, JPEG, …) first.")
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise TaskError(f"Image not found: {p}. Check the path and try again.")
    if p.stat().st_size == 0:
        raise TaskError(f"The image {p.name} is empty (0 bytes): choose another file.")
    return p


# ---------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------
def load_image(source, name: str = "image"):
    """A path (needs Pillow) or an (H, W, 3|4) float/uint8 array (top row first, e.g.
    Blender's pixels) -> (H, W, 3) uint8. Refuses unreadable, empty and enormous images
    with a :class:`TaskError`."""
    import numpy as np

    from ..model.pixels import to_rgb8

    if isinstance(source, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        p = check_image_file(source)
        name = p.name
        try:
            with Image.open(p) as im:
                w, h = im.size  # header only: nothing decoded yet
                _check_size(w, h, name)
                im.load()
                return to_rgb8(np.asarray(im.convert("RGBA") if "A" in im.mode or im.mode == "P" else im.convert("RGB")))
        except TaskError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise TaskError(f"Cannot read the image {name} ({exc.__class__.__name__}: {exc}): "
                            "save it as PNG or JPEG and try again.") from None
    arr = np.asarray(source)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TaskError(f"The image {name} has no usable pixels (shape {arr.shape}): "
                        "reload it or pick an image file.")
    _check_size(arr.shape[1], arr.shape[0], name)
    return to_rgb8(arr)


def _check_size(width: int, height: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise TaskError(f"The image {name} is empty ({width} x {height} pixels): choose another image.")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise TaskError(f"The image {name} is too large ({width} x {height} pixels; at most "
                        f"{MAX_SIDE} per side and {MAX_PIXELS // 1_000_000} megapixels): "
                        "scale it down and try again.")


_PREDICTORS: dict = {}
_PREDICTORS_LOCK = threading.Lock()


def get_predictor(model_dir: Path, device: str = "auto", threads: int = 0, runtime: str = "auto"):
    """Load (once per folder/device/threads and checkpoint file time) and cache a Predictor."""
    from ..model.checkpoint import CheckpointError
    from ..model.inference import Predictor

    weights = model_dir / "model.safetensors"
    calib = model_dir / "calibration.json"
    key = (str(model_dir), weights.stat().st_mtime_ns if weights.exists() else 0,
           calib.stat().st_mtime_ns if calib.exists() else 0, device, threads, runtime)
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is None:
            try:
                predictor = Predictor(model_dir=str(model_dir), device=device, threads=threads or None,
                                      runtime=runtime)
            except CheckpointError as exc:
                raise TaskError(f"The model in {model_dir} cannot be loaded ({exc}): "
                                "choose another model folder or retrain it.") from None
            except FileNotFoundError as exc:
                raise TaskError(f"The model in {model_dir} is incomplete ({exc}): "
                                "choose another model folder.") from None
            except (RuntimeError, ValueError) as exc:   # e.g. a GPU device without torch
                raise TaskError(f"The model in {model_dir} cannot run here ({exc}).") from None
            _PREDICTORS.clear()  # keep one model in memory, not one per folder ever used
            _PREDICTORS[key] = predictor
    return predictor


def infer(progress, image, *, model_dir=None, device: str = "auto", threads: int = 0,
          image_name: str = "image", runtime: str = "auto"):
    """Worker: image (path or pixel array) -> :class:`..model.inference.Prediction`
    (scene, program, confidence, in_domain).

    `progress` is a :class:`..jobs.Progress`; each call may raise ``Cancelled``.
    """
    progress(0.02, "Checking the model")
    check_runtime()
    folder = check_model_dir(model_dir)
    progress(0.05, "Reading the image")
    rgb = load_image(image, image_name)
    progress(0.10, "Loading the model")
    predictor = get_predictor(folder, device, threads, runtime)
    progress(0.40, "Writing the scene program")
    # one call; a cancel during it is honoured right after (Job drops the result)
    prediction = predictor.predict_full([rgb])[0]
    progress(0.95, "Building the scene")
    return prediction
