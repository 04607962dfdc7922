"""The training-loop skeleton every stage runs (the dense and the contrastive tower, the
program stage): one optimiser step per batch, the progress bar, a log line every
``--log-every`` steps, a checkpoint every ``--save-every`` steps, at the stop step and when
``--max-minutes`` is spent. A stage brings only what is its own: its step function (batch ->
loss), what it keeps of each step for the log, and its log line.

The order of the operations is fixed here (forward, zero_grad, backward, clip, optimiser,
schedule), so every stage resumes to the same weights as an uninterrupted run.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .runtime import Dist, any_rank, save_training_checkpoint


@dataclass
class Loop:
    """One stage's run of the skeleton."""
    name: str                         # the progress bar's label
    model: Any                        # the module whose gradients are clipped (not DDP-wrapped)
    wrapped: Any                      # what the checkpoints save (DDP-wrapped under torchrun)
    opt: Any
    sched: Any
    args: Any                         # run control: clip, log_every, save_every, keep, max_minutes, quiet
    dist: Dist
    device: Any
    run_dir: Path                     # checkpoints go to run_dir/checkpoints
    log: Callable[[str], None]
    start: int                        # the step this run starts at (a resume's)
    total: Callable[[], int]          # the schedule's steps (stage 2 may fix them after calibrating)
    stop: Callable[[], int]           # where this run stops (--stop-at)
    meta: Callable[[], dict]          # what a checkpoint stores besides the weights
    budget_start: float | None = None  # --max-minutes counts from here (None: the loop's start)


@dataclass
class LoopEnd:
    step: int                         # the last step done
    stopped_early: bool               # --max-minutes spent before the last step
    started: float                    # time.time() when the loop began


def run_loop(loop: Loop, batches: Iterable, step_fn: Callable, log_line: Callable,
             keep: Callable | None = None, on_step: Callable | None = None) -> LoopEnd:
    """Run `loop` over `batches`.

    - ``step_fn(step, batch) -> (loss, record)``: the forward pass of step `step` (0-based;
      raise on a bad loss if the stage checks every step);
    - ``keep(loss, record) -> item`` (after the optimiser step): what the log keeps of the
      step; default the record;
    - ``log_line(step, items, rate, elapsed, grad_norm) -> (text, postfix)``: the log line
      (``rate``: steps per second of this run) and the progress bar's postfix;
    - ``on_step(step, bar)``: anything a stage does after each step (stage 2's time budget).
    """
    import torch
    from tqdm import tqdm

    args, step = loop.args, loop.start
    t0 = time.time()
    budget_start = t0 if loop.budget_start is None else loop.budget_start
    bar = tqdm(total=loop.total(), initial=step, desc=loop.name, unit="step",
               disable=args.quiet or not loop.dist.main, file=sys.stderr, dynamic_ncols=True)
    window, stopped = [], False
    for batch in batches:
        if step >= loop.stop():          # the plan shrank (stage 2's calibration)
            break
        loss, record = step_fn(step, batch)
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(loop.model.parameters(), args.clip)
        loop.opt.step()
        loop.sched.step()
        window.append(keep(loss, record) if keep is not None else record)
        step += 1
        bar.update(1)
        if on_step is not None:
            on_step(step, bar)
        if step % args.log_every == 0 or step == loop.stop():
            elapsed = time.time() - t0
            text, postfix = log_line(step, window, (step - loop.start) / max(elapsed, 1e-9), elapsed, grad_norm)
            bar.set_postfix(**postfix)
            loop.log(text)
            window = []
        out_of_time = any_rank(args.max_minutes is not None and time.time() - budget_start > 60 * args.max_minutes,
                               loop.dist, loop.device)
        if step % args.save_every == 0 or step == loop.stop() or out_of_time:
            save_training_checkpoint(loop.run_dir, step, loop.wrapped, loop.opt, loop.sched, loop.meta(),
                                     loop.dist, args.keep)
        if out_of_time and step < loop.total():
            stopped = True
            break
    bar.close()
    return LoopEnd(step, stopped, t0)
