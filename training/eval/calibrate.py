"""Calibrate "does this picture look like the training scenes?" for a model folder.

    python -m ig_llm.training.eval.calibrate --model model/default --fit data/trainA --held-out data/valA

1. tower features (model/confidence.py) of the ``--fit`` renders (at most ``--max-fit``):
   75 % fit the density, 25 % set the threshold (99th percentile x 1.25);
2. the ``--held-out`` renders (never used above) give the false-warning rate;
3. non-CLEVR pictures made here (noise, gradients, text, other primitives, flat and
   white images, a colour grid, and crops of the photos Blender ships as studio-light
   HDRIs when ``bpy`` is importable) against the held-out renders give the AUROC;
4. ``calibration.json`` is written into the model folder (atomically) with those
   numbers in its ``meta``, and a markdown table is printed.

Runs with the NumPy runtime (no torch needed); 2-core CPU: about a minute for 1,000 images.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...images import IMAGE_SUFFIXES

OOD_KINDS = ("noise", "gradient", "text", "primitives", "flat", "grid", "photo")


class CalibrateError(UserError, ValueError):
    """Inputs calibration cannot use; the message names them and the fix."""


def image_files(folder, limit: int | None = None, seed: int = 0) -> list[Path]:
    p = Path(folder)
    p = p / "images" if (p / "images").is_dir() else p
    if not p.is_dir():
        raise CalibrateError(f"Render folder {folder} does not exist; pass a folder written by `ig_llm generate`.")
    files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None and len(files) > limit:
        idx = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(idx)]
    return files


# ---------------------------------------------------------------------------------------
# non-CLEVR pictures
# ---------------------------------------------------------------------------------------
def _photo_crops(rng, n: int, size) -> list[np.ndarray]:
    """Crops of the real photos (HDRIs) inside Blender's datafiles, tone-mapped; [] without bpy."""
    try:
        import bpy
    except ImportError:
        return []
    files = sorted(glob.glob(os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world", "*.exr")))
    photos = []
    for f in files:
        img = bpy.data.images.load(f, check_existing=False)
        try:
            w, h = img.size
            buf = np.empty(w * h * 4, np.float32)
            img.pixels.foreach_get(buf)
            rgb = buf.reshape(h, w, 4)[::-1, :, :3]
            photos.append(np.clip(rgb / (1.0 + rgb), 0, 1) ** (1 / 2.2))   # Reinhard + gamma
        finally:
            bpy.data.images.remove(img)
    out = []
    tw, th = size
    for i in range(n if photos else 0):
        ph = photos[i % len(photos)]
        h, w = ph.shape[:2]
        ch = int(rng.integers(h // 4, h // 2))
        cw = min(w, ch * tw // th)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append((ph[y:y + ch, x:x + cw] * 255 + 0.5).astype(np.uint8))
    return out


def ood_images(n: int, seed: int = 0, size=(240, 160)) -> list[tuple[str, np.ndarray]]:
    """`n` non-CLEVR pictures, (kind, HxWx3 uint8), spread over OOD_KINDS."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    photos = _photo_crops(rng, max(1, n // len(OOD_KINDS)), size)
    out = []
    for i in range(n):
        kind = OOD_KINDS[i % len(OOD_KINDS)]
        if kind == "photo":
            if photos:
                out.append((kind, photos[(i // len(OOD_KINDS)) % len(photos)]))
                continue
            kind = "noise"
        if kind == "noise":
            if rng.random() < 0.5:
                a = rng.integers(0, 256, (h, w, 3))
            else:
                a = rng.normal(rng.uniform(60, 200), rng.uniform(5, 60), (h, w, 3))
            out.append((kind, np.clip(a, 0, 255).astype(np.uint8)))
            continue
        if kind == "gradient":
            c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
            t = (xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a)) if rng.random() < 0.6 else \
                np.hypot(xx - rng.random(), yy - rng.random())
            t = (t - t.min()) / max(np.ptp(t), 1e-6)
            out.append((kind, (c0 + (c1 - c0) * t[..., None]).astype(np.uint8)))
            continue
        if kind == "flat":
            c = (255, 255, 255) if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(0, 256, 3))
            out.append((kind, np.full((h, w, 3), c, np.uint8)))
            continue
        if kind == "grid":   # Blender's colour grid look: hue squares with a checker
            cells = int(rng.integers(4, 16))
            yy, xx = np.mgrid[0:h, 0:w] * cells // max(h, w)
            hue = ((xx + yy * cells) % 12) / 12.0
            rgb = np.stack([np.abs(hue * 6 - 3) - 1, 2 - np.abs(hue * 6 - 2), 2 - np.abs(hue * 6 - 4)], -1)
            rgb = np.clip(rgb, 0, 1) * np.where((xx + yy) % 2, 0.9, 0.6)[..., None]
            out.append((kind, (rgb * 255).astype(np.uint8)))
            continue
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(im)
        if kind == "text":
            for _ in range(int(rng.integers(3, 12))):
                words = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 12))))
                d.text((int(rng.integers(0, w - 20)), int(rng.integers(0, h - 10))), words,
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        else:   # other primitives: triangles, rectangles, ellipses, lines
            for _ in range(int(rng.integers(2, 10))):
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
                col = tuple(int(v) for v in rng.integers(0, 256, 3))
                shape = rng.integers(0, 4)
                if shape == 0:
                    d.rectangle((x0, y0, x1, y1), fill=col)
                elif shape == 1:
                    d.ellipse((x0, y0, x1, y1), fill=col)
                elif shape == 2:
                    d.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=col)
                else:
                    d.line((x0, y0, x1, y1), fill=col, width=int(rng.integers(1, 8)))
        out.append((kind, np.asarray(im)))
    return out


# ---------------------------------------------------------------------------------------
# features, metrics
# ---------------------------------------------------------------------------------------
def features(model, images) -> np.ndarray:
    """NumpyIGLLM + [path | HxWx3 uint8] -> [n, D] tower features."""
    from ...model import pixels
    from ...model.confidence import image_feature

    out = []
    for im in images:
        rgb = pixels.read_image(im) if isinstance(im, (str, Path)) else im
        out.append(image_feature(model.tower_tokens(pixels.model_input(rgb, model.config.image_dims))))
    return np.stack(out)


def auroc(negatives, positives) -> float:
    """P(score of a positive (OOD) > score of a negative (in-domain)); ties count half."""
    neg, pos = np.asarray(negatives, float), np.asarray(positives, float)
    allv = np.concatenate([neg, pos])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):          # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def calibrate(model_dir, fit_dirs, held_out_dirs, max_fit: int = 800, max_held_out: int = 500,
              n_ood: int = 350, seed: int = 0, log=print) -> dict:
    from ...model.confidence import DomainCheck
    from ...model.numpy_runtime import load_numpy_model

    model = load_numpy_model(model_dir)
    fit_files = [f for d in fit_dirs for f in image_files(d)]
    rng = np.random.default_rng(seed)
    if len(fit_files) > max_fit:
        fit_files = [fit_files[i] for i in sorted(rng.choice(len(fit_files), max_fit, replace=False))]
    held = [f for d in held_out_dirs for f in image_files(d, max_held_out, seed)]
    if len(fit_files) < 20 or not held:
        raise CalibrateError(f"Calibration needs at least 20 --fit renders and some --held-out renders (got "
                             f"{len(fit_files)} and {len(held)}); point them at folders of renders.")
    log(f"features: {len(fit_files)} fit renders, {len(held)} held-out renders, {n_ood} non-CLEVR pictures")
    f_fit = features(model, fit_files)
    perm = rng.permutation(len(f_fit))
    cut = int(0.75 * len(perm))
    check = DomainCheck.fit(f_fit[perm[:cut]])
    check.set_threshold([check.score(f) for f in f_fit[perm[cut:]]])
    s_held = np.array([check.score(f) for f in features(model, held)])
    ood = ood_images(n_ood, seed + 1)
    s_ood = np.array([check.score(f) for f in features(model, [im for _, im in ood])])
    kinds = [k for k, _ in ood]
    metrics = {
        "auroc": round(auroc(s_held, s_ood), 4),
        "false_warning_rate": round(float(np.mean(s_held > check.threshold)), 4),
        "ood_detected": round(float(np.mean(s_ood > check.threshold)), 4),
        "held_out": len(held), "ood": len(ood), "fit": cut, "threshold_set": len(perm) - cut,
        "per_kind_detected": {k: round(float(np.mean([s > check.threshold for s, kk in zip(s_ood, kinds)
                                                       if kk == k])), 3) for k in sorted(set(kinds))},
        "per_kind_auroc": {k: round(auroc(s_held, [s for s, kk in zip(s_ood, kinds) if kk == k]), 4)
                           for k in sorted(set(kinds))},
    }
    check.meta = {"fit": [str(d) for d in fit_dirs], "held_out": [str(d) for d in held_out_dirs], **metrics}
    check.save(model_dir)
    return metrics


def table(metrics: dict) -> str:
    rows = ["| set | images | warned (score > threshold) | AUROC vs held-out |", "|---|---|---|---|",
            f"| held-out renders | {metrics['held_out']} | {100 * metrics['false_warning_rate']:.1f} % "
            "(false warnings) | — |"]
    for k, v in metrics["per_kind_detected"].items():
        rows.append(f"| non-CLEVR: {k} | — | {100 * v:.1f} % | {metrics['per_kind_auroc'][k]:.3f} |")
    rows.append(f"| non-CLEVR: all | {metrics['ood']} | {100 * metrics['ood_detected']:.1f} % | "
                f"**{metrics['auroc']:.3f}** |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ig_llm.training.eval.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model/default)")
    p.add_argument("--fit", nargs="+", required=True, help="in-domain render folders to fit on (training renders)")
    p.add_argument("--held-out", nargs="+", required=True, help="in-domain render folders never used for fitting")
    p.add_argument("--max-fit", type=int, default=800)
    p.add_argument("--max-held-out", type=int, default=500)
    p.add_argument("--ood", type=int, default=350, help="non-CLEVR pictures to make")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from ...model.inference import DEFAULT_MODEL_DIR

    model_dir = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    try:
        metrics = calibrate(model_dir, args.fit, args.held_out, args.max_fit, args.max_held_out, args.ood, args.seed,
                            log=lambda m: print(m, file=sys.stderr))
    except UserError as err:   # CalibrateError, ImageError, CheckpointError, ...: one sentence, exit 2
        from ...cli import one_sentence
        print(f"calibrate: {one_sentence(err)}", file=sys.stderr)
        return 2
    print(table(metrics))
    print(f"\nwrote {model_dir / 'calibration.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
