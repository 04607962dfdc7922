"""The `paper` preset path (local HF LM + open_clip weight file + LoRA), with small stand-ins
that this test writes itself: a tiny Llama saved with save_pretrained, its BPE tokenizer,
and an open_clip checkpoint of a tiny custom CLIP."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_helpers import random_images, random_scene  # noqa: E402

import ig_llm.model.compat  # noqa: E402,F401 - before transformers/open_clip
from ig_llm.model.batching import collate  # noqa: E402
from ig_llm.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ig_llm.model.decoding import generate  # noqa: E402
from ig_llm.model.igllm import IGLLM  # noqa: E402
from ig_llm.model.presets import make_config  # noqa: E402
from ig_llm.model.tokenizer import ProgramTokenizer  # noqa: E402
from ig_llm.model.vision import VisionWeightsError, vision_cfg  # noqa: E402
from ig_llm.scene.program import PROMPT, format_program, parse  # noqa: E402

VISION = dict(vision_model="custom", image_size=32, patch_size=8, vision_width=64, vision_layers=2,
              vision_heads=2, vision_embed_dim=32)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """(lm_dir, vision_file) written here: nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    import open_clip

    root = tmp_path_factory.mktemp("paper_standins")
    rng = random.Random(0)
    corpus = [PROMPT] + [format_program(random_scene(rng), "char") for _ in range(200)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    lm_dir = root / "tiny-llama"
    hf_tok.save_pretrained(lm_dir)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                      max_position_embeddings=512, bos_token_id=1, eos_token_id=2))
    lm.save_pretrained(lm_dir)
    clip = open_clip.model.CLIP(embed_dim=32, vision_cfg=dict(image_size=32, patch_size=8, width=64, layers=2,
                                                              head_width=32),
                                text_cfg=dict(context_length=16, vocab_size=100, width=32, heads=2, layers=1))
    vision_file = root / "tiny_clip.pt"
    torch.save({"state_dict": clip.state_dict()}, vision_file)
    return lm_dir, vision_file, clip


def paper_config(lm_dir, vision_file, **kw):
    return make_config("paper", lm_path=str(lm_dir), vision_weights=str(vision_file), lora_r=8, lora_alpha=16,
                       dtype="float32", storage_dtype="float32", gradient_checkpointing=False, **VISION, **kw)


def test_paper_preset_defaults():
    with pytest.raises(ValueError, match="lm_path"):
        make_config("paper")
    cfg = make_config("paper", lm_path="/somewhere")
    assert (cfg.vision_model, cfg.image_size, cfg.patch_size, cfg.projector) == ("ViT-L-14-336", 336, 14, "linear")
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (128, 256, 0.05)
    embed_dim, v = vision_cfg(cfg)  # the real ViT-L/14-336 geometry, without building it
    assert (v["width"], v["layers"], v["patch_size"]) == (1024, 24, 14)
    assert cfg.num_image_tokens == 576


def test_paper_path_with_standins(standins, tmp_path):
    lm_dir, vision_file, clip = standins
    cfg = paper_config(lm_dir, vision_file)
    tok = ProgramTokenizer.from_hf(str(lm_dir))
    assert tok.kind == "hf" and tok.num_id is not None
    assert any(len(tok.piece_ids(p)) > 1 for p in ("'cylinder'", "loc=(", "material="))  # real multi-token pieces
    torch.manual_seed(0)
    model = IGLLM(cfg, tok)
    # the vision tower came from the open_clip file
    assert torch.equal(model.vision.visual.conv1.weight, clip.visual.conv1.weight)
    # LoRA: base LM frozen, adapters trainable; lm_head and embeddings frozen
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable)
    assert not any(n.startswith("lm.") and "lora_" not in n for n in trainable)
    assert not any(n.startswith("vision.") for n in trainable)
    # one training step moves the loss
    rng = random.Random(1)
    scenes = [random_scene(rng) for _ in range(4)]
    imgs = random_images(4, cfg.image_size)
    batch = collate(list(zip(imgs, scenes)), tok, cfg)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    first = None
    for _ in range(5):
        model.train()
        out = model(batch)
        first = first if first is not None else out["loss"].item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["loss"].item() < first
    model.eval()
    results = generate(model, imgs, max_objects=3)
    for text, scene in results:
        assert parse(text, max_objects=3) is not None and scene is not None
    # checkpoint: only what is not in lm_path / vision_weights is stored; reload is identical
    ck = save_checkpoint(model, tmp_path / "paper_ckpt", {"preset": "paper"})
    from safetensors.torch import load_file
    keys = set(load_file(str(ck / "model.safetensors")))
    assert any("lora_" in k for k in keys) and any(k.startswith("projector.") for k in keys)
    assert not any(k.startswith("vision.") for k in keys)
    assert not any(k.startswith("lm.") and "lora_" not in k for k in keys)
    loaded = load_checkpoint(ck)
    assert generate(loaded, imgs, max_objects=3) == results


def test_vision_weight_file_errors(standins, tmp_path):
    lm_dir, _, _ = standins
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    tok = ProgramTokenizer.from_hf(str(lm_dir))
    with pytest.raises(VisionWeightsError, match="bad.pt"):
        IGLLM(paper_config(lm_dir, bad), tok)
    with pytest.raises(VisionWeightsError, match="missing.pt"):
        IGLLM(paper_config(lm_dir, tmp_path / "missing.pt"), tok)
