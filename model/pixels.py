"""RGB pixels -> the model's input array: letterbox, bicubic resize, CLIP normalisation.

NumPy only (Pillow optional), so it runs inside Blender, which ships NumPy but not Pillow.
``batching.preprocess_image`` (torch) ends here too: both runtimes see the same numbers.

The resize is Pillow's ``Image.resize(…, BICUBIC)`` (a = -0.5, support widened by the
scale factor when shrinking, horizontal pass then vertical, each rounded to 8 bits).
With Pillow present Pillow does it; without, :func:`resize_bicubic` reimplements it in
NumPy: it matches Pillow to within 1/255 per pixel (Pillow rounds fixed-point, this
rounds floats; ``tests/test_numpy_runtime.py`` measures it).
"""
from __future__ import annotations

import numpy as np

# one source for the limits, the normalisation and the errors: ..images (NumPy-only at import)
from ..images import BACKGROUND as MEAN_RGB  # noqa: F401 - the letterbox colour
from ..images import CLIP_MEAN, CLIP_STD, MAX_PIXELS, ImageError, check_size  # noqa: F401

ImageReadError = ImageError   # the NumPy path's old name: every image problem is one ImageError


def to_rgb8(arr, name="<array>") -> np.ndarray:
    """(H, W[, 1|2|3|4]) uint8/uint16/float array (top row first) -> (H, W, 3) uint8.

    Float pixels are taken as display values in [0, 1] (what Blender's ``Image.pixels``
    holds for an 8-bit sRGB file); alpha is composited over the letterbox colour.
    Unusable arrays raise :class:`..images.ImageError` (the size limits of ``..images``)."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"Image {name} has pixels of shape {a.shape}, not HxW, HxWx3 or HxWx4; "
                         "pass an RGB(A) or grey image.")
    check_size(a.shape[1], a.shape[0], name)
    if a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif a.dtype == np.bool_ or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"Image {name} has pixels of type {a.dtype}; use uint8, uint16 or float in [0, 1].")
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    else:
        a = a.astype(np.float32) / 255.0
    if a.shape[2] in (2, 4):
        alpha, a = a[:, :, -1:], a[:, :, :-1]
        a = a * alpha + np.asarray(MEAN_RGB, np.float32)[: a.shape[2]] / 255.0 * (1.0 - alpha)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return (a * 255.0 + 0.5).astype(np.uint8)


def letterbox_size(w: int, h: int, dims) -> tuple[int, int]:
    """The smallest canvas of the target aspect that holds a w x h image."""
    tw, th = dims
    return (w, max(h, round(w * th / tw))) if w * th >= h * tw else (max(w, round(h * tw / th)), h)


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
                    np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


def _coefficients(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] resampling matrix, as Pillow's precompute_coeffs (BICUBIC)."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 2.0 * fscale
    m = np.zeros((n_out, n_in), np.float64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = _bicubic((np.arange(lo, hi) - center + 0.5) / fscale)
        total = w.sum()
        m[xx, lo:hi] = w / total if total else w
    return m


def resize_bicubic(rgb: np.ndarray, size) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[1], size[0], 3) uint8, like Pillow's BICUBIC resize."""
    tw, th = size
    h, w = rgb.shape[:2]
    out = rgb.astype(np.float64)
    if w != tw:
        out = np.einsum("xw,hwc->hxc", _coefficients(w, tw), out)
        out = np.clip(np.round(out), 0, 255)
    if h != th:
        out = np.einsum("yh,hxc->yxc", _coefficients(h, th), out)
        out = np.clip(np.round(out), 0, 255)
    return out.astype(np.uint8)


def letterbox(rgb: np.ndarray, dims, use_pillow: bool | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (th, tw, 3) uint8: centred on a mean-colour canvas of the target
    aspect (a 3:2 render into a 3:2 tower is not padded), then resized bicubically."""
    h, w = rgb.shape[:2]
    cw, ch = letterbox_size(w, h, dims)
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = MEAN_RGB
    y0, x0 = (ch - h) // 2, (cw - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = rgb
    if use_pillow is None:
        use_pillow = has_pillow()
    if use_pillow:
        from PIL import Image
        return np.asarray(Image.fromarray(canvas).resize(tuple(dims), Image.BICUBIC))
    return resize_bicubic(canvas, dims)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 [3, H, W] with CLIP's mean and std."""
    arr = rgb.astype(np.float32) / 255.0
    arr = (arr - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def model_input(rgb: np.ndarray, dims, use_pillow: bool | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> the normalised [3, height, width] float32 array the tower takes."""
    return normalise(letterbox(rgb, dims, use_pillow))


def has_pillow() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def read_image(path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 through the one loader (``..images.load_image``,
    which needs Pillow); raises ImportError where Pillow is missing (inside Blender the
    operator reads files with Blender's own loader and passes the pixels instead)."""
    import PIL  # noqa: F401 - ImportError here, before any message about the file

    from ..images import load_image
    return np.asarray(load_image(path))


def rgb_pixels(image, name=None) -> np.ndarray:
    """A path, PIL image or pixel array -> (H, W, 3) uint8, as the torch runtime sees it:
    with Pillow through ``..images.load_image`` (the same numbers as ``preprocess_image``);
    without it, arrays through :func:`to_rgb8` and paths raise ImportError."""
    if has_pillow():
        from ..images import load_image
        return np.asarray(load_image(image, name))
    if isinstance(image, np.ndarray):
        return to_rgb8(image, name or "<array>")
    return read_image(image)
