"""The NumPy runtime equals the torch runtime, on small stand-in models of both towers.

Tolerances (float32 on both sides; the NumPy GELU uses an erf approximation with
|error| < 1.5e-7): tower tokens within 1e-4 (relative to their scale), every decision's
logits within 1e-3, and the same program on 100 images per tower (same words, numbers
within 2e-3). Preprocessing without Pillow is within 1/255 of Pillow's bicubic resize.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ig_llm.model import numpy_runtime as npr  # noqa: E402
from ig_llm.model import pixels  # noqa: E402
from model_helpers import assert_same_program, micro_config, random_images  # noqa: E402

N_IMAGES = 100
TOWERS = {
    "vit": dict(),
    "conv": dict(vision_model="conv", image_size=64, image_height=48, conv_channels=[8, 8, 16, 16, 16]),
    # the finer grid: 4 px per cell, 4x4 cells per token
    "conv-stride4": dict(vision_model="conv", tower_stride=4, image_size=64, image_height=48,
                         conv_channels=[8, 8, 16, 16, 16]),
}


@pytest.fixture(scope="module", params=sorted(TOWERS))
def pair(request, tmp_path_factory):
    """(torch model, NumPy model) of one stand-in checkpoint, with non-trivial BatchNorm stats."""
    from ig_llm.model.checkpoint import load_checkpoint, save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.tokenizer import ProgramTokenizer

    torch.manual_seed(0)
    model = IGLLM(micro_config(**TOWERS[request.param]), ProgramTokenizer.build("clevr"))
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):   # as after training: folding must matter
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    folder = save_checkpoint(model, tmp_path_factory.mktemp(request.param) / "model")
    return load_checkpoint(folder).eval(), npr.load_numpy_model(folder)


def test_tower_tokens_match(pair):
    tm, nm = pair
    x = random_images(2, tm.config.image_dims, seed=3)
    with torch.no_grad():
        want = tm.vision(x).numpy()
    for i in range(2):
        got = nm.tower_tokens(x[i].numpy())
        assert got.shape == want[i].shape
        assert np.abs(got - want[i]).max() <= 1e-4 * max(1.0, np.abs(want[i]).max())


def test_programs_logits_and_numbers_match_on_100_images(pair):
    from ig_llm.model.decoding import generate

    tm, nm = pair
    torch.set_num_threads(2)
    images = random_images(N_IMAGES, tm.config.image_dims, seed=7)
    with torch.no_grad():
        torch_out = [t for i in range(0, N_IMAGES, 50) for t, _ in generate(tm, images[i:i + 50], num_objects=1)]
    worst = 0.0
    for i in range(N_IMAGES):
        trace: dict = {}
        text, scene = npr.generate(nm, images[i].numpy(), num_objects=1, trace=trace)
        assert_same_program(text, torch_out[i])
        if i < 3:   # logits of every decision against torch's, fed the same tokens
            worst = max(worst, _max_logit_error(tm, images[i:i + 1], nm, trace))
        assert scene is not None
    assert worst <= 1e-3


def _max_logit_error(tm, pixel_values, nm, trace) -> float:
    """Feed torch the whole sequence NumPy decoded (one teacher-forced pass) and compare
    the logits at every decision NumPy took."""
    with torch.no_grad():
        ids = torch.tensor(tm.tokenizer.prompt_ids() + trace["ids"])
        emb = tm.insert_image(tm.embed_tokens(ids)[None], tm.encode_images(pixel_values))
        logits = tm.lm_head(tm.decoder(inputs_embeds=emb).last_hidden_state[0]).numpy()
    return max(float(np.abs(logits[pos] - got).max()) for pos, got in trace["decisions"])


def test_char_numbers_and_unconstrained_decoding_match(tmp_path):
    from ig_llm.model.checkpoint import load_checkpoint, save_checkpoint
    from ig_llm.model.decoding import generate
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.tokenizer import ProgramTokenizer

    torch.manual_seed(1)
    folder = save_checkpoint(IGLLM(micro_config(numbers="char", lm_kv_heads=2), ProgramTokenizer.build("clevr")),
                             tmp_path / "m")
    tm, nm = load_checkpoint(folder).eval(), npr.load_numpy_model(folder)
    x = random_images(3, tm.config.image_dims, seed=2)
    with torch.no_grad():
        want = [t for t, _ in generate(tm, x, num_objects=1)]
        free = [t for t, _ in generate(tm, x, constrained=False, max_new_tokens=30, stop_at_eos=False)]
    assert [npr.generate(nm, x[i].numpy(), num_objects=1)[0] for i in range(3)] == want
    assert [npr.generate(nm, x[i].numpy(), constrained=False, max_new_tokens=30, stop_at_eos=False)[0]
            for i in range(3)] == free


def test_numpy_bicubic_is_within_one_level_of_pillow():
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape, size in (((320, 480, 3), (192, 128)), ((97, 131, 3), (192, 192)), ((40, 60, 3), (192, 128))):
        smooth = rng.integers(0, 256, (shape[0] // 8 + 1, shape[1] // 8 + 1, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(smooth).resize((shape[1], shape[0]), Image.BILINEAR))
        noisy = rng.integers(0, 256, shape, dtype=np.uint8)
        for arr in (img, noisy):
            a = pixels.letterbox(arr, size, use_pillow=True).astype(int)
            b = pixels.letterbox(arr, size, use_pillow=False).astype(int)
            assert a.shape == b.shape == (size[1], size[0], 3)
            assert np.abs(a - b).max() <= 1


def test_blender_loader_gives_pillows_pixels(tmp_path):
    """Inside Blender the file is read by bpy.data.images.load: the same 8-bit values."""
    bpy = pytest.importorskip("bpy")
    from PIL import Image

    from ig_llm.operators.image_to_scene import _image_pixels

    arr = np.random.default_rng(1).integers(0, 256, (24, 36, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = bpy.data.images.load(str(tmp_path / "a.png"))
    try:
        assert np.array_equal(pixels.to_rgb8(_image_pixels(img)), arr)
    finally:
        bpy.data.images.remove(img)


def test_shipped_model_runs_in_numpy_with_its_calibration():
    from ig_llm.demo import EXAMPLE_IMAGE
    from ig_llm.model.inference import DEFAULT_MODEL_DIR, Predictor

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip("no shipped model in model/default")
    p = Predictor(runtime="numpy")
    (pred,) = p.predict_full([str(EXAMPLE_IMAGE)])
    assert pred.scene is not None and pred.scene.objects
    if p.domain_check is not None:
        assert pred.in_domain and 0.5 < pred.confidence <= 1.0
        white = np.full((160, 240, 3), 255, np.uint8)
        (guess,) = p.predict_full([white])
        assert not guess.in_domain and guess.confidence < 0.5
