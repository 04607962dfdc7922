"""Sample scenes of the paper's 2D and SO(3) tasks, with their train / held-out splits.

2D (domain ``2d``): the unit canvas is cut into an N x N grid (N = the domain's
``checkerboard_cells``, 8). Cell (i, j) covers x in [i/N, (i+1)/N), y in [j/N, (j+1)/N);
it is a TRAINING cell iff (i + j) is even: a sparse checkerboard, half the canvas.
Conditions: ``checkerboard`` (train: uniform over the even cells), ``heldout`` (uniform
over the odd cells: points never seen in training), ``uniform`` (test: uniform over the
whole canvas, as the paper's ``random`` split), and ``generic``: the frozen tower's own
pre-training world, our stand-in for the web images CLIP saw — a disc anywhere on the
canvas, of a random colour and radius on a random background (``sample_style``), never
the task's red 5-px dot on white. The LM never trains on it.

SO(3) (domain ``so3``): rotations are uniform (Haar). The OOD region is the geodesic
ball of radius ``ood_radius_deg`` (60 degrees) around the fixed rotation
``ood_center_rotvec`` (axis (1, 1, 1)/sqrt(3), angle 90 degrees), about 5.8 % of SO(3)
((t - sin t) / pi for t = 60 degrees). Conditions: ``id`` (uniform outside the ball:
training and in-distribution tests) and ``ood`` (uniform inside the ball). Both are
rejection samplers on the same test, so no rotation can be in both.

Determinism as the CLEVR sampler: image ``i`` comes from ``random.Random`` seeded with
``f"{split}:{seed}:{i}:{attempt}"``. Pure Python + NumPy: no bpy, no torch.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ...scene import rotations
from ...scene.domain import Domain
from ...scene.program import Scene
from ...scene.task_program import DotObject, PoseObject

MAX_TRIES = 10_000          # rejection sampling; the OOD ball accepts ~1 in 17


# -- 2D ------------------------------------------------------------------------------------
def grid_size(domain: Domain) -> int:
    return int(domain.task.get("checkerboard_cells", 8))


def cell_of(x: float, y: float, n: int) -> tuple[int, int]:
    """Grid cell (i, j) of a canvas point; 1.0 belongs to the last cell."""
    return (min(n - 1, max(0, int(math.floor(x * n)))), min(n - 1, max(0, int(math.floor(y * n)))))


def is_training_cell(i: int, j: int) -> bool:
    return (i + j) % 2 == 0


def is_training_point(x: float, y: float, n: int) -> bool:
    return is_training_cell(*cell_of(x, y, n))


def sample_dot(rng: random.Random, domain: Domain, condition: str) -> DotObject:
    domain.check_condition(condition)
    n = grid_size(domain)
    if condition in ("uniform", "generic"):
        return DotObject(rng.random(), rng.random())
    want_train = condition == "checkerboard"
    cells = [(i, j) for i in range(n) for j in range(n) if is_training_cell(i, j) == want_train]
    for _ in range(MAX_TRIES):
        i, j = rng.choice(cells)
        x, y = (i + rng.random()) / n, (j + rng.random()) / n
        if is_training_point(x, y, n) == want_train:   # rounding could land on the next cell
            return DotObject(x, y)
    raise RuntimeError("checkerboard sampling failed")   # unreachable but for a broken RNG


# the generic world's styles: radius in canvas px (the task's is 5), 8-bit sRGB colours
GENERIC_RADIUS_PX = (3.0, 12.0)
MIN_CONTRAST = 150          # least sum over R, G, B of |disc - background|: the disc stays visible


def sample_style(rng: random.Random) -> dict:
    """A generic-world look: {"dot_rgb", "dot_radius_px", "background_rgb"} (the domain
    file's keys: scene/task_builder.dot_style reads either the same way)."""
    for _ in range(MAX_TRIES):
        dot = [rng.randrange(256) for _ in range(3)]
        background = [rng.randrange(256) for _ in range(3)]
        if sum(abs(a - b) for a, b in zip(dot, background)) >= MIN_CONTRAST:
            return {"dot_rgb": dot, "dot_radius_px": round(rng.uniform(*GENERIC_RADIUS_PX), 2),
                    "background_rgb": background}
    raise RuntimeError("generic style sampling failed")   # unreachable but for a broken RNG


# -- SO(3) ---------------------------------------------------------------------------------
def ood_center(domain: Domain):
    return rotations.rotvec_to_matrix(domain.task.get("ood_center_rotvec", (0.0, 0.0, 0.0)))


def ood_radius_deg(domain: Domain) -> float:
    return float(domain.task.get("ood_radius_deg", 60.0))


def is_ood_rotation(matrix, domain: Domain) -> bool:
    """True iff the rotation lies in the held-out ball (never in training)."""
    return rotations.geodesic_deg(matrix, ood_center(domain)) < ood_radius_deg(domain)


def sample_pose(rng: random.Random, domain: Domain, condition: str) -> PoseObject:
    domain.check_condition(condition)
    want_ood = condition == "ood"
    center, radius = ood_center(domain), ood_radius_deg(domain)
    shape = domain.values("shape")[0]
    for _ in range(MAX_TRIES):
        m = rotations.random_rotation(rng)
        if (rotations.geodesic_deg(m, center) < radius) == want_ood:
            return PoseObject(shape, rotations.as_tuple(m))
    raise RuntimeError(f"no rotation {'inside' if want_ood else 'outside'} the OOD ball in {MAX_TRIES} tries; "
                       "check ood_radius_deg in the domain file")


# -- one dataset image ---------------------------------------------------------------------
@dataclass
class TaskSample:
    """Everything needed to render image `index` (no stage jitter: the camera is fixed)."""
    index: int
    attempt: int
    scene: Scene
    jitter: None = None
    style: dict | None = None      # 2d ``generic`` only: the disc's colour / radius, the background


def sample_task_image(seed: int, index: int, attempt: int = 0, *, domain: Domain, condition: str,
                      split: str = "train") -> TaskSample:
    rng = random.Random(f"{split}:{seed}:{index}:{attempt}")
    obj = sample_dot(rng, domain, condition) if domain.kind == "dot2d" else sample_pose(rng, domain, condition)
    style = sample_style(rng) if condition == "generic" else None
    return TaskSample(index, attempt, Scene([obj]), style=style)
