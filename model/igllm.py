"""IG-LLM: image -> vision tower -> projector -> causal LM (+ numeric head) -> program.

The one model file. Sequence layout (training and decoding alike)::

    <bos> [image tokens x N] PROMPT \\n  add(shape= 'cube' , ... loc=( <num> , ... ) <eos>
    └─ text position 0 ─┘└ inserted ┘└──── text positions 1 .. ──────────────────────────┘

Only the reply (after the prompt) is supervised. In ``numbers="head"`` mode each number
is the ``<num>`` token; the numeric head (Tanh -> Linear -> GELU -> Linear, the paper's
``tanh_mlp_gelu``) reads the last hidden state at the position *before* each ``<num>``,
i.e. the state whose logits predict ``<num>``. Loss = CE + w * MSE (normalised values).
"""
from __future__ import annotations

from . import compat  # noqa: F401 - before transformers/open_clip (torchvision import)

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import IGLLMConfig
from .projector import build_projector
from .tokenizer import ProgramTokenizer
from .vision import build_vision_tower

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


class NumericHead(nn.Module):
    """Tanh -> Linear(d, d) -> GELU -> Linear(d, 1): one number per hidden state."""

    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Tanh(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).squeeze(-1)


def build_language_model(config: IGLLMConfig, tokenizer: ProgramTokenizer, load_weights: bool = True):
    """A Llama built from the config, or a local HF causal LM (resized for ``<num>``)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    dtype = torch_dtype(config.dtype)
    if config.lm_path is None:
        lcfg = LlamaConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=config.lm_hidden,
            intermediate_size=config.intermediate_size, num_hidden_layers=config.lm_layers,
            num_attention_heads=config.lm_heads,
            num_key_value_heads=config.lm_kv_heads or config.lm_heads,
            max_position_embeddings=config.lm_max_positions, bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
            tie_word_embeddings=False)  # untied: safetensors stores no shared tensors
        return LlamaForCausalLM(lcfg).to(dtype)
    if load_weights:
        lm = AutoModelForCausalLM.from_pretrained(config.lm_path, local_files_only=True, dtype=dtype)
    else:  # structure only (weights come from elsewhere)
        from transformers import AutoConfig
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.lm_path, local_files_only=True))
        lm = lm.to(dtype)
    old = lm.get_input_embeddings().weight.shape[0]
    if tokenizer.vocab_size > old:
        # new rows (<num>) = mean of the old ones: deterministic, so a checkpoint that does
        # not store the (frozen) embeddings still rebuilds the same model
        lm.resize_token_embeddings(tokenizer.vocab_size, mean_resizing=False)
        with torch.no_grad():
            for emb in (lm.get_input_embeddings(), lm.get_output_embeddings()):
                if emb is not None and emb.weight.shape[0] >= tokenizer.vocab_size:
                    emb.weight[old:] = emb.weight[:old].float().mean(0).to(emb.weight.dtype)
    return lm


def apply_lora(lm, config: IGLLMConfig):
    """Wrap with peft LoRA on every linear layer except lm_head (the paper's setting)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("lora_r > 0 needs the optional package `peft`; pip install peft") from None
    names = sorted({n.rsplit(".", 1)[-1] for n, m in lm.named_modules()
                    if isinstance(m, nn.Linear) and "lm_head" not in n})
    lcfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=names, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(lm, lcfg)


class IGLLM(nn.Module):
    """The IG-LLM model. ``forward(batch)`` -> dict(loss, ce, mse); see ``decoding.generate``."""

    def __init__(self, config: IGLLMConfig, tokenizer: ProgramTokenizer, load_weights: bool = True,
                 load_vision_weights: bool | None = None):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        load_vision = load_weights if load_vision_weights is None else load_vision_weights
        self.vision = build_vision_tower(config, load_weights=load_vision)
        lm = build_language_model(config, tokenizer, load_weights=load_weights)
        if config.gradient_checkpointing:
            lm.gradient_checkpointing_enable()
        if config.lora_r > 0:
            lm = apply_lora(lm, config)
        self.lm = lm
        base = self.causal_lm
        d = base.get_input_embeddings().weight.shape[1]
        self.hidden_size = d
        dtype = torch_dtype(config.dtype)
        self.projector = build_projector(config.projector, self.vision.width, d).to(dtype)
        self.feature_whitening = None     # stage-2 preconditioner (projector.FeatureWhitening); never saved
        self.num_head = NumericHead(d).to(dtype) if config.numbers == "head" else None
        self.vision.to(dtype)
        if config.freeze_vision:
            self.freeze_vision(True)

    # -- parts, for the trainer -------------------------------------------------------------
    @property
    def causal_lm(self):
        """The transformers causal LM (under peft's wrapper when LoRA is on)."""
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    @property
    def decoder(self):
        return self.causal_lm.get_decoder()

    @property
    def lm_head(self):
        return self.causal_lm.get_output_embeddings()

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.causal_lm.get_input_embeddings()(ids)

    def freeze_vision(self, frozen: bool = True) -> None:
        for p in self.vision.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            self.vision.eval()

    def train(self, mode: bool = True):
        """As nn.Module.train, but a frozen tower stays in eval mode: its BatchNorm
        statistics are part of what stage 1 learned and must not drift in stage 2."""
        super().train(mode)
        if not any(p.requires_grad for p in self.vision.parameters()):
            self.vision.eval()
        return self

    def vision_parameters(self):
        return list(self.vision.parameters())

    def projector_parameters(self):
        return list(self.projector.parameters())

    def lm_parameters(self):
        return list(self.lm.parameters())

    def head_parameters(self):
        return list(self.num_head.parameters()) if self.num_head is not None else []

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return next(self.projector.parameters()).device

    # -- forward ------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] -> projected image tokens [B, N, d] in the LM's dtype."""
        vdtype = next(self.vision.parameters()).dtype
        frozen = not any(p.requires_grad for p in self.vision.parameters())
        ctx = torch.no_grad() if frozen else contextlib.nullcontext()
        with ctx:
            feats = self.vision(pixel_values.to(device=self.device, dtype=vdtype))
        pdtype = next(self.projector.parameters()).dtype
        if self.feature_whitening is not None:
            feats = self.feature_whitening(feats.float())
        return self.projector(feats.to(pdtype))

    @staticmethod
    def insert_image(text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Put image rows after text position 0 (``<bos>``): [B,T,...] + [B,N,...] -> [B,N+T,...]."""
        return torch.cat([text[:, :1], image, text[:, 1:]], dim=1)

    def forward(self, batch: dict) -> dict:
        """Teacher-forced loss on a ``batching.collate`` batch -> dict(loss, ce, mse)."""
        dev = self.device
        ids = batch["input_ids"].to(dev)
        B = ids.shape[0]
        img = self.encode_images(batch["pixel_values"])
        N = img.shape[1]
        tok = self.embed_tokens(ids)
        embeds = self.insert_image(tok, img.to(tok.dtype))

        def full(x, fill):  # text-indexed [B,T] -> sequence-indexed [B,N+T]
            pad = torch.full((B, N), fill, dtype=x.dtype, device=dev)
            return self.insert_image(x.to(dev), pad)

        attention = full(batch["attention_mask"], 1)
        labels = full(batch["labels"], -100)
        hidden = self.decoder(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        # position i predicts token i+1
        h, y = hidden[:, :-1], labels[:, 1:]
        sup = y != -100
        logits = self.lm_head(h[sup]).float()
        ce = F.cross_entropy(logits, y[sup])
        mse = torch.zeros((), device=dev)
        if self.num_head is not None and "num_mask" in batch:
            nmask = full(batch["num_mask"], False)[:, 1:]
            if nmask.any():
                pred = self.num_head(h[nmask]).float()
                target = full(batch["num_values"].float(), 0.0)[:, 1:][nmask]
                mse = F.mse_loss(pred, target)
        loss = ce + self.config.num_loss_weight * mse
        return {"loss": loss, "ce": ce.detach(), "mse": mse.detach()}
