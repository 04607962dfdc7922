"""Programs of the paper's two parameter-space tasks (domain kinds ``dot2d`` and ``pose``).

``dot2d`` (domain ``2d``)::

    add(x=0.123, y=0.456)

one red dot; x to the right and y DOWN from the canvas' top-left corner, both in [0, 1]
(pixel = value * canvas size). Character numbers are ``{:.3f}`` without a sign, as the paper.

``pose`` (domain ``so3`` / ``so3:REPR``)::

    add(shape='tripod', rotation=(+0.300, -1.100, +2.000))

one object at the origin; ``rotation=(…)`` in the domain's representation
(scene/rotations.py). A :class:`PoseObject` holds the rotation as a matrix, so a scene
is the same whichever form its program was written in.

``program.parse`` / ``program.format_program`` / the CLEVR-record helpers hand these
kinds to this module, which reads its lines with the tokenizer and readers of parsing.py.
Pure Python + NumPy: no bpy, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import rotations
from .domain import Domain
from .parsing import CHAR_NUMBER_FORMAT, Line, ProgramError, number_writer, parse_call, parse_number, parse_word

DOT_FIELDS = ("x", "y")
POSE_FIELDS = ("shape", "rotation")
DOT_SHAPE = "dot"      # the shape name a dot's scene record carries


@dataclass(frozen=True)
class DotObject:
    """The 2D task's dot, in canvas units (0..1, y down)."""
    x: float
    y: float
    shape: str = DOT_SHAPE

    @property
    def loc(self) -> tuple[float, float]:
        """What the Hungarian matcher and the l2 metric compare: canvas units."""
        return (self.x, self.y)


@dataclass(frozen=True)
class PoseObject:
    """One object at the origin under the rotation `matrix` (3x3, rows)."""
    shape: str
    matrix: tuple

    @property
    def loc(self) -> tuple[float, float, float]:
        return (0.0, 0.0, 0.0)

    @property
    def euler(self) -> tuple[float, float, float]:
        """Extrinsic xyz angles (radians): the paper's ground truth, Blender's XYZ mode."""
        return rotations.matrix_to_euler_xyz(self.matrix)

    @classmethod
    def from_euler(cls, shape: str, xyz) -> "PoseObject":
        return cls(shape, rotations.as_tuple(rotations.euler_xyz_to_matrix(xyz)))


def is_task(domain: Domain) -> bool:
    return domain.kind in ("dot2d", "pose")


def fields(domain: Domain) -> tuple[str, ...]:
    return DOT_FIELDS if domain.kind == "dot2d" else POSE_FIELDS


def number_format(domain: Domain) -> str:
    """The character baseline's number format of this domain (2D: ``{:.3f}``, as the paper)."""
    return domain.task.get("number_format", CHAR_NUMBER_FORMAT)


def number_count(domain: Domain) -> int:
    """How many numbers one add(...) line carries."""
    return 2 if domain.kind == "dot2d" else rotations.REPRESENTATIONS[domain.rotation]


# ---------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------
def format_task(scene, numbers: str, domain: Domain, rng=None, shuffle_attributes: bool = False):
    """As program.format_program (`scene` a program.Scene), for a dot2d or pose domain."""
    fmt = number_format(domain)
    lines, values = [], []
    num = number_writer(numbers, fmt, values)
    for obj in scene.objects:
        order = list(fields(domain))
        if shuffle_attributes and rng:
            rng.shuffle(order)
        parts = []
        for f in order:
            if f in DOT_FIELDS:
                parts.append(f"{f}={num(getattr(_dot(obj), f))}")
            elif f == "shape":
                word = _pose(obj).shape
                parts.append(f"shape='{rng.choice(domain.synonyms('shape', word)) if rng else word}'")
            else:
                params = rotations.to_params(_pose(obj).matrix, domain.rotation)
                parts.append("rotation=(" + ", ".join(num(v) for v in params) + ")")
        lines.append("add(" + ", ".join(parts) + ")")
    text = "\n".join(lines)
    return (text, values) if numbers == "placeholder" else text


def _dot(obj) -> DotObject:
    if not isinstance(obj, DotObject):
        raise ProgramError(f"a 2D program holds dots, not {type(obj).__name__}")
    return obj


def _pose(obj) -> PoseObject:
    if not isinstance(obj, PoseObject):
        raise ProgramError(f"a pose program holds posed objects, not {type(obj).__name__}")
    return obj


# ---------------------------------------------------------------------------------------
# parsing (one add(...) line; program.parse does lines, comments, fences and counts)
# ---------------------------------------------------------------------------------------
def parse_task_line(ln: Line, domain: Domain, queue):
    names = fields(domain)

    def read_value(name: str):
        if name == "shape":
            return parse_word(ln, "shape", domain)
        if name == "rotation":
            return _parse_rotation(ln, domain, queue)
        return parse_number(ln, queue, domain)

    got = parse_call(ln, names, read_value, f" for the {domain.name} domain (expected {' and '.join(names)})")
    missing = [f for f in names if f not in got]
    if missing:
        raise ProgramError(f"add(...) is missing {', '.join(missing)} (expected {' and '.join(names)})", ln.lineno, 1)
    if domain.kind == "dot2d":
        return DotObject(got["x"], got["y"])
    return PoseObject(got["shape"], got["rotation"])


def _parse_rotation(ln: Line, domain: Domain, queue) -> tuple:
    n = rotations.REPRESENTATIONS[domain.rotation]
    limit = domain.limits.get("max_abs_rotation")
    _, _, col = ln.take("punct", "(", expected=f"'(' to start the {n} numbers of a {domain.rotation} rotation")
    values = [parse_number(ln, queue, domain, limit)]
    while ln.peek()[:2] == ("punct", ","):
        ln.i += 1
        values.append(parse_number(ln, queue, domain, limit))
    ln.take("punct", ")", expected="',' or ')' in the rotation")
    if len(values) != n:
        raise ProgramError(f"a {domain.rotation} rotation has {n} numbers, found {len(values)} "
                           f"(expected rotation=({', '.join(['…'] * n)}))", ln.lineno, col)
    return rotations.as_tuple(rotations.from_params(values, domain.rotation))


# ---------------------------------------------------------------------------------------
# scene records (the dataset's labels/ and predictions.json)
# ---------------------------------------------------------------------------------------
def object_record(obj) -> dict:
    if isinstance(obj, DotObject):
        return {"shape": DOT_SHAPE, "x": float(obj.x), "y": float(obj.y)}
    return {"shape": obj.shape, "rotation_xyz": [float(a) for a in obj.euler],
            "rotation_matrix": [[float(c) for c in row] for row in obj.matrix]}


def is_task_record(o: dict) -> bool:
    return ("x" in o and "y" in o) or "rotation_xyz" in o or "rotation_matrix" in o


def object_from_record(o: dict, domain: Domain | None = None):
    """A record written by `object_record` -> DotObject or PoseObject. The matrix wins over
    the Euler angles when both are present (it carries no angle wrap-around)."""
    if "x" in o and "y" in o:
        return DotObject(float(o["x"]), float(o["y"]))
    shape = o.get("shape", "")
    if domain is not None and domain.shapes:
        shape = domain.canonical("shape", shape)
    if "rotation_matrix" in o:
        m = rotations.nearest_rotation([[float(c) for c in row] for row in o["rotation_matrix"]])
        return PoseObject(shape, rotations.as_tuple(m))
    return PoseObject.from_euler(shape, [float(a) for a in o["rotation_xyz"]])
