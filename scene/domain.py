"""Scene vocabularies as data: shapes, sizes, materials, colours and CoGenT rules.

A domain is a JSON file in ``scene/domains/``; a new vocabulary is a new file, not new
code. Its ``kind`` says which program language it speaks: ``clevr`` (the default; objects
with shape/colour/material/size/loc/yaw), ``dot2d`` (the paper's 2D task, ``add(x=…, y=…)``)
or ``pose`` (the SO(3) task, ``add(shape=…, rotation=(…))``); the task kinds keep their
settings under ``task`` (docs/experiments.md). A pose domain's rotation representation is
part of its name: ``so3:aa`` is so3.json with ``rotation=(…)`` written as axis-angle.
Pure Python: no bpy, no torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path

DOMAINS_DIR = Path(__file__).parent / "domains"
ATTRIBUTES = ("shape", "color", "material", "size")  # the categorical fields of an object
KINDS = ("clevr", "dot2d", "pose")


@dataclass(frozen=True)
class Domain:
    name: str
    shapes: dict          # canonical name -> {"synonyms": [...], "rotation_symmetry_deg": int}
    sizes: dict           # canonical name -> {"scale": float, "synonyms": [...]}
    materials: dict
    colors: dict          # canonical name -> {"rgb": [r, g, b] (0-255), "synonyms": [...]}
    conditions: dict      # "A" -> {shape: [allowed colours]}; shapes not listed allow all
    limits: dict = field(default_factory=dict)
    kind: str = "clevr"
    task: dict = field(default_factory=dict)    # settings of the dot2d / pose kinds
    # the asset kit this vocabulary came from (scene/kits.py): its meshes, materials, scene
    # rules and stage; None for the JSON domains (CLEVR's look). Not part of equality: the
    # built-in kit `clevr` is the same vocabulary as domains/clevr.json.
    kit: object = field(default=None, compare=False, repr=False)

    # -- vocabulary -------------------------------------------------------------------
    def values(self, attribute: str) -> tuple[str, ...]:
        """Canonical values of one categorical attribute, in file order."""
        return tuple(self._table(attribute))

    def synonyms(self, attribute: str, value: str) -> tuple[str, ...]:
        """All words that mean `value` (canonical first)."""
        return (value, *self._table(attribute)[value].get("synonyms", ()))

    def all_words(self, attribute: str) -> tuple[str, ...]:
        return tuple(w for v in self.values(attribute) for w in self.synonyms(attribute, v))

    def canonical(self, attribute: str, word: str) -> str:
        """Map a word or synonym to its canonical value; KeyError if unknown."""
        return self._synonym_map(attribute)[word.lower()]

    def _synonym_map(self, attribute: str) -> dict:
        return self._synonym_tables[attribute]

    @cached_property
    def _synonym_tables(self) -> dict:
        """{attribute: {word or synonym (lower case): canonical value}}, built once per domain."""
        return {attr: {w.lower(): v for v in self.values(attr) for w in self.synonyms(attr, v)}
                for attr in ATTRIBUTES}

    def _table(self, attribute: str) -> dict:
        return {"shape": self.shapes, "size": self.sizes,
                "material": self.materials, "color": self.colors}[attribute]

    # -- geometry ---------------------------------------------------------------------
    def scale(self, size: str) -> float:
        return float(self.sizes[size]["scale"])

    def rgb(self, color: str) -> tuple[float, float, float]:
        """Colour as 0-1 floats, fed straight into the material's Color input (as CLEVR)."""
        return tuple(c / 255.0 for c in self.colors[color]["rgb"])

    def rotation_symmetry(self, shape: str) -> float:
        """Yaw period in radians (cube: pi/2); 0 means the shape looks the same at any yaw."""
        return math.radians(self.shapes[shape].get("rotation_symmetry_deg", 0))

    def has_rotation(self, shape: str) -> bool:
        return self.rotation_symmetry(shape) > 0

    def fold_yaw(self, shape: str, yaw: float) -> float:
        """The one yaw in [-period/2, period/2) that looks like `yaw`; 0 for symmetric shapes."""
        period = self.rotation_symmetry(shape)
        if period <= 0:
            return 0.0
        folded = (yaw + period / 2) % period - period / 2
        return 0.0 if abs(folded) < 1e-12 else folded

    # -- CoGenT -----------------------------------------------------------------------
    def allowed_colors(self, shape: str, condition: str = "none") -> tuple[str, ...]:
        if condition not in self.conditions:
            raise KeyError(f"unknown condition {condition!r}; known: {', '.join(self.conditions)}")
        rule = self.conditions[condition].get(shape)
        return tuple(rule) if rule is not None else self.values("color")

    def check_condition(self, condition: str) -> str:
        """`condition` if the domain knows it, else KeyError naming the known ones."""
        if condition not in self.conditions:
            raise KeyError(f"unknown condition {condition!r} for domain {self.name}; known: {', '.join(self.conditions)}")
        return condition

    @property
    def default_condition(self) -> str:
        """The condition training renders use: the task's, CoGenT's A, a kit's "train" (its
        held-out pairs kept out), else the first."""
        if "default_condition" in self.task:
            return self.task["default_condition"]
        return next((c for c in ("A", "train") if c in self.conditions), next(iter(self.conditions)))

    @property
    def ref(self) -> str:
        """The string load_domain() takes to load this domain again: the name, or a kit's
        folder when it is not found by its name."""
        if self.kit is None:
            return self.name
        from .kits import find_kit
        return self.name if find_kit(self.name) == self.kit.path else str(self.kit.folder)

    @property
    def rotation(self) -> str:
        """A pose domain's rotation representation (scene/rotations.py REPRESENTATIONS)."""
        return self.task.get("rotation", "euler")

    @property
    def max_objects(self) -> int:
        return int(self.limits.get("max_objects", 10))

    @property
    def max_abs_coordinate(self) -> float:
        return float(self.limits.get("max_abs_coordinate", 20.0))


def load_domain(name_or_path: str = "clevr") -> Domain:
    """Load a domain by name (a file in scene/domains/ or an asset kit, scene/kits.py), by
    path to a JSON file, or by path to a kit (its folder or kit.toml).

    ``NAME:REPR`` (e.g. ``so3:6d``) loads a pose domain with that rotation representation;
    the domain's name keeps the suffix, so checkpoints and manifests record it. A missing
    domain or kit raises FileNotFoundError (a malformed kit: KitError), each one sentence."""
    ref = str(name_or_path)
    path = Path(ref)
    if path.suffix == ".json" or (not path.suffix and ":" not in ref and (DOMAINS_DIR / f"{ref}.json").is_file()) \
            or ":" in ref and "/" not in ref and "\\" not in ref:
        return _load_json_domain(ref)
    from .kits import KitNotFound, find_kit, load_kit
    if find_kit(ref) is None:
        known = ", ".join(sorted(p.stem for p in DOMAINS_DIR.glob("*.json")))
        from .kits import known_kits
        raise KitNotFound(f"Domain {ref} does not exist: it is neither a domain file in {DOMAINS_DIR} nor a kit "
                          f"(a folder with kit.toml, or a kit's name); known domains: {known}; known kits: "
                          f"{', '.join(known_kits()) or 'none'}.")
    return kit_domain(load_kit(ref))


_KIT_DOMAINS: dict = {}


def kit_domain(kit) -> Domain:
    """The Domain of a parsed kit (scene/kits.py): its words, scene limits and colour rules,
    with the kit itself on ``domain.kit``; one object per kit."""
    from .kits import MAX_ABS_ROTATION
    domain = _KIT_DOMAINS.get(kit)
    if domain is None:
        t, rules = kit.tables, kit.rules
        domain = Domain(name=kit.name, shapes=t["shapes"], sizes=t["sizes"], materials=t["materials"],
                        colors=t["colors"], conditions=t["conditions"],
                        limits={"max_objects": rules.max_objects, "max_abs_coordinate": rules.max_abs_coordinate,
                                "max_abs_rotation": MAX_ABS_ROTATION},
                        kind="clevr", kit=kit)
        _KIT_DOMAINS[kit] = domain
    return domain


@lru_cache(maxsize=None)
def _load_json_domain(name_or_path: str) -> Domain:
    base, sep, representation = str(name_or_path).partition(":")
    if sep:
        from .rotations import REPRESENTATIONS
        domain = load_domain(base)
        if domain.kind != "pose" or representation not in REPRESENTATIONS:
            raise FileNotFoundError(f"Domain {name_or_path} does not exist: only pose domains take a rotation "
                                    f"suffix, one of {', '.join(REPRESENTATIONS)} (e.g. so3:6d).")
        return replace(domain, name=f"{domain.name}:{representation}",
                       task={**domain.task, "rotation": representation})
    path = Path(name_or_path)
    if not path.suffix:
        path = DOMAINS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in DOMAINS_DIR.glob("*.json")))
        raise FileNotFoundError(f"Domain file {path} does not exist; known domains: {known}.")
    data = json.loads(path.read_text())
    kind = data.get("kind", "clevr")
    if kind not in KINDS:
        raise FileNotFoundError(f"Domain file {path} has kind {kind!r}; use one of {', '.join(KINDS)}.")
    return Domain(name=data["name"], shapes=data.get("shapes", {}), sizes=data.get("sizes", {}),
                  materials=data.get("materials", {}), colors=data.get("colors", {}),
                  conditions=data.get("conditions", {"none": {}}), limits=data.get("limits", {}),
                  kind=kind, task=data.get("task", {}))
