"""RGB pixels -> the model's input array: letterbox, bicubic resize, CLIP normalisation.

NumPy only (Pillow optional), so it runs inside Blender, which ships NumPy but not Pillow.
``batching.preprocess_image`` (torch) ends here too: both runtimes see the same numbers.

The resize is Pillow's ``Image.resize(…, BICUBIC)`` (a = -0.5, support widened by the
scale factor when shrinking, horizontal pass then vertical, each rounded to 8 bits).
With Pillow present Pillow does it; without, :func:`resize_bicubic` reimplements it in
NumPy: it matches Pillow to within 1/255 per pixel (Pillow rounds fixed-point, this
rounds floats; ``tests/test_numpy_runtime.py`` measures it).

Big pictures (a 12 MP photo is ~23x the tower's width) are not resized at full size
without Pillow, which took 18 s and a gigabyte: :func:`reduce_pixels` (NumPy, in chunks of
rows) or Blender's own ``Image.scale`` (an area average in C; ``operators/image_to_scene.py``)
first reduce the picture to blocks, an integer box filter, and :class:`Reduced` keeps where
each block lay in the original, its mean and (NumPy) its first moments. The bicubic
weights are then integrated over each block (:func:`_axis_weights`), so the letterbox,
the kernel's support and clipping stay those of the full-size resize, and colour that
varies linearly inside a block comes out exact. Blocks are at most 1/``REDUCE_GAP`` of the
resize's scale. What remains: the full-size path rounds each of its thousands of rows
to 8 bits between its two passes, which moves ~5 % of output pixels by 1/255 (the same
resize without that rounding differs from it as much); a reduction cannot see single
rows, so its output differs from the full-size one by at most 1/255 in about as many
pixels (``tests/test_image_12mp.py``) — the runtimes' tolerance (NumPy vs Pillow).
"""
from __future__ import annotations

from dataclasses import dataclass

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
    return (_rgb_float(a, name) + 0.5).astype(np.uint8)


def _rgb_float(a: np.ndarray, name="<array>") -> np.ndarray:
    """:func:`to_rgb8` before its rounding: (H, W, 3) float32 in 0..255."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"Image {name} has pixels of shape {a.shape}, not HxW, HxWx3 or HxWx4; "
                         "pass an RGB(A) or grey image.")
    if a.dtype == np.bool_ or not (a.dtype in (np.uint8, np.uint16) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"Image {name} has pixels of type {a.dtype}; use uint8, uint16 or float in [0, 1].")
    top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    if a.shape[2] in (2, 4) and a[:, :, -1].min(initial=top) >= top:
        a = a[:, :, :-1]                  # opaque: nothing to composite (the same numbers, faster)
    if a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif a.dtype != np.uint8:
        a = a.astype(np.float32)          # a copy: cleaned in place
        np.nan_to_num(a, copy=False)
        np.clip(a, 0.0, 1.0, out=a)
    else:
        a = a.astype(np.float32) / 255.0
    if a.shape[2] in (2, 4):
        alpha, a = a[:, :, -1:], a[:, :, :-1]
        a = a * alpha + np.asarray(MEAN_RGB, np.float32)[: a.shape[2]] / 255.0 * (1.0 - alpha)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a *= np.float32(255.0)
    return a


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
    if w != tw:     # (h, 3, w) @ (w, tw): a BLAS product, not an einsum loop
        out = np.matmul(out.transpose(0, 2, 1), _coefficients(w, tw).T).transpose(0, 2, 1)
        out = np.clip(np.round(out), 0, 255)
    if h != th:
        out = np.matmul(_coefficients(h, th), out.reshape(h, -1)).reshape(th, out.shape[1], 3)
        out = np.clip(np.round(out), 0, 255)
    return out.astype(np.uint8)


def letterbox(rgb, dims, use_pillow: bool | None = None, reduce: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 or :class:`Reduced` -> (th, tw, 3) uint8: centred on a mean-colour
    canvas of the target aspect (a 3:2 render into a 3:2 tower is not padded), then
    resized bicubically. Without Pillow a picture more than ``2 * REDUCE_GAP`` times the
    tower's size is box-reduced first (``reduce=False``: the exact full-size resize)."""
    if isinstance(rgb, Reduced):
        return _letterbox_reduced(rgb, dims)
    h, w = rgb.shape[:2]
    if use_pillow is None:
        use_pillow = has_pillow()
    if not use_pillow and reduce:
        factor = reduction_factor(w, h, dims)
        if factor > 1:
            return _letterbox_reduced(reduce_pixels(rgb, factor), dims)
    cw, ch = letterbox_size(w, h, dims)
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = MEAN_RGB
    y0, x0 = (ch - h) // 2, (cw - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = rgb
    if use_pillow:
        from PIL import Image
        return np.asarray(Image.fromarray(canvas).resize(tuple(dims), Image.BICUBIC))
    return resize_bicubic(canvas, dims)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 [3, H, W] with CLIP's mean and std."""
    arr = rgb.astype(np.float32) / 255.0
    arr = (arr - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def model_input(rgb, dims, use_pillow: bool | None = None, reduce: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 or :class:`Reduced` -> the normalised [3, height, width] float32
    array the tower takes."""
    return normalise(letterbox(rgb, dims, use_pillow, reduce))


# ---------------------------------------------------------------------------------------
# big pictures: blocks of pixels first, then the bicubic resize with block-integrated weights
# ---------------------------------------------------------------------------------------
REDUCE_GAP = 4.0    # blocks are at most 1/REDUCE_GAP of the bicubic resize's scale
READ_SIDE = 1536    # Blender reads a big picture at this long side (>= REDUCE_GAP x a 384 px tower)


@dataclass(frozen=True)
class Reduced:
    """A picture already reduced to blocks: ``pixels`` (h, w, 3) float32 RGB in 0..255 (alpha
    composited as :func:`to_rgb8` does) are the means of the blocks of an original picture
    of ``size`` = (width, height); block (i, j) spans original columns ``x_edges[j]`` to
    ``x_edges[j + 1]`` and rows ``y_edges[i]`` to ``y_edges[i + 1]`` (fractional edges
    allowed; top row first). ``mx`` / ``my`` (optional, same shape) are the blocks' first
    moments, the mean of (x - block centre) * value in original pixels: with them the
    resize is exact for colour that varies linearly inside a block."""
    pixels: np.ndarray
    size: tuple
    x_edges: np.ndarray
    y_edges: np.ndarray
    mx: np.ndarray | None = None
    my: np.ndarray | None = None

    @property
    def shape(self) -> tuple:
        """The original picture's (height, width, 3), as an array's shape reads."""
        return (self.size[1], self.size[0], 3)

    @property
    def reduced_size(self) -> tuple:
        return (self.pixels.shape[1], self.pixels.shape[0])


def reduction_factor(width: int, height: int, dims) -> int:
    """The integer block size that leaves the bicubic resize a shrink of at least
    ``REDUCE_GAP`` (1: resize at full size)."""
    cw, ch = letterbox_size(width, height, dims)
    return max(1, int(min(cw / dims[0], ch / dims[1]) // REDUCE_GAP))


def read_size(width: int, height: int, side: int | None = None) -> tuple:
    """The size a big picture is read at (long side `side`, default ``READ_SIDE``, the
    aspect kept); small ones stay."""
    side = READ_SIDE if side is None else side
    long = max(width, height)
    if long <= side:
        return (width, height)
    return (max(1, round(width * side / long)), max(1, round(height * side / long)))


def _centres(edges: np.ndarray) -> np.ndarray:
    return (edges[:-1] + edges[1:]) / 2.0


def reduce_pixels(arr, factor: int, name="<array>") -> Reduced:
    """(H, W[, C]) pixels (anything :func:`to_rgb8` takes, top row first) -> :class:`Reduced`
    by `factor` x `factor` blocks (the last row and column of blocks may be narrower), with
    each block's mean and first moments of the 8-bit values the full-size path would have
    resized. The work goes in chunks of rows: no full-size float copy is made."""
    a = np.asarray(arr)
    if a.ndim not in (2, 3):
        to_rgb8(a, name)            # its sentence
    h, w = a.shape[:2]
    check_size(w, h, name)
    k = max(1, int(factor))
    xs, ys = np.arange(0, w, k), np.arange(0, h, k)
    xe, ye = np.append(xs, w).astype(np.float64), np.append(ys, h).astype(np.float64)
    u = np.arange(w, dtype=np.float64)[None, :, None] + 0.5        # pixel centres
    sums, xsum, ysum = (np.empty((len(ys), len(xs), 3), np.float64) for _ in range(3))
    step = k * max(1, 64 // k)
    for r0 in range(0, h, step):
        chunk = a[r0:r0 + step]
        rgb = chunk if chunk.dtype == np.uint8 and chunk.ndim == 3 and chunk.shape[2] == 3 else to_rgb8(chunk, name)
        rgb = rgb.astype(np.float64)
        v = np.arange(r0, r0 + rgb.shape[0], dtype=np.float64)[:, None, None] + 0.5
        rows = np.arange(0, rgb.shape[0], k)
        row_sums = np.add.reduceat(rgb, xs, axis=1)
        at = slice(r0 // k, r0 // k + len(rows))
        sums[at] = np.add.reduceat(row_sums, rows, axis=0)
        ysum[at] = np.add.reduceat(row_sums * v, rows, axis=0)
        xsum[at] = np.add.reduceat(np.add.reduceat(rgb * u, xs, axis=1), rows, axis=0)
    area = np.diff(ye)[:, None, None] * np.diff(xe)[None, :, None]
    sums /= area                    # in place: the block sums become means and moments
    xsum /= area
    xsum -= _centres(xe)[None, :, None] * sums
    ysum /= area
    ysum -= _centres(ye)[:, None, None] * sums
    return Reduced(sums.astype(np.float32), (w, h), xe, ye, xsum.astype(np.float32), ysum.astype(np.float32))


def reduced_from_pixels(arr, size, name="<array>") -> Reduced:
    """(h, w[, C]) pixels of a picture of `size` (width, height) already shrunk evenly by an
    area-averaging filter (Blender's ``Image.scale``), in any form :func:`to_rgb8` takes ->
    :class:`Reduced` (unrounded; no moments: such a filter keeps none)."""
    a = _rgb_float(np.asarray(arr), name)
    w, h = int(size[0]), int(size[1])
    check_size(w, h, name)
    return Reduced(a, (w, h), np.linspace(0.0, w, a.shape[1] + 1), np.linspace(0.0, h, a.shape[0] + 1))


def _merge(mean, m_along, m_across, edges, k, axis):
    """Merge runs of `k` blocks along `axis`, weighted by their widths: (mean, moment along,
    moment across, edges) of the merged blocks (a moment None stays None where it can)."""
    shape = [1, 1, 1]
    shape[axis] = -1
    wid = np.diff(edges)
    idx = np.arange(0, wid.size, k)
    new_edges = np.append(edges[idx], edges[-1])
    if wid.size % k == 0 and np.allclose(wid, wid[0], rtol=1e-9, atol=0.0):
        return _merge_even(mean, m_along, m_across, wid[0], k, axis) + (new_edges,)
    total = np.add.reduceat(wid, idx).astype(np.float32).reshape(shape)
    counts = np.diff(np.append(idx, wid.size))
    off = _centres(edges) - np.repeat(_centres(new_edges), counts)      # from the merged block's centre
    weighted = mean * wid.astype(np.float32).reshape(shape)
    new_mean = np.add.reduceat(weighted, idx, axis=axis) / total
    weighted *= off.astype(np.float32).reshape(shape)
    if m_along is not None:
        weighted += m_along * wid.astype(np.float32).reshape(shape)
    along = np.add.reduceat(weighted, idx, axis=axis) / total
    del weighted
    across = None
    if m_across is not None:
        across = np.add.reduceat(m_across * wid.astype(np.float32).reshape(shape), idx, axis=axis) / total
    return new_mean, along, across, new_edges


def _merge_even(mean, m_along, m_across, width: float, k: int, axis: int):
    """:func:`_merge` of blocks of one width, `k` to a group with none left over: reshapes."""
    def groups(a):
        shape = list(a.shape)
        shape[axis:axis + 1] = [shape[axis] // k, k]
        return a.reshape(shape)

    def part(g, j):   # the j-th block of every group
        return g[(slice(None),) * (axis + 1) + (j,)]

    def mean_of(a):  # a sum of k strided slices is several times faster than .mean(axis)
        g = groups(a)
        total = part(g, 0).astype(np.float32)
        for j in range(1, k):
            total += part(g, j)
        return total / np.float32(k)

    g = groups(mean)
    along = part(g, 0) * np.float32(-(k - 1) / 2.0 * width)
    for j in range(1, k):
        along += part(g, j) * np.float32((j - (k - 1) / 2.0) * width)
    along /= np.float32(k)
    if m_along is not None:
        along += mean_of(m_along)
    across = None if m_across is None else mean_of(m_across)
    return mean_of(mean), along, across


def _reduce_more(red: Reduced, kx: int, ky: int) -> Reduced:
    """Merge `kx` x `ky` neighbouring blocks (weighted by their areas, moments kept exact)."""
    mean, mx, my = red.pixels, red.mx, red.my
    xe, ye = red.x_edges, red.y_edges
    if kx > 1:
        mean, mx, my, xe = _merge(mean, mx, my, xe, kx, axis=1)
    if ky > 1:
        mean, my, mx, ye = _merge(mean, my, mx, ye, ky, axis=0)
    return Reduced(mean, red.size, xe, ye, mx, my)


def _axis_weights(n_img: int, edges: np.ndarray, n_canvas: int, offset: int, n_out: int):
    """One axis of the full-size resize (canvas of `n_canvas` with the picture at `offset`)
    seen from the blocks between `edges`: ([n_out, blocks] weights of the blocks' means,
    the same for their first moments, [n_out] weight of the letterbox padding).

    The full-size weights m(t) are integrated over each block: a block whose colour is
    x(t) = mean + g (t - centre) contributes mean * B0 + g * B1' exactly, B0 = ∫ m and
    B1' = ∫ m(t) (t - centre); g = 12 * moment / width², so B1 = 12 B1' / width²."""
    m = _coefficients(n_canvas, n_out)
    mi = m[:, offset:offset + n_img]
    pad = m[:, :offset].sum(axis=1) + m[:, offset + n_img:].sum(axis=1)
    zero = np.zeros((n_out, 1))
    cum = np.concatenate([zero, np.cumsum(mi, axis=1)], axis=1)                  # ∫_0^j m
    t = np.arange(n_img, dtype=np.float64) + 0.5
    cum_t = np.concatenate([zero, np.cumsum(mi * t, axis=1)], axis=1)            # ∫_0^j m(τ) τ dτ
    j = np.minimum(np.floor(edges).astype(np.int64), n_img - 1)
    f = edges - j
    m_at = mi[:, j]
    first = cum[:, j] + f * m_at
    second = cum_t[:, j] + m_at * (edges ** 2 - j.astype(np.float64) ** 2) / 2.0
    b0 = np.diff(first, axis=1)
    width = np.diff(edges)
    b1 = (np.diff(second, axis=1) - _centres(edges) * b0) * (12.0 / width ** 2)
    return b0, b1, pad


def _letterbox_reduced(red: Reduced, dims) -> np.ndarray:
    """:func:`letterbox` of the picture `red` was reduced from, from its blocks."""
    tw, th = dims
    w, h = red.size
    cw, ch = letterbox_size(w, h, dims)
    reach = min(cw / tw, ch / th) / REDUCE_GAP      # the widest block the resize allows
    bw, bh = w / red.pixels.shape[1], h / red.pixels.shape[0]
    kx, ky = max(1, int(reach // bw)), max(1, int(reach // bh))
    if kx > 1 or ky > 1:
        red = _reduce_more(red, kx, ky)
    # float32 products: sums of a few hundred terms stay ~1e-4 of a level from float64's
    bx0, bx1, px = (a.astype(np.float32) for a in _axis_weights(w, red.x_edges, cw, (cw - w) // 2, tw))
    by0, by1, py = (a.astype(np.float32) for a in _axis_weights(h, red.y_edges, ch, (ch - h) // 2, th))
    mean_rgb = np.asarray(MEAN_RGB, np.float32)[None, :, None]

    def across(a):   # (h', w', 3) -> (h', 3, w') for the matmuls
        return np.ascontiguousarray(a.transpose(0, 2, 1), dtype=np.float32)

    mean = across(red.pixels)
    rows = np.matmul(mean, bx0.T) + px[None, None, :] * mean_rgb                    # (h', 3, tw)
    if red.mx is not None:
        rows += np.matmul(across(red.mx), bx1.T)
    # the full-size pass rounds and clips each row here; for a block of rows, rounding its
    # mean would only add error, clipping it keeps the kernel's overshoot at hard edges
    rows = np.clip(np.round(rows) if np.all(np.diff(red.y_edges) == 1) else rows, 0, 255)
    out = np.matmul(by0, rows.reshape(rows.shape[0], -1))
    if red.my is not None:
        out += np.matmul(by1, np.matmul(across(red.my), bx0.T).reshape(rows.shape[0], -1))
    out = out.reshape(th, 3, tw) + py[:, None, None] * mean_rgb
    return np.ascontiguousarray(np.clip(np.round(out), 0, 255).transpose(0, 2, 1).astype(np.uint8))


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
