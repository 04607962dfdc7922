"""Run-time helpers shared by both training stages: processes and devices (DDP), seeds and
RNG state, the learning-rate schedule, training checkpoints (atomic save, resume) and the
run log. No model code: stage 1 (tower / tower_contrastive) and stage 2 (train)
both import from here, never from each other.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError
from .options import STAGE1_SCOPE

CHECKPOINT_PREFIX = "step_"
VISION_FILE = "vision.safetensors"     # what stage 1 hands to stage 2 (``--vision-weights``)


class TrainError(UserError, ValueError):
    """Bad training input; the message names the problem and the fix."""


# ---------------------------------------------------------------------------------------
# processes, devices, seeds
# ---------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_arg: str):
    """(Dist, torch.device). Under torchrun, joins the process group (nccl/gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_arg, dist.local_rank)
    if world > 1:
        import torch.distributed as tdist
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist, device


def resolve_device(device_arg: str, local_rank: int = 0):
    import torch
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    if device_arg.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda was asked for, but this torch sees no CUDA GPU; use --device cpu.")
        if device_arg == "cuda":
            device_arg = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(device_arg))
    return torch.device(device_arg)


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.barrier()


def any_rank(flag: bool, dist: Dist, device) -> bool:
    """True on every rank if it is true on any (so all ranks stop together)."""
    if dist.world == 1:
        return flag
    import torch
    import torch.distributed as tdist
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t)
    return bool(t.item() > 0)


def rng_state() -> dict:
    import numpy as np
    import torch
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's keys as a tensor: the file then loads with weights_only=True
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    st = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import numpy as np
    import torch
    random.setstate(st["python"])
    name, keys, *rest = st["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_all(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------
# schedule, optimiser
# ---------------------------------------------------------------------------------------
def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from 1/warmup to 1 over `warmup` steps, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------
def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders start with '.')."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_training_checkpoint(run_dir: Path, step: int, model, opt, sched, meta: dict, dist: Dist, keep: int) -> Path:
    """Write checkpoints/step_N atomically: every rank writes its RNG state into a temp
    folder, rank 0 adds the model/optimizer state and renames the folder into place."""
    import torch
    root = run_dir / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = root / f".tmp_{CHECKPOINT_PREFIX}{step:07d}"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(dist)
    torch.save(rng_state(), tmp / f"rng_rank{dist.rank}.pt")
    barrier(dist)
    if dist.main:
        state = {"step": step, "model": _unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "meta": meta, "world": dist.world}
        try:
            torch.save(state, tmp / "state.pt")
            # the run's options etc. readable without unpickling the state (--resume checks them first)
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as err:      # disk full: no half checkpoint left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise TrainError(f"Cannot write checkpoint {final} ({err.strerror or err}); free some space, "
                             "then rerun with --resume.") from None
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(dist)
    return final


def _torch_load(path: Path, device=None):
    """torch.load with weights_only=True: a checkpoint file runs no code when read. Old
    RNG files hold numpy arrays; numpy's array constructors are allowed for those."""
    import numpy as np
    import torch
    try:
        from numpy.core.multiarray import _reconstruct
    except ImportError:     # numpy 2
        from numpy._core.multiarray import _reconstruct
    allowed = [_reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=device, weights_only=True)


def read_training_checkpoint(path: Path, dist: Dist, device) -> tuple[dict, dict]:
    """(state, this rank's RNG state) of one checkpoint folder; TrainError if damaged."""
    try:
        state = _torch_load(path / "state.pt", device)
        rng = _torch_load(path / f"rng_rank{dist.rank}.pt")
        if not all(k in state for k in ("step", "model", "optimizer", "scheduler")):
            raise KeyError("step, model, optimizer or scheduler")
    except Exception as err:    # any damage: a truncated zip, a pickle, a missing key
        raise TrainError(f"Checkpoint {path} is damaged ({type(err).__name__}); delete it to resume "
                         "from an earlier one, or start a new --out.") from None
    if state.get("world", 1) != dist.world:
        raise TrainError(f"Checkpoint {path} was written by {state.get('world')} process(es), this run has "
                         f"{dist.world}; resume with the same number of processes.")
    return state, rng


def load_training_checkpoint(path: Path, model, opt, sched, dist: Dist, device) -> int:
    """Resume from `path`; if it is damaged, from the newest earlier good checkpoint (and
    say so on stderr). Returns (step, meta) of the one loaded."""
    candidates = [path] + [p for p in reversed(checkpoint_dirs(path.parent.parent)) if p.name < path.name]
    for i, cand in enumerate(candidates):
        try:
            state, rng = read_training_checkpoint(cand, dist, device)
        except TrainError as err:
            if i + 1 == len(candidates) or "process(es)" in str(err):
                raise
            print(f"ig_llm train: checkpoint {cand} is damaged; resuming from the previous one, "
                  f"{candidates[i + 1]}, instead.", file=sys.stderr)
            continue
        _unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(rng)
        return int(state["step"]), state.get("meta", {})


def check_resume(options, checkpoint: Path, scope: tuple[str, ...]) -> None:
    """Refuse, in one sentence, to resume `checkpoint` with options (an options.RunOptions)
    that change the run: the first option in `scope` that differs from the ones it saved."""
    meta_file = Path(checkpoint) / "meta.json"
    saved = json.loads(meta_file.read_text()).get("options") if meta_file.is_file() else None
    diff = options.mismatch(saved, scope)
    if diff:
        raise TrainError(f"{checkpoint.parent.parent} was started with other options ({diff}); resume with "
                         "the same options, or pick a new --out for the new ones.")


def wrap_ddp(model, dist: Dist, device):
    """The model as the optimisation loop sees it: DDP-wrapped when several processes train."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def _unwrap(model):
    return getattr(model, "module", model)


# ---------------------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------------------
class RunLog:
    """Appends lines to RUN_DIR/train.log (rank 0 only) and prints them."""

    def __init__(self, path: Path, enabled: bool, echo: bool = True):
        self.path, self.enabled, self.echo = path, enabled, echo

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            from tqdm import tqdm
            tqdm.write(line, file=sys.stderr)


def fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def hardware(device) -> str:
    import torch
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def to_device(batch: dict, device) -> dict:
    """Tensors to `device`; 8-bit pixels (cached images) are normalised there."""
    import torch
    from ..data.dataset import normalize_pixels
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    if "pixel_values" in out:
        out["pixel_values"] = normalize_pixels(out["pixel_values"])
    return out


def save_tensors(module, path: Path, prefix: str = "visual") -> Path:
    """A module's tensors as ``<prefix>.*`` in a safetensors file (floats as float32),
    written atomically: how stage 1 hands its tower to stage 2 (``vision_weights``)."""
    from safetensors.torch import save_file

    from ...atomic import writing
    state = {f"{prefix}.{k}": (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous().clone()
             for k, v in module.state_dict().items()}
    with writing(path) as tmp:
        save_file(state, str(tmp), metadata={"format": f"ig_llm-{prefix}"})
    return path


# ---------------------------------------------------------------------------------------
# stage 1 (either tower): the run folder and resuming
# ---------------------------------------------------------------------------------------
def open_stage1(args):
    """(run_dir, out_file, dist, device, log) of a stage-1 run: RUN_DIR/stage1, whose
    finished tower is ``out_file`` (the caller skips the stage when it exists)."""
    import torch
    run_dir = Path(args.out) / "stage1"
    dist, device = setup_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, run_dir / VISION_FILE, dist, device, RunLog(Path(args.out) / "train.log", dist.main)


def resume_stage1(run_dir: Path, args, options, model, opt, sched, dist: Dist, device, log) -> int:
    """The step a stage-1 run starts at: 0, or its last checkpoint's (with --resume, and
    only if the run's options still match)."""
    ckpts = checkpoint_dirs(run_dir)
    if ckpts and not args.resume:
        raise TrainError(f"{run_dir} already has stage 1 checkpoints; pass --resume or pick a new --out.")
    if not ckpts:
        return 0
    check_resume(options, ckpts[-1], STAGE1_SCOPE)
    start, _ = load_training_checkpoint(ckpts[-1], model, opt, sched, dist, device)
    log(f"stage 1: resumed from {ckpts[-1]} at step {start}")
    return start


def stage1_stop(args, steps: int) -> int:
    """Where stage 1 stops this time: --stop-at is a stage-2 option unless stage 1 runs alone."""
    return steps if (args.stop_at is None or args.stage != "1") else min(steps, args.stop_at)


def finish_stage1(args, step: int, steps: int, stopped: bool, t0: float, run_dir: Path, out_file: Path,
                  tower, record: dict, dist: Dist, device, log, extra_tensors: dict | None = None):
    """End a stage-1 run: None (with a line saying how to go on) when it stopped early; else
    stage1.json, any `extra_tensors` ({file name: module}, keys prefixed with the file's stem,
    e.g. heads.safetensors -> "heads.") and the tower, written last because its presence
    marks stage 1 done. Returns the tower file or None."""
    from ...atomic import write_json
    if step < steps or stopped:
        log(f"stage 1 stopped at step {step}; rerun with --resume to continue")
        return None
    if dist.main:
        write_json(run_dir / "stage1.json", {
            **record, "steps": steps, "world": dist.world, "seconds": time.time() - t0,
            "hardware": hardware(device), "lr": args.stage1_lr, "seed": args.seed})
        for name, module in (extra_tensors or {}).items():
            save_tensors(module, run_dir / name, prefix=Path(name).stem)
        save_tensors(tower, out_file)
        log(f"stage 1: visual tower written to {out_file} ({fmt_time(time.time() - t0)})")
    barrier(dist)
    return out_file
