"""Per-object recolouring (training/data/recolour.py): exact on a hand-made shaded object,
background untouched, colours drawn independently of shape, and both stages' labels follow
the pixels (stage-1 colour targets, stage-2 colour words)."""
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ig_llm.cli import main as cli_main  # noqa: E402
from ig_llm.scene.domain import load_domain  # noqa: E402
from ig_llm.scene.program import Scene, SceneObject  # noqa: E402
from ig_llm.training.stages.tower import DenseCollator, colour_yiq  # noqa: E402
from ig_llm.training.data.recolour import (draw_colours, linear_to_srgb, palette_linear,  # noqa: E402
                                           recolour_example, recolour_pixels, srgb_to_linear)

from test_train import COMMON, RUN, TINY, data  # noqa: E402,F401  (data: the module's fixture)

DOMAIN = load_domain("clevr")
PALETTE = palette_linear(DOMAIN)


def shaded_object(albedo_name: str, shades):
    """A 4 x 6 sRGB image: grey background, object 1 = the albedo times a grey shading per
    pixel in the left 3 columns (what a diffuse render of one colour is)."""
    lin = np.full((3, 4, 6), 0.2, dtype=np.float32)
    index = np.zeros((4, 6), dtype=np.uint8)
    index[:, :3] = 1
    shade = np.asarray(shades, dtype=np.float32).reshape(4, 3)
    lin[:, :, :3] = PALETTE[albedo_name][:, None, None] * shade[None]
    return torch.from_numpy(linear_to_srgb(lin)), torch.from_numpy(index), shade


def test_srgb_round_trip():
    x = np.linspace(0.0, 1.0, 101, dtype=np.float64)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-9)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404, abs=1e-5)


def test_recolouring_a_shaded_object_is_exact_and_leaves_the_background():
    pixels, index, shade = shaded_object("brown", np.linspace(0.3, 1.2, 12))
    out = recolour_pixels(pixels, index, [PALETTE["brown"]], [PALETTE["blue"]])
    want = linear_to_srgb(PALETTE["blue"][:, None, None] * shade[None])
    assert np.allclose(out[:, :, :3].numpy(), want, atol=1e-4)
    assert torch.allclose(out[:, :, 3:], pixels[:, :, 3:], atol=1e-6)         # background untouched
    # and back again: blue -> brown restores the original
    back = recolour_pixels(out, index, [PALETTE["blue"]], [PALETTE["brown"]])
    assert torch.allclose(back, pixels, atol=1e-4)


def test_colours_are_drawn_uniformly_and_independently():
    rng = random.Random(0)
    draws = draw_colours(rng, 8000, PALETTE)
    counts = {c: draws.count(c) for c in PALETTE}
    assert set(counts) == set(DOMAIN.values("color")) and min(counts.values()) > 850    # 1000 expected each
    # 8-bit example: the new colours come back in label order, the pixels follow them
    pixels, index, _ = shaded_object("gray", np.full(12, 0.8))
    px8 = (pixels * 255).round().to(torch.uint8)
    out, new = recolour_example(px8, index.numpy(), ["gray"], random.Random(3), PALETTE)
    assert out.dtype == torch.uint8 and len(new) == 1
    mean_rgb = out[:, :, :3].float().mean(dim=(1, 2)) / 255
    target = linear_to_srgb(PALETTE[new[0]] * 0.8)      # the same shading, the new albedo
    assert np.allclose(mean_rgb.numpy(), target, atol=2 / 255)


def test_stage1_colour_targets_follow_the_recoloured_pixels():
    pixels, index, _ = shaded_object("gray", np.full(12, 0.8))
    px8 = (pixels * 255).round().to(torch.uint8)
    rows = np.zeros((3, 11), dtype=np.float32)
    yiq = colour_yiq(DOMAIN)
    rows[1, 3:6] = yiq["gray"]
    collate = DenseCollator(seed=5, hue_prob=0.0, recolour=1.0, domain=DOMAIN)
    changed = 0
    for step in range(8):
        item = (step, 0, px8, np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.float32), rows, index.numpy(),
                ["gray"])
        batch = collate([item])
        target = batch["objects"][0, 1, 3:6].numpy()
        name = min(yiq, key=lambda c: np.abs(yiq[c] - target).sum())
        assert np.allclose(yiq[name], target)
        # the object's pixels now show that colour's hue: their mean is nearest to its palette colour
        from ig_llm.model.batching import CLIP_MEAN, CLIP_STD
        x = batch["pixel_values"][0] * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
        mean = x[:, :, :3].mean(dim=(1, 2)).numpy()
        assert np.allclose(mean, linear_to_srgb(PALETTE[name] * 0.8), atol=2 / 255)   # the target's albedo
        changed += name != "gray"
    assert changed >= 4


def test_stage2_colour_words_follow_the_recoloured_pixels():
    from ig_llm.model.presets import make_config
    from ig_llm.model.tokenizer import ProgramTokenizer
    from ig_llm.training.stages.train import Collator
    config = make_config("tiny")
    collator = Collator(ProgramTokenizer.build(config.domain), config, seed=0, rank=0, recolour=1.0)
    pixels, index, _ = shaded_object("gray", np.full(12, 0.8))
    px8 = (pixels * 255).round().to(torch.uint8)
    scene = Scene([SceneObject("cube", "gray", "rubber", "large", (0.0, 0.0, 0.7), 0.0)])
    rng = random.Random(1)
    out, new_scene = collator.augment(px8, scene, (7.0, -7.0, 5.0), index.numpy(), rng)
    assert new_scene.objects[0].shape == "cube" and new_scene.objects[0].color in PALETTE
    rng2 = random.Random(1)
    rng2.random()                                       # the recolour decision
    expect, colours = recolour_example(px8, index.numpy(), ["gray"], rng2, PALETTE)
    assert colours == [new_scene.objects[0].color] and torch.equal(out, expect)


def test_train_with_recolour_and_a_swapped_tower(data, tmp_path, capsys):  # noqa: F811
    torch.set_num_threads(1)
    base = tmp_path / "base"
    assert cli_main(["train", "--data", str(data), "--out", str(base), "--stage", "both", "--stage1-steps", "2",
                     "--stage1-batch-size", "4", "--steps", "2", "--batch-size", "4", *COMMON]) == 0
    # stage 1 again, from the finished tower, with recolouring (lr 0: the weights must stay the base's)
    tower = tmp_path / "tower"
    assert cli_main(["train", "--data", str(data), "--out", str(tower), "--stage", "1", "--stage1-steps", "2",
                     "--stage1-batch-size", "4", "--stage1-lr", "0", "--recolour", "1",
                     "--stage1-init", str(base / "stage1"), *COMMON]) == 0
    assert "recolour p=1.0" in (tower / "train.log").read_text()
    from safetensors.torch import load_file
    before, after = (load_file(str(r / "stage1" / "vision.safetensors")) for r in (base, tower))
    weights = [k for k in before if not ("running_" in k or "num_batches" in k)]   # BN statistics move
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)
    # the finished LM on the new tower, recolouring in stage 2 too
    tuned = tmp_path / "tuned"
    common = [a for a in COMMON if a not in TINY]
    new_tower = tower / "stage1" / "vision.safetensors"
    assert cli_main(["train", "--data", str(data), "--out", str(tuned), "--init-from", str(base / "model"),
                     "--vision-weights", str(new_tower), "--recolour", "0.5", "--cache-images", "--steps", "2",
                     "--batch-size", "4", *common]) == 0
    got, want = load_file(str(tuned / "model" / "model.safetensors")), load_file(str(new_tower))
    for k, v in want.items():
        assert torch.equal(got["vision." + k[len("visual."):]].float(), v.float()), k
    capsys.readouterr()
    # without the image cache, stage 2 cannot recolour: one sentence naming the fix
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--recolour", "0.5",
                     "--steps", "2", *COMMON]) == 2
    err = capsys.readouterr().err
    assert "--cache-images" in err and err.count("\n") == 1
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "y"), "--stage", "1",
                     "--stage1-init", str(tmp_path / "nowhere"), *RUN, *TINY]) == 2
    assert "--stage1-init" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "z"), "--stage1-init",
                     str(base / "stage1"), *COMMON]) == 2
    assert "--stage 1 or both" in capsys.readouterr().err
    # a damaged tower file: one sentence, exit 2, no run folder left behind
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "heads.safetensors").write_bytes(b"not a safetensors file")
    (broken / "vision.safetensors").write_bytes(b"")
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "b1"), "--stage", "1",
                     "--stage1-init", str(broken), *COMMON]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and err.count("\n") == 1 and not (tmp_path / "b1").exists()
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "b2"), "--init-from", str(base / "model"),
                     "--vision-weights", str(broken / "vision.safetensors"), "--steps", "1", *common]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and err.count("\n") == 1 and not (tmp_path / "b2").exists()
