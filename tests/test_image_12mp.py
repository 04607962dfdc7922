"""Issue 23, item 3: a 12-megapixel picture imports quickly and in little memory without
Pillow, and the model sees the same input as before within the runtimes' tolerance.

The reference is the exact full-size path (``pixels.letterbox(..., reduce=False)``: the
letterbox and Pillow's bicubic resize in NumPy, what a 12 MP picture took 18 s for). The
fast paths — NumPy's block reduction of an array, and Blender's own ``Image.scale`` of a
file — must stay within 1/255 of it per pixel (the NumPy-vs-Pillow tolerance,
tests/test_numpy_contract.py). About 5 % of pixels move by that 1/255 in any path that
does not round each of the thousands of rows to 8 bits between the two passes as the
exact one does; the test shows the exact resize without that rounding moves as many.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from ig_llm.model import pixels

DIMS = (192, 128)      # the shipped tower's input (3:2)
LEVEL = 1.0 / 255.0 / min(pixels.CLIP_STD) * 1.01     # 1/255 in the normalised model input


def _exact(rgb):
    return pixels.letterbox(rgb, DIMS, use_pillow=False, reduce=False).astype(int)


def _photo(w, h, seed=0, grain=20):
    """A photo's statistics: smooth colour fields (an enlarged random picture) with grain."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    img += rng.integers(-grain, grain + 1, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _mosaic(w, h, seed=0):
    """The hard case: 60-pixel tiles of random colours, full-contrast corners everywhere."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 60 + 2, w // 60 + 2, 3), dtype=np.uint8)
    ys = np.linspace(0, small.shape[0] - 1.001, h).astype(int)
    xs = np.linspace(0, small.shape[1] - 1.001, w).astype(int)
    return np.ascontiguousarray(small[ys][:, xs])


def _example(size):
    from PIL import Image

    from ig_llm.demo import EXAMPLE_IMAGE
    return np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGB").resize(size, Image.BICUBIC))


def _unrounded(rgb):
    """The exact resize without its 8-bit rounding between the passes (the clip kept), in
    chunks of rows: what a reduction computes, up to its blocks."""
    h, w = rgb.shape[:2]
    cw, ch = pixels.letterbox_size(w, h, DIMS)
    mx, my = pixels._coefficients(cw, DIMS[0]), pixels._coefficients(ch, DIMS[1])
    rows = np.empty((ch, 3, DIMS[0]))
    rows[:] = np.asarray(pixels.MEAN_RGB, np.float64)[None, :, None]     # letterbox rows
    x0, y0 = (cw - w) // 2, (ch - h) // 2
    pad = (mx[:, :x0].sum(axis=1) + mx[:, x0 + w:].sum(axis=1))[None, None, :] \
        * np.asarray(pixels.MEAN_RGB, np.float64)[None, :, None]
    for r in range(0, h, 256):
        part = rgb[r:r + 256].astype(np.float64).transpose(0, 2, 1)
        rows[y0 + r:y0 + r + part.shape[0]] = np.clip(np.matmul(part, mx[:, x0:x0 + w].T) + pad, 0, 255)
    out = np.matmul(my, rows.reshape(ch, -1)).reshape(DIMS[1], 3, DIMS[0]).transpose(0, 2, 1)
    return np.clip(np.round(out), 0, 255).astype(int)


def _assert_within_a_level(got, rgb, most=1):
    """Within `most`/255 of the exact path everywhere, beyond 1/255 in at most 0.1 % of the
    pixels; and 1/255 off in not many more pixels than the exact path's own rounding of its
    rows moves (5-10 % on photos, more where whole bands of rows are equal)."""
    exact = _exact(rgb)
    d = np.abs(got.astype(int) - exact)
    own = (_unrounded(rgb) != exact).mean()
    assert d.max() <= most, (d.max(), np.argwhere(d > 1)[:5])
    assert (d > 1).mean() <= 0.001, (d > 1).sum()
    assert (d > 0).mean() <= 1.5 * own + 0.02, ((d > 0).mean(), own)


# -- NumPy: an array reduced in blocks -------------------------------------------------------
@pytest.mark.parametrize("case", ["photo 4000x3000", "noise 2400x1600", "tall photo 1200x3600",
                                  "rgba 2100x1500", "mosaic 4000x3000", "tall mosaic 1200x3600"])
def test_block_reduction_is_within_a_level_of_the_full_size_resize(case):
    rng = np.random.default_rng(1)
    most = 1
    if case == "photo 4000x3000":
        arr = _photo(4000, 3000)
    elif case == "noise 2400x1600":         # every pixel independent
        arr = rng.integers(0, 256, (1600, 2400, 3), dtype=np.uint8)
    elif case == "tall photo 1200x3600":    # letterboxed left and right
        arr = _photo(1200, 3600, seed=2)
    elif case == "rgba 2100x1500":          # Blender's float RGBA with transparency: composited per pixel
        arr = rng.random((1500, 2100, 4)).astype(np.float32)
        arr[:, :700, 3] = 1.0
    else:   # hard full-contrast corners: clipping a block of rows' mean is not clipping each row
        arr = _mosaic(4000, 3000) if case.startswith("mosaic") else _mosaic(1200, 3600, seed=2)
        most = 2
    h, w = arr.shape[:2]
    assert pixels.reduction_factor(w, h, DIMS) > 1
    got = pixels.letterbox(arr, DIMS, use_pillow=False)
    _assert_within_a_level(got, pixels.to_rgb8(arr), most=most)


def test_the_unrounded_reference_is_the_exact_resize_up_to_rounding():
    arr = _photo(900, 600, seed=3)
    d = np.abs(_unrounded(arr) - _exact(arr))
    assert d.max() <= 1 and 0.005 < (d > 0).mean() < 0.3


def test_single_pixel_blocks_are_the_full_size_resize():
    arr = _photo(300, 200, seed=4)
    red = pixels.Reduced(arr.astype(np.float32), (300, 200), np.arange(301.0), np.arange(201.0))
    d = pixels.letterbox(red, DIMS).astype(int) - _exact(arr)
    assert np.abs(d).max() <= 1 and (d != 0).mean() < 0.001     # float ties only


def test_small_pictures_keep_the_exact_path():
    arr = _photo(480, 320, seed=5)
    assert pixels.reduction_factor(480, 320, DIMS) == 1
    assert np.array_equal(pixels.letterbox(arr, DIMS, use_pillow=False), _exact(arr))


def test_12mp_array_makes_no_full_size_float_copy():
    arr = _photo(4000, 3000, seed=6)
    tracemalloc.start()
    try:
        pixels.model_input(arr, DIMS, use_pillow=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80e6, peak / 1e6      # a float32 copy of the picture alone is 144 MB


# -- Blender: the file read at a reduced size by Image.scale ---------------------------------
@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """The example render enlarged to 12 MP: 4320x2880 (3:2, no padding) and 4000x3000 (4:3,
    letterboxed), lossless PNGs so Blender and Pillow decode the same pixels."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("big")
    out = {}
    for size in ((4320, 2880), (4000, 3000)):
        arr = _example(size)
        path = folder / f"render_{size[0]}x{size[1]}.png"
        Image.fromarray(arr).save(path, compress_level=1)
        out[size] = (str(path), arr)
    return out


def _blender_source(path, ours=True):
    bpy = pytest.importorskip("bpy")
    from ig_llm.operators import apply
    from ig_llm.operators.image_to_scene import _image_pixels

    img = apply.load_image_datablock(path) if ours else bpy.data.images.load(path, check_existing=False)
    try:
        before = len(bpy.data.images)
        source = _image_pixels(img)
        assert len(bpy.data.images) == before          # a copy, if one was made, is gone
        assert tuple(img.size) == source.size and not img.is_dirty   # the datablock as it was
    finally:
        bpy.data.images.remove(img)
    return source


@pytest.mark.parametrize("size", [(4320, 2880), (4000, 3000)])
@pytest.mark.parametrize("ours", [True, False], ids=["loaded-for-the-import", "users-image"])
def test_blender_reads_a_12mp_file_reduced_within_a_level(big_files, size, ours):
    path, arr = big_files[size]
    source = _blender_source(path, ours)
    assert isinstance(source, pixels.Reduced) and max(source.reduced_size) == pixels.READ_SIDE
    _assert_within_a_level(pixels.letterbox(source, DIMS), arr)


def test_blender_read_keeps_numpy_memory_small(big_files):
    pytest.importorskip("bpy")
    path, _ = big_files[(4000, 3000)]
    tracemalloc.start()
    try:
        pixels.model_input(_blender_source(path), DIMS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80e6, peak / 1e6      # the old full read alone was 2 x 192 MB


def test_edited_or_transparent_pictures_are_read_whole_and_reduced_exactly():
    """Blender's scale averages colour without alpha and a copy loses unsaved edits: such
    pictures are read whole and reduced in NumPy (moments kept)."""
    bpy = pytest.importorskip("bpy")
    from ig_llm.operators.image_to_scene import _image_pixels

    rng = np.random.default_rng(7)
    rgba = np.concatenate([_photo(2000, 1600, seed=7), np.full((1600, 2000, 1), 255, np.uint8)], axis=2)
    rgba[:400, :, 3] = rng.integers(0, 256, (400, 2000))          # partly transparent
    img = bpy.data.images.new("edited", 2000, 1600, alpha=True)
    try:
        img.pixels.foreach_set((rgba[::-1].astype(np.float32) / 255.0).ravel())   # bottom row first
        assert img.is_dirty
        source = _image_pixels(img)
    finally:
        bpy.data.images.remove(img)
    assert isinstance(source, pixels.Reduced) and source.mx is not None
    _assert_within_a_level(pixels.letterbox(source, DIMS), pixels.to_rgb8(rgba))


def test_shipped_model_writes_the_same_program(big_files):
    """The model's program from Blender's reduced read equals the exact path's: the same
    objects and words, numbers within 0.01 (a 1/255 change in ~5 % of pixels moves this
    model's numbers by up to ~0.006 on held-out renders, whichever way it comes)."""
    pytest.importorskip("bpy")
    from ig_llm.model.inference import DEFAULT_MODEL_DIR, Predictor
    from ig_llm.scene.program import parse

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip("no shipped model in model/default")
    predictor = Predictor(runtime="numpy")
    assert predictor.config.image_dims == DIMS
    for size, (path, arr) in big_files.items():
        exact = predictor.predict_inputs([pixels.model_input(arr, DIMS, use_pillow=False, reduce=False)])[0]
        fast = predictor.predict_inputs([pixels.model_input(_blender_source(path), DIMS)])[0]
        a, b = parse(fast.program).objects, parse(exact.program).objects
        assert len(a) == len(b) >= 1, (fast.program, exact.program)
        for x, y in zip(a, b):
            assert (x.shape, x.color, x.material, x.size) == (y.shape, y.color, y.material, y.size)
            assert max(abs(p - q) for p, q in zip(x.loc + (x.rotation,), y.loc + (y.rotation,))) <= 0.01
        assert fast.in_domain == exact.in_domain


# -- the job: each step named for what it does ---------------------------------------------
def test_progress_names_each_step(big_files):
    pytest.importorskip("bpy")
    from ig_llm.operators import task

    source = _blender_source(big_files[(4000, 3000)][0])
    steps = []
    task.infer(lambda fraction, text="": steps.append((fraction, text)), source, image_name="render.png")
    texts = [t for _, t in steps]
    rw, rh = source.reduced_size
    assert texts == ["Checking the model", f"Reading the image (4000×3000, read by Blender at {rw}×{rh})",
                     "Loading the model", f"Reducing the image for the model ({rw}×{rh} → 192×128)",
                     "Writing the scene program", "Building the scene"]
    assert [f for f, _ in steps] == sorted(f for f, _ in steps)


def test_progress_for_a_file_and_an_array():
    from ig_llm.operators import task

    assert task._reading_text("/tmp/x/photo.jpg") == "Reading the image file photo.jpg"
    arr = np.zeros((3000, 4000, 3), np.uint8)
    assert task._reading_text(arr) == "Reading the 4000×3000 image"
    small = np.zeros((320, 480, 3), np.uint8)
    assert task._resizing_text(small, DIMS) == "Resizing the image for the model (480×320 → 192×128)"


# -- the bench row, in a Python with bpy and nothing else (Blender as shipped) ----------------
def test_bench_12mp_import_row_in_a_bpy_only_python(python_without_torch):
    """The row `ig_llm bench model` prints; the issue's bound on memory (<= 400 MB for the
    whole process) holds. Seconds are printed by the bench, not asserted (shared CPUs)."""
    from ig_llm.model import bench

    row = bench.import_row(python_without_torch, runs=1)
    assert len(row["times"]) == 1 and row["times"][0] > 0
    assert row["peak_mb"] <= 400, row
