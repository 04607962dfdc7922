"""`ig_llm generate`: render a CLEVR / CoGenT dataset with Cycles, in parallel, resumably.

``--kit NAME|PATH`` renders an asset kit's objects (scene/kits.py, docs/kits.md: the
built-in ``clevr`` and ``toys``, or a folder with kit.toml and a .blend) by its scene
rules; its ``--condition`` is ``train`` (default: the held-out pairs never appear) or
``heldout``, or a named rule of the kit. The manifest records the kit's name and sha256,
so ``--resume`` refuses a kit that changed.
``--domain 2d`` and ``--domain so3`` render the paper's 2D and SO(3) tasks instead
(training/data/task_render.py, Workbench, 336x336 by default) into the same layout; their
``--condition`` picks the split's sampler (2d: checkerboard | heldout | uniform; so3:
id | ood; docs/experiments.md).

Layout of ``--out DIR``::

    DIR/manifest.json                      settings; --resume refuses a mismatch
    DIR/images/CLEVR_{split}_{i:06d}.png
    DIR/index/CLEVR_{split}_{i:06d}.npz    per-pixel truth: the Object Index pass (uint8,
                                           0 = background, k = k-th object of the label)
    DIR/labels/CLEVR_{split}_{i:06d}.json  CLEVR scene record + program, jitter, ...
    DIR/scenes.json                        all labels merged: {"info": ..., "scenes": [...]}
    DIR/logs/worker-{k}.log                Blender's output of each worker process

A sample is complete iff its label exists. The PNG and index map are written first and the label last,
each through a temporary file and ``os.replace``, so a run killed at any moment leaves
only complete samples (plus at most a PNG without a label, which the next run rewrites)
and ``--resume`` renders exactly the missing ones. Image ``i`` is a pure function of
(split, seed, i), so any split into shards, workers or resumed runs gives the same data.

``--workers K`` starts K worker processes (``python -m ig_llm generate ... --worker``,
or ``blender --background --command ig_llm generate ...`` under Blender); each keeps one
Blender scene alive and renders its shard with ``cores // K`` Cycles threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ...atomic import check_output, write_json
from ...errors import UserError
from ...home import add_home_argument, dataset_dir
from .sampler import default_min_pixels, image_name, shard_indices

# Default training setting, chosen by measurement on a 2-core machine (docs/dataset.md):
# CLEVR's 3:2 aspect at 2/5 scale, few samples, no denoiser.
DEFAULT_SIZE = "192x128"
DEFAULT_SAMPLES = 12
DEFAULT_BOUNCES = 4
DEFAULT_WORKERS = 2
BLENDER_COMMAND_ID = "ig_llm"       # `blender --command ig_llm generate ...`
MANIFEST_KEYS = ("condition", "count", "width", "height", "samples", "max_bounces", "seed", "split",
                 "domain", "min_pixels", "kit")
LEGACY_DEFAULTS = {"max_bounces": 12}   # what runs used before the key was recorded
STALE_TMP_S = 600                   # temp files older than this are left-overs of a killed run


class GenerateError(UserError, RuntimeError):
    """A user-fixable problem; main() prints it as one sentence."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--condition", default=None,
                        help="CoGenT colour rule: A, B, or none (plain CLEVR); default A. For --domain 2d: "
                             "checkerboard (default), heldout or uniform; for so3: id (default) or ood")
    parser.add_argument("--count", type=int, required=True, help="number of images in the dataset")
    parser.add_argument("--size", default=None,
                        help=f"WxH in pixels (default {DEFAULT_SIZE}; CLEVR: 480x320; 2d / so3: the canvas, 336x336)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"Cycles samples per pixel (default {DEFAULT_SAMPLES}; CLEVR: 512)")
    parser.add_argument("--bounces", type=int, default=DEFAULT_BOUNCES,
                        help=f"Cycles max light bounces (default {DEFAULT_BOUNCES}; CLEVR: 12)")
    parser.add_argument("--out", default=None,
                        help="output folder (new or empty, or --resume); default: the data home's "
                             "datasets/<split>, e.g. ~/.cache/ig_llm/datasets/trainA (`ig_llm home`)")
    add_home_argument(parser)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"parallel Blender processes (default {DEFAULT_WORKERS})")
    parser.add_argument("--threads", type=int, default=None,
                        help="Cycles threads per worker (default: CPU cores // workers)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--split", default=None,
                        help="split name in file names and labels (default: trainA / trainB / train)")
    parser.add_argument("--shard", default="0/1",
                        help="i/n: render only images i, i+n, i+2n, ... (cluster job arrays)")
    parser.add_argument("--resume", action="store_true", help="continue a run in a non-empty --out")
    parser.add_argument("--min-pixels", type=int, default=None,
                        help="visible pixels each object needs (default 200 at 480x320, scaled by area)")
    parser.add_argument("--domain", default="clevr", help="scene domain (default clevr; 2d, so3, or a kit)")
    parser.add_argument("--kit", default=None, metavar="NAME|PATH",
                        help="asset kit to render: clevr, toys, a kit folder (kit.toml + .blend), or a kit's name "
                             "in $IG_LLM_KITS or the data home's kits/ (docs/kits.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal


# ---------------------------------------------------------------------------------------
# settings and the output folder
# ---------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise GenerateError(f"--size {text!r} is not WxH; write it like 192x128.") from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise GenerateError(f"--size {text} is out of range; use 8..8192 pixels per side.")
    return w, h


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise GenerateError(f"--shard {text!r} is not i/n; write it like 0/4.") from None
    if not (n >= 1 and 0 <= i < n):
        raise GenerateError(f"--shard {text} is invalid; use i/n with 0 <= i < n.")
    return i, n


def default_split(condition: str, domain=None) -> str:
    if domain is not None and domain.kind != "clevr":
        return domain.task.get("splits", {}).get(condition, condition)
    if condition in ("train", "heldout"):      # a kit's held-out pairs
        return condition
    return "train" if condition == "none" else f"train{condition}"


def _domain(name: str):
    from ...scene.domain import load_domain
    from ...scene.kits import KitError
    try:
        return load_domain(name)
    except KitError:
        raise
    except FileNotFoundError as err:
        raise GenerateError(str(err)) from None


def _kit_domain(ref: str):
    """The domain of the kit `ref`, its .blend's names checked (bpy imported if it can be)."""
    from ...scene.domain import kit_domain
    from ...scene.kits import load_kit
    return kit_domain(load_kit(ref, check_assets=True))


def settings_domain(settings: dict):
    """The domain a manifest's settings name (a kit's when the manifest records one)."""
    if settings.get("kit"):
        return _kit_domain(settings["domain"])
    from ...scene.domain import load_domain
    return load_domain(settings["domain"])


def settings_from_args(args) -> dict:
    """The manifest: every setting that changes the dataset's content."""
    if args.count < 1:
        raise GenerateError(f"--count {args.count} is too small; pass --count 1 or more.")
    if args.samples < 1:
        raise GenerateError(f"--samples {args.samples} is too small; pass --samples 1 or more.")
    if args.bounces < 0:
        raise GenerateError(f"--bounces {args.bounces} is negative; pass --bounces 0 or more.")
    kit_ref = getattr(args, "kit", None)
    domain_ref = getattr(args, "domain", "clevr") or "clevr"
    if kit_ref and domain_ref != "clevr":
        raise GenerateError(f"--kit {kit_ref} and --domain {domain_ref} both name what to render; pass one of them.")
    domain = _kit_domain(kit_ref) if kit_ref else _domain(domain_ref)
    if domain.kit is not None and not kit_ref:
        domain = _kit_domain(domain_ref)            # --domain KIT: the same as --kit KIT
    condition = args.condition or domain.default_condition
    try:
        domain.check_condition(condition)
    except KeyError as err:
        raise GenerateError(f"--condition {condition} is not one of the {domain.name} domain's "
                            f"({', '.join(domain.conditions)}); pick one of those.") from None
    if args.size is None:
        side = domain.task.get("canvas_px")
        size = f"{side}x{side}" if side else DEFAULT_SIZE
    else:
        size = args.size
    w, h = parse_size(size)
    split = args.split or default_split(condition, domain)
    if not split.replace("-", "").replace("_", "").isalnum():
        raise GenerateError(f"--split {split!r} may only contain letters, digits, '-' and '_'.")
    kit = domain.kit
    rule = kit.rules.min_pixels if kit is not None else 200
    return {"condition": condition, "count": args.count, "width": w, "height": h,
            "samples": args.samples, "max_bounces": args.bounces, "seed": args.seed, "split": split,
            "domain": domain.ref if kit is not None else domain_ref,
            "min_pixels": args.min_pixels if args.min_pixels is not None else default_min_pixels(w, h, rule),
            "kit": {"name": kit.name, "sha256": kit.sha256} if kit is not None else None}


def _manifest(settings: dict) -> dict:
    """The settings as manifest.json keeps them (no "kit" key for the JSON domains, as before kits)."""
    return {k: v for k, v in settings.items() if not (k == "kit" and v is None)}


def prepare_out(out: Path, settings: dict, resume: bool) -> None:
    """Create the folder layout, or check that --resume continues the same dataset."""
    manifest_path = out / "manifest.json"
    check_output(out, "--out", folder=True)
    non_empty = out.is_dir() and not _only_empty_folders(out)
    if non_empty and not resume:
        raise GenerateError(f"{out} is not empty; add --resume to continue that run, or choose a new --out folder.")
    if non_empty:
        if not manifest_path.is_file():
            raise GenerateError(f"{out} has files but no manifest.json, so it is not a dataset from "
                                f"`ig_llm generate`; choose a new --out folder.")
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise GenerateError(f"{manifest_path} is unreadable; delete the folder or choose a new --out.") from None
        for key, value in LEGACY_DEFAULTS.items():     # manifests written before a key existed
            old.setdefault(key, value)
        # image i depends only on (split, seed, i) and the settings, not on --count: a
        # larger count extends the dataset; a smaller one would leave extra images behind
        diff = [f"{k}={old.get(k)!r} there but {settings[k]!r} now" for k in MANIFEST_KEYS
                if k != "count" and old.get(k) != settings[k]]
        if diff:
            raise GenerateError(f"{out} holds a different dataset ({'; '.join(diff)}); rerun with the same "
                                f"settings to resume it, or choose a new --out folder.")
        if settings["count"] < old.get("count", 0):
            beyond = _labels_beyond(out, settings["count"])
            if beyond:   # images past the new end would be left behind, outside scenes.json
                raise GenerateError(f"{out} already holds {beyond} image(s) past --count {settings['count']}; "
                                    f"--resume can extend a dataset but not shrink it: pass --count "
                                    f"{old['count']} or more.")
        _check_labels(out)
        if settings["count"] != old.get("count", 0):    # more, or fewer when none lies past the end
            write_json(manifest_path, {**old, "count": settings["count"]})
    else:
        # the manifest first: a folder that has one is a dataset --resume accepts
        write_json(manifest_path, {**_manifest(settings), "generator": "ig_llm generate", "version": 1})
    try:
        for sub in ("images", "index", "labels", "logs"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenerateError(f"Cannot create the folders of {out} ({err.strerror}); free some space or "
                            "choose a writable --out, then rerun with --resume.") from None
    _remove_stale_temps(out)


def _only_empty_folders(out: Path) -> bool:
    """True if `out` holds no file at all (e.g. what a run that failed at start left)."""
    return not any(p.is_file() for p in out.rglob("*"))


def _labels_beyond(out: Path, count: int) -> int:
    """How many rendered samples have an index >= `count` (a render started larger, then
    stopped, can be finished smaller when none has)."""
    labels = out / "labels"
    if not labels.is_dir():
        return 0
    n = 0
    for p in labels.glob("CLEVR_*.json"):
        tail = p.stem.rsplit("_", 1)[-1]
        n += tail.isdigit() and int(tail) >= count
    return n


def _check_labels(out: Path) -> None:
    """Every label of a run to resume must parse: scenes.json is merged from them."""
    labels = out / "labels"
    if not labels.is_dir():
        return
    for p in sorted(labels.glob("*.json")):
        try:
            json.loads(p.read_text())
        except (OSError, ValueError):
            raise GenerateError(f"Label file {p} is damaged; delete it (and its image) and rerun with "
                                "--resume to render that sample again.") from None


def _remove_stale_temps(out: Path) -> None:
    """Temp files of killed runs (a live worker's are young; leave those alone)."""
    now = time.time()
    for sub in ("images", "index", "labels"):
        if not (out / sub).is_dir():
            continue
        for p in (out / sub).glob(".*"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    p.unlink()
            except OSError:
                pass


def missing_indices(out: Path, settings: dict, indices) -> list[int]:
    labels = out / "labels"
    return [i for i in indices if not (labels / image_name(settings["split"], i, "json")).exists()]


def write_scenes_json(out: Path, settings: dict) -> int:
    """Merge every complete label into DIR/scenes.json (atomic); returns how many."""
    scenes = []
    for i in range(settings["count"]):
        p = out / "labels" / image_name(settings["split"], i, "json")
        try:
            scenes.append(json.loads(p.read_text()))
        except FileNotFoundError:
            continue
    info = {"split": settings["split"], "condition": settings["condition"], "seed": settings["seed"],
            "count": settings["count"], "complete": len(scenes), "width": settings["width"],
            "height": settings["height"], "samples": settings["samples"],
            "max_bounces": settings["max_bounces"], "generator": "ig_llm generate",
            "rotation_units": "radians, as applied in Blender", "domain": settings["domain"]}
    if settings.get("kit"):
        info["kit"] = settings["kit"]
    write_json(out / "scenes.json", {"info": info, "scenes": scenes})
    return len(scenes)


# ---------------------------------------------------------------------------------------
# rendering (in this process)
# ---------------------------------------------------------------------------------------
def render_indices(out: Path, settings: dict, indices: list[int], threads: int | None,
                   on_done=None, stop_if_orphaned: bool = False) -> None:
    """Render `indices` in this process (imports bpy). `on_done(i)` after each sample."""
    if not indices:
        return
    domain = settings_domain(settings)
    if domain.kind == "clevr":
        from .render import Renderer
    else:
        from .task_render import TaskRenderer as Renderer
    renderer = Renderer(settings["width"], settings["height"], settings["samples"],
                        domain=domain, condition=settings["condition"],
                        seed=settings["seed"], split=settings["split"], threads=threads,
                        min_pixels=settings["min_pixels"], max_bounces=settings["max_bounces"])
    parent = os.getppid()
    try:
        for i in indices:
            if stop_if_orphaned and os.getppid() != parent:
                return  # the controlling process died: don't race a resumed run
            png = out / "images" / image_name(settings["split"], i, "png")
            index_map = out / "index" / image_name(settings["split"], i, "npz")
            label = renderer.render_index(i, str(png), str(index_map))  # PNG + map land atomically first
            write_json(out / "labels" / image_name(settings["split"], i, "json"), label)
            if on_done:
                on_done(i)
    finally:
        renderer.close()


# ---------------------------------------------------------------------------------------
# worker processes
# ---------------------------------------------------------------------------------------
def _worker_argv(args, settings: dict, shard: int, num_shards: int, threads: int) -> list[str]:
    opts = ["generate", "--worker", "--no-progress", "--resume", "--out", str(args.out),
            "--condition", settings["condition"], "--count", str(settings["count"]),
            "--size", f"{settings['width']}x{settings['height']}", "--samples", str(settings["samples"]),
            "--bounces", str(settings["max_bounces"]),
            "--seed", str(settings["seed"]), "--split", settings["split"],
            *(("--kit", settings["domain"]) if settings.get("kit") else ("--domain", settings["domain"])),
            "--min-pixels", str(settings["min_pixels"]), "--shard", f"{shard}/{num_shards}",
            "--threads", str(threads), "--workers", "1"]
    binary = _blender_binary()
    if binary:   # running inside the Blender application: workers are Blender too
        return [binary, "--background", "--command", BLENDER_COMMAND_ID, *opts]
    return [sys.executable, "-m", _root_package(), *opts]


def _blender_binary() -> str:
    """The Blender application running this, or '' (a Python with the bpy module)."""
    bpy = sys.modules.get("bpy")
    return getattr(getattr(bpy, "app", None), "binary_path", "") if bpy else ""


def _root_package() -> str:
    return __package__.rsplit(".", 2)[0]          # "ig_llm" (an installed extension: "bl_ext.<repo>.ig_llm")


def run_workers(args, out: Path, settings: dict, shard: int, num_shards: int, todo: list[int],
                progress) -> None:
    """Start args.workers processes on sub-shards of (shard, num_shards); poll the labels."""
    k = args.workers
    threads = args.threads or max(1, (os.cpu_count() or 1) // k)
    procs = []
    for j in range(k):
        # sub-shard j of this shard: indices shard + num_shards*j, ... step num_shards*k
        sub, n = shard + num_shards * j, num_shards * k
        log = open(out / "logs" / f"worker-{sub}-of-{n}.log", "ab")
        procs.append((subprocess.Popen(_worker_argv(args, settings, sub, n, threads),
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL),
                      log, sub, n))
    pending = {image_name(settings["split"], i, "json") for i in todo}
    labels = out / "labels"
    try:
        while True:
            done = pending & set(os.listdir(labels))    # one directory read, not a stat per image
            pending -= done
            if done and progress:
                progress.update(len(done))
            codes = [p.poll() for p, *_ in procs]
            failed = [(p, sub, n) for (p, _, sub, n), c in zip(procs, codes) if c not in (None, 0)]
            if failed:
                p, sub, n = failed[0]
                raise GenerateError(f"worker {sub}/{n} stopped with exit code {p.returncode}; see "
                                    f"{out / 'logs' / f'worker-{sub}-of-{n}.log'}, then rerun with --resume.")
            if all(c == 0 for c in codes):
                break
            time.sleep(0.5)
    finally:
        for p, log, *_ in procs:
            if p.poll() is None:
                p.terminate()
        for p, log, *_ in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()


# ---------------------------------------------------------------------------------------
# command
# ---------------------------------------------------------------------------------------
def main(args) -> int:
    settings = settings_from_args(args)
    shard, num_shards = parse_shard(args.shard)
    if args.workers < 1:
        raise GenerateError(f"--workers {args.workers} is too small; pass --workers 1 or more.")
    if args.out is None:     # the data home: renders outlive the checkout they were made from
        args.out = str(dataset_dir(settings["split"], args.home))
    out = Path(args.out)
    if args.worker:     # a child of run_workers: the parent prepared the folder
        todo = missing_indices(out, settings, shard_indices(settings["count"], shard, num_shards))
        render_indices(out, settings, todo, args.threads, stop_if_orphaned=True)
        return 0

    if args.workers > 1 and not _blender_binary() and _root_package().startswith("bl_ext."):
        # the bpy module with the installed extension: no Blender binary, no `python -m ig_llm`
        raise GenerateError(f"--workers {args.workers} needs worker processes, which this Python cannot start "
                            "(it is not the Blender application); pass --workers 1, or run it in Blender.")
    prepare_out(out, settings, args.resume)
    mine = shard_indices(settings["count"], shard, num_shards)
    todo = missing_indices(out, settings, mine)
    progress = None
    if not args.no_progress:     # tqdm where installed (Blender has none): plain lines otherwise
        from ..progress import progress_bar
        progress = progress_bar(len(mine), initial=len(mine) - len(todo), unit="img",
                                desc=f"generate {settings['split']}", dynamic_ncols=True, smoothing=0.1)
    t0 = time.time()
    try:
        if todo and args.workers == 1:
            render_indices(out, settings, todo, args.threads or os.cpu_count() or 1,
                           on_done=(lambda i: progress.update(1)) if progress else None)
        elif todo:
            run_workers(args, out, settings, shard, num_shards, todo, progress)
    finally:
        if progress:
            progress.close()
    n = write_scenes_json(out, settings)
    dt = time.time() - t0
    rate = f" ({len(todo) / dt:.2f} images/s)" if todo and dt > 0 else ""
    print(f"ig_llm generate: {len(todo)} rendered{rate}; {n}/{settings['count']} complete in {out}.",
          file=sys.stderr)
    return 0
