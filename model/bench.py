"""``ig_llm bench model``: image -> program latency of the tiny preset on this machine.

Prints one markdown table: median / p90 seconds per image over N images with 10-object
scenes, forward calls, tokens per scene, tokens/s and the process's peak memory, for
constrained decoding (grammar + jump-forward) and plain greedy decoding, in the torch
runtime and in the NumPy runtime (``numpy_runtime.py``, what Blender runs with nothing
installed). The NumPy row runs in a child process that never imports torch, so its
peak memory is what Blender's process adds.

When no trained checkpoint is given (or the shipped default is absent), the model has
random weights: latency depends on how many tokens are written, not on what they say,
so each scene is forced to exactly 10 objects (constrained) or to the same number of
tokens (unconstrained). The table says which weights were used.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default=None,
                        help="checkpoint folder (default: the shipped model, else untrained tiny preset)")
    parser.add_argument("--images", type=int, default=20, help="images to time per row (>= 20 recommended)")
    parser.add_argument("--objects", type=int, default=10, help="objects per scene")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=1, help="images per generate() call")
    parser.add_argument("--no-char", action="store_true", help="skip the character-number row")
    parser.add_argument("--no-numpy", action="store_true", help="skip the NumPy-runtime row")


def numpy_row(model_dir, n_images: int, objects: int, threads: int) -> dict:
    """Time the NumPy runtime in a fresh process without torch; returns its row as a dict."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from ig_llm.model.bench import _numpy_child; "
            "print('ROW ' + json.dumps(_numpy_child(*json.loads(sys.argv[1]))))")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code, json.dumps([str(model_dir), n_images, objects])],
                         capture_output=True, text=True, env=env, timeout=3600)
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
    if not rows:
        raise RuntimeError(f"the NumPy benchmark failed: {out.stderr.strip()[-500:]}")
    return json.loads(rows[-1][4:])


def _numpy_child(model_dir: str, n_images: int, objects: int) -> dict:
    import sys

    import numpy as np

    from . import numpy_runtime, pixels

    model = numpy_runtime.load_numpy_model(model_dir)
    rng = np.random.default_rng(0)
    images = [pixels.model_input(rng.integers(0, 256, (160, 240, 3), dtype=np.uint8), model.config.image_dims)
              for _ in range(n_images)]
    numpy_runtime.generate(model, images[0], num_objects=objects)   # warm-up
    times, calls, toks = [], [], []
    for x in images:
        stats: dict = {}
        t0 = time.perf_counter()
        numpy_runtime.generate(model, x, num_objects=objects, stats=stats)
        times.append(time.perf_counter() - t0)
        calls.append(stats["forward_calls"])
        toks.append(stats["new_tokens"])
    return {"times": times, "calls": statistics.median(calls), "tokens": statistics.median(toks),
            "peak_mb": _peak_mb(), "torch_imported": "torch" in sys.modules}


def _peak_mb() -> float:
    """Peak resident memory of this process. VmHWM first: ru_maxrss survives exec, so a
    child started from a big parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time_rows(model, images, objects: int, batch: int, constrained: bool, tokens: int | None):
    import torch

    from .decoding import generate

    times, calls, toks = [], [], []
    for i in range(0, len(images), batch):
        px = torch.stack(images[i:i + batch])
        stats: dict = {}
        t0 = time.perf_counter()
        if constrained:
            generate(model, px, constrained=True, num_objects=objects, stats=stats)
        else:
            generate(model, px, constrained=False, max_new_tokens=tokens, stop_at_eos=False, stats=stats)
        dt = time.perf_counter() - t0
        times += [dt / len(px)] * len(px)
        calls.append(stats["forward_calls"])
        toks.append(stats["new_tokens"] / len(px))
    return times, statistics.median(calls), statistics.median(toks)


def run_bench(model_dir=None, n_images: int = 20, objects: int = 10, threads: int = 2, batch: int = 1,
              char_row: bool = True, numpy: bool = True) -> str:
    import torch

    from .batching import preprocess_image
    from .checkpoint import load_checkpoint
    from .igllm import IGLLM
    from .inference import DEFAULT_MODEL_DIR
    from .presets import make_config
    from .tokenizer import ProgramTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_dir is None and (DEFAULT_MODEL_DIR / "config.json").is_file():
        model_dir = DEFAULT_MODEL_DIR
    if model_dir is not None:
        model = load_checkpoint(model_dir)
        weights = f"trained ({model_dir})"
    else:
        cfg = make_config("tiny")
        model = IGLLM(cfg, ProgramTokenizer.build(cfg.domain)).eval()
        weights = "untrained tiny preset (random weights; latency only)"
    cfg = model.config
    import numpy as np

    rng = np.random.default_rng(0)
    images = [preprocess_image(rng.integers(0, 256, (160, 240, 3), dtype=np.uint8), cfg.image_dims)
              for _ in range(n_images)]
    # warm-up (first calls allocate)
    from .decoding import generate
    generate(model, images[0][None], num_objects=objects)

    rows = []
    t_c, calls_c, tok_c = _time_rows(model, images, objects, batch, True, None)
    rows.append((f"constrained + jump-forward ({cfg.numbers} numbers)", t_c, calls_c, tok_c))
    t_u, calls_u, tok_u = _time_rows(model, images, objects, batch, False, int(tok_c))
    rows.append((f"unconstrained greedy ({cfg.numbers} numbers)", t_u, calls_u, tok_u))
    if char_row and model_dir is None:
        from dataclasses import replace
        ccfg = replace(cfg, numbers="char")
        torch.manual_seed(0)
        cmodel = IGLLM(ccfg, model.tokenizer).eval()
        generate(cmodel, images[0][None], num_objects=objects)
        t_x, calls_x, tok_x = _time_rows(cmodel, images, objects, batch, True, None)
        rows.append(("constrained + jump-forward (char numbers)", t_x, calls_x, tok_x))

    torch_peak = _peak_mb()
    rows = [r + (torch_peak,) for r in rows]
    if numpy:
        import tempfile

        from .checkpoint import save_checkpoint
        with tempfile.TemporaryDirectory() as tmp:
            folder = model_dir if model_dir is not None else save_checkpoint(model, f"{tmp}/model")
            r = numpy_row(folder, n_images, objects, threads)
        rows.append((f"constrained + jump-forward ({cfg.numbers} numbers), NumPy runtime (no torch)",
                     r["times"], r["calls"], r["tokens"], r["peak_mb"]))

    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    out = [f"IG-LLM decoding benchmark: {weights}; {n_params:.1f} M parameters; "
           f"{n_images} images, {objects}-object scenes, batch {batch}, torch threads {threads}",
           "", "| decoding | median s/image | p90 s/image | forward calls | new tokens | tokens/s | peak RSS MB |",
           "|---|---|---|---|---|---|---|"]
    for name, times, calls, toks, peak in rows:
        med = statistics.median(times)
        p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
        out.append(f"| {name} | {med:.3f} | {p90:.3f} | {calls:.0f} | {toks:.0f} | {toks / med:.0f} | {peak:.0f} |")
    return "\n".join(out)


def main(args) -> int:
    if args.images < 1 or args.objects < 0:
        from ..errors import UserError
        raise UserError("--images or --objects is out of range; pass --images 1 or more and --objects 0 or more.")
    print(run_bench(args.model_dir, args.images, args.objects, args.threads, args.batch, not args.no_char,
                    not args.no_numpy))
    return 0
