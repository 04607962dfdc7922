"""The error contract (issue 12) on the NumPy runtime (issue 11): one image loader's limits
and sentences, and the checkpoint checks of the torch loader (config, missing files, NaN
weights, shapes) in the NumPy loader too."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ig_llm import images  # noqa: E402
from ig_llm.errors import UserError  # noqa: E402
from ig_llm.model import numpy_runtime as npr  # noqa: E402
from ig_llm.model import pixels  # noqa: E402
from ig_llm.model.checkpoint import CheckpointError  # noqa: E402
from model_helpers import micro_config  # noqa: E402


def test_one_source_for_limits_and_normalisation():
    from ig_llm.model import batching
    from ig_llm.operators import task

    assert pixels.CLIP_MEAN is images.CLIP_MEAN and pixels.CLIP_STD is images.CLIP_STD
    assert batching.CLIP_MEAN is images.CLIP_MEAN and batching.CLIP_STD is images.CLIP_STD
    assert pixels.MAX_PIXELS is images.MAX_PIXELS and pixels.MEAN_RGB == images.BACKGROUND
    assert task.IMAGE_EXTENSIONS is images.IMAGE_SUFFIXES
    assert pixels.ImageReadError is images.ImageError and issubclass(images.ImageError, UserError)


@pytest.mark.parametrize("arr", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((4, 4, 3), np.int64), np.zeros((20_001, 1, 3), np.uint8)])
def test_numpy_pixels_refuse_bad_arrays_with_the_loaders_sentence(arr):
    with pytest.raises(images.ImageError) as exc:
        pixels.to_rgb8(arr, "pic")
    assert "pic" in str(exc.value) and "\n" not in str(exc.value)


def test_rgb_pixels_equal_the_torch_loader():
    rng = np.random.default_rng(0)
    rgba = rng.random((30, 40, 4)).astype(np.float32)
    want = np.asarray(images.load_image(rgba))
    assert np.array_equal(pixels.rgb_pixels(rgba), want)
    # without Pillow the float compositing may differ from Pillow's 8-bit paste by 1/255
    assert np.abs(pixels.to_rgb8(rgba).astype(int) - want).max() <= 1


def test_numpy_preprocessing_letterboxes_to_image_dims():
    from ig_llm.model.batching import preprocess_image

    cfg = micro_config(vision_model="conv", image_size=192, image_height=128, conv_channels=[8, 8, 16, 16, 16])
    rgb = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    x = pixels.model_input(rgb, cfg.image_dims, use_pillow=True)
    assert x.shape == (3, 128, 192)
    assert np.array_equal(x, preprocess_image(rgb, cfg.image_dims).numpy())
    assert np.abs(pixels.model_input(rgb, cfg.image_dims, use_pillow=False) - x).max() <= 1.01 / 255 / min(images.CLIP_STD)


@pytest.fixture
def ckpt(tmp_path):
    from ig_llm.model.checkpoint import save_checkpoint
    from ig_llm.model.igllm import IGLLM
    from ig_llm.model.tokenizer import ProgramTokenizer

    torch.manual_seed(0)
    model = IGLLM(micro_config(vision_model="conv", image_size=64, image_height=48,
                               conv_channels=[8, 8, 16, 16, 16]), ProgramTokenizer.build("clevr"))
    return save_checkpoint(model, tmp_path / "model")


def _edit_weights(folder, fn):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    fn(state)
    save_file(state, str(folder / "model.safetensors"))


def _numpy_load_error(folder) -> str:
    with pytest.raises(CheckpointError) as exc:
        npr.load_numpy_model(folder)
    msg = str(exc.value)
    assert str(folder) in msg and "\n" not in msg
    return msg


def test_numpy_loader_refuses_nan_weights(ckpt):
    def poison(state):
        k = next(k for k, v in state.items() if v.dtype.kind == "f")
        state[k] = state[k].copy()
        state[k].flat[0] = np.nan
    _edit_weights(ckpt, poison)
    assert "NaN or infinite" in _numpy_load_error(ckpt)


def test_numpy_loader_refuses_ill_fitting_weights(ckpt):
    def shrink(state):
        k = "lm.model.layers.0.self_attn.o_proj.weight"
        state[k] = state[k][:, :-1].copy()
    _edit_weights(ckpt, shrink)
    assert "does not match" in _numpy_load_error(ckpt)


def test_numpy_loader_checks_the_config(ckpt):
    path = ckpt / "config.json"
    data = json.loads(path.read_text())
    data["config"]["image_height"] = 50            # not a multiple of 16: the conv tower cannot take it
    path.write_text(json.dumps(data))
    assert "not a valid IG-LLM config" in _numpy_load_error(ckpt)


def test_numpy_loader_names_missing_files(ckpt):
    (ckpt / "tokenizer.json").unlink()
    assert "is missing" in _numpy_load_error(ckpt)


def test_every_top_level_module_is_in_the_zip():
    """The zip is built from the manifest's explicit list: a new top-level module (errors.py,
    images.py, atomic.py came with issue 12) must be listed, or the extension fails to register."""
    from pathlib import Path

    from ig_llm.tools.package import staged_files

    root = Path(images.__file__).resolve().parent
    staged = set(staged_files(root))
    missing = sorted(p.name for p in root.glob("*.py") if p.name not in staged)
    assert not missing, f"add {missing} to [build] paths in blender_manifest.toml"
