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

The last row is what an artist waits for: File > Import > Image to Scene of a 12 MP photo
(4000x3000 JPEG) in a fresh process of a Python with ``bpy`` but no torch and no Pillow
(Blender as shipped), with the shipped model: seconds for the import (reading, resizing,
loading the model, writing the program, building) and the process's peak memory. That
Python is ``--blender-python``, else ``$IG_LLM_NO_TORCH_PYTHON``, else the test suite's
``.cache/venv-bpy``, else this one with torch and Pillow hidden from the add-on.
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
    parser.add_argument("--no-import", action="store_true", help="skip the 12 MP import row")
    parser.add_argument("--import-runs", type=int, default=3, help="fresh processes timed for the 12 MP import row")
    parser.add_argument("--blender-python", default=None,
                        help="a Python with bpy and without torch/Pillow for the 12 MP import row "
                             "(default: $IG_LLM_NO_TORCH_PYTHON, .cache/venv-bpy, else this one with torch hidden)")


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


# -- the 12 MP import row -----------------------------------------------------------------
IMPORT_SIZE = (4000, 3000)
HIDDEN = ("torch", "transformers", "PIL", "open_clip", "tqdm", "scipy")   # what Blender as shipped lacks
_IMPORT_CHILD = r"""
import json, sys, time
import importlib.util
present = [m for m in %(hidden)r if importlib.util.find_spec(m) is not None]
for m in %(hidden)r:
    sys.modules[m] = None           # `import m` fails as where the package is not installed
import bpy
import importlib
pkg = importlib.import_module(sys.argv[2])
pkg.register()
bpy.ops.wm.read_factory_settings(use_empty=True)
bench = importlib.import_module(sys.argv[2] + ".model.bench")
base = bench._peak_mb()
t0 = time.perf_counter()
result = bpy.ops.import_scene.image_to_scene(filepath=sys.argv[1])
seconds = time.perf_counter() - t0
print("ROW " + json.dumps({"seconds": seconds, "peak_mb": bench._peak_mb(), "base_mb": base,
                          "result": sorted(result), "objects": len(bpy.data.objects), "hidden": present,
                          "torch": sys.modules.get("torch") is not None, "pil": sys.modules.get("PIL") is not None}))
""" % {"hidden": HIDDEN}


def _package_dir():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


def blender_python(given=None) -> str:
    """The Python for the import row: `given`, ``$IG_LLM_NO_TORCH_PYTHON``, the test suite's
    ``.cache/venv-bpy``, else this one. The child hides torch, Pillow and the rest of the
    optional runtime from the add-on wherever they are installed."""
    import os
    import sys

    for candidate in (given, os.environ.get("IG_LLM_NO_TORCH_PYTHON"),
                      str(_package_dir() / ".cache" / "venv-bpy" / "bin" / "python")):
        if candidate and os.path.isfile(candidate):
            return candidate
    return sys.executable


def _write_photo(path, size=IMPORT_SIZE) -> None:
    """A 12 MP JPEG like a photo of a CLEVR scene: the example render, enlarged, with grain."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.open(_package_dir() / "examples" / "clevr_example.png").convert("RGB").resize(size, Image.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, (size[1], size[0], 3), dtype=np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)


def bpy_only_path(python: str, folder) -> str:
    """Fill `folder` (existing, empty) as the PYTHONPATH for a child run by `python`: this
    package under its import name, and the zip's safetensors wheel where that Python has
    none (as the installed extension has it). Returns `folder`."""
    import glob
    import os
    import platform
    import subprocess
    import sys
    import zipfile

    os.symlink(_package_dir(), os.path.join(folder, __package__.rsplit(".", 1)[0]), target_is_directory=True)
    has = subprocess.run([python, "-c", "import safetensors"], capture_output=True).returncode == 0
    if not has:
        tag = {("linux", "x86_64"): "manylinux*x86_64", ("darwin", "arm64"): "macosx*arm64",
               ("darwin", "x86_64"): "macosx*x86_64", ("win32", "AMD64"): "win_amd64"}.get(
                   (sys.platform, platform.machine()), "none")
        wheels = glob.glob(str(_package_dir() / "wheels" / f"safetensors-*{tag}*.whl"))
        if not wheels:
            raise RuntimeError(f"{python} has no safetensors and no wheel for this platform is in wheels/")
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(folder)
    return str(folder)


def import_row(python=None, runs: int = 3) -> dict:
    """Time File > Import > Image to Scene of a 12 MP JPEG, each run in a fresh process of
    a Python with bpy and without torch/Pillow; returns its row as a dict."""
    import json
    import os
    import subprocess
    import tempfile

    python = blender_python(python)
    with tempfile.TemporaryDirectory() as tmp:
        photo = os.path.join(tmp, "photo_12mp.jpg")
        _write_photo(photo)
        os.makedirs(os.path.join(tmp, "path"))
        path = bpy_only_path(python, os.path.join(tmp, "path"))
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
        rows = []
        for _ in range(max(1, runs)):
            out = subprocess.run([python, "-c", _IMPORT_CHILD, photo, __package__.rsplit(".", 1)[0]],
                                 capture_output=True, text=True, env=env, timeout=600)
            found = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
            if not found:
                raise RuntimeError(f"the 12 MP import benchmark failed: {out.stderr.strip()[-500:]}")
            rows.append(json.loads(found[-1][4:]))
    bad = [r for r in rows if r["result"] != ["FINISHED"] or r["torch"] or r["pil"]]
    if bad:
        raise RuntimeError(f"the 12 MP import did not run as in Blender as shipped: {bad[0]}")
    return {"times": [r["seconds"] for r in rows], "peak_mb": max(r["peak_mb"] for r in rows),
            "base_mb": max(r["base_mb"] for r in rows), "python": python, "hidden": rows[0]["hidden"]}


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
              char_row: bool = True, numpy: bool = True, import_runs: int = 0, blender_python=None) -> str:
    """The table. `import_runs` > 0 adds the 12 MP import row (``ig_llm bench model`` times 3)."""
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

    notes = []
    if import_runs > 0:
        r = import_row(blender_python, import_runs)
        w, h = IMPORT_SIZE
        rows.append((f"12 MP import: File > Import > Image to Scene of a {w}x{h} JPEG, shipped model, "
                     f"bpy only (no torch, no Pillow), fresh process", r["times"], None, None, r["peak_mb"]))
        notes.append(f"12 MP import row: {len(r['times'])} fresh processes of {r['python']}"
                     f"{' with ' + ', '.join(r['hidden']) + ' hidden' if r['hidden'] else ''}; seconds are the "
                     "import alone "
                     f"(read, resize, load the model, write the program, build); peak RSS is the whole process "
                     f"(bpy itself: {r['base_mb']:.0f} MB before the import).")

    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    out = [f"IG-LLM decoding benchmark: {weights}; {n_params:.1f} M parameters; "
           f"{n_images} images, {objects}-object scenes, batch {batch}, torch threads {threads}",
           "", "| decoding | median s/image | p90 s/image | forward calls | new tokens | tokens/s | peak RSS MB |",
           "|---|---|---|---|---|---|---|"]
    for name, times, calls, toks, peak in rows:
        med = statistics.median(times)
        p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
        if calls is None:
            out.append(f"| {name} | {med:.3f} | {p90:.3f} | – | – | – | {peak:.0f} |")
        else:
            out.append(f"| {name} | {med:.3f} | {p90:.3f} | {calls:.0f} | {toks:.0f} | {toks / med:.0f} | {peak:.0f} |")
    return "\n".join(out + ([""] + notes if notes else []))


def main(args) -> int:
    if args.images < 1 or args.objects < 0 or args.import_runs < 1:
        from ..errors import UserError
        raise UserError("--images, --objects or --import-runs is out of range; pass --images 1 or more, "
                        "--objects 0 or more and --import-runs 1 or more.")
    print(run_bench(args.model_dir, args.images, args.objects, args.threads, args.batch, not args.no_char,
                    not args.no_numpy, 0 if args.no_import else args.import_runs, args.blender_python))
    return 0
