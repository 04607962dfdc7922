"""Stage 1 for the convolutional tower: learn to *see* every object from the renderer's truth.

The paper freezes a web-scale CLIP. None can be downloaded here, so the tower that stage 2
freezes learns here, from what the renderer knows exactly: each sample's Object Index
pass (``DIR/index/*.npz``) and its label. On the tower's stride-8 grid (16x24 cells at
192x128) every cell gets

* ``heat``   — a centre heat-map (Gaussian around each object's projected centre, 1 at the
  cell holding it): where the objects are, and how many;
* for cells an object covers (``owner``, from the index map): its shape, material and size
  (classes), its colour as a point in YIQ colour space, its ground position (x, y) and,
  for shapes with a yaw, (cos kθ, sin kθ) with k = 2π / the yaw period (a cube: k = 4, it
  looks the same every quarter turn).

The heads are one 1x1 convolution: whatever they read is linearly in the features the
LM gets. They are a pre-training device only; stage 2 drops them.

Task domains (docs/experiments.md). The 2D dot: the heat-map and its canvas position at
the cell holding its centre, both from the label. The SO(3) pose (one object at the
origin, always in view): its rotation as the matrix's first two rows (the continuous 6D
of Zhou et al.), read from the *mean* of the head over the grid — a linear read-out of the
pooled features, since the whole image shows one pose; no heat-map (always one object).

CoGenT without the shortcut. Condition A ties shape to colour (cubes are never red), and
dense supervision on A alone learns that tie completely. So every image is hue-rotated
with probability ``HUE_PROB`` by a random angle — a rotation of the chroma plane of YIQ,
the same 3x3 matrix for every pixel — and the colour *target* is rotated by the same
angle. Shape, material, size and position targets do not change. The tower therefore
sees every shape in every hue (shape cannot lean on colour), and the colour target
follows the pixels, not the shape (colour cannot lean on shape). Nothing from condition
B is rendered or used.

Output: ``RUN_DIR/stage1/vision.safetensors`` (the tower's ``visual.*`` tensors, BatchNorm
statistics included) and ``stage1.json``; checkpoints and ``--resume`` as in stage 2.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ...scene.rotations import matrix_to_sixd
from ..data.dataset import resize_nearest
from .loop import Loop, run_loop
from .options import RunOptions
from .runtime import (VISION_FILE, TrainError, finish_stage1, fmt_time, hardware, lr_factor,
                      open_stage1, resume_stage1, seed_all, stage1_stop,
                      wrap_ddp)

STRIDE = 8                 # tower grid: one cell per 8x8 pixels (config.tower_stride may make it 4)
MIN_CELL_PIXELS = 8        # an object owns a cell where it covers at least 1/8 of it
HEAT_SIGMA = 1.0           # centre heat-map spread, in cells
HUE_PROB = 0.75            # share of images hue-rotated (colour/shape decorrelation)
GROUND_SCALE = 3.0         # ground x, y / 3: CLEVR places objects in [-3, 3]
PEAK_THRESHOLD = 0.3       # probe decoding: a heat peak above this is an object
# NTSC YIQ: Y is brightness, (I, Q) the chroma plane a hue rotation turns
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
HEADS = (("heat", 1), ("shape", 3), ("material", 2), ("size", 2), ("colour", 3), ("ground", 2), ("yaw", 2))
# (CLEVR's; a kit's shape, material and size heads have one class per word of the kit: heads_for)
POSE_HEADS = (("rotation", 6),)     # so3: the 6D of the rotation matrix, from the pooled grid
# per-object target row: shape, material, size ids, Y I Q, ground x y, cos kθ, sin kθ, has-yaw
# (k = 2π / the shape's yaw period: a cube looks the same every quarter turn, k = 4)
# (a pose: fields 0-5 hold the matrix's first two rows instead)
OBJ_FIELDS = 11
HEADS_FILE = "heads.safetensors"    # the dense heads, kept for probing (learning_curve.py, baseline.py)


def heads_for(domain) -> tuple:
    """The dense heads a domain trains: the object heads (a class per shape, material and size
    word of the domain or kit), or the pooled pose head."""
    if domain.kind == "pose":
        return POSE_HEADS
    if domain.kind != "clevr":
        return HEADS
    classes = {a: len(domain.values(a)) for a in ("shape", "material", "size")}
    return tuple((name, classes.get(name, width)) for name, width in HEADS)


def yaw_turns(domain, shape: str) -> float:
    """k of the yaw target (cos kθ, sin kθ): 2π / the shape's yaw period; 0 = no yaw."""
    period = domain.rotation_symmetry(shape)
    return 2 * math.pi / period if period > 0 else 0.0


def hue_matrix(angle: float) -> np.ndarray:
    """RGB -> RGB matrix that turns the chroma plane by `angle` radians (grey stays grey)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return YIQ_TO_RGB @ rot @ RGB_TO_YIQ


def rotate_chroma(yiq: np.ndarray, angle: float) -> np.ndarray:
    """YIQ rows with (I, Q) turned by `angle` (what hue_matrix does to the pixels)."""
    c, s = math.cos(angle), math.sin(angle)
    out = yiq.copy()
    out[..., 1] = c * yiq[..., 1] - s * yiq[..., 2]
    out[..., 2] = s * yiq[..., 1] + c * yiq[..., 2]
    return out


def colour_yiq(domain) -> dict[str, np.ndarray]:
    """Each colour word's YIQ point (of its sRGB swatch), scaled so chroma spans about ±1
    (empty for the 2D dot domain, which has no colour words)."""
    if domain.kind == "dot2d":
        return {}
    return {c: (RGB_TO_YIQ @ np.asarray(domain.rgb(c))) * np.array([2.0, 3.0, 3.0])
            for c in domain.values("color")}


# ---------------------------------------------------------------------------------------
# targets (pure NumPy: tested against hand-made masks)
# ---------------------------------------------------------------------------------------
def cell_owners(index: np.ndarray, n_objects: int, stride: int = STRIDE,
                min_pixels: int = MIN_CELL_PIXELS) -> np.ndarray:
    """[H, W] object index map -> [H/stride, W/stride] owner per cell (0 = none): the object
    covering most of the cell, if it covers at least `min_pixels` of it."""
    gh, gw = index.shape[0] // stride, index.shape[1] // stride
    blocks = index[:gh * stride, :gw * stride].reshape(gh, stride, gw, stride)
    counts = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(1, n_objects + 1)]) if n_objects \
        else np.zeros((1, gh, gw), dtype=int)
    owner = counts.argmax(0) + 1
    owner[counts.max(0) < min_pixels] = 0
    return owner.astype(np.uint8)


def centre_heatmap(centres, grid_hw: tuple[int, int], stride: int = STRIDE, sigma: float = HEAT_SIGMA) -> np.ndarray:
    """Pixel centres [(x, y), ...] -> [gh, gw] heat: max of Gaussians, exactly 1 at each
    centre's own cell (the positives of the focal loss)."""
    gh, gw = grid_hw
    heat = np.zeros((gh, gw), dtype=np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw]
    for x, y in centres:
        u, v = x / stride - 0.5, y / stride - 0.5          # cell-centre coordinates
        heat = np.maximum(heat, np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma ** 2)))
        j, i = int(min(max(x // stride, 0), gw - 1)), int(min(max(y // stride, 0), gh - 1))
        heat[i, j] = 1.0
    return heat


def object_rows(scene, domain, yiq: dict, max_objects: int) -> np.ndarray:
    """[max_objects + 1, OBJ_FIELDS]: row k = object k (1-based, label order); row 0 unused."""
    rows = np.zeros((max_objects + 1, OBJ_FIELDS), dtype=np.float32)
    for k, o in enumerate(scene.objects[:max_objects], start=1):
        if domain.kind == "pose":       # the rotation's 6D (scene/rotations.py), unique and continuous
            rows[k, 0:6] = matrix_to_sixd(o.matrix)
            continue
        if domain.kind == "dot2d":      # the dot: only its canvas position, as ground in [-1, 1]
            rows[k, 6:8] = [2.0 * o.x - 1.0, 2.0 * o.y - 1.0]
            continue
        turns = yaw_turns(domain, o.shape)
        theta = (turns or 4.0) * float(o.rotation or 0.0)
        rows[k] = [domain.values("shape").index(o.shape), domain.values("material").index(o.material),
                   domain.values("size").index(o.size), *yiq[o.color],
                   o.loc[0] / GROUND_SCALE, o.loc[1] / GROUND_SCALE, math.cos(theta), math.sin(theta),
                   float(turns > 0)]
    return rows


def dense_targets(record: dict, scene, index: np.ndarray | None, dims: tuple[int, int], domain, yiq: dict,
                  max_objects: int, stride: int = STRIDE):
    """One sample's targets at tower size `dims` (width, height) on a `stride`-px grid: owner,
    heat, object rows."""
    w, h = dims
    n = min(len(scene.objects), max_objects)
    rows = object_rows(scene, domain, yiq, max_objects)
    if domain.kind == "pose":           # one pose per image, read from the pooled grid: no cells
        grid = (h // stride, w // stride)
        return np.zeros(grid, dtype=np.uint8), np.zeros(grid, dtype=np.float32), rows
    if domain.kind == "dot2d":
        # a 5-px dot shrinks to a few pixels at tower size, too few to own a cell by area:
        # its centre's cell owns it (canvas units -> pixels: x right, y down); no index map
        centres = [(o.x * w, o.y * h) for o in scene.objects[:n]]
        heat = centre_heatmap(centres, (h // stride, w // stride), stride)
        owner = (heat == 1.0).astype(np.uint8)
        return owner, heat, rows
    # an object owns a cell where it covers 1/8 of it, whatever the cell's size
    owner = cell_owners(resize_nearest(index, h, w), n, stride, max(1, MIN_CELL_PIXELS * stride ** 2 // 64))
    sx, sy = w / record.get("width", w), h / record.get("height", h)
    centres = [(o["pixel_coords"][0] * sx, o["pixel_coords"][1] * sy) for o in record["objects"][:n]]
    return owner, centre_heatmap(centres, owner.shape, stride), rows


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
class DenseDataset:
    """item (step, i) -> (step, i, uint8 pixels [3, H, W], owner, heat, object rows, index map
    at the pixels' size or None (`keep_index`, for recolouring), colour names in label order)."""

    def __init__(self, source, dims, domain, max_objects: int, workers: int = 0, keep_index: bool = False,
                 stride: int = STRIDE):
        from ..data.dataset import SceneDataset
        self.images = SceneDataset(source, dims, cache=True, workers=workers, raw=True, index_maps=keep_index)
        yiq = colour_yiq(domain)

        def index(i):   # read once: the maps SceneDataset kept, else from the source
            if domain.kind in ("dot2d", "pose"):   # task targets come from the label (no index map)
                return None
            return self.images.index[i] if self.images.index is not None else source.index_map(i)

        self.targets = [dense_targets(source.record(i), self.images.scenes[i], index(i), dims, domain, yiq,
                                      max_objects, stride) for i in range(len(source))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key):
        step, i = key
        index = self.images.index[i] if self.images.index is not None else None
        colours = [getattr(o, "color", None) for o in self.images.scenes[i].objects]
        return (step, i, self.images.pixels(i), *self.targets[i], index, colours)


class DenseCollator:
    """Stacks items, recolouring objects (training/data/recolour.py) and hue-rotating images, with
    their colour targets, seeded by (seed, step, i). Recolouring comes first: it models the
    render's own colours."""

    def __init__(self, seed: int, hue_prob: float = HUE_PROB, recolour: float = 0.0, domain=None):
        from ..data.recolour import palette_linear
        self.seed, self.hue_prob, self.recolour = seed, hue_prob, recolour
        # a pose's rows hold its rotation, not a colour: a hue rotation leaves them alone
        self.colour_rows = domain is None or domain.kind != "pose"
        self.palette = palette_linear(domain) if recolour > 0 else None
        self.yiq = colour_yiq(domain) if recolour > 0 else None

    def __call__(self, items):
        import torch
        from ...model.batching import CLIP_MEAN, CLIP_STD
        from ..data.recolour import recolour_example
        pixels, owners, heats, objs = [], [], [], []
        for step, i, pix, owner, heat, rows, index, colours in items:
            rows = rows.copy()
            # its own stream, so runs without recolouring draw exactly what they drew before
            rc = np.random.default_rng([self.seed, step, i, 1])
            if self.recolour > 0 and rc.random() < self.recolour:
                pix, new = recolour_example(pix, index, colours, rc, self.palette)
                for k, c in enumerate(new[:len(rows) - 1], start=1):
                    rows[k, 3:6] = self.yiq[c]
            x = pix.float() / 255.0
            rng = np.random.default_rng([self.seed, step, i])
            if rng.random() < self.hue_prob:
                angle = rng.uniform(0.0, 2.0 * math.pi)
                m = torch.tensor(hue_matrix(angle), dtype=torch.float32)
                x = (m @ x.reshape(3, -1)).reshape(x.shape).clamp(0.0, 1.0)
                if self.colour_rows:
                    rows[:, 3:6] = rotate_chroma(rows[:, 3:6], angle)
            pixels.append(x)
            owners.append(torch.from_numpy(owner.astype(np.int64)))
            heats.append(torch.from_numpy(heat))
            objs.append(torch.from_numpy(rows))
        x = torch.stack(pixels)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return {"pixel_values": (x - mean) / std, "owner": torch.stack(owners), "heat": torch.stack(heats),
                "objects": torch.stack(objs)}


# ---------------------------------------------------------------------------------------
# the model: tower + one 1x1 convolution of heads
# ---------------------------------------------------------------------------------------
def build_dense_model(config):
    import torch
    from torch import nn
    from ...model.vision import ConvTower
    from ...scene.domain import load_domain
    heads = heads_for(load_domain(config.domain))

    class DenseModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = ConvTower(config)
            self.heads = nn.Conv2d(self.visual.channels, sum(c for _, c in heads), 1)

        def forward(self, pixel_values):
            out = self.heads(self.visual.features(pixel_values))
            return dict(zip([n for n, _ in heads], torch.split(out, [c for _, c in heads], dim=1)))

    return DenseModel()


def focal_heat_loss(logits, target):
    """CenterNet's penalty-reduced focal loss on the centre heat-map (mean per positive)."""
    import torch
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    pos_loss = -(1 - p) ** 2 * torch.log(p) * pos
    neg_loss = -(1 - target) ** 4 * p ** 2 * torch.log(1 - p) * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def dense_loss(out: dict, batch: dict) -> tuple:
    """Total loss and its parts. Attribute terms are read at owned cells only."""
    import torch
    import torch.nn.functional as F
    owner, objs = batch["owner"], batch["objects"]               # [B, h, w], [B, K+1, F]
    if "rotation" in out:       # a pose: the grid's mean against object 1's 6D
        loss = F.mse_loss(out["rotation"].mean(dim=(2, 3)), objs[:, 1, 0:6])
        return loss, {"rotation": float(loss.detach())}
    b = owner.shape[0]
    cell = torch.gather(objs, 1, owner.view(b, -1, 1).expand(-1, -1, OBJ_FIELDS))  # [B, h*w, F]
    mask = owner.view(b, -1) > 0

    def at(name):   # [B, C, h, w] -> [n_owned, C]
        o = out[name]
        return o.flatten(2).transpose(1, 2)[mask]

    t = cell[mask]
    parts = {"heat": focal_heat_loss(out["heat"][:, 0], batch["heat"])}
    if mask.any():
        parts["shape"] = F.cross_entropy(at("shape"), t[:, 0].long())
        parts["material"] = F.cross_entropy(at("material"), t[:, 1].long())
        parts["size"] = F.cross_entropy(at("size"), t[:, 2].long())
        parts["colour"] = F.mse_loss(at("colour"), t[:, 3:6])
        parts["ground"] = 10.0 * F.mse_loss(at("ground"), t[:, 6:8])
        has_yaw = t[:, 10] > 0
        if has_yaw.any():
            parts["yaw"] = F.mse_loss(at("yaw")[has_yaw], t[has_yaw][:, 8:10])
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------
# probe: decode the heads directly (a quick read-out of what the tower sees; not the product)
# ---------------------------------------------------------------------------------------
def probe_scenes(out: dict, domain, yiq: dict) -> list:
    """Heads -> Scenes: every 3x3-local heat maximum above PEAK_THRESHOLD is one object
    (a pose: its one object under the rotation the pooled head reads)."""
    import torch
    import torch.nn.functional as F
    from ...scene.program import Scene, SceneObject
    if "rotation" in out:
        from ...scene.rotations import as_tuple, sixd_to_matrix
        from ...scene.task_program import PoseObject
        shape = domain.values("shape")[0]
        return [Scene([PoseObject(shape, as_tuple(sixd_to_matrix(v)))])
                for v in out["rotation"].mean(dim=(2, 3)).tolist()]
    heat = torch.sigmoid(out["heat"][:, 0])
    peaks = (heat == F.max_pool2d(heat[:, None], 3, 1, 1)[:, 0]) & (heat > PEAK_THRESHOLD)
    names = {a: domain.values(a) for a in ("shape", "material", "size")}
    colours = list(yiq)
    table = torch.tensor(np.stack([yiq[c] for c in colours]), dtype=torch.float32)
    scenes = []
    for b in range(heat.shape[0]):
        objs = []
        for i, j in peaks[b].nonzero().tolist():
            shape = names["shape"][int(out["shape"][b, :, i, j].argmax())]
            size = names["size"][int(out["size"][b, :, i, j].argmax())]
            colour = colours[int(((table - out["colour"][b, :, i, j]) ** 2).sum(1).argmin())]
            gx, gy = (out["ground"][b, :, i, j] * GROUND_SCALE).tolist()
            turns = yaw_turns(domain, shape)
            yaw = math.atan2(*out["yaw"][b, :, i, j].tolist()[::-1]) / turns if turns else 0.0
            objs.append(SceneObject(shape=shape, color=colour,
                                    material=names["material"][int(out["material"][b, :, i, j].argmax())],
                                    size=size, loc=(gx, gy, domain.scale(size)), rotation=yaw))
        scenes.append(Scene(objs))
    return scenes


def probe_metrics(model, source, dims, domain, batch_size: int = 64) -> dict:
    """Paper metrics of the probe decoding on a held-out dataset."""
    import torch
    from ...model.batching import preprocess_image
    from ..eval.metrics import evaluate_scenes
    yiq = colour_yiq(domain)
    model.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(source), batch_size):
            x = torch.stack([preprocess_image(source.image(i), dims)
                             for i in range(s, min(len(source), s + batch_size))])
            preds += probe_scenes(model(x), domain, yiq)
    summary, _ = evaluate_scenes([source.scene(i) for i in range(len(source))], preds)
    return summary


def load_dense_model(stage1_dir, config):
    """The dense network saved by a finished stage 1 (``vision.safetensors`` + ``heads.safetensors``
    in `stage1_dir`), in eval mode; for the probe and the NS-VQA-style baseline."""
    from safetensors.torch import load_file
    stage1_dir = Path(stage1_dir)
    model = build_dense_model(config)
    for part, name in ((model.visual, VISION_FILE), (model.heads, HEADS_FILE)):
        path = stage1_dir / name
        if not path.is_file():
            raise TrainError(f"{path} does not exist; finish stage 1 first (`ig_llm train --stage 1 --resume`).")
        prefix = "visual." if part is model.visual else "heads."
        try:
            part.load_state_dict({k[len(prefix):]: v for k, v in load_file(str(path)).items()})
        except Exception as err:   # safetensors' own error types, or tensors of another tower
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TrainError(f"{path} cannot be used ({first}); run that stage 1 again, or use the "
                             "--preset/--set it was trained with.") from None
    return model.eval()


# ---------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------
def run_dense_stage1(args, config) -> Path | None:
    """Train the conv tower (or skip when RUN_DIR/stage1/vision.safetensors exists). Returns
    that path, or None when the run stopped early (--stop-at with --stage 1, --max-minutes)."""
    import torch
    from torch.utils.data import DataLoader

    from ...scene.domain import load_domain
    from ..data.dataset import StepBatches, open_training_sources

    run_dir, out_file, dist, device, log = open_stage1(args)
    if out_file.is_file():
        log(f"stage 1: {out_file} exists, skipped")
        return out_file

    domain = load_domain(config.domain)
    if args.recolour > 0:
        from ..data.recolour import check_recolour
        try:
            check_recolour(domain)
        except ValueError as err:
            raise TrainError(str(err)) from None
    hue_prob = HUE_PROB if args.hue_prob is None else args.hue_prob
    seed_all(args.seed)
    model = build_dense_model(config).to(device)
    if args.stage1_init:        # continue from a finished tower (a resume then overwrites it)
        model.load_state_dict(load_dense_model(args.stage1_init, config).state_dict())
    steps, bsz = args.stage1_steps, args.stage1_batch_size
    warmup = max(1, int(round(0.05 * steps)))
    opt = torch.optim.AdamW(model.parameters(), lr=args.stage1_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    options = RunOptions.from_args(args)
    start = resume_stage1(run_dir, args, options, model, opt, sched, dist, device, log)
    wrapped = wrap_ddp(model, dist, device)

    source = open_training_sources(args.data, args.limit)
    t_load = time.time()
    data = DenseDataset(source, config.image_dims, domain, config.max_objects, workers=args.workers,
                        keep_index=args.recolour > 0, stride=config.tower_stride)
    if start == 0:
        n_vis = sum(p.numel() for p in model.visual.parameters())
        init = f", starting from {args.stage1_init}" if args.stage1_init else ""
        log(f"stage 1 (dense): conv tower ({n_vis / 1e6:.2f} M params{init}) on {len(source)} images "
            f"(targets + pixels in {time.time() - t_load:.0f} s), hue rotation p={hue_prob}, recolour "
            f"p={args.recolour}, {steps} steps x {bsz} x {dist.world} process(es); device {hardware(device)}")
    stop = stage1_stop(args, steps)
    loader = DataLoader(data, batch_sampler=StepBatches(len(data), bsz, args.seed + 1, start, stop, dist.rank,
                                                        dist.world),
                        num_workers=0, collate_fn=DenseCollator(args.seed, hue_prob, args.recolour, domain),
                        generator=torch.Generator())
    model.train()

    def step_fn(step, batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, parts = dense_loss(wrapped(batch["pixel_values"]), batch)
        if not torch.isfinite(loss):
            raise TrainError(f"Stage 1 loss became {loss.item()} at step {step}; lower --stage1-lr.")
        return loss, parts

    def log_line(step, window, rate, elapsed, _grad):
        mean = {k: sum(w.get(k, 0.0) for w in window) / len(window) for k in window[-1]}
        text = (f"stage 1 step {step}/{steps} " + " ".join(f"{k} {v:.4f}" for k, v in mean.items())
                + f" lr {sched.get_last_lr()[0]:.2e} {rate * bsz * dist.world:.1f} img/s elapsed "
                  f"{fmt_time(elapsed)} eta {fmt_time((steps - step) / max(rate, 1e-9))}")
        return text, {"loss": f"{sum(mean.values()):.3f}"}

    meta = {"stage": "dense", "options": options.to_dict()}
    loop = Loop("stage 1", model, wrapped, opt, sched, args, dist, device, run_dir, log, start,
                total=lambda: steps, stop=lambda: stop, meta=lambda: meta)
    end = run_loop(loop, loader, step_fn, log_line)
    step, stopped, t0 = end.step, end.stopped_early, end.started
    return finish_stage1(args, step, steps, stopped, t0, run_dir, out_file, model.visual,
                         {"kind": "dense", "batch_size": bsz, "images": len(source), "hue_prob": hue_prob,
                          "recolour": args.recolour, "init": args.stage1_init},
                         dist, device, log, extra_tensors={HEADS_FILE: model.heads})
