"""Sample CLEVR / CoGenT scenes by the original generator's rules (pure Python).

Rules (../shared/reference/clevr.md, facebookresearch/clevr-dataset-gen):

* N objects, uniform in 3..10; per object a size, then x, y ~ U(-3, 3), retried until
  the object keeps a 0.25 edge-to-edge gap to every placed object (radius = the size's
  scale; CLEVR never actually shrinks cubes) and no offset to a placed object, projected
  on the camera's left/right/front/behind ground directions, lies in (0, 0.4).
  After 50 failed tries for one object the whole scene restarts (same N).
* Shape uniform, then colour uniform among the colours the CoGenT condition allows for
  that shape, material uniform, yaw uniform in [0, 2*pi) (radians, as applied), z = scale.

An asset kit (scene/kits.py) brings its own rules: the count range, the ground extent,
the gap, the margin and the visibility threshold; a kit with ``rotation = "none"`` places
every object at yaw 0. Without a kit (the JSON domains) the rules are CLEVR's.

Determinism: everything for image ``i`` of a dataset comes from strings seeded into
``random.Random`` (``f"{split}:{seed}:{i}"`` for N and the stage jitter,
``f"{split}:{seed}:{i}:{attempt}"`` for the placement), so shards, workers and resumed
runs produce identical scenes.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ...errors import UserError
from ...scene.camera import CAMERA_LOCATION, StageJitter, ground_directions
from ...scene.domain import Domain, load_domain
from ...scene.program import Scene, SceneObject

X_RANGE = (-3.0, 3.0)
MIN_GAP = 0.25          # edge-to-edge distance between objects
MARGIN = 0.4            # along the camera's ground directions
MAX_RETRIES = 50        # per object, then the scene restarts
MARGIN_DIRECTIONS = ("left", "right", "front", "behind")


class SamplingError(UserError, RuntimeError):
    """The rules could not be satisfied (only with absurd settings, e.g. 40 objects, or a
    kit whose ground is small for its count); one sentence."""


def scene_rules(domain: Domain | None):
    """The sampling rules of a domain: its kit's, or CLEVR's (scene/kits.py SceneRules)."""
    kit = getattr(domain, "kit", None)
    if kit is not None:
        return kit.rules
    from ...scene.kits import SceneRules
    return SceneRules(min_objects=3, max_objects=10, ground=X_RANGE[1], min_distance=MIN_GAP, margin=MARGIN)


def _placement_ok(x: float, y: float, r: float, placed, directions, gap: float = MIN_GAP,
                  margin_rule: float = MARGIN) -> bool:
    """CLEVR's two tests of a candidate position against every placed object."""
    for (xx, yy, rr) in placed:
        dx, dy = x - xx, y - yy
        if math.hypot(dx, dy) - r - rr < gap:
            return False
        for name in MARGIN_DIRECTIONS:
            d = directions[name]
            margin = dx * d[0] + dy * d[1]
            if 0 < margin < margin_rule:
                return False
    return True


def sample_scene(rng: random.Random, domain: Domain | None = None, condition: str = "A",
                 camera=CAMERA_LOCATION, min_objects: int | None = None, max_objects: int | None = None,
                 num_objects: int | None = None, max_restarts: int = 1000) -> Scene:
    """One scene by CLEVR's rules (or the domain's kit's), objects in sampling order.

    `camera` is the (jittered) camera location: the margin rule uses its ground
    directions. `num_objects` fixes N (else uniform in [min_objects, max_objects], by
    default the rules' range).
    """
    domain = domain or load_domain()
    if condition not in domain.conditions:
        raise ValueError(f"Unknown condition {condition!r}; use one of {', '.join(domain.conditions)}.")
    rules = scene_rules(domain)
    lo = rules.min_objects if min_objects is None else min_objects
    hi = rules.max_objects if max_objects is None else max_objects
    n = num_objects if num_objects is not None else rng.randint(lo, hi)
    directions = ground_directions(camera)
    sizes, shapes, materials = domain.values("size"), domain.values("shape"), domain.values("material")
    ground = (-rules.ground, rules.ground)
    turns = getattr(domain.kit, "rotation", "yaw") != "none"
    for _ in range(max_restarts):
        placed, objects = [], []
        for _ in range(n):
            size = rng.choice(sizes)
            r = domain.scale(size)
            for _try in range(MAX_RETRIES):
                x, y = rng.uniform(*ground), rng.uniform(*ground)
                if _placement_ok(x, y, r, placed, directions, rules.min_distance, rules.margin):
                    break
            else:
                break  # this object found no place: restart the whole scene
            shape = rng.choice(shapes)
            color = rng.choice(domain.allowed_colors(shape, condition))
            material = rng.choice(materials)
            yaw = rng.uniform(0.0, 2.0 * math.pi) if turns else 0.0
            placed.append((x, y, r))
            objects.append(SceneObject(shape=shape, color=color, material=material, size=size,
                                       loc=(x, y, r), rotation=yaw))
        else:
            return Scene(objects)
    raise SamplingError(f"Could not place {n} objects by the {domain.name} rules in {max_restarts} restarts; "
                        "lower the kit's object count or min_distance, or widen its ground.")


@dataclass
class Sample:
    """Everything needed to render image `index` at one attempt."""
    index: int
    attempt: int
    scene: Scene
    jitter: StageJitter


def sample_image(seed: int, index: int, attempt: int = 0, *, domain: Domain | None = None,
                 condition: str = "A", split: str = "train", min_objects: int | None = None,
                 max_objects: int | None = None) -> Sample:
    """Scene + stage jitter of image `index` of the dataset `seed`, at retry `attempt`.

    N and the jitter depend only on (seed, index), as in CLEVR, where a scene that fails
    the visibility check is re-placed with the same object count under the same camera;
    the placement depends on the attempt too. The split name is part of the key, so a
    validation split rendered with the same seed never repeats training scenes.
    """
    base = random.Random(f"{split}:{seed}:{index}")
    jitter = StageJitter.sample(base)
    rules = scene_rules(domain)
    n = base.randint(rules.min_objects if min_objects is None else min_objects,
                     rules.max_objects if max_objects is None else max_objects)
    rng = random.Random(f"{split}:{seed}:{index}:{attempt}")
    scene = sample_scene(rng, domain, condition, camera=jitter.camera_location(), num_objects=n)
    return Sample(index, attempt, scene, jitter)


def shard_indices(count: int, shard: int = 0, num_shards: int = 1) -> range:
    """Indices shard, shard+n, shard+2n, ... below count (disjoint, together covering 0..count-1)."""
    if not (num_shards >= 1 and 0 <= shard < num_shards):
        raise ValueError(f"Shard {shard}/{num_shards} is invalid; use i/n with 0 <= i < n.")
    return range(shard, count, num_shards)


def image_name(split: str, index: int, ext: str = "png") -> str:
    """CLEVR's file names: CLEVR_{split}_{index:06d}.{ext}."""
    return f"CLEVR_{split}_{index:06d}.{ext}"


REFERENCE_AREA = 480 * 320      # CLEVR's min-visible-pixels rule is stated at this size


def default_min_pixels(width: int, height: int, at_480x320: int = 200) -> int:
    """CLEVR's 200 visible pixels at 480x320 (or a kit's min_pixels), scaled by image
    area (at least 1; 0 when the rule is off)."""
    if at_480x320 <= 0:
        return 0
    return max(1, round(at_480x320 * width * height / REFERENCE_AREA))
