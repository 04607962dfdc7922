"""`ig_llm train`: stage 1 (visual tower, contrastive) and stage 2 (image -> program).

    python -m ig_llm train --data DIR_OR_PACK... --out RUN_DIR [--preset tiny]
        [--stage 1|2|both] [--vision-weights FILE] [--numbers head|char] [--train-vision]
        [--steps N] [--batch-size B] [--lr LR] [--seed S] [--device auto|cpu|cuda] [--resume]

Stage 2 trains projector + LM + numeric head with AdamW, linear warm-up then cosine
decay, gradient clipping, optional bf16 autocast (CUDA). Everything random is a function
of (seed, step): the data order (:class:`~.dataset.StepBatches`), the synonyms and
attribute order in the targets (seeded per step in :class:`Collator`), and the torch RNG
(saved in every checkpoint), so a run resumed after a kill ends with the same weights as
one that was never stopped.

RUN_DIR layout::

    train.log                  one line per log interval (also printed)
    stage1/vision.safetensors  stage 1 output (visual tower weights)
    checkpoints/step_000500/   state.pt (model, optimizer, scheduler, step) + rng_rank{r}.pt
    model/                     the final model (config.json, model.safetensors, tokenizer.json, card.md)

Under ``torchrun --nproc_per_node N`` it runs DDP (gloo on CPU, nccl on CUDA); every rank
takes its own slice of each global batch of ``batch_size * N``.
"""
from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ...atomic import check_output, write_text
from ...errors import UserError, worker_message
from ...scene.program import Scene
from ..data.augment import check_mirror, flip_pixels, mirror_scene   # pure Python, no torch: cheap at start-up
from .model_config import build_config
from .loop import Loop, run_loop
from .options import STAGE2_SCOPE, WHITEN_IMAGES, RunOptions
from .options import add_arguments as options_arguments
from .runtime import (CHECKPOINT_PREFIX, Dist, RunLog, TrainError, barrier, check_resume, checkpoint_dirs, fmt_time,
                      hardware, load_training_checkpoint, lr_factor, seed_all, setup_distributed, to_device, wrap_ddp)

# ---------------------------------------------------------------------------------------
# command line: every option is declared once, in options.RunOptions
# ---------------------------------------------------------------------------------------
add_arguments = options_arguments


def main(args) -> int:
    if args.out is None:     # the data home: runs outlive the checkout they were started from
        from ...home import run_dir
        args.out = str(run_dir(f"{Path(args.data[0]).stem}-stage{args.stage}", args.home))
    _validate(args)
    out, existed = Path(args.out), Path(args.out).exists()
    try:
        return _run(args)
    except UserError:
        # a run that failed before writing anything leaves no empty folder behind
        if not existed and out.is_dir() and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(args) -> int:
    if args.stage in ("1", "both"):
        vision = run_tower_stage(args)
        if vision is None:      # stopped early; --resume continues
            return 0
        if args.stage == "both" and not args.vision_weights:
            args.vision_weights = str(vision)
    if args.stage in ("2", "both"):
        train_program(args)
    return 0


def run_tower_stage(args):
    """Stage 1 for the configured tower: dense targets for ``conv``, contrastive for a ViT."""
    saved, args.vision_weights = args.vision_weights, None   # the tower is what stage 1 makes
    config = build_config(args)
    args.vision_weights = saved
    if config.vision_model == "conv":
        from .tower import run_dense_stage1
        return run_dense_stage1(args, config)
    if args.recolour > 0 or args.stage1_init:
        raise TrainError(f"--recolour and --stage1-init work with the conv tower's dense stage 1 only; the "
                         f"{config.vision_model} tower's stage 1 is contrastive: drop them.")
    from .tower_contrastive import run_stage1
    return run_stage1(args)


def _validate(args) -> None:
    if args.steps is None:
        args.steps = 10 ** 7 if args.time_budget else 2000   # with a budget, the budget decides
    for name in ("steps", "batch_size", "save_every", "log_every", "stage1_steps", "stage1_batch_size"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.limit is not None and args.limit < 1:
        raise TrainError("--limit must be at least 1 image.")
    if args.time_budget is not None and args.time_budget <= 0:
        raise TrainError("--time-budget must be a positive number of minutes.")
    if args.init_from and (args.stage != "2" or args.set):
        raise TrainError("--init-from fine-tunes a finished model in stage 2 with its own config; drop "
                         "--stage 1/both and --set.")
    if args.stage1_init and args.stage == "2":
        raise TrainError("--stage1-init starts a stage-1 run; use it with --stage 1 or both.")
    if args.init_from and args.vision_weights and args.train_vision:
        raise TrainError("--init-from with --vision-weights swaps in a frozen tower; drop --train-vision.")
    if args.hue_prob is not None and not 0.0 <= args.hue_prob <= 1.0:
        raise TrainError("--hue-prob is a probability; give a number from 0 to 1.")
    if args.whiten_features and args.train_vision:
        raise TrainError("--whiten-features needs a frozen tower (its statistics would go stale); drop one of "
                         "--whiten-features and --train-vision.")
    if not 0.0 <= args.mirror <= 1.0:
        raise TrainError("--mirror is a probability; give a number from 0 to 1.")
    if not 0.0 <= args.recolour <= 1.0:
        raise TrainError("--recolour is a probability; give a number from 0 to 1.")
    if args.recolour > 0 and args.stage != "1" and not args.cache_images:
        raise TrainError("--recolour works on cached 8-bit images in stage 2; add --cache-images.")
    if args.stage1_init and not (Path(args.stage1_init) / "heads.safetensors").is_file():
        raise TrainError(f"--stage1-init {args.stage1_init} holds no finished stage 1 (heads.safetensors); "
                         "point it to a RUN_DIR/stage1 folder of a conv tower.")
    if args.vision_weights and not Path(args.vision_weights).is_file():
        raise TrainError(f"Vision weights {args.vision_weights} do not exist; run stage 1 (--stage 1) "
                         "or pass the right file.")
    for d in args.data:
        if not Path(d).exists():
            raise TrainError(f"Training data {d} does not exist; render it with `ig_llm generate` or fix the path.")
    check_output(args.out, "--out", inputs=args.data + [args.init_from], folder=True)


# ---------------------------------------------------------------------------------------
# optimiser
# ---------------------------------------------------------------------------------------
def make_optimizer(model, lr: float, head_lr: float, weight_decay: float, plan):
    """AdamW with two groups (numeric head / the rest) and the warm-up + cosine schedule."""
    import torch
    head, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if "numeric_head" in name or "num_head" in name else rest).append(p)
    if not head and not rest:
        raise TrainError("The model has no trainable parameters; check --train-vision and the preset.")
    groups = [{"params": rest, "lr": lr}] + ([{"params": head, "lr": head_lr}] if head else [])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    # the lambda reads plan.total at every step: --time-budget may set it after calibration
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: plan.factor(s))
    return opt, sched


# ---------------------------------------------------------------------------------------
# stage 2
# ---------------------------------------------------------------------------------------
class Collator:
    """DataLoader collate: items (step, pixels, Scene, camera) -> the model's batch dict.

    Synonyms, attribute order and mirror flips are drawn from
    ``random.Random(f"{seed}:{step}:{rank}")``, so the targets of a step do not depend on
    what ran before (resume-safe). `mirror` is the chance that an example is replaced by
    its left-right mirror image (training/data/augment.py; exact labels); `recolour` the chance
    that its objects get new palette colours, words included (training/data/recolour.py; items
    then carry their index map)."""

    def __init__(self, tokenizer, config, seed: int, rank: int, mirror: float = 0.0, recolour: float = 0.0):
        self.tokenizer, self.config, self.seed, self.rank = tokenizer, config, seed, rank
        self.mirror, self.recolour = mirror, recolour
        self.palette = None
        if recolour > 0:
            from ...scene.domain import load_domain
            from ..data.recolour import palette_linear
            self.palette = palette_linear(load_domain(config.domain))

    def augment(self, pix, scene, cam, index, rng):
        """One example's (pixels, scene) after recolouring and mirroring, as `rng` draws them."""
        if self.recolour > 0 and rng.random() < self.recolour:
            from ..data.recolour import recolour_example
            pix, new = recolour_example(pix, index, [o.color for o in scene.objects], rng, self.palette)
            scene = Scene([replace(o, color=c) for o, c in zip(scene.objects, new)])
        if self.mirror > 0 and rng.random() < self.mirror:
            pix, scene = flip_pixels(pix), mirror_scene(scene, cam)
        return pix, scene

    def __call__(self, items):
        from ...model.batching import collate
        step = items[0][0]
        rng = random.Random(f"{self.seed}:{step}:{self.rank}")
        examples = []
        for _, pix, scene, cam, *index in items:
            pix, scene = self.augment(pix, scene, cam, index[0] if index else None, rng)
            examples.append((pix, scene, cam))
        # the camera rides along so objects are written left to right as *this* image's
        # (jittered) camera sees them
        return collate(examples, self.tokenizer, self.config, rng=rng)


def initial_model(model_dir: str, args):
    """A finished model to fine-tune: its own config and weights, set to train per the flags."""
    from ...model.checkpoint import CheckpointError, load_checkpoint
    try:
        model = load_checkpoint(model_dir)
    except CheckpointError as err:
        raise TrainError(f"--init-from: {err}") from None
    model.config.freeze_vision = not args.train_vision
    model.freeze_vision(not args.train_vision)
    args.preset, args.numbers = f"init from {model_dir}", model.config.numbers
    return model.train()


def make_tokenizer(config):
    """The program tokenizer a model of this config uses (word-level, or the local LM's)."""
    from ...model.tokenizer import ProgramTokenizer
    return ProgramTokenizer.from_hf(config.lm_path) if config.lm_path else ProgramTokenizer.build(config.domain)


def fit_whitening(model, source, dims, n: int = WHITEN_IMAGES):
    """ZCA whitening of the frozen tower's tokens over the first `n` training images."""
    import torch
    from ...model.batching import preprocess_image
    from ...model.projector import FeatureWhitening
    tokens = []
    with torch.no_grad():
        for start in range(0, min(n, len(source)), 64):
            idx = range(start, min(n, len(source), start + 64))
            px = torch.stack([preprocess_image(source.image(i), dims) for i in idx]).to(model.device)
            tokens.append(model.vision(px).flatten(0, 1).float().cpu())
    return FeatureWhitening.fit(torch.cat(tokens))


CALIBRATE = (5, 30)   # --time-budget: steps whose pace sets the total (after warm-up noise)


class Plan:
    """The step count of a run: fixed by --steps, or chosen once by --time-budget from the
    measured pace. Picklable-free on purpose: the LR lambda reads it by reference."""

    def __init__(self, total: int, warmup: int, fixed: bool):
        self.total, self.warmup, self.fixed = total, warmup, fixed

    def factor(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup)


def make_plan(args) -> Plan:
    if args.time_budget:
        warmup = args.warmup_steps if args.warmup_steps is not None else 100
        # until the pace is known, the horizon is --steps (an upper bound); warm-up does
        # not depend on it, and calibration ends before warm-up does
        return Plan(args.steps, max(warmup, CALIBRATE[1] + 1), fixed=False)
    warmup = args.warmup_steps if args.warmup_steps is not None else int(round(args.warmup * args.steps))
    return Plan(args.steps, warmup, fixed=True)


def broadcast_int(value: int, dist: Dist, device) -> int:
    if dist.world == 1:
        return value
    import torch
    import torch.distributed as tdist
    t = torch.tensor([value], dtype=torch.long, device=device)
    tdist.broadcast(t, src=0)
    return int(t.item())


def train_program(args) -> Path:
    """Stage 2. Returns RUN_DIR/model."""
    import torch
    from torch.utils.data import DataLoader
    from ...model.checkpoint import save_checkpoint
    from ...model.igllm import IGLLM
    from ..data.dataset import LengthGroupedBatches, SceneDataset, open_training_sources
    from ..eval.report import make_card

    t_start = time.time()
    run_dir = Path(args.out)
    dist, device = setup_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir / "train.log", dist.main)
    final_dir = run_dir / "model"
    if (final_dir / "config.json").is_file() and not args.resume:
        raise TrainError(f"{final_dir} already holds a finished model; pick another --out or pass --resume.")
    if (final_dir / "config.json").is_file():
        log(f"stage 2: {final_dir} exists, skipped")
        return final_dir

    seed_all(args.seed)
    if args.init_from:
        try:
            model = initial_model(args.init_from, args).to(device)
        except TrainError:
            if not any(run_dir.iterdir()):      # nothing ran: leave no empty run folder behind
                run_dir.rmdir()
            raise
        config, tokenizer = model.config, model.tokenizer
        if args.vision_weights:     # a new frozen tower under the finished LM (it adapts in this run)
            if config.vision_model != "conv":
                raise TrainError(f"--vision-weights with --init-from swaps a conv tower only; {args.init_from} has "
                                 f"a {config.vision_model} tower: drop --vision-weights.")
            try:
                model.vision.load_stage1_weights(args.vision_weights)
            except (UserError, ValueError) as err:      # VisionWeightsError: missing, unreadable, ill-fitting
                raise TrainError(f"--vision-weights: {err}") from None
            config.vision_weights = str(Path(args.vision_weights).resolve())
    else:
        config = build_config(args)
        tokenizer = make_tokenizer(config)
        model = IGLLM(config, tokenizer).to(device)
    if args.mirror > 0 or args.recolour > 0:
        from ...scene.domain import load_domain
        from ..data.recolour import check_recolour
        try:
            domain = load_domain(config.domain)
            if args.mirror > 0:
                check_mirror(domain)
            if args.recolour > 0:
                check_recolour(domain)
        except ValueError as err:
            raise TrainError(str(err)) from None
    source = open_training_sources(args.data, args.limit)
    n_train = len(source)
    if args.whiten_features:
        from ...model.projector import FeatureWhitening, attach_whitening
        resuming = args.resume and bool(checkpoint_dirs(run_dir))
        # a resume loads the saved statistics (and projector) from its checkpoint
        whitening = FeatureWhitening(model.vision.width) if resuming else \
            fit_whitening(model, source, config.image_dims)
        attach_whitening(model, whitening, preserve=bool(args.init_from) and not resuming)

    head_lr = args.head_lr if args.head_lr is not None else args.lr
    plan = make_plan(args)
    opt, sched = make_optimizer(model, args.lr, head_lr, args.weight_decay, plan)

    start = 0
    ckpts = checkpoint_dirs(run_dir)
    if ckpts and not args.resume:
        raise TrainError(f"{run_dir} already has checkpoints; pass --resume to continue or pick a new --out.")
    options = RunOptions.from_args(args)
    if args.resume and ckpts:
        check_resume(options, ckpts[-1], STAGE2_SCOPE)
        start, meta_in = load_training_checkpoint(ckpts[-1], model, opt, sched, dist, device)
        plan.total, plan.warmup, plan.fixed = meta_in["plan"]
        log(f"resumed from {run_dir / 'checkpoints' / f'{CHECKPOINT_PREFIX}{start:07d}'} at step {start} "
            f"of {plan.total}")
    else:
        # model init is identical on every rank (same seed); dropout streams differ per rank
        torch.manual_seed(args.seed * 1000 + dist.rank)

    wrapped = wrap_ddp(model, dist, device)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    if start == 0:
        steps_txt = f"{plan.total} steps" if plan.fixed else f"steps to fit {args.time_budget:g} min"
        log(f"stage 2: {n_train} images from {', '.join(map(str, args.data))}; preset {args.preset}, "
            f"numbers {args.numbers}, vision {'trainable' if args.train_vision else 'frozen'}; "
            f"{total_params / 1e6:.2f} M params ({trainable / 1e6:.2f} M trainable); {steps_txt} x "
            f"{args.batch_size} x {dist.world} process(es); device {hardware(device)}")

    t_cache = time.time()
    dataset = SceneDataset(source, config.image_dims, cache=args.cache_images, workers=args.workers, raw=True,
                           index_maps=args.recolour > 0)
    if args.cache_images:
        log(f"images cached in RAM in {time.time() - t_cache:.1f} s")

    def stop_step() -> int:
        return plan.total if args.stop_at is None else min(plan.total, args.stop_at)

    # similar program lengths per batch: less padding, same examples per epoch
    sampler = LengthGroupedBatches([len(sc.objects) for sc in dataset.scenes], args.batch_size, args.seed, start,
                                   stop_step(), dist.rank, dist.world)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=args.workers,
                        collate_fn=Collator(tokenizer, config, args.seed, dist.rank, args.mirror, args.recolour),
                        pin_memory=device.type == "cuda",
                        # own generator: creating the loader must not draw from the global torch RNG
                        generator=torch.Generator(),
                        persistent_workers=False, prefetch_factor=4 if args.workers > 0 else None)
    use_bf16 = args.bf16 and device.type == "cuda"
    model.train()

    def step_fn(step, batch):
        batch = to_device(batch, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = wrapped(batch)
        return out["loss"], out

    def keep(loss, out):
        # kept on the device: reading a value every step would stall the GPU queue
        return torch.stack([loss.detach().float(), _t(out.get("ce"), loss), _t(out.get("mse"), loss)])

    t_cal = None

    def calibrate(step, bar):
        """--time-budget: after CALIBRATE steps, fix the step count from the measured pace."""
        nonlocal t_cal
        if not plan.fixed and step - start == CALIBRATE[0]:
            t_cal = time.time()
        if not plan.fixed and step - start == CALIBRATE[1]:
            pace = (time.time() - t_cal) / (CALIBRATE[1] - CALIBRATE[0])      # s per step
            left = 60 * args.time_budget - (time.time() - t_start)
            total = min(args.steps, max(step + 1, step + int(0.97 * left / pace)))
            plan.total = broadcast_int(total, dist, device)
            plan.fixed = True
            sampler.stop = stop_step()
            bar.total = plan.total
            log(f"--time-budget {args.time_budget:g} min: {pace * 1000:.1f} ms/step -> {plan.total} steps "
                f"(warm-up {plan.warmup})")

    def log_line(step, window, rate, elapsed, grad_norm):
        losses = torch.stack(window).mean(0).tolist()
        if not all(math.isfinite(v) for v in losses):
            raise TrainError(f"The loss became {losses[0]} before step {step}; lower --lr or check the data.")
        text = (f"step {step}/{plan.total} loss {losses[0]:.4f} ce {losses[1]:.4f} mse {losses[2]:.5f} "
                f"lr {sched.get_last_lr()[0]:.2e} grad {float(grad_norm):.3f} "
                f"{rate * args.batch_size * dist.world:.1f} img/s elapsed {fmt_time(elapsed)} "
                f"eta {fmt_time((plan.total - step) / max(rate, 1e-9))}")
        return text, {"loss": f"{losses[0]:.4f}", "ce": f"{losses[1]:.4f}", "mse": f"{losses[2]:.4f}"}

    def meta():
        return {"plan": (plan.total, plan.warmup, plan.fixed), "n_train": n_train, "options": options.to_dict()}

    loop = Loop("train", model, wrapped, opt, sched, args, dist, device, run_dir, log, start,
                total=lambda: plan.total, stop=stop_step, meta=meta, budget_start=t_start)
    end = run_loop(loop, _batches(loader), step_fn, log_line, keep=keep, on_step=calibrate)
    step, stopped_early, run_t0 = end.step, end.stopped_early, end.started
    if stopped_early:
        log(f"--max-minutes reached: stopped at step {step} with a checkpoint; rerun with --resume")
    if step < plan.total and not stopped_early:
        log(f"stopped at step {step} (--stop-at); rerun with --resume to continue")
        stopped_early = True
    if not stopped_early and dist.main:
        elapsed = _elapsed_total(run_dir, time.time() - run_t0)
        card = make_card(args, config, n_train, step, elapsed, hardware(device), dist.world,
                         total_params, trainable, warmup_steps=plan.warmup)
        from ...model.projector import fold_whitening
        fold_whitening(model)       # the saved model is a plain projector (NumPy runtime, format)
        save_checkpoint(model, final_dir, card)
        log(f"final model written to {final_dir} ({fmt_time(elapsed)} of training)")
    barrier(dist)
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.destroy_process_group()
    return final_dir


def _batches(loader):
    """The loader's batches; a bad image found by a worker process ends as its own sentence."""
    try:
        yield from loader
    except UserError as err:
        raise TrainError(worker_message(err)) from None


def _t(x, like):
    """A metric from the model's output dict as a detached float tensor on `like`'s device."""
    import torch
    if isinstance(x, torch.Tensor):
        return x.detach().float()
    return torch.tensor(float(x or 0.0), device=like.device)


def _elapsed_total(run_dir: Path, this_run: float) -> float:
    """Training seconds over all (resumed) runs, kept in RUN_DIR/.elapsed."""
    path = run_dir / ".elapsed"
    before = float(path.read_text()) if path.is_file() else 0.0
    total = before + this_run
    write_text(path, f"{total:.1f}")
    return total
