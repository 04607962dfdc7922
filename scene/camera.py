"""CLEVR's camera and lamps as numbers, and the pinhole maths that goes with them.

Pure Python (no bpy): the sampler, the program's left-to-right order and the labels'
pixel_coords all use it, and the Blender stage (scene/stage.py) builds from the same
constants. Values from clevr.md (the original base scene read in Blender 4.x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

CAMERA_LOCATION = (7.4811, -6.5076, 5.3437)
LENS_MM, SENSOR_MM = 35.0, 32.0          # sensor fit AUTO: spans the larger image side
CLIP = (0.1, 100.0)

# name -> (location, area-light size, colour, power in W as Blender 4.x converts them)
LAMPS = {
    "Key":  ((6.4467, -2.9052, 4.2584), 0.5, (1.0, 0.932, 0.817), 78.54),
    "Fill": ((-4.6711, -4.0136, 3.0112), 0.5, (0.762, 0.818, 1.0), 23.56),
    "Back": ((-1.1685, 2.646, 5.8157), 1.0, (1.0, 1.0, 1.0), 39.27),
}
SUN = {"location": (11.66, -6.63, 25.82), "direction": (-0.414, 0.195, -0.889), "strength": 0.45}

CAMERA_JITTER, LAMP_JITTER = 0.5, 1.0    # uniform ± per axis, per image


@dataclass
class StageJitter:
    """Per-image offsets added to the camera and lamp locations (all keep tracking the origin)."""
    camera: tuple = (0.0, 0.0, 0.0)
    lamps: dict = field(default_factory=lambda: {name: (0.0, 0.0, 0.0) for name in LAMPS})

    @classmethod
    def sample(cls, rng) -> "StageJitter":
        """CLEVR's jitter: camera ±0.5, each lamp ±1.0 per axis, uniform. `rng`: random.Random."""
        cam = tuple(rng.uniform(-CAMERA_JITTER, CAMERA_JITTER) for _ in range(3))
        lamps = {n: tuple(rng.uniform(-LAMP_JITTER, LAMP_JITTER) for _ in range(3)) for n in LAMPS}
        return cls(cam, lamps)

    def camera_location(self) -> tuple:
        return tuple(c + d for c, d in zip(CAMERA_LOCATION, self.camera))

    def lamp_location(self, name: str) -> tuple:
        return tuple(c + d for c, d in zip(LAMPS[name][0], self.lamps.get(name, (0, 0, 0))))

    def as_dict(self) -> dict:
        return {"camera": list(self.camera), "lamps": {k: list(v) for k, v in self.lamps.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "StageJitter":
        return cls(tuple(d["camera"]), {k: tuple(v) for k, v in d["lamps"].items()})


def _norm(v):
    n = math.sqrt(sum(c * c for c in v)) or 1.0
    return tuple(c / n for c in v)


def camera_axes(camera=CAMERA_LOCATION):
    """(right, up, forward) unit vectors of a camera at `camera` tracking the origin, world
    +Z up (Blender's Track To with -Z forward, Y up)."""
    f = _norm(tuple(-c for c in camera))
    r = _norm((f[1], -f[0], 0.0))               # forward x world-up
    u = (r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0])
    return r, u, f


def project(point, camera=CAMERA_LOCATION, width: int = 480, height: int = 320):
    """World point -> CLEVR pixel_coords (px, py, depth): origin at the image's top-left,
    as the original generator writes them (from world_to_camera_view)."""
    r, u, f = camera_axes(camera)
    d = tuple(p - c for p, c in zip(point, camera))
    x, y, z = (sum(a * b for a, b in zip(d, axis)) for axis in (r, u, f))
    scale = (LENS_MM / SENSOR_MM) * max(width, height) / max(z, 1e-6)
    return (width / 2 + x * scale, height / 2 - y * scale, z)


def ground_directions(camera=CAMERA_LOCATION) -> dict:
    """CLEVR's scene 'directions': the camera's axes projected on the ground plane."""
    r, u, f = camera_axes(camera)
    behind = _norm((f[0], f[1], 0.0))
    left = _norm((-r[0], -r[1], 0.0))
    return {"behind": behind, "front": tuple(-c for c in behind), "left": left,
            "right": tuple(-c for c in left), "above": (0.0, 0.0, 1.0), "below": (0.0, 0.0, -1.0)}
