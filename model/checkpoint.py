"""Checkpoint folders: ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``card.md``.

``save_checkpoint`` writes into a temporary sibling folder and swaps it in
(``atomic.writing_folder``), so a crash never leaves a half-written checkpoint.
``load_checkpoint`` rebuilds the model from the folder's own config after checking it:
config values that make no model, weights that do not fit the config, NaN or infinite
weights; every problem with a file becomes one ``CheckpointError`` sentence naming the
file and the fix.

What is stored: for models whose LM is built here (the ``tiny`` preset) *everything*,
vision tower included — the folder is self-contained. For models on top of a local LM
(``lm_path``, the ``paper`` preset) the frozen base LM weights, and a frozen vision tower
that came from ``vision_weights``, are not copied (7B of them); those paths must still
exist when loading.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import writing_folder
from ..errors import UserError, brief

from .config import IGLLMConfig
from .tokenizer import ProgramTokenizer

# torch (via .igllm) is imported inside the functions that need it: read_config and the
# errors are shared with the NumPy runtime, which runs where torch is absent (Blender).

FORMAT = "ig_llm-checkpoint-1"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "card.md")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint folder or file that cannot be used; the message names it and the fix."""


def _external_keys(model: "IGLLM") -> set[str]:
    """State-dict keys whose values come from files outside the checkpoint."""
    cfg, skip = model.config, set()
    if cfg.lm_path is None:
        return skip
    for n, p in model.lm.named_parameters():
        if not p.requires_grad:
            skip.add("lm." + n)
    if cfg.vision_weights and not any(p.requires_grad for p in model.vision.parameters()):
        skip |= {"vision." + n for n, _ in model.vision.named_parameters()}
    return skip


def checkpoint_state(model: "IGLLM") -> dict:
    """The tensors a checkpoint stores (contiguous, cloned, in the storage dtype)."""
    from .igllm import torch_dtype

    skip = _external_keys(model)
    store = torch_dtype(model.config.storage_dtype)
    out = {}
    for k, v in model.state_dict().items():
        if k in skip:
            continue
        v = v.detach().to("cpu")
        if v.is_floating_point():
            v = v.to(store)
        out[k] = v.contiguous().clone()
    return out


def saved_config(model: "IGLLM") -> dict:
    """The config as the checkpoint stores it. A vision tower whose weights are stored in
    the folder does not name the file it started from: a checkpoint holds everything it
    needs and no path of the machine that trained it (the model card keeps the history)."""
    cfg = model.config.to_dict()
    if not any(k.startswith("vision.") for k in _external_keys(model)):
        cfg["vision_weights"] = None
    return cfg


def _card_text(card) -> str:
    if isinstance(card, str):
        return card if card.endswith("\n") else card + "\n"
    lines = ["# IG-LLM checkpoint", "", "| key | value |", "|---|---|"]
    for k, v in (card or {}).items():
        lines.append(f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |")
    return "\n".join(lines) + "\n"


def save_checkpoint(model: "IGLLM", out_dir, card: dict | str = "") -> Path:
    """Write the checkpoint folder atomically; an existing folder is replaced. Returns the path."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with writing_folder(out_dir) as tmp:
        cfg = {"format": FORMAT, "tokenizer": model.tokenizer.kind, "config": saved_config(model)}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(checkpoint_state(model), str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        model.tokenizer.save(tmp)
        (tmp / "card.md").write_text(_card_text(card))
    return out_dir


# fields that must be positive whole numbers, and the divisibility the layers need
_POSITIVE_INTS = ("image_size", "patch_size", "vision_width", "vision_layers", "vision_heads",
                  "lm_hidden", "lm_layers", "lm_heads", "lm_max_positions", "max_objects")


def check_config(cfg: IGLLMConfig) -> None:
    """ValueError (one clause) for config values no model can be built from."""
    for name in _POSITIVE_INTS:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} is {v!r}, it must be a whole number of at least 1")
    for name in ("lm_kv_heads", "lm_intermediate"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} is {v!r}, it must be null or a whole number of at least 1")
    v = cfg.image_height
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise ValueError(f"image_height is {v!r}, it must be null or a whole number of at least 1")
    if cfg.vision_model == "conv":      # stride 8, then 2x2 cells per token (config.num_image_tokens)
        w, h = cfg.image_dims
        if w % 16 or h % 16:
            raise ValueError(f"image size {w}x{h} is not a multiple of 16 on each side, which the conv tower needs")
    elif cfg.image_size % cfg.patch_size:
        raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    if cfg.vision_model == "custom" and cfg.vision_width % cfg.vision_heads:
        raise ValueError(f"vision_width {cfg.vision_width} is not divisible by vision_heads {cfg.vision_heads}")
    if cfg.lm_path is None and cfg.lm_hidden % cfg.lm_heads:
        raise ValueError(f"lm_hidden {cfg.lm_hidden} is not divisible by lm_heads {cfg.lm_heads}")
    if cfg.lm_path is None and cfg.lm_kv_heads and cfg.lm_heads % cfg.lm_kv_heads:
        raise ValueError(f"lm_heads {cfg.lm_heads} is not divisible by lm_kv_heads {cfg.lm_kv_heads}")
    if cfg.lm_path is None and cfg.lm_max_positions <= cfg.num_image_tokens:
        raise ValueError(f"lm_max_positions {cfg.lm_max_positions} leaves no room after "
                         f"{cfg.num_image_tokens} image tokens")
    scales = cfg.num_scales
    if not isinstance(scales, dict) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in scales.values()):
        raise ValueError("num_scales must map field names to positive numbers")


def read_config(ckpt: Path) -> tuple[IGLLMConfig, str]:
    path = ckpt / "config.json"
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} is missing; point to a folder written by "
                              "save_checkpoint (ig_llm train).")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        config = IGLLMConfig.from_dict(data["config"])
        check_config(config)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"Checkpoint file {path} is not a valid IG-LLM config ({err}); "
                              "re-save the checkpoint or restore the file.") from None
    check_kit(config, ckpt)
    return config, data["tokenizer"]


def check_kit(config: IGLLMConfig, ckpt: Path) -> None:
    """A model trained on an asset kit needs that kit (its words, meshes and materials):
    found where the config names it, or by its name in the kit folders (scene/kits.py),
    with the words the model knows. Points ``config.domain`` at the kit found; refuses in
    one CheckpointError sentence otherwise. A kit whose assets changed but whose words did
    not is accepted (the model reads pictures, not the .blend)."""
    rec = config.kit
    if not rec:
        return
    from ..scene.kits import KitError, find_kit, kit_dirs, load_kit
    name = rec.get("name", config.domain)
    path = find_kit(config.domain) or find_kit(name)
    if path is None:
        where = ", ".join(str(d) for d in kit_dirs())
        raise CheckpointError(f"Model {ckpt} was trained on the asset kit {name!r} (sha256 "
                              f"{str(rec.get('sha256', ''))[:12]}), which is not on this machine: no kit at "
                              f"{config.domain} and none named {name} in {where}; copy that kit's folder (kit.toml "
                              "and its .blend) into one of those folders, then load the model again.")
    try:
        kit = load_kit(path)
    except KitError as err:
        raise CheckpointError(f"Model {ckpt} needs the asset kit at {path.parent}, which cannot be used: "
                              f"{str(err).rstrip('.')}.") from None
    known = rec.get("vocabulary") or {}
    if known and kit.vocabulary != known:
        diff = sorted({w for words in known.values() for w in words} ^
                      {w for words in kit.vocabulary.values() for w in words})
        raise CheckpointError(f"Model {ckpt} was trained on the asset kit {name!r} with other words than the kit at "
                              f"{path.parent} has now ({'differing: ' + ', '.join(diff[:8]) if diff else 'the same words in another order'}); restore the kit the model "
                              "was trained on, or train the model again on this one.")
    config.domain = name if find_kit(name) == path else str(path.parent)


def read_checkpoint_files(ckpt_dir, load_file, finite, check_kind=None):
    """(folder, config, tokenizer, weights path, tensors) of a checkpoint, every file
    checked — the one reader both runtimes use. `load_file` is safetensors' torch or NumPy
    loader, `finite(tensor)` says whether a floating tensor holds no NaN/inf, and
    `check_kind(folder, kind)` may refuse a tokenizer kind before it is loaded."""
    from safetensors import SafetensorError

    ckpt = Path(ckpt_dir)
    if not ckpt.is_dir():
        raise CheckpointError(f"Checkpoint folder {ckpt} does not exist; train one with `ig_llm train` "
                              "or pass the right folder.")
    config, kind = read_config(ckpt)
    if check_kind is not None:
        check_kind(ckpt, kind)
    tok_path = ckpt / "tokenizer.json"
    if not tok_path.is_file():
        raise CheckpointError(f"Checkpoint file {tok_path} is missing; copy it back from where the "
                              "checkpoint was trained.")
    try:
        tokenizer = ProgramTokenizer.load(ckpt, kind)
    except Exception as err:
        raise CheckpointError(f"Checkpoint file {tok_path} cannot be read ({type(err).__name__}); "
                              "the file is corrupt — copy it again.") from None
    weights = ckpt / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"Checkpoint file {weights} is missing; copy it back from where the "
                              "checkpoint was trained.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"Checkpoint file {weights} is truncated or corrupt ({brief(err)}); "
                              "copy it again or re-save the checkpoint.") from None
    bad = next((k for k, v in state.items() if not finite(v)), None)
    if bad is not None:
        raise CheckpointError(f"Checkpoint file {weights} holds NaN or infinite weights (in {bad}); the "
                              "training diverged: use an earlier checkpoint or retrain with a lower --lr.")
    return ckpt, config, tokenizer, weights, state


def load_checkpoint(ckpt_dir, device: str = "cpu") -> "IGLLM":
    """Rebuild an IGLLM from a checkpoint folder (eval mode, on `device`)."""
    from safetensors.torch import load_file

    from .igllm import IGLLM

    ckpt, config, tokenizer, weights, state = read_checkpoint_files(
        ckpt_dir, load_file, lambda v: not v.is_floating_point() or bool(v.isfinite().all()))
    # a built LM has nothing to load; a local LM loads its base weights from lm_path
    try:
        model = IGLLM(config, tokenizer, load_weights=config.lm_path is not None,
                      load_vision_weights=not any(k.startswith("vision.") for k in state))
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as err:
        if isinstance(err, UserError):
            raise
        raise CheckpointError(f"Checkpoint file {ckpt / 'config.json'} describes a model that cannot be built "
                              f"({brief(err)}); use the config.json saved with these weights.") from None
    expected = model.state_dict()
    needed = set(expected) - _external_keys(model)
    missing = sorted(needed - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has unknown tensor {extra[0]}"
        raise CheckpointError(f"Checkpoint file {weights} does not match {ckpt / 'config.json'} "
                              f"({what}, {len(missing)} missing, {len(extra)} unknown); "
                              "use the config.json saved with these weights.")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"Checkpoint file {weights} does not match {ckpt / 'config.json'} "
                                  f"({k} has shape {tuple(v.shape)}, the config needs "
                                  f"{tuple(expected[k].shape)}); use the config saved with these weights.")
        state[k] = v.to(expected[k].dtype)
    model.load_state_dict(state, strict=False)
    return model.to(device).eval()
