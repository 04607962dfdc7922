"""The paper's scene metrics (IG-LLM, official CLEVR evaluation), plus two extras.

Per scene (reference: shared/reference/igllm.md, "Official evaluation"):

* Predicted objects are matched to true objects by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) on the Euclidean distance between their 3D
  locations. With unequal counts, the surplus objects stay unmatched; they only affect
  the count metrics (and the all-attributes rate below, where a missed true object
  counts as wrong).
* ``l2``: mean location distance over matched pairs.
* ``ace``: |#pred - #true|; ``count_acc``: 1 if #pred == #true else 0.
* ``size_acc``, ``color_acc``, ``material_acc``: fraction of matched pairs whose
  attribute agrees.
* ``shape_acc``: the same over matched pairs whose TRUE object is not a sphere (this
  isolates CoGenT's cube/cylinder colour swap).
Extras (not in the paper's script):
* ``yaw_err_deg``: for matched pairs where both objects are cubes, the yaw difference
  modulo 90 degrees (cubes look the same every quarter turn), in [0, 45] degrees, averaged.
* ``all_attr_acc``: fraction of TRUE objects that are matched to a prediction with all
  four categorical attributes (shape, colour, material, size) right; unmatched true
  objects count as wrong. Location is not part of it.

The paper's 2D and SO(3) tasks (scene/task_program.py) use the same matching:
* 2D dots: ``l2`` is the distance between the dots in canvas units (the canvas is 1 wide);
  the CLEVR attribute metrics are None.
* Posed objects: ``rot_err_deg`` is the official geodesic error
  arccos((tr(R_true R_pred^T) - 1) / 2) in degrees; ``shape_acc`` compares the shape
  words; ``l2`` is None (every object sits at the origin).

An asset kit's scenes (scene/kits.py) are scored by the kit's lists instead: ``shape_acc``
over every matched pair, ``yaw_err_deg`` over matched pairs of one shape that has a yaw,
modulo that shape's symmetry (the kit's ``symmetry``, degrees).

Aggregation: each metric is computed per scene, then averaged over scenes. A scene whose
denominator for a metric is empty (no matched pairs for l2/size/colour/material; no
matched non-sphere for shape; no cube-cube pair for yaw; no true objects for
all_attr_acc) is left out of THAT metric's average, and the number of scenes that did
count is reported as ``scenes_<metric>``. ``ace`` and ``count_acc`` count every scene.
Accuracies are fractions in [0, 1] (the table prints them as percent).

Pure Python + numpy/scipy: no torch, no bpy.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...scene.program import Scene, SceneObject
from ...scene.rotations import geodesic_deg
from ...scene.task_program import DotObject, PoseObject

CATEGORICAL = ("shape", "color", "material", "size")
# metric name -> (is a percentage, lower is better), in table order
METRICS = {
    "count_acc": (True, False),
    "ace": (False, True),
    "l2": (False, True),
    "shape_acc": (True, False),
    "color_acc": (True, False),
    "material_acc": (True, False),
    "size_acc": (True, False),
    "all_attr_acc": (True, False),
    "yaw_err_deg": (False, True),
    "rot_err_deg": (False, True),
}
QUARTER_TURN_DEG = 90.0


def match_objects(true: Sequence[SceneObject], pred: Sequence[SceneObject]) -> list[tuple[int, int]]:
    """Hungarian matching on 3D location distance: list of (true index, pred index) pairs.

    Exactly min(len(true), len(pred)) pairs, minimising the summed Euclidean distance.
    """
    if not true or not pred:
        return []
    t = np.asarray([o.loc for o in true], dtype=np.float64)
    p = np.asarray([o.loc for o in pred], dtype=np.float64)
    cost = np.linalg.norm(t[:, None, :] - p[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols)]


def yaw_error_deg(true_yaw: float, pred_yaw: float, period_deg: float = QUARTER_TURN_DEG) -> float:
    """Smallest angle (degrees) between two yaws (radians) of a shape with `period_deg` symmetry."""
    d = math.degrees(true_yaw - pred_yaw) % period_deg
    return min(d, period_deg - d)


def _mean(values: list[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def scene_metrics(true: Scene, pred: Scene, domain=None) -> dict:
    """All metrics of one scene. A metric with an empty denominator is ``None``.
    `domain` with an asset kit (scene/kits.py) scores by the kit's attribute lists: shape
    accuracy over every matched pair, and the yaw error of every pair of one shape that
    has a yaw, modulo that shape's symmetry; without one, CLEVR's rules above."""
    pairs = match_objects(true.objects, pred.objects)
    n_true, n_pred = len(true.objects), len(pred.objects)
    out: dict = {"n_true": n_true, "n_pred": n_pred, "n_matched": len(pairs),
                 "ace": float(abs(n_pred - n_true)), "count_acc": float(n_pred == n_true)}
    matched = [(true.objects[i], pred.objects[j]) for i, j in pairs]
    task = _task_kind(true, pred)
    if task:
        return {**out, **_task_metrics(task, matched)}
    out["rot_err_deg"] = None
    out["l2"] = _mean([math.dist(t.loc, p.loc) for t, p in matched])
    for attr in ("size", "color", "material"):
        out[f"{attr}_acc"] = _mean([float(getattr(t, attr) == getattr(p, attr)) for t, p in matched])
    if getattr(domain, "kit", None) is not None:
        out["shape_acc"] = _mean([float(t.shape == p.shape) for t, p in matched])
        out["yaw_err_deg"] = _mean([yaw_error_deg(t.rotation, p.rotation, math.degrees(domain.rotation_symmetry(t.shape)))
                                    for t, p in matched if t.shape == p.shape and domain.has_rotation(t.shape)])
    else:
        out["shape_acc"] = _mean([float(t.shape == p.shape) for t, p in matched if t.shape != "sphere"])
        out["yaw_err_deg"] = _mean([yaw_error_deg(t.rotation, p.rotation) for t, p in matched
                                    if t.shape == "cube" and p.shape == "cube"])
    all_right = sum(all(getattr(t, a) == getattr(p, a) for a in CATEGORICAL) for t, p in matched)
    out["all_attr_acc"] = all_right / n_true if n_true else None
    return out


def _task_kind(true: Scene, pred: Scene) -> str | None:
    objs = [*true.objects, *pred.objects]
    if objs and all(isinstance(o, DotObject) for o in objs):
        return "dot"
    if objs and all(isinstance(o, PoseObject) for o in objs):
        return "pose"
    if any(isinstance(o, (DotObject, PoseObject)) for o in objs):
        raise ValueError("a scene mixes 2D dots, posed objects and CLEVR objects; score each task on its own")
    return None


def _task_metrics(kind: str, matched) -> dict:
    out = {name: None for name in METRICS if name not in ("ace", "count_acc")}
    if kind == "dot":
        out["l2"] = _mean([math.dist(t.loc, p.loc) for t, p in matched])
    else:
        out["rot_err_deg"] = _mean([geodesic_deg(t.matrix, p.matrix) for t, p in matched])
        out["shape_acc"] = _mean([float(t.shape == p.shape) for t, p in matched])
    return out


def aggregate(per_scene: list[dict]) -> dict:
    """Average every metric over the scenes where it is defined (see the module docstring)."""
    summary: dict = {"scenes": len(per_scene),
                     "true_objects": sum(s["n_true"] for s in per_scene),
                     "pred_objects": sum(s["n_pred"] for s in per_scene)}
    for name in METRICS:
        vals = [s[name] for s in per_scene if s[name] is not None]
        summary[name] = _mean(vals)
        summary[f"scenes_{name}"] = len(vals)
    return summary


def evaluate_scenes(truth: Sequence[Scene], preds: Sequence[Scene], domain=None) -> tuple[dict, list[dict]]:
    """(summary, per-scene metrics) for paired lists of true and predicted scenes."""
    if len(truth) != len(preds):
        raise ValueError(f"{len(truth)} true scenes but {len(preds)} predictions; pair them one to one.")
    per_scene = [scene_metrics(t, p, domain) for t, p in zip(truth, preds)]
    return aggregate(per_scene), per_scene
