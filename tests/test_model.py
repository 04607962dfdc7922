"""IG-LLM model tests: real torch, very small configs, data made here."""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_helpers import micro_config, random_images, random_scene  # noqa: E402

from ig_llm.model.batching import ImageError, collate, number_fields, preprocess_image  # noqa: E402
from ig_llm.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from ig_llm.model.decoding import generate  # noqa: E402
from ig_llm.model.igllm import IGLLM  # noqa: E402
from ig_llm.model.tokenizer import ProgramTokenizer, split_pieces  # noqa: E402
from ig_llm.scene.program import NUM_TOKEN, PROMPT, Scene, SceneObject, format_program, parse  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = micro_config(**overrides)
    return IGLLM(cfg, ProgramTokenizer.build(cfg.domain)).eval()


def same_categories(a: Scene, b: Scene) -> bool:
    return len(a) == len(b) and all((x.shape, x.color, x.material, x.size) == (y.shape, y.color, y.material, y.size)
                                    for x, y in zip(a.objects, b.objects))


def max_number_error(a: Scene, b: Scene) -> float:
    errs = [abs(p - q) for x, y in zip(a.objects, b.objects) for p, q in zip((*x.loc, x.rotation), (*y.loc, y.rotation))]
    return max(errs, default=0.0)


# -- tokenizer -------------------------------------------------------------------------------
def test_tokenizer_pieces_roundtrip_and_match_tokenizers_library():
    tok = ProgramTokenizer.build()
    scene = random_scene(random.Random(1), 3)
    for text in (format_program(scene, "char"), format_program(scene, "placeholder")[0], PROMPT + "\n"):
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == text
        assert tok.backend.encode(text).ids == ids  # our piece split == the saved tokenizer.json
    assert tok.piece_ids(NUM_TOKEN) == (tok.num_id,)


def test_number_fields():
    text, values = format_program(Scene([SceneObject("cube", "red", "metal", "large", (1, 2, 0.7), 0.3),
                                         SceneObject("sphere", "red", "metal", "small", (0, 0, 0.35))]), "placeholder")
    # order follows the text (objects left to right, whichever comes first)
    fields = number_fields(split_pieces(text))
    assert len(fields) == len(values) == 7
    assert sorted(fields) == sorted(["loc0", "loc1", "loc2", "rotation", "loc0", "loc1", "loc2"])
    assert number_fields(split_pieces("add(loc=(+1.500, -2.000, +0.350), rotation=-0.100)")) == \
        ["loc0", "loc1", "loc2", "rotation"]


# -- images ----------------------------------------------------------------------------------
def test_preprocess_accepts_modes_and_pads_with_clip_mean(tmp_path):
    from PIL import Image

    S = 32
    rgb = np.zeros((20, 40, 3), np.uint8)
    t = preprocess_image(rgb, S)
    assert t.shape == (3, S, S) and t.dtype == torch.float32
    # top rows are padding: CLIP mean colour -> ~0 after normalisation; centre is black
    assert t[:, 0, S // 2].abs().max() < 0.02
    assert (t[:, S // 2, S // 2] < -1.4).all()
    cases = {
        "rgba.png": Image.fromarray(np.full((16, 16, 4), 200, np.uint8), "RGBA"),
        "grey.png": Image.fromarray(np.full((16, 24), 90, np.uint8), "L"),
        "grey16.png": Image.fromarray(np.full((16, 24), 40000, np.uint16)),
        "palette.png": Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).convert("P"),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = preprocess_image(tmp_path / name, S)
        assert out.shape == (3, S, S) and torch.isfinite(out).all(), name
    assert preprocess_image(np.full((8, 8), 65535, np.uint16), S).max() > 1.5   # 16-bit white is white


def test_preprocess_errors_name_the_file(tmp_path, monkeypatch):
    from ig_llm import images
    from PIL import Image

    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="nope.png"):
        preprocess_image(missing, 32)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png.*empty"):
        preprocess_image(empty, 32)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.png"):
        preprocess_image(junk, 32)
    big = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(big)
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    with pytest.raises(ImageError, match="big.png.*downscale"):
        preprocess_image(big, 32)
    trunc = tmp_path / "trunc.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:200])
    with pytest.raises(ImageError, match="trunc.png"):
        preprocess_image(trunc, 32)


# -- training forward ------------------------------------------------------------------------
def test_collate_masks_prompt_and_marks_numbers():
    model = make_model()
    cfg, tok = model.config, model.tokenizer
    scene = Scene([SceneObject("cube", "red", "metal", "large", (1.5, -3.0, 0.7), 0.39269908)])
    b = collate([(random_images(1, cfg.image_size)[0], scene)], tok, cfg)
    ids, labels = b["input_ids"][0], b["labels"][0]
    n_prompt = len(tok.prompt_ids())
    assert (labels[:n_prompt] == -100).all() and (labels[n_prompt:] != -100).all()
    assert labels[-1] == tok.eos_id
    assert b["num_mask"][0].sum() == 4 and (ids[b["num_mask"][0]] == tok.num_id).all()
    # normalised per field: x/3, y/3, z/1, yaw/(pi/4)
    assert torch.allclose(b["num_values"][0][b["num_mask"][0]], torch.tensor([0.5, -1.0, 0.7, 0.5]), atol=1e-6)


def test_collate_orders_objects_for_the_given_camera():
    model = make_model()
    cfg, tok = model.config, model.tokenizer
    a = SceneObject("sphere", "red", "metal", "large", (0.0, -2.0, 0.7))
    b = SceneObject("sphere", "blue", "metal", "large", (0.0, 2.0, 0.7))
    img = random_images(1, cfg.image_size)[0]
    default = tok.decode(collate([(img, Scene([a, b]))], tok, cfg)["input_ids"][0])
    behind = tok.decode(collate([(img, Scene([a, b]), (-7.48, 6.51, 5.34))], tok, cfg)["input_ids"][0])
    assert default.index("'red'") < default.index("'blue'")
    assert behind.index("'blue'") < behind.index("'red'")


def test_numeric_head_reads_the_state_before_each_num():
    """Hand-made example: the MSE in forward() must use hidden[t-1] for every <num> at t."""
    model = make_model()
    tok = model.tokenizer
    N = model.config.num_image_tokens
    P = tok.piece_ids
    # text: <bos> loc=( <num> , <num> ) <eos>  -> <num> at text positions 2 and 4
    text = [tok.bos_id, *P("loc=("), tok.num_id, *P(", "), tok.num_id, *P(")"), tok.eos_id]
    ids = torch.tensor([text])
    targets = torch.tensor([[0, 0, 0.25, 0, -0.5, 0, 0]])
    batch = {"pixel_values": random_images(1, model.config.image_size), "input_ids": ids,
             "attention_mask": torch.ones_like(ids), "labels": ids.clone(),
             "num_mask": ids == tok.num_id, "num_values": targets}
    with torch.no_grad():
        out = model(batch)
        img = model.encode_images(batch["pixel_values"])
        emb = model.embed_tokens(ids)
        full = torch.cat([emb[:, :1], img, emb[:, 1:]], 1)  # <bos>, N image tokens, rest
        hidden = model.decoder(inputs_embeds=full).last_hidden_state[0]
        # text position t sits at sequence position t + N (t >= 1); the state before it is t + N - 1
        pred = model.num_head(hidden[[2 + N - 1, 4 + N - 1]])
    expected = ((pred - torch.tensor([0.25, -0.5])) ** 2).mean()
    assert torch.allclose(out["mse"], expected, atol=1e-6)


def test_decoding_reads_numbers_from_the_same_states_as_training():
    model = make_model(seed=3)
    tok = model.tokenizer
    img = random_images(1, model.config.image_size, seed=5)
    text, scene = generate(model, img, num_objects=2)[0]
    placeholder = re.sub(r"[+-]\d+\.\d{3}", NUM_TOKEN, text)
    ids = torch.tensor([tok.prompt_ids() + tok.encode(placeholder)])
    N = model.config.num_image_tokens
    with torch.no_grad():
        emb = model.embed_tokens(ids)
        full = model.insert_image(emb, model.encode_images(img))
        hidden = model.decoder(inputs_embeds=full).last_hidden_state[0]
        pos = [t + N - 1 for t in (ids[0] == tok.num_id).nonzero().flatten().tolist()]
        raw = model.num_head(hidden[pos]).tolist()
    scales = [model.config.num_scale(f) for f in number_fields(split_pieces(placeholder))]
    decoded = [v for o in scene.objects for v in ((*o.loc, o.rotation) if o.shape == "cube" else o.loc)]
    for r, s, d in zip(raw, scales, decoded):
        assert abs(max(-20, min(20, r * s)) - d) < 1e-3


def test_overfits_eight_pairs():
    model = make_model(seed=0)
    cfg, tok = model.config, model.tokenizer
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(8)]
    imgs = random_images(8, cfg.image_size)
    batch = collate(list(zip(imgs, scenes)), tok, cfg)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3, weight_decay=0.0)
    assert all(not p.requires_grad for p in model.vision_parameters())
    ok = False
    for step in range(1, 601):
        model.train()
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 and step >= 150:
            results = generate(model, imgs)
            wanted = [s.canonical() for s in scenes]
            if all(same_categories(sc, w) and max_number_error(sc, w) < 0.05
                   for (_, sc), w in zip(results, wanted)):
                ok = True
                break
    assert ok, f"did not overfit 8 pairs in {step} steps"
    for (text, sc), w in zip(results, wanted):
        assert text.count("add(") == len(w)


def test_random_models_always_write_parsable_programs():
    outputs = []
    for seed, numbers, max_objects in ((0, "head", None), (1, "head", 3), (2, "char", None), (3, "char", 2)):
        model = make_model(seed=seed, numbers=numbers)
        imgs = random_images(25, model.config.image_size, seed=seed)
        for text, scene in generate(model, imgs, max_objects=max_objects):
            assert scene is not None
            again = parse(text, max_objects=max_objects or 10)  # the text alone parses too
            assert len(again) == len(scene) <= (max_objects or 10)
            outputs.append(text)
    assert len(outputs) == 100


def test_batched_equals_single():
    model = make_model(seed=4)
    imgs = random_images(3, model.config.image_size, seed=2)
    batched = generate(model, imgs)
    single = [generate(model, imgs[i:i + 1])[0] for i in range(3)]
    for (tb, _), (ts, _) in zip(batched, single):
        assert tb == ts


def test_unconstrained_decoding_runs():
    model = make_model(seed=5)
    stats = {}
    res = generate(model, random_images(2, model.config.image_size), constrained=False, max_new_tokens=30,
                   stop_at_eos=False, stats=stats)
    assert len(res) == 2 and stats["new_tokens"] == 60
    assert all(isinstance(t, str) for t, _ in res)


# -- checkpoints -----------------------------------------------------------------------------
def test_save_load_gives_identical_outputs(tmp_path):
    model = make_model(seed=6)
    imgs = random_images(2, model.config.image_size, seed=1)
    scene = random_scene(random.Random(2))
    batch = collate([(imgs[0], scene)], model.tokenizer, model.config)
    before = generate(model, imgs)
    loss_before = model(batch)["loss"]
    out = save_checkpoint(model, tmp_path / "ckpt", {"steps": 0, "note": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["card.md", "config.json", "model.safetensors", "tokenizer.json"]
    loaded = load_checkpoint(out)
    assert generate(loaded, imgs) == before
    assert torch.equal(loaded(batch)["loss"], loss_before)
    # saving again over an existing folder replaces it atomically
    save_checkpoint(loaded, out, "second")
    assert (out / "card.md").read_text() == "second\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fp16_storage_is_close(tmp_path):
    model = make_model(seed=7, storage_dtype="float16")
    imgs = random_images(2, model.config.image_size, seed=1)
    out = save_checkpoint(model, tmp_path / "ckpt", "")
    loaded = load_checkpoint(out)
    assert next(loaded.lm.parameters()).dtype == torch.float32
    for (ta, sa), (tb, sb) in zip(generate(model, imgs, num_objects=2), generate(loaded, imgs, num_objects=2)):
        assert same_categories(sa, sb) and max_number_error(sa, sb) < 0.01


@pytest.mark.parametrize("damage", ["missing-config", "bad-config", "missing-weights", "truncated-weights",
                                    "bad-tokenizer", "missing-tokenizer", "mismatched-config", "missing-dir"])
def test_damaged_checkpoint_gives_one_clear_error(tmp_path, damage):
    import json

    model = make_model(seed=8)
    ck = save_checkpoint(model, tmp_path / "ckpt", "")
    expect = {"missing-config": "config.json", "bad-config": "config.json", "missing-weights": "model.safetensors",
              "truncated-weights": "model.safetensors", "bad-tokenizer": "tokenizer.json",
              "missing-tokenizer": "tokenizer.json", "mismatched-config": "model.safetensors",
              "missing-dir": "nowhere"}[damage]
    target = ck
    if damage == "missing-config":
        (ck / "config.json").unlink()
    elif damage == "bad-config":
        (ck / "config.json").write_text("{ not json")
    elif damage == "missing-weights":
        (ck / "model.safetensors").unlink()
    elif damage == "truncated-weights":
        data = (ck / "model.safetensors").read_bytes()
        (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "bad-tokenizer":
        (ck / "tokenizer.json").write_text("garbage")
    elif damage == "missing-tokenizer":
        (ck / "tokenizer.json").unlink()
    elif damage == "mismatched-config":
        cfg = json.loads((ck / "config.json").read_text())
        cfg["config"]["lm_hidden"] = 64
        (ck / "config.json").write_text(json.dumps(cfg))
    elif damage == "missing-dir":
        target = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=re.escape(expect)) as info:
        load_checkpoint(target)
    assert "\n" not in str(info.value)


def test_predictor_and_default_model_message(tmp_path):
    from PIL import Image

    from ig_llm.model.inference import DEFAULT_MODEL_DIR, ModelNotFoundError, Predictor

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        with pytest.raises(ModelNotFoundError, match="default model"):
            Predictor()
    model = make_model(seed=9)
    ck = save_checkpoint(model, tmp_path / "ckpt", "")
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(img)
    pred = Predictor(ck, device="cpu")
    (scene, text), = pred.predict([img])
    assert parse(text) == scene or len(parse(text)) == len(scene)


def test_bench_prints_a_table():
    from ig_llm.model.bench import run_bench

    table = run_bench(n_images=1, objects=1, threads=2, char_row=False)
    assert "| constrained + jump-forward" in table
    # the header says which weights were timed: the shipped model, or untrained when none ships
    assert "trained (" in table or "untrained" in table


def test_a_saved_checkpoint_with_its_tower_inside_names_no_machine_path(tmp_path):
    """The shipped config carried the build machine's stage-1 path (issue #25, item 7)."""
    import json

    model = IGLLM(micro_config(vision_weights=str(tmp_path / "gone" / "vision.safetensors")),
                  ProgramTokenizer.build(), load_weights=False)
    save_checkpoint(model, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["config"]["vision_weights"] is None
    load_checkpoint(tmp_path / "ckpt")      # loads with the file it started from gone
    shipped_dir = Path(__file__).resolve().parents[1] / "model" / "default"
    shipped = json.loads((shipped_dir / "config.json").read_text())["config"]
    assert shipped["vision_weights"] is None
