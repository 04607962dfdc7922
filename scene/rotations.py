"""Rotation representations of the pose tasks, to and from 3x3 matrices (pure NumPy).

The paper's four forms of ``rotation=(…)`` (shared/reference/igllm.md):

* ``euler``     extrinsic x-y-z angles (scipy ``"xyz"``; Blender's ``XYZ`` Euler mode),
* ``euler_int`` intrinsic X-Y-Z angles (scipy ``"XYZ"``),
* ``aa``        axis-angle vector (axis * angle, angle in [0, pi]),
* ``6d``        the first two ROWS of the matrix; back to a matrix by the cross product
  for the third row, then the nearest rotation (SVD), as ``R.from_matrix`` does.

No scipy: Blender bundles NumPy only. tests/test_domains_2d_so3.py checks every
conversion against ``scipy.spatial.transform.Rotation``. Angles are radians.
"""
from __future__ import annotations

import math
import random

import numpy as np

REPRESENTATIONS = {"euler": 3, "euler_int": 3, "aa": 3, "6d": 6}   # name -> numbers in the tuple
_GIMBAL_EPS = 1e-9


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


# -- Euler ---------------------------------------------------------------------------------
def euler_xyz_to_matrix(angles) -> np.ndarray:
    """Extrinsic x, then y, then z: R = Rz @ Ry @ Rx."""
    x, y, z = (float(a) for a in angles)
    return _rz(z) @ _ry(y) @ _rx(x)


def matrix_to_euler_xyz(m) -> tuple[float, float, float]:
    """Extrinsic xyz angles, y in [-pi/2, pi/2]; at gimbal lock x = 0 (as scipy)."""
    m = np.asarray(m, dtype=np.float64)
    cy = math.hypot(m[0, 0], m[1, 0])          # atan2, not asin: exact near +-pi/2
    y = math.atan2(-m[2, 0], cy)
    if cy > _GIMBAL_EPS:
        x = math.atan2(m[2, 1], m[2, 2])
        z = math.atan2(m[1, 0], m[0, 0])
    else:   # cos(y) = 0: only x -/+ z is defined; with x = 0, R = Rz @ Ry gives z
        x = 0.0
        z = math.atan2(-m[0, 1], m[1, 1])
    return (x, y, z)


def euler_XYZ_to_matrix(angles) -> np.ndarray:
    """Intrinsic X, then Y', then Z'': R = Rx @ Ry @ Rz."""
    x, y, z = (float(a) for a in angles)
    return _rx(x) @ _ry(y) @ _rz(z)


def matrix_to_euler_XYZ(m) -> tuple[float, float, float]:
    """Intrinsic XYZ angles, Y in [-pi/2, pi/2]; at gimbal lock Z = 0 (as scipy)."""
    m = np.asarray(m, dtype=np.float64)
    cy = math.hypot(m[1, 2], m[2, 2])
    y = math.atan2(m[0, 2], cy)
    if cy > _GIMBAL_EPS:
        x = math.atan2(-m[1, 2], m[2, 2])
        z = math.atan2(-m[0, 1], m[0, 0])
    else:
        z = 0.0                                 # R = Rx @ Ry gives x
        x = math.atan2(m[2, 1], m[1, 1])
    return (x, y, z)


# -- axis-angle ----------------------------------------------------------------------------
def rotvec_to_matrix(v) -> np.ndarray:
    """Rodrigues' formula."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


def matrix_to_quat(m) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, by the numerically stable branch choice."""
    m = np.asarray(m, dtype=np.float64)
    tr = np.trace(m)
    cands = [tr, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(cands))
    if i == 0:
        w = math.sqrt(1.0 + tr) / 2
        q = np.array([(m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w),
                      (m[1, 0] - m[0, 1]) / (4 * w), w])
    else:
        a = i - 1
        b, c = (a + 1) % 3, (a + 2) % 3
        s = math.sqrt(max(0.0, 1.0 + m[a, a] - m[b, b] - m[c, c])) * 2
        q = np.empty(4)
        q[a] = s / 4
        q[b] = (m[b, a] + m[a, b]) / s
        q[c] = (m[c, a] + m[a, c]) / s
        q[3] = (m[c, b] - m[b, c]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quat_to_matrix(q) -> np.ndarray:
    x, y, z, w = (float(c) for c in np.asarray(q, dtype=np.float64) / np.linalg.norm(q))
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_rotvec(m) -> tuple[float, float, float]:
    """Axis * angle with angle in [0, pi] (from the w >= 0 quaternion, as scipy)."""
    q = matrix_to_quat(m)
    s = float(np.linalg.norm(q[:3]))
    angle = 2 * math.atan2(s, q[3])
    if s < 1e-12:
        return (0.0, 0.0, 0.0)
    return tuple(float(c) for c in q[:3] / s * angle)


# -- 6D ------------------------------------------------------------------------------------
def nearest_rotation(m) -> np.ndarray:
    """The rotation matrix closest (Frobenius) to `m`, by SVD with the sign fixed."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def sixd_to_matrix(v) -> np.ndarray:
    """Rows 1 and 2 as given, row 3 = row1 x row2, then the nearest rotation."""
    v = np.asarray(v, dtype=np.float64).reshape(2, 3)
    return nearest_rotation(np.vstack([v, np.cross(v[0], v[1])]))


def matrix_to_sixd(m) -> tuple[float, ...]:
    return tuple(float(c) for c in np.asarray(m, dtype=np.float64)[:2].ravel())


# -- the representation table --------------------------------------------------------------
_TO = {"euler": matrix_to_euler_xyz, "euler_int": matrix_to_euler_XYZ, "aa": matrix_to_rotvec,
       "6d": matrix_to_sixd}
_FROM = {"euler": euler_xyz_to_matrix, "euler_int": euler_XYZ_to_matrix, "aa": rotvec_to_matrix,
         "6d": sixd_to_matrix}


def check_representation(name: str) -> str:
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown rotation representation {name!r}; use one of {', '.join(REPRESENTATIONS)}")
    return name


def to_params(m, representation: str) -> tuple[float, ...]:
    """Matrix -> the numbers of ``rotation=(…)`` in `representation`."""
    return tuple(float(c) for c in _TO[check_representation(representation)](m))


def from_params(values, representation: str) -> np.ndarray:
    """The numbers of ``rotation=(…)`` in `representation` -> rotation matrix."""
    values = tuple(float(c) for c in values)
    n = REPRESENTATIONS[check_representation(representation)]
    if len(values) != n:
        raise ValueError(f"{representation} rotation needs {n} numbers, got {len(values)}")
    return _FROM[representation](values)


# -- distances and sampling ----------------------------------------------------------------
def geodesic_deg(a, b) -> float:
    """The official pose error: arccos((tr(A B^T) - 1) / 2) in degrees, in [0, 180]."""
    c = (float(np.trace(np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T)) - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def random_rotation(rng: random.Random) -> np.ndarray:
    """Uniform (Haar) rotation from a normalised 4D Gaussian quaternion."""
    while True:
        q = np.array([rng.gauss(0.0, 1.0) for _ in range(4)])
        n = float(np.linalg.norm(q))
        if n > 1e-6:
            return quat_to_matrix(q / n)


def as_tuple(m) -> tuple[tuple[float, ...], ...]:
    """A matrix as nested tuples (hashable, JSON-friendly)."""
    return tuple(tuple(float(c) for c in row) for row in np.asarray(m, dtype=np.float64))
