"""The scene program: the contract between the model, the builder and the evaluator.

A program is one ``add(...)`` call per object, in the paper's format::

    add(shape='cube', color='gray', material='metal', size='large', loc=(-1.520, +2.110, +0.700), rotation=-0.197)

This module turns text into a :class:`Scene` and back. Domains of the paper's 2D and
SO(3) tasks (kinds ``dot2d`` and ``pose``) speak their own ``add(...)`` lines; this
module hands those to ``task_program.py``, so callers use one parse/format for all. The parser is a small strict
recursive-descent parser (its tokenizer and readers in ``parsing.py``): it never evaluates the text, and every malformed program
raises :class:`ProgramError` with the line, the column and what was expected.
Pure Python: no bpy, no torch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .domain import ATTRIBUTES, Domain, load_domain
# the shared pieces of the language (task_program.py reads its lines with them too);
# NUM_TOKEN and ProgramError stay importable from here: they are this module's API
from .parsing import (CHAR_NUMBER_FORMAT, NUM_TOKEN, Line, ProgramError, number_writer,  # noqa: F401
                      parse_call, parse_number, parse_word)

PROMPT = "What Python Blender code could be used to produce the scene?"

# CLEVR's base camera (clevr.md); used to order objects left to right when no camera
# is given. Jittered cameras still look at the origin, so the order rarely changes.
DEFAULT_CAMERA = (7.4811, -6.5076, 5.3437)


@dataclass
class SceneObject:
    shape: str
    color: str
    material: str
    size: str
    loc: tuple[float, float, float]
    rotation: float = 0.0   # yaw about +Z in radians, as applied in Blender

    def as_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "material": self.material,
                "size": self.size, "loc": list(self.loc), "rotation": self.rotation}


@dataclass
class Scene:
    objects: list[SceneObject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.objects)

    def canonical(self, domain: Domain | None = None, camera=DEFAULT_CAMERA) -> "Scene":
        """Same scene with yaws folded by shape symmetry and objects left to right."""
        domain = domain or load_domain()
        if not all(isinstance(o, SceneObject) for o in self.objects):
            return Scene(list(self.objects))   # a task scene (one dot / one pose) is canonical as is
        objs = [replace(o, rotation=domain.fold_yaw(o.shape, o.rotation)) for o in self.objects]
        return Scene(sort_left_to_right(objs, camera))


# ---------------------------------------------------------------------------------------
# ordering
# ---------------------------------------------------------------------------------------
def image_x(loc: Sequence[float], camera: Sequence[float] = DEFAULT_CAMERA) -> float:
    """Horizontal image coordinate (perspective, arbitrary scale) of a point, for a camera
    at `camera` looking at the origin with world +Z up."""
    fx, fy, fz = (-camera[0], -camera[1], -camera[2])
    n = math.sqrt(fx * fx + fy * fy + fz * fz)
    fx, fy, fz = fx / n, fy / n, fz / n
    # right = forward x up(0, 0, 1)
    rx, ry = fy, -fx
    rn = math.hypot(rx, ry) or 1.0
    rx, ry = rx / rn, ry / rn
    dx, dy, dz = loc[0] - camera[0], loc[1] - camera[1], loc[2] - camera[2]
    depth = dx * fx + dy * fy + dz * fz
    return (dx * rx + dy * ry) / max(depth, 1e-6)


def sort_left_to_right(objects: Iterable[SceneObject], camera=DEFAULT_CAMERA) -> list[SceneObject]:
    return sorted(objects, key=lambda o: image_x(o.loc, camera))


# ---------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------
FIELD_ORDER = ("shape", "color", "material", "size", "loc", "rotation")


def format_program(scene: Scene, numbers: str = "char", *, domain: Domain | None = None,
                   camera=DEFAULT_CAMERA, rng=None, shuffle_attributes: bool = False):
    """Scene -> program text, objects left to right.

    numbers="char": numbers printed as ``{:+.3f}``; returns the text.
    numbers="placeholder": every number is the ``<num>`` token; returns
    ``(text, values)`` with the values in the order they appear.
    `rng` (a ``random.Random``) picks random synonyms and, with `shuffle_attributes`,
    a random attribute order per object, as the paper does in training.
    """
    if numbers not in ("char", "placeholder"):
        raise ValueError(f"numbers must be 'char' or 'placeholder', not {numbers!r}")
    domain = domain or load_domain()
    if domain.kind != "clevr":
        from .task_program import format_task
        return format_task(scene, numbers, domain, rng=rng, shuffle_attributes=shuffle_attributes)
    lines, values = [], []
    num = number_writer(numbers, CHAR_NUMBER_FORMAT, values)
    for obj in sort_left_to_right(scene.objects, camera):
        words = {}
        for attr in ATTRIBUTES:
            value = getattr(obj, attr)
            words[attr] = rng.choice(domain.synonyms(attr, value)) if rng else value
        order = [f for f in FIELD_ORDER if f != "rotation" or domain.has_rotation(obj.shape)]
        if shuffle_attributes and rng:
            rng.shuffle(order)
        parts = []
        for f in order:
            if f == "loc":
                parts.append("loc=(" + ", ".join(num(c) for c in obj.loc) + ")")
            elif f == "rotation":
                parts.append(f"rotation={num(domain.fold_yaw(obj.shape, obj.rotation))}")
            else:
                parts.append(f"{f}='{words[f]}'")
        lines.append("add(" + ", ".join(parts) + ")")
    text = "\n".join(lines)
    return (text, values) if numbers == "placeholder" else text


format = format_program  # noqa: A001 - the issue's name for it; shadows the builtin here only


# ---------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------
_FENCE_RE = re.compile(r"^\s*```\s*(python|py)?\s*$")


def _is_skippable(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#") or bool(_FENCE_RE.match(line))


def parse(text: str, *, domain: Domain | None = None, numbers: Sequence[float] | None = None,
          max_objects: int | None = None) -> Scene:
    """Program text -> Scene (objects in program order).

    Accepts any attribute order, synonyms, ' or " quotes, blank lines, ``#`` comments and
    an optional ```python fence. ``<num>`` placeholders take their values, in order, from
    `numbers`. Raises ProgramError on anything else; never evaluates the text.
    """
    if not isinstance(text, str):
        raise ProgramError(f"a program must be text, not {type(text).__name__}")
    domain = domain or load_domain()
    max_objects = max_objects or domain.max_objects
    queue = list(numbers) if numbers is not None else None
    objects = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if _is_skippable(line):
            continue
        if len(objects) >= max_objects:
            raise ProgramError(f"more than {max_objects} objects (expected at most {max_objects} add(...) lines)", lineno, 1)
        objects.append(parse_line(Line(line, lineno), domain, queue))
    if queue:
        raise ProgramError(f"{len(queue)} numeric value(s) left over after the last <num> (expected one value per <num>)")
    return Scene(objects)


def parse_line(ln: Line, domain: Domain, queue):
    """One add(...) line in the language of the domain's kind."""
    if domain.kind != "clevr":
        from .task_program import parse_task_line
        return parse_task_line(ln, domain, queue)
    return _parse_add(ln, domain, queue)


def _parse_add(ln: Line, domain: Domain, queue) -> SceneObject:
    max_rot = domain.limits.get("max_abs_rotation")

    def read_value(name: str):
        if name in ATTRIBUTES:
            return parse_word(ln, name, domain)
        if name == "loc":
            return _parse_tuple(ln, 3, 3, queue, domain)
        # rotation: a yaw, or a tuple (only its z component is a yaw about Z)
        if ln.peek()[:2] == ("punct", "("):
            return _parse_tuple(ln, 1, 3, queue, domain, limit=max_rot)[-1]
        return parse_number(ln, queue, domain, limit=max_rot)

    fields = parse_call(ln, FIELD_ORDER, read_value, f" (expected one of {', '.join(FIELD_ORDER)})")
    missing = [f for f in FIELD_ORDER[:5] if f not in fields]
    if missing:
        raise ProgramError(f"add(...) is missing {', '.join(missing)} (expected shape, color, material, size and loc)", ln.lineno, 1)
    return SceneObject(shape=fields["shape"], color=fields["color"], material=fields["material"],
                       size=fields["size"], loc=fields["loc"], rotation=fields.get("rotation", 0.0))


def _parse_tuple(ln: Line, min_len: int, max_len: int, queue, domain: Domain, limit=None) -> tuple:
    ln.take("punct", "(", expected="'(' to start a tuple")
    values = [parse_number(ln, queue, domain, limit)]
    while ln.peek()[:2] == ("punct", ","):
        ln.i += 1
        if len(values) == max_len:
            raise ProgramError(f"expected a tuple of at most {max_len} numbers, found more", ln.lineno, ln.peek()[2])
        values.append(parse_number(ln, queue, domain, limit))
    ln.take("punct", ")", expected="',' or ')' in the tuple")
    if len(values) < min_len:
        raise ProgramError(f"expected {min_len} numbers in the tuple, found {len(values)}",
                           ln.lineno, ln.peek()[2])
    return tuple(values)


# ---------------------------------------------------------------------------------------
# CLEVR scene JSON (schema in clevr.md)
# ---------------------------------------------------------------------------------------
def scene_to_clevr(scene: Scene, image_filename: str = "", image_index: int = 0, split: str = "",
                   pixel_coords: Sequence | None = None) -> dict:
    """One CLEVR scene record. Rotation is the yaw in radians as applied in Blender."""
    objs = []
    for i, o in enumerate(scene.objects):
        if not isinstance(o, SceneObject):   # a 2D dot or a posed object
            from .task_program import object_record
            objs.append(object_record(o))
            continue
        rec = {"shape": o.shape, "size": o.size, "material": o.material, "color": o.color,
               "3d_coords": [float(c) for c in o.loc], "rotation": float(o.rotation)}
        if pixel_coords is not None:
            rec["pixel_coords"] = list(pixel_coords[i])
        objs.append(rec)
    return {"image_filename": image_filename, "image_index": image_index, "split": split,
            "objects": objs}


def scene_from_clevr(record: dict, domain: Domain | None = None) -> Scene:
    """CLEVR scene record -> Scene. Original CLEVR writes the yaw it passes to Blender, which
    Blender applies as radians, so `rotation` is read as radians. Without `domain`, a record
    that names one (an asset kit's renders and predictions carry ``"domain"``) is read in
    its words, any other in CLEVR's."""
    if domain is None and isinstance(record.get("domain"), str):
        domain = load_domain(record["domain"])
    objs = []
    for o in record.get("objects", []):
        if isinstance(o, dict) and _is_task_record(o):
            from .task_program import object_from_record
            try:
                objs.append(object_from_record(o, domain if domain is not None and domain.kind == "pose" else None))
            except (KeyError, TypeError, ValueError) as err:
                raise ProgramError(f"2D / pose object record is malformed ({err})") from None
            continue
        domain = domain or load_domain()
        try:
            objs.append(SceneObject(
                shape=domain.canonical("shape", o["shape"]), color=domain.canonical("color", o["color"]),
                material=domain.canonical("material", o["material"]), size=domain.canonical("size", o["size"]),
                loc=tuple(float(c) for c in o["3d_coords"]), rotation=float(o.get("rotation", 0.0))))
        except KeyError as err:
            raise ProgramError(f"CLEVR object record lacks or misnames {err}") from None
    return Scene(objs)


def _is_task_record(o: dict) -> bool:
    from .task_program import is_task_record
    return is_task_record(o)
