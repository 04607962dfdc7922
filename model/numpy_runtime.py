"""The inference path in NumPy: runs the shipped model where torch is absent (Blender).

Same checkpoint folder, same grammar (``grammar.py``), same preprocessing (``pixels.py``)
as the torch runtime; weights come from ``safetensors.numpy`` and are computed in
float32. ``tests/test_numpy_runtime.py`` keeps the two runtimes equal.

Every layer type is one small function below, and each tower is a short function that
strings them together — a new layer type for a redesigned tower is one more function
and one more line in ``TOWERS``. What it covers: the ``conv`` tower (ConvTower: coord
channels, Conv-BN with BatchNorm folded into the convolution, ReLU, residual blocks,
2x2 space-to-depth) and open_clip's ViT (``custom`` and named ViTs with plain GELU;
penultimate layer, CLS dropped), the ``linear``/``mlp2x_gelu`` projectors, a Llama built
by this project (RMSNorm, RoPE, SwiGLU, grouped KV heads, no biases) with a KV cache,
and the numeric head. Models on a loaded LM (``lm_path``) need torch.

One image at a time (Blender imports one picture; batching only pays for a GPU).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError, brief
from ..scene.domain import load_domain
from .checkpoint import CheckpointError, read_checkpoint_files
from .grammar import ConstrainedSeq, FreeSeq, ProgramGrammar, number_limits, store_number

RMS_EPS = 1e-6          # transformers' LlamaConfig default (this project never changes it)
ROPE_THETA = 10000.0    # idem
LN_EPS = 1e-5           # open_clip LayerNorm
BN_EPS = 1e-5           # torch BatchNorm2d


class UnsupportedModel(UserError, ValueError):
    """A checkpoint this runtime cannot run (use torch); the message says why."""


# ---------------------------------------------------------------------------------------
# layers: one small function each
# ---------------------------------------------------------------------------------------
def linear(x, w, b=None):
    """x [..., in] @ w [out, in]^T (+ b)."""
    y = x @ w.T
    return y + b if b is not None else y


def _erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): NumPy has no erf, Blender no SciPy
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def gelu(x):
    """Exact (erf) GELU, as torch's nn.GELU()."""
    return (0.5 * x * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))).astype(np.float32)


def relu(x):
    return np.maximum(x, 0.0)


def silu(x):
    return x / (1.0 + np.exp(-x))


def layer_norm(x, w, b, eps=LN_EPS):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps=RMS_EPS):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def conv2d(x, w, b, stride: int = 1):
    """x [C, H, W], w [O, C, k, k] (odd k, 'same' padding k//2) -> [O, H', W']. im2col + one matmul."""
    o, c, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p))) if p else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    ho, wo = win.shape[1:3]
    cols = win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * k * k)
    y = cols @ w.reshape(o, -1).T + b
    return y.T.reshape(o, ho, wo)


def fold_bn(w, bn: dict):
    """Conv weight + eval-mode BatchNorm (running stats) -> (weight, bias) of one convolution."""
    scale = bn["weight"] / np.sqrt(bn["running_var"] + BN_EPS)
    return w * scale[:, None, None, None], bn["bias"] - bn["running_mean"] * scale


def conv_bn(x, p: dict, stride: int = 1):
    return conv2d(x, p["w"], p["b"], stride)


def coord_channels(h: int, w: int):
    ys = np.broadcast_to(np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None], (h, w))
    xs = np.broadcast_to(np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :], (h, w))
    return np.stack([xs, ys])


def space_to_depth_tokens(f, r: int = 2):
    """[C, h, w] -> [(h/r)(w/r), r*r*C], each r x r group of cells one token (ConvTower.forward)."""
    c, h, w = f.shape
    return f.reshape(c, h // r, r, w // r, r).transpose(1, 3, 2, 4, 0).reshape((h // r) * (w // r), r * r * c)


def mha(x, p: dict, heads: int):
    """nn.MultiheadAttention (self-attention, packed in_proj), x [T, D]."""
    t, d = x.shape
    q, k, v = np.split(linear(x, p["in_w"], p["in_b"]), 3, axis=-1)
    hd = d // heads
    q, k, v = (z.reshape(t, heads, hd).transpose(1, 0, 2) for z in (q, k, v))
    a = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd))
    return linear((a @ v).transpose(1, 0, 2).reshape(t, d), p["out_w"], p["out_b"])


def rope(x, pos, inv_freq):
    """Llama rotary embedding on x [H, T, hd] at positions pos [T] (rotate_half convention)."""
    f = pos[:, None].astype(np.float32) * inv_freq[None, :]
    emb = np.concatenate([f, f], -1)
    cos, sin = np.cos(emb), np.sin(emb)
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


# ---------------------------------------------------------------------------------------
# towers: image [3, H, W] -> tokens [N, width]
# ---------------------------------------------------------------------------------------
def conv_tower(w: dict, image, cfg):
    x = np.concatenate([image, coord_channels(*image.shape[1:])])
    x = relu(conv_bn(x, w["stem"], 2))
    for blk, stride in zip(w["blocks"], cfg.conv_block_strides):
        y = conv_bn(relu(conv_bn(x, blk["conv1"], stride)), blk["conv2"])
        x = relu(y + (x if blk["skip"] is None else conv_bn(x, blk["skip"], stride)))
    return space_to_depth_tokens(x, cfg.cells_per_token)


def vit_tower(w: dict, image, cfg):
    """open_clip VisionTransformer, penultimate block, patch tokens (VisionTower.forward)."""
    x = conv2d_patches(image, w["conv1"])
    x = np.concatenate([w["class_embedding"][None], x]) + w["positional_embedding"]
    x = layer_norm(x, *w["ln_pre"])
    for blk in w["blocks"][:-1]:          # penultimate layer: skip the last block
        x = x + mha(layer_norm(x, *blk["ln_1"]), blk["attn"], cfg.vision_heads)
        h = layer_norm(x, *blk["ln_2"])
        x = x + linear(gelu(linear(h, blk["fc_w"], blk["fc_b"])), blk["proj_w"], blk["proj_b"])
    return x[1:]


def conv2d_patches(image, w):
    """Non-overlapping patch embedding (stride = kernel, no bias) -> [N, width]."""
    o, c, k, _ = w.shape
    _, h, wd = image.shape
    x = image[:, :h // k * k, :wd // k * k].reshape(c, h // k, k, wd // k, k)
    cols = x.transpose(1, 3, 0, 2, 4).reshape((h // k) * (wd // k), c * k * k)
    return cols @ w.reshape(o, -1).T


TOWERS = {"conv": conv_tower, "vit": vit_tower}


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------
def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


class NumpyIGLLM:
    """An IG-LLM checkpoint in NumPy: ``encode_image``, ``lm_step`` (KV cache), heads."""

    def __init__(self, config, tokenizer, state: dict):
        self.config, self.tokenizer = config, tokenizer
        if config.lm_path is not None:
            raise UnsupportedModel("The NumPy runtime runs models whose LM is built by this project, "
                                   f"not a loaded LM ({config.lm_path}); install the torch runtime.")
        s = {k: _f32(v) for k, v in state.items()}
        self.tower = "conv" if config.vision_model == "conv" else "vit"
        self.vision = self._vision(s)
        if config.projector == "linear":
            self.projector = [(s["projector.weight"], s["projector.bias"])]
        else:
            self.projector = [(s["projector.0.weight"], s["projector.0.bias"]),
                              (s["projector.2.weight"], s["projector.2.bias"])]
        p = "lm.model."
        self.embed = s[p + "embed_tokens.weight"]
        self.lm_head_t = _f32(s["lm.lm_head.weight"].T)
        self.norm = s[p + "norm.weight"]
        self.layers = []
        for i in range(config.lm_layers):
            q = f"{p}layers.{i}."
            w = {n: s[q + n + ".weight"] for n in (
                "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
            # fused and pre-transposed ([in, out], contiguous): fewer, faster small matmuls
            self.layers.append({
                "ln1": w["input_layernorm"], "ln2": w["post_attention_layernorm"],
                "qkv": _f32(np.concatenate([w["self_attn.q_proj"], w["self_attn.k_proj"],
                                            w["self_attn.v_proj"]]).T),
                "o": _f32(w["self_attn.o_proj"].T),
                "gate_up": _f32(np.concatenate([w["mlp.gate_proj"], w["mlp.up_proj"]]).T),
                "down": _f32(w["mlp.down_proj"].T)})
        self.heads = config.lm_heads
        self.kv_heads = config.lm_kv_heads or config.lm_heads
        self.head_dim = config.lm_hidden // config.lm_heads
        self.inv_freq = (1.0 / ROPE_THETA ** (np.arange(0, self.head_dim, 2, dtype=np.float32)
                                              / self.head_dim)).astype(np.float32)
        self.num_head = None
        if config.numbers == "head":
            self.num_head = (s["num_head.net.1.weight"], s["num_head.net.1.bias"],
                             s["num_head.net.3.weight"], s["num_head.net.3.bias"])
        self.n_params = sum(v.size for k, v in state.items() if "running_" not in k and "num_batches" not in k)

    def _vision(self, s: dict) -> dict:
        if self.tower == "conv":
            def cbn(prefix):
                w, b = fold_bn(s[prefix + ".0.weight"], {n: s[f"{prefix}.1.{n}"] for n in
                                                         ("weight", "bias", "running_mean", "running_var")})
                return {"w": _f32(w), "b": _f32(b)}
            blocks = []
            for i in range(4):
                q = f"vision.blocks.{i}"
                blocks.append({"conv1": cbn(q + ".conv1"), "conv2": cbn(q + ".conv2"),
                               "skip": cbn(q + ".skip") if q + ".skip.0.weight" in s else None})
            return {"stem": cbn("vision.stem"), "blocks": blocks}
        v = "vision.visual."
        if v + "conv1.weight" not in s:
            raise UnsupportedModel("This checkpoint does not store its vision tower; install the torch runtime.")
        blocks = []
        for i in range(self.config.vision_layers):
            q = f"{v}transformer.resblocks.{i}."
            if q + "attn.in_proj_weight" not in s:
                break
            blocks.append({
                "ln_1": (s[q + "ln_1.weight"], s[q + "ln_1.bias"]), "ln_2": (s[q + "ln_2.weight"], s[q + "ln_2.bias"]),
                "attn": {"in_w": s[q + "attn.in_proj_weight"], "in_b": s[q + "attn.in_proj_bias"],
                         "out_w": s[q + "attn.out_proj.weight"], "out_b": s[q + "attn.out_proj.bias"]},
                "fc_w": s[q + "mlp.c_fc.weight"], "fc_b": s[q + "mlp.c_fc.bias"],
                "proj_w": s[q + "mlp.c_proj.weight"], "proj_b": s[q + "mlp.c_proj.bias"]})
        if self.config.vision_model.endswith("-quickgelu"):
            raise UnsupportedModel("QuickGELU towers are not in the NumPy runtime; install the torch runtime.")
        return {"conv1": s[v + "conv1.weight"], "class_embedding": s[v + "class_embedding"],
                "positional_embedding": s[v + "positional_embedding"],
                "ln_pre": (s[v + "ln_pre.weight"], s[v + "ln_pre.bias"]), "blocks": blocks}

    # -- parts ----------------------------------------------------------------------------
    def tower_tokens(self, image) -> np.ndarray:
        """[3, H, W] normalised image -> the tower's tokens [N, width]."""
        return TOWERS[self.tower](self.vision, _f32(image), self.config)

    def tower_tokens_width(self) -> int:
        """Width of one tower token (what ``confidence`` features are built from)."""
        if self.tower == "conv":
            return self.config.cells_per_token ** 2 * self.vision["blocks"][-1]["conv2"]["w"].shape[0]
        return self.vision["conv1"].shape[0]

    def project(self, feats) -> np.ndarray:
        x = linear(feats, *self.projector[0])
        if len(self.projector) > 1:
            x = linear(gelu(x), *self.projector[1])
        return x

    def numbers(self, hidden) -> np.ndarray:
        w1, b1, w2, b2 = self.num_head
        return linear(gelu(linear(np.tanh(hidden), w1, b1)), w2, b2)[..., 0]

    def logits(self, hidden) -> np.ndarray:
        return hidden @ self.lm_head_t

    def new_cache(self) -> list:
        return [[None, None] for _ in self.layers]

    def lm_step(self, embeds, start: int, cache: list) -> np.ndarray:
        """Feed embeddings [T, d] at positions start.. ; extends `cache`; -> final hidden [T, d]."""
        t = embeds.shape[0]
        pos = np.arange(start, start + t)
        x = embeds
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        # causal within the new tokens; every cached token is visible
        causal = np.triu(np.full((t, t), -np.inf, np.float32), 1)
        nq, nk = nh * hd, nkv * hd
        for layer, kv in zip(self.layers, cache):
            qkv = rms_norm(x, layer["ln1"]) @ layer["qkv"]
            q = rope(qkv[:, :nq].reshape(t, nh, hd).transpose(1, 0, 2), pos, self.inv_freq)
            k = rope(qkv[:, nq:nq + nk].reshape(t, nkv, hd).transpose(1, 0, 2), pos, self.inv_freq)
            v = qkv[:, nq + nk:].reshape(t, nkv, hd).transpose(1, 0, 2)
            if kv[0] is not None:
                k, v = np.concatenate([kv[0], k], 1), np.concatenate([kv[1], v], 1)
            kv[0], kv[1] = k, v
            if nkv != nh:
                k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            scores[:, :, -t:] += causal
            a = (softmax(scores) @ v).transpose(1, 0, 2).reshape(t, nh * hd)
            x = x + a @ layer["o"]
            gu = rms_norm(x, layer["ln2"]) @ layer["gate_up"]
            inter = gu.shape[1] // 2
            x = x + (silu(gu[:, :inter]) * gu[:, inter:]) @ layer["down"]
        return rms_norm(x, self.norm)

    def prefill(self, image, tokens=None):
        """[3, H, W] -> (hidden [T, d] of ``<bos> image prompt``, KV cache). `tokens`: the
        tower's output when the caller already has it."""
        img = self.project(self.tower_tokens(image) if tokens is None else tokens)
        prompt = self.embed[np.asarray(self.tokenizer.prompt_ids())]
        embeds = np.concatenate([prompt[:1], img, prompt[1:]])
        cache = self.new_cache()
        return self.lm_step(embeds, 0, cache), cache


def load_numpy_model(ckpt_dir) -> NumpyIGLLM:
    """A checkpoint folder -> NumpyIGLLM; problems with files raise CheckpointError."""
    from safetensors.numpy import load_file

    def wordlevel_only(ckpt, kind):
        if kind != "wordlevel":
            raise UnsupportedModel(f"Checkpoint {ckpt} uses a Hugging Face tokenizer; install the torch runtime "
                                   "for it.")

    ckpt, config, tokenizer, weights, state = read_checkpoint_files(
        ckpt_dir, load_file, lambda v: not np.issubdtype(v.dtype, np.floating) or bool(np.isfinite(v).all()),
        check_kind=wordlevel_only)
    try:
        model = NumpyIGLLM(config, tokenizer, state)
        _check_shapes(model)
    except KeyError as err:
        raise CheckpointError(f"Checkpoint file {weights} does not match {ckpt / 'config.json'} "
                              f"(lacks {err.args[0]}); use the config.json saved with these weights.") from None
    except (ValueError, IndexError) as err:
        if isinstance(err, UserError):
            raise
        raise CheckpointError(f"Checkpoint file {weights} does not match {ckpt / 'config.json'} "
                              f"({brief(err)}); use the config.json saved with these weights.") from None
    return model


def _check_shapes(model: NumpyIGLLM) -> None:
    """ValueError naming the first tensor whose shape does not fit the config (what torch's
    load_state_dict would catch): the LM sizes, then one dry step of the LM."""
    cfg = model.config
    d, hd = cfg.lm_hidden, model.head_dim
    vocab = model.tokenizer.vocab_size
    want = {"lm.model.embed_tokens.weight": (model.embed.shape, (vocab, d)),
            "lm.lm_head.weight": (model.lm_head_t.shape, (d, vocab)),
            "lm.model.norm.weight": (model.norm.shape, (d,))}
    if len(model.layers) != cfg.lm_layers:
        raise ValueError(f"{len(model.layers)} LM layers, the config needs {cfg.lm_layers}")
    for i, layer in enumerate(model.layers):
        want[f"lm.model.layers.{i}.self_attn (q, k, v)"] = (
            layer["qkv"].shape, (d, (model.heads + 2 * model.kv_heads) * hd))
        want[f"lm.model.layers.{i}.self_attn.o_proj.weight"] = (layer["o"].shape, (model.heads * hd, d))
        want[f"lm.model.layers.{i}.input_layernorm.weight"] = (layer["ln1"].shape, (d,))
    for name, (have, need) in want.items():
        if tuple(have) != tuple(need):
            raise ValueError(f"{name} has shape {tuple(have)}, the config needs {tuple(need)}")
    out = model.project(np.zeros((1, model.tower_tokens_width()), np.float32))
    if out.shape != (1, d):
        raise ValueError(f"the projector gives width {out.shape[1]}, the LM needs {d}")
    model.lm_step(model.embed[:1], 0, model.new_cache())


def generate(model: NumpyIGLLM, image, max_objects: int | None = None, constrained: bool = True,
             num_objects: int | None = None, max_new_tokens: int | None = None, stop_at_eos: bool = True,
             stats: dict | None = None, trace: dict | None = None, tokens=None):
    """Greedy decoding of one preprocessed image [3, H, W] -> (program text, Scene | None).

    The same walk as ``decoding.generate`` (grammar slots, jump-forward runs, numbers from
    the state before each ``<num>``). `trace`, if a dict, receives the fed token ids
    (``ids``) and each decision's (sequence position, logits) (``decisions``): tests
    replay them through torch."""
    cfg, tok = model.config, model.tokenizer
    max_objects = max_objects or cfg.max_objects
    if constrained:
        seq = ConstrainedSeq(ProgramGrammar(cfg, tok), max_objects, num_objects)
    else:
        seq = FreeSeq(tok, max_new_tokens or 64 * max_objects, stop_at_eos)
    limits = number_limits(load_domain(cfg.domain))
    hidden, cache = model.prefill(image, tokens)
    last, length = hidden[-1], hidden.shape[0]
    calls, new_tokens = 1, 0
    while True:
        if seq.run:
            n = len(seq.run)
            if trace is not None:
                trace.setdefault("ids", []).extend(seq.run)
            hidden = model.lm_step(model.embed[np.asarray(seq.run)], length, cache)
            calls, length, new_tokens = calls + 1, length + n, new_tokens + n
            if model.num_head is not None:
                owners = [(j, f) for j, f in enumerate(seq.run_fields) if f is not None]
                if owners:
                    states = np.stack([hidden[j - 1] if j else last for j, _ in owners])
                    for (_, f), v in zip(owners, model.numbers(states).tolist()):
                        store_number(seq, f, v, cfg, limits)
            last = hidden[-1]
            seq.run, seq.run_fields = [], []
        if seq.done or seq.allowed is None:
            break
        logits = model.logits(last)
        if trace is not None:
            trace.setdefault("decisions", []).append((length - 1, logits))
        if seq.allowed == "all":
            seq.choose(int(logits.argmax()))
        else:
            allowed = seq.allowed
            seq.choose(allowed[int(logits[allowed].argmax())] if len(allowed) > 1 else allowed[0])
    if stats is not None:
        stats.update(forward_calls=calls, new_tokens=new_tokens)
    return seq.text_and_scene(cfg)
