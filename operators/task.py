"""Image -> scene program, the part that runs in the worker thread. No bpy here.

The model runs with what Blender already has (NumPy, and the safetensors wheel bundled
in the extension zip: ``model/numpy_runtime.py``); torch is used when installed and
faster (a GPU). Images are decoded with Pillow here when it is installed; otherwise the
operator reads them with Blender's own image loader on the main thread and hands the
pixels over — a big picture read at a reduced size by Blender's ``Image.scale``
(``..model.pixels.Reduced``), so a 12 MP photo never becomes a full-size float array.

The checks a user's input can fail (runtime missing, model folder missing or corrupt,
image missing/unreadable/empty/enormous) raise a :class:`..errors.UserError` (TaskError,
ImageError, CheckpointError) with one sentence naming the problem and the fix; the operator shows that sentence with ``self.report``.
The cheap checks (:func:`check_runtime`, :func:`check_model_dir`, :func:`check_image_file`)
run on the main thread before a job starts, so the user hears about a typo at once;
:func:`infer` repeats what only the worker can find out (decoding the whole image,
loading the checkpoint).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from ..errors import SettingError, UserError
# the one loader's limits and file types (importing ..images loads numpy, not PIL)
from ..images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS, MAX_PIXELS, MAX_SIDE  # noqa: F401
from .deps import BUNDLED_MODULES, bundled_hint, missing_modules

# The shipped default model, inside the extension (model/default/).
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "model" / "default"


class TaskError(UserError):
    """A problem the user can fix; str() is the one sentence to show them."""


# ---------------------------------------------------------------------------------------
# main-thread checks (cheap; nothing is imported or decoded)
# ---------------------------------------------------------------------------------------
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
        raise TaskError(f"Model folder not found: {path}; choose the folder of a trained IG-LLM "
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
        raise TaskError(f"Image not found: {p}; check the path and try again.")
    if p.stat().st_size == 0:
        raise TaskError(f"The image {p.name} is empty (0 bytes): choose another file.")
    return p


# ---------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------
def load_image(source, name: str = "image"):
    """A path (needs Pillow) or an (H, W[, 1|3|4]) float/uint8 array (top row first, e.g.
    Blender's pixels) -> (H, W, 3) uint8, by the one loader every door uses (``..images``
    where Pillow is, ``..model.pixels.to_rgb8`` where it is not: its limits and
    sentences); unusable images raise its ImageError (a UserError). A big picture Blender
    already read at a reduced size (``..model.pixels.Reduced``) is passed on as it is."""
    from ..model.pixels import Reduced, rgb_pixels

    if isinstance(source, Reduced):
        return source
    if isinstance(source, (str, os.PathLike)):
        p = check_image_file(source)
        if not has_pillow():
            raise TaskError(f"Reading the file {p.name} here needs Pillow, which this Blender lacks: "
                            "open the image in Blender and import it from the Image Editor instead.")
        return rgb_pixels(p, name=p.name)
    return rgb_pixels(source, name)


def _check_size(width: int, height: int, name: str) -> None:
    from ..images import check_size
    check_size(width, height, name)


_PREDICTORS: dict = {}
_PREDICTORS_LOCK = threading.Lock()


def get_predictor(model_dir: Path, device: str = "auto", threads: int = 0, runtime: str = "auto"):
    """Load (once per folder/device/threads and checkpoint file time) and cache a Predictor."""
    from ..model.inference import Predictor

    weights = model_dir / "model.safetensors"
    calib = model_dir / "calibration.json"
    key = (str(model_dir), weights.stat().st_mtime_ns if weights.exists() else 0,
           calib.stat().st_mtime_ns if calib.exists() else 0, device, threads, runtime)
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is None:
            # CheckpointError, DeviceError, UnsupportedModel are UserErrors: their sentence
            # names the file (or device) and the fix
            predictor = Predictor(model_dir=str(model_dir), device=device, threads=threads or None,
                                  runtime=runtime)
            _PREDICTORS.clear()  # keep one model in memory, not one per folder ever used
            _PREDICTORS[key] = predictor
    return predictor


def infer(progress, image, *, model_dir=None, device: str = "auto", threads: int = 0,
          image_name: str = "image", runtime: str = "auto"):
    """Worker: image (path, pixel array or ``..model.pixels.Reduced``) ->
    :class:`..model.inference.Prediction` (scene, program, confidence, in_domain).

    `progress` is a :class:`..jobs.Progress`; each call may raise ``Cancelled``. Each step
    says what it does: reading, loading the model, resizing the picture for the model,
    writing the program; the last words ("Building the scene") show while the operator
    builds on the main thread. Errors whose fix is a setting name the add-on preference,
    not a command-line flag (``..errors.SettingError.for_blender``).
    """
    progress(0.02, "Checking the model")
    check_runtime()
    folder = check_model_dir(model_dir)
    progress(0.05, _reading_text(image))
    rgb = load_image(image, image_name)
    progress(0.15, "Loading the model")
    try:
        predictor = get_predictor(folder, device, threads, runtime)
    except SettingError as err:
        raise err.for_blender() from None
    progress(0.30, _resizing_text(rgb, predictor.config.image_dims))
    x = predictor.model_input(rgb)
    progress(0.40, "Writing the scene program")
    # one call; a cancel during it is honoured right after (Job drops the result)
    prediction = predictor.predict_inputs([x])[0]
    progress(0.95, "Building the scene")
    return prediction


def _size(image) -> tuple[int, int] | None:
    """(width, height) of a Reduced picture's original, a pixel array or a PIL image."""
    from ..model.pixels import Reduced

    if isinstance(image, Reduced):
        return tuple(image.size)
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) >= 2:
        return (int(shape[1]), int(shape[0]))
    size = getattr(image, "size", None)
    return tuple(size) if isinstance(size, tuple) and len(size) == 2 else None


def _reading_text(image) -> str:
    from ..model.pixels import Reduced

    if isinstance(image, (str, os.PathLike)):
        return f"Reading the image file {Path(image).name}"
    if isinstance(image, Reduced):
        w, h = image.size
        rw, rh = image.reduced_size
        return f"Reading the image ({w}×{h}, read by Blender at {rw}×{rh})"
    size = _size(image)
    return f"Reading the {size[0]}×{size[1]} image" if size else "Reading the image"


def _resizing_text(rgb, dims) -> str:
    """What resizing the picture to the tower's input does: box-reducing a big one first."""
    from ..model.pixels import Reduced, has_pillow, reduction_factor

    w, h = _size(rgb) or (0, 0)
    tw, th = dims
    if isinstance(rgb, Reduced):
        rw, rh = rgb.reduced_size
        return f"Reducing the image for the model ({rw}×{rh} → {tw}×{th})"
    if not has_pillow() and w and reduction_factor(w, h, dims) > 1:
        return f"Reducing the image for the model ({w}×{h} → {tw}×{th})"
    return f"Resizing the image for the model ({w}×{h} → {tw}×{th})"
