"""Render benchmark: seconds per image and images per second for dataset settings.

Each setting runs in fresh worker processes (as `generate --workers K` does). Every worker
builds its Renderer and renders one warm-up image (the first Cycles render of a process
loads kernels and is slow), then all workers start together on a barrier and render
`n` images each, with the visibility check and its re-renders included, PNGs written.
Throughput = all images / wall time of the slowest worker.

Run it as `python -m ig_llm bench render [--images N] [--quick]`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# (name, width, height, samples, max bounces); the original had no adaptive sampling
CLEVR_ORIGINAL = ("CLEVR original (reference)", 320, 240, 512, 12)


def settings(images: int, reference_images: int) -> list[dict]:
    from .data.generate import DEFAULT_BOUNCES, DEFAULT_SAMPLES, DEFAULT_SIZE, DEFAULT_WORKERS, parse_size
    w, h = parse_size(DEFAULT_SIZE)
    cores = os.cpu_count() or 1
    k = DEFAULT_WORKERS
    train = {"samples": DEFAULT_SAMPLES, "bounces": DEFAULT_BOUNCES, "adaptive": 1,
             "workers": k, "threads": max(1, cores // k)}
    return [
        {"name": "training default", "width": w, "height": h, **train, "images": images},
        {"name": "training default, 1 process", "width": w, "height": h, **train,
         "workers": 1, "threads": cores, "images": images},
        {"name": "480x320 (CLEVR v1.0 size)", "width": 480, "height": 320, **train,
         "images": max(2, images // 4)},
        {"name": CLEVR_ORIGINAL[0], "width": CLEVR_ORIGINAL[1], "height": CLEVR_ORIGINAL[2],
         "samples": CLEVR_ORIGINAL[3], "bounces": CLEVR_ORIGINAL[4], "adaptive": 0,
         "workers": k, "threads": max(1, cores // k), "images": reference_images},
    ]


# ---------------------------------------------------------------------------------------
# child: one worker process
# ---------------------------------------------------------------------------------------
def child(width: int, height: int, samples: int, bounces: int, adaptive: int, threads: int,
          images: int, offset: int) -> None:
    """Set up, warm up, wait for 'go' on stdin, render `images`, print a JSON result."""
    from ..scene.stage import quiet_stdout
    from .data.render import Renderer
    out = tempfile.mkdtemp(prefix="ig_llm_bench_")
    with quiet_stdout():
        r = Renderer(width, height, samples, condition="A", seed=12345, split="bench", threads=threads,
                     max_bounces=bounces, adaptive=bool(adaptive))
        r.scene.cycles.samples = 1      # the warm-up only has to load the kernels
        r.render_index(offset, os.path.join(out, "warmup.png"))
        r.scene.cycles.samples = samples
    print("READY", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), time.process_time()
    attempts = 0
    with quiet_stdout():
        for k in range(images):
            label = r.render_index(offset + 1 + k, os.path.join(out, f"{k}.png"))
            attempts += label["attempt"] + 1
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    r.close()
    print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "images": images, "renders": attempts}), flush=True)


# ---------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------
def measure(cfg: dict) -> dict:
    """Run one setting with cfg['workers'] processes; returns the timings."""
    procs = []
    for j in range(cfg["workers"]):
        argv = [sys.executable, "-m", f"{__package__}.bench_render", "--child", str(cfg["width"]), str(cfg["height"]),
                str(cfg["samples"]), str(cfg["bounces"]), str(cfg["adaptive"]), str(cfg["threads"]),
                str(cfg["images"]), str(1000 * j)]
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, env=_child_env()))
    for p in procs:                     # barrier: everyone is warm
        line = p.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"bench worker failed to start (exit {p.wait()})")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.wait()
    n = sum(r["images"] for r in results)
    renders = sum(r["renders"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    return {**cfg, "wall_s": wall, "cpu_s_per_image": cpu / n, "total_images": n, "images_per_s": n / wall,
            "s_per_image": wall / n, "renders_per_image": renders / n}


def _child_env() -> dict:
    env = dict(os.environ)
    # keep bpy's caches and user config out of the home folder
    env.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="ig_llm_bench_user_"))
    return env


def table(rows: list[dict]) -> str:
    ref = next((r for r in rows if r["name"] == CLEVR_ORIGINAL[0]), None)
    # the original checks visibility with a cheap flat render, so its cost is one full render
    # per image: compare against the reference's seconds per *render* (conservative)
    ref_s = ref["wall_s"] / (ref["renders_per_image"] * ref["total_images"]) if ref else None
    head = ("| setting | size | samples | bounces | workers x threads | images | s/image | images/s "
            "| CPU s/image | re-renders/image | speed-up vs CLEVR |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = f"{ref_s / r['s_per_image']:.0f}x" if ref else "-"
        lines.append(f"| {r['name']} | {r['width']}x{r['height']} | {r['samples']} | {r['bounces']} | "
                     f"{r['workers']} x {r['threads']} | {r['total_images']} | {r['s_per_image']:.3f} | "
                     f"{r['images_per_s']:.2f} | {r['cpu_s_per_image']:.3f} | "
                     f"{r['renders_per_image'] - 1:.2f} | {speed} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=12, help="images per worker for the training default (default 12)")
    parser.add_argument("--reference-images", type=int, default=1,
                        help="images per worker at the CLEVR original setting (slow: ~40 s each; default 1)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the slow CLEVR original setting")


def main(args) -> int:
    rows = []
    load_before = os.getloadavg()[0]
    for cfg in settings(args.images, args.reference_images):
        if args.skip_reference and cfg["name"] == CLEVR_ORIGINAL[0]:
            continue
        print(f"measuring {cfg['name']} ...", file=sys.stderr, flush=True)
        rows.append(measure(cfg))
    import platform
    print(f"machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
          f"{platform.system()} {platform.release()}; Cycles CPU; s/image = wall time / images of all workers")
    # a shared machine's other jobs slow the wall times; CPU s/image is less sensitive to them
    print(f"1-min load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"(>{os.cpu_count()} means other jobs shared these cores)")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*(int(v) for v in sys.argv[2:10]))
    else:
        p = argparse.ArgumentParser()
        add_arguments(p)
        sys.exit(main(p.parse_args()))
