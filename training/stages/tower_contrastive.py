"""Stage 1: pre-train the visual tower contrastively on renders and their scene captions.

No pretrained CLIP can be downloaded here, so the tower IG-LLM freezes in stage 2 is
trained first, CLIP style: an open_clip ``CLIP`` whose vision tower is built from the
SAME config as the IG-LLM's (``model.vision.vision_cfg``), plus a small text tower, with
open_clip's own ``ClipLoss`` (symmetric InfoNCE over the batch, gathered across DDP ranks).

Caption ("words+loc", the default): objects left to right as the image's camera sees
them, each as ``size colour material shape x:<bin> y:<bin> |`` with the ground position
binned to 0.5 units. Why: stage 2 freezes this tower, so its features must carry both
*what* each object is and *where* it stands. Words alone teach the what and only the
left-to-right order; the character program would teach exact positions but is ~50
tokens per object (slow, hard for a tiny text tower). Position bins cost two tokens per
object. ``--caption words`` drops the bins; ``--caption program`` uses the character
program, both for comparison.

Output: ``RUN_DIR/stage1/vision.safetensors`` holding the ``visual.*`` tensors, which
``IGLLMConfig.vision_weights`` / ``VisionTower.load_open_clip_weights`` read.
"""
from __future__ import annotations

import math
from pathlib import Path

from .loop import Loop, run_loop
from .options import RunOptions
from .runtime import (TrainError, finish_stage1, fmt_time, hardware, lr_factor, open_stage1,
                      resume_stage1, seed_all, stage1_stop, to_device,
                      wrap_ddp)

LOC_BIN = 0.5
LOC_RANGE = 4.0        # bins cover [-4, 4]; CLEVR places objects in [-3, 3]
TEXT_WIDTH, TEXT_HEADS, TEXT_LAYERS = 128, 4, 3


# ---------------------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------------------
class CaptionVocab:
    """Word-level vocabulary of the stage 1 captions (pad 0, eos 1)."""

    def __init__(self, domain_name: str = "clevr"):
        from ...model.tokenizer import PUNCT_PIECES, split_pieces
        from ...scene.domain import ATTRIBUTES, load_domain
        from ...scene.program import FIELD_ORDER
        self.split_pieces = split_pieces
        self.domain = load_domain(domain_name)
        words = ["<pad>", "<eos>", "<unk>", "|"]
        for attr in ATTRIBUTES:
            words += list(self.domain.values(attr))
        nbins = int(round(2 * LOC_RANGE / LOC_BIN)) + 1
        words += [f"{axis}:{-LOC_RANGE + k * LOC_BIN:+.1f}" for axis in "xy" for k in range(nbins)]
        # pieces of the character program (caption "program")
        words += list(PUNCT_PIECES) + [f"{f}=" for f in FIELD_ORDER] + ["loc=("]
        words += [f"'{w}'" for a in ATTRIBUTES for w in self.domain.values(a)]
        self.itos = list(dict.fromkeys(words))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.eos_id, self.unk_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def bin(self, axis: str, v: float) -> str:
        v = max(-LOC_RANGE, min(LOC_RANGE, round(v / LOC_BIN) * LOC_BIN))
        return f"{axis}:{v + 0.0:+.1f}"

    def caption_tokens(self, scene, camera, mode: str) -> list[str]:
        from ...scene.program import format_program, sort_left_to_right
        if mode == "program":
            return self.split_pieces(format_program(scene, "char", domain=self.domain, camera=camera))
        toks = []
        for o in sort_left_to_right(scene.objects, camera):
            toks += [o.size, o.color, o.material, o.shape]
            if mode == "words+loc":
                toks += [self.bin("x", o.loc[0]), self.bin("y", o.loc[1])]
            toks.append("|")
        return toks

    def encode(self, tokens: list[str], context: int) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in tokens][:context - 1] + [self.eos_id]
        return ids + [self.pad_id] * (context - len(ids))


def context_length(mode: str, max_objects: int) -> int:
    per_object = {"words": 5, "words+loc": 7, "program": 64}[mode]
    return per_object * max_objects + 1


class CaptionCollator:
    """(step, pixels, Scene, camera) items -> {"pixel_values", "text"} tensors."""

    def __init__(self, vocab: CaptionVocab, mode: str, context: int):
        self.vocab, self.mode, self.context = vocab, mode, context

    def __call__(self, items):
        import torch
        pixels = torch.stack([pix for _, pix, _, _ in items])
        text = torch.tensor([self.vocab.encode(self.vocab.caption_tokens(s, cam, self.mode), self.context)
                             for _, _, s, cam in items], dtype=torch.long)
        return {"pixel_values": pixels, "text": text}


# ---------------------------------------------------------------------------------------
# the CLIP model
# ---------------------------------------------------------------------------------------
def build_clip(config, vocab: CaptionVocab, context: int):
    """open_clip CLIP: the IG-LLM's vision tower config + a small text tower over `vocab`."""
    from ...model import compat  # noqa: F401 - before open_clip
    from ...model.vision import vision_cfg
    from open_clip.model import CLIP

    embed_dim, vcfg = vision_cfg(config)
    text_cfg = {"context_length": context, "vocab_size": len(vocab), "width": TEXT_WIDTH,
                "heads": TEXT_HEADS, "layers": TEXT_LAYERS, "pad_id": vocab.pad_id,
                "eos_id": vocab.eos_id, "pool_type": "eos"}
    quick_gelu = config.vision_model.endswith("-quickgelu")
    return CLIP(embed_dim, vision_cfg=vcfg, text_cfg=text_cfg, quick_gelu=quick_gelu, output_dict=True)


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # CLIP practice: no decay on gains, biases, embeddings' scale and the temperature
        (no_decay if p.ndim < 2 or "logit_scale" in name or "positional_embedding" in name
         or "class_embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------
# stage 1
# ---------------------------------------------------------------------------------------
def run_stage1(args) -> Path | None:
    """Train the tower (or skip when RUN_DIR/stage1/vision.safetensors exists). Returns that
    path, or None when the run stopped early (--stop-at with --stage 1, --max-minutes)."""
    import torch
    from torch.utils.data import DataLoader

    from ...model import compat  # noqa: F401
    import warnings
    # open_clip's ClipLoss uses torch.distributed.nn.all_gather, deprecated but correct
    warnings.filterwarnings("ignore", category=FutureWarning, module="open_clip.loss")
    from open_clip.loss import ClipLoss

    from ..data.dataset import SceneDataset, StepBatches, open_training_sources
    from .model_config import build_config

    run_dir, out_file, dist, device, log = open_stage1(args)
    if out_file.is_file():
        log(f"stage 1: {out_file} exists, skipped")
        return out_file

    # the tower must match the stage 2 model's: same config, vision weights not loaded
    saved_vw, args.vision_weights = args.vision_weights, None
    config = build_config(args)
    args.vision_weights = saved_vw
    mode = args.caption
    vocab = CaptionVocab(config.domain)
    context = context_length(mode, config.max_objects)
    seed_all(args.seed)
    model = build_clip(config, vocab, context).to(device)
    steps, bsz = args.stage1_steps, args.stage1_batch_size
    warmup = max(1, int(round(0.05 * steps)))
    opt = torch.optim.AdamW(_param_groups(model, 0.1), lr=args.stage1_lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))

    options = RunOptions.from_args(args)
    start = resume_stage1(run_dir, args, options, model, opt, sched, dist, device, log)
    if start == 0:
        torch.manual_seed(args.seed * 1000 + dist.rank)
    wrapped = wrap_ddp(model, dist, device)

    source = open_training_sources(args.data, args.limit)
    if start == 0:
        n_vis = sum(p.numel() for p in model.visual.parameters())
        log(f"stage 1: contrastive pre-training of the visual tower ({n_vis / 1e6:.2f} M params) on "
            f"{len(source)} images, caption '{mode}' (context {context}), {steps} steps x {bsz} x "
            f"{dist.world} process(es); device {hardware(device)}")
    stop = stage1_stop(args, steps)
    loader = DataLoader(SceneDataset(source, config.image_dims, cache=args.cache_images, workers=args.workers,
                                     raw=True),
                        batch_sampler=StepBatches(len(source), bsz, args.seed + 1, start, stop, dist.rank, dist.world),
                        num_workers=args.workers, collate_fn=CaptionCollator(vocab, mode, context),
                        pin_memory=device.type == "cuda", generator=torch.Generator(),
                        prefetch_factor=4 if args.workers > 0 else None)
    loss_fn = ClipLoss(local_loss=False, gather_with_grad=True, cache_labels=True,
                       rank=dist.rank, world_size=dist.world)
    use_bf16 = args.bf16 and device.type == "cuda"
    model.train()

    def step_fn(step, batch):
        batch = to_device(batch, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = wrapped(batch["pixel_values"], batch["text"])
            loss = loss_fn(out["image_features"].float(), out["text_features"].float(), out["logit_scale"].float())
        if not torch.isfinite(loss):
            raise TrainError(f"Stage 1 loss became {loss.item()} at step {step}; lower --stage1-lr.")
        return loss, out

    def keep(loss, out):
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))   # as open_clip's training loop
            sims = out["image_features"].float() @ out["text_features"].float().T
            acc = (sims.argmax(1) == torch.arange(len(sims), device=sims.device)).float().mean()
        return float(loss.detach()), float(acc)

    def log_line(step, window, rate, elapsed, _grad):
        l, a = (sum(w[i] for w in window) / len(window) for i in range(2))
        text = (f"stage 1 step {step}/{steps} loss {l:.4f} in-batch acc {a:.3f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {sched.get_last_lr()[0]:.2e} "
                f"elapsed {fmt_time(elapsed)} eta {fmt_time((steps - step) / max(rate, 1e-9))}")
        return text, {"loss": f"{l:.3f}", "acc": f"{a:.2f}"}

    meta = {"mode": mode, "options": options.to_dict()}
    loop = Loop("stage 1", model, wrapped, opt, sched, args, dist, device, run_dir, log, start,
                total=lambda: steps, stop=lambda: stop, meta=lambda: meta)
    end = run_loop(loop, loader, step_fn, log_line, keep=keep)
    step, stopped, t0 = end.step, end.stopped_early, end.started
    return finish_stage1(args, step, steps, stopped, t0, run_dir, out_file, model.visual,
                         {"kind": "contrastive", "batch_size": bsz, "caption": mode, "images": len(source)},
                         dist, device, log)


__all__ = ["run_stage1", "build_clip", "CaptionVocab"]
