"""The one image loader of the CLI, the Blender operator, the demo and the datasets.

:func:`load_image` turns a file (or bytes, or a pixel array) into an 8-bit RGB PIL
image the same way everywhere, so one picture gives one scene whichever door it came
through: every PIL mode is mapped correctly (16-bit grey is scaled, not clipped to
white; alpha is composited over the CLIP mean colour the model was trained with), EXIF
orientation is applied, and the size is checked from the header before any pixel is
decoded. Every failure is an :class:`ImageError` sentence naming the file and the fix.
numpy + PIL only (no torch): the operator imports it on a worker thread. PIL is imported
inside the functions, so the constants, :func:`check_size` and :class:`ImageError` are the
one source for ``model/pixels.py`` too (the NumPy runtime, which runs without Pillow).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import UserError, brief

MAX_PIXELS = 50_000_000   # a 50 MP decode already needs ~150 MB; the model sees a few hundred px
MAX_SIDE = 20_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".tga")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # the model's normalisation (model/pixels.py)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKGROUND = tuple(int(round(m * 255)) for m in CLIP_MEAN)   # what transparent pixels become


class ImageError(UserError, ValueError):
    """An image that cannot be used; the message names the file and the fix."""


def check_size(width: int, height: int, name) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"Image {name} has no pixels ({width}x{height}); use a non-empty image.")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageError(f"Image {name} is too large ({width}x{height} pixels; at most {MAX_SIDE} a side and "
                         f"{MAX_PIXELS // 1_000_000} MP); downscale it first.")


def load_image(src, name=None):
    """A path, bytes, PIL image or (H, W[, C]) array -> 8-bit RGB PIL image.

    `name` is what messages call it (default: the path)."""
    from PIL import Image

    if isinstance(src, Image.Image):
        return to_rgb(src, name or f"<{src.format or 'image'}>")
    if isinstance(src, np.ndarray):
        return from_array(src, name or "<array>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(lambda: io.BytesIO(bytes(src)), name or "<bytes>")
    path = Path(os.fspath(src))
    name = name or path
    if not path.is_file():
        raise ImageError(f"Image file {name} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise ImageError(f"Image file {name} is empty (0 bytes); re-export the image.")
    return _decode(lambda: path, name)


def _decode(opener, name):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # our own limit (MAX_PIXELS) decides; PIL's bomb check only ever sees bigger images
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opener()) as im:
                check_size(*im.size, name)       # header only: nothing decoded yet
                im.load()
                im = ImageOps.exif_transpose(im)
                return to_rgb(im, name)
    except Image.DecompressionBombError:
        raise ImageError(f"Image {name} is too large (more than {MAX_PIXELS // 1_000_000} MP); "
                         "downscale it first.") from None
    except UnidentifiedImageError:
        raise ImageError(f"Image file {name} cannot be read as an image; save it as PNG or JPEG.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if isinstance(err, UserError):
            raise
        raise ImageError(f"Image file {name} cannot be read ({brief(err, 80)}); re-export it or remove it.") from None


def to_rgb(img, name="<image>"):
    """Any PIL mode -> 8-bit RGB; alpha is composited over the CLIP mean colour."""
    from PIL import Image

    check_size(*img.size, name)
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):       # 16-bit / 32-bit grey
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else float(arr.max())
        else:
            top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, BACKGROUND)
        bg.paste(img.convert("RGB"), mask=img.getchannel("A"))
        return bg
    return img.convert("RGB")


def from_array(arr, name="<array>"):
    """(H, W), (H, W, 1|3|4) uint8 / uint16 / float-in-[0, 1] pixels (top row first) -> RGB."""
    from PIL import Image

    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"Image {name} has pixels of shape {arr.shape}, not HxW, HxWx3 or HxWx4; "
                         "pass an RGB(A) or grey image.")
    check_size(arr.shape[1], arr.shape[0], name)
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageError(f"Image {name} has pixels of type {arr.dtype}; use uint8, uint16 or float in [0, 1].")
    img = Image.fromarray(np.ascontiguousarray(arr))
    return to_rgb(img, name)
