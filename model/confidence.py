"""How much a picture looks like the training scenes: ``confidence`` (0-1) and ``in_domain``.

The model always writes *some* program; on a photo or a blank image it is a guess. The
visual tower already summarises what it sees, so the check is a density test on its
tokens: the mean and standard deviation of the tower tokens over the image (one vector
per picture) are compared with the same vectors of in-domain renders by a PCA
Mahalanobis distance plus the part PCA cannot explain (probabilistic PCA's score).

``calibration.json`` beside the model (written by ``python -m ig_llm.training.eval.calibrate``)
holds the mean, the principal directions and variances, the residual variance and the
threshold: ``in_domain = score <= threshold`` and ``confidence = 1 / (1 + exp((score -
threshold) / scale))`` (0.5 at the threshold). No file: every picture gets confidence
None and in_domain True (nothing is claimed). Pure NumPy: used by both runtimes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "calibration.json"
FEATURE = "tower-mean-std"


def image_feature(tokens) -> np.ndarray:
    """Tower tokens [N, width] of one image -> its feature vector [2 * width]."""
    t = np.asarray(tokens, dtype=np.float64)
    return np.concatenate([t.mean(0), t.std(0)])


@dataclass
class DomainCheck:
    mean: np.ndarray
    components: np.ndarray        # [k, D] orthonormal rows
    variances: np.ndarray         # [k]
    residual_variance: float
    threshold: float
    scale: float
    meta: dict

    def score(self, feature) -> float:
        """Mahalanobis-like distance (per dimension) of one feature vector; larger = stranger."""
        d = np.asarray(feature, np.float64) - self.mean
        z = self.components @ d
        resid = float(d @ d - z @ z)
        k, dim = len(self.variances), len(self.mean)
        return float((np.sum(z * z / self.variances) + max(resid, 0.0) / self.residual_variance) / (k + 1)
                     ) if dim else 0.0

    def judge(self, feature) -> tuple[float, bool]:
        """(confidence in [0, 1], in_domain) of one image's feature vector."""
        s = self.score(feature)
        x = (s - self.threshold) / self.scale
        conf = 0.0 if x > 60 else 1.0 / (1.0 + math.exp(x))
        return round(conf, 4), bool(s <= self.threshold)

    # -- fitting and files ------------------------------------------------------------------
    @classmethod
    def fit(cls, features, components: int = 16, meta: dict | None = None) -> "DomainCheck":
        x = np.asarray(features, np.float64)
        mean = x.mean(0)
        xc = x - mean
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        k = max(1, min(components, len(x) - 1, x.shape[1]))
        var = (sv[:k] ** 2) / max(1, len(x) - 1) + 1e-9
        rest = (sv[k:] ** 2).sum() / max(1, len(x) - 1) / max(1, x.shape[1] - k)
        return cls(mean, vt[:k], var, float(rest) + 1e-9, threshold=float("inf"), scale=1.0, meta=dict(meta or {}))

    def set_threshold(self, in_domain_scores, quantile: float = 0.99, margin: float = 1.25) -> None:
        """Threshold = `margin` x the `quantile` of in-domain scores not used for fitting."""
        s = np.asarray(in_domain_scores, np.float64)
        self.threshold = float(np.quantile(s, quantile) * margin)
        self.scale = float(max(np.std(s), 1e-6))

    def to_dict(self) -> dict:
        return {"feature": FEATURE, "mean": self.mean.tolist(), "components": self.components.tolist(),
                "variances": self.variances.tolist(), "residual_variance": self.residual_variance,
                "threshold": self.threshold, "scale": self.scale, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "DomainCheck":
        if d.get("feature") != FEATURE:
            raise ValueError(f"unknown feature {d.get('feature')!r}")
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["components"], np.float64),
                   np.asarray(d["variances"], np.float64), float(d["residual_variance"]),
                   float(d["threshold"]), float(d["scale"]), dict(d.get("meta", {})))

    def save(self, model_dir) -> Path:
        """Write ``calibration.json`` into the model folder atomically."""
        from ..atomic import write_text

        return write_text(Path(model_dir) / FILE, json.dumps(self.to_dict()) + "\n")


def load_domain_check(model_dir, width: int | None = None) -> DomainCheck | None:
    """The model folder's calibration, or None when there is none (or it does not fit the
    tower: a model retrained without recalibrating claims nothing rather than nonsense)."""
    path = Path(model_dir) / FILE
    if not path.is_file():
        return None
    try:
        check = DomainCheck.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
    if width is not None and len(check.mean) != 2 * width:
        return None
    return check
