"""Asset kits: a folder with ``kit.toml`` (and optionally a ``.blend``) that says which
objects a model learns — their words, meshes, colours, materials and sizes, how scenes of
them are sampled, and which shape–colour pairs are held out for out-of-distribution tests.

A kit becomes a :class:`~.domain.Domain` (``load_domain(name or folder)``) of kind ``clevr`` (the objects language:
``add(shape=…, color=…, material=…, size=…, loc=(…), rotation=…)``), so the sampler,
renderer, tokenizer, grammar and metrics read it as they read CLEVR's vocabulary; the
asset and stage parts travel on ``domain.kit`` for the builder and the renderer.

The format (docs/kits.md has a worked example)::

    [kit]
    name = "toys"                 # the kit's name (default: the folder's name)
    description = "..."
    blend = "assets.blend"        # optional; default: the one .blend in the folder, if any
    rotation = "yaw"              # none | yaw ("free" needs a three-angle program: refused)

    [shapes]                      # word -> a built-in primitive, or an object / collection
    cube = "cube"                 #   of the kit's .blend; optional symmetry (yaw period in
    ring = { primitive = "torus", synonyms = ["donut"] }       # degrees, 0 = round) and
    teapot = { object = "Teapot", symmetry = 360 }              # synonyms
    [colors]                      # word -> RGB 0-255
    red = [173, 35, 35]
    gray = { rgb = [87, 87, 87], synonyms = ["grey"] }
    [materials]                   # word -> rubber | metal | plastic, or a .blend material
    rubber = "rubber"
    glaze = { material = "Glaze" }
    [sizes]                       # word -> scale (the half-extent; the object sits at z = scale)
    large = 0.7
    [scene]                       # defaults: CLEVR's rules
    objects = [3, 10]             # object count range
    ground = 3.0                  # x, y uniform in [-ground, ground]
    min_distance = 0.25           # edge to edge (radius = the size's scale)
    margin = 0.4                  # no offset in (0, margin) along the camera's ground axes
    min_pixels = 200              # visible pixels per object at 480x320 (scaled by area)
    [stage]                       # camera = "clevr", lights = "clevr", floor = "clevr" | [r, g, b]
    [heldout]                     # conditions "train" (without these pairs) and "heldout"
    pairs = [["ring", "red"]]     # (only these colours for the listed shapes)
    [conditions]                  # or named colour rules, CoGenT's A/B: {shape: [colours]}
    A = { cube = ["gray", "blue"] }

The parser is strict: an unknown key, a wrong type, a duplicate word, an empty table, a
missing .blend asset, a held-out rule that leaves a shape no colour, or an object count the
ground cannot hold (a random-packing bound) is refused with one sentence naming the file and the
line. Pure Python (tomllib); the .blend's names are checked with bpy when it is loaded or
asked for (``check_assets=True``).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

KIT_FILE = "kit.toml"
BUILTIN_KITS = Path(__file__).resolve().parents[1] / "kits"
ENV = "IG_LLM_KITS"             # more kit folders (os.pathsep-separated), searched after the built-in ones

# built-in primitive -> its default yaw symmetry in degrees (0: looks the same at any yaw)
PRIMITIVES = {
    "cube": 90, "sphere": 0, "cylinder": 0, "cone": 0, "torus": 0, "suzanne": 360, "icosphere": 120,
    "rounded_cube": 90, "bevelled_cylinder": 0, "uv_sphere": 0,       # CLEVR's three
}
BLEND_SYMMETRY = 360            # a .blend shape: no symmetry assumed
BUILTIN_MATERIALS = ("rubber", "metal", "plastic")
ROTATIONS = ("none", "yaw", "free")
STAGE_PRESETS = ("clevr",)
RANDOM_DENSITY = 0.547          # discs placed one by one at random stop fitting at this cover (RSA jamming)
WORD = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_ABS_ROTATION = 6.2832
TABLE_OF = {"shape": "shapes", "color": "colors", "material": "materials", "size": "sizes"}   # domain.ATTRIBUTES

TABLES = ("kit", "shapes", "colors", "materials", "sizes", "scene", "stage", "heldout", "conditions")
KIT_KEYS = ("name", "description", "blend", "rotation")
SHAPE_KEYS = ("primitive", "object", "collection", "symmetry", "synonyms")
COLOR_KEYS = ("rgb", "synonyms")
MATERIAL_KEYS = ("builtin", "material", "synonyms")
SIZE_KEYS = ("scale", "synonyms")
SCENE_KEYS = ("objects", "ground", "min_distance", "margin", "min_pixels", "max_abs_coordinate")
STAGE_KEYS = ("camera", "lights", "floor")
HELDOUT_KEYS = ("pairs",)


class KitError(UserError, ValueError):
    """A kit that cannot be used; the message names the file, the line and the fix."""


class KitNotFound(KitError, FileNotFoundError):
    """No kit of that name or path."""


@dataclass(frozen=True)
class ShapeAsset:
    word: str
    primitive: str | None = None      # a key of PRIMITIVES
    object: str | None = None         # an object of the kit's .blend
    collection: str | None = None     # a collection of the kit's .blend (its meshes joined)

    @property
    def source(self) -> str:
        return self.primitive or (f"object {self.object!r}" if self.object else f"collection {self.collection!r}")


@dataclass(frozen=True)
class MaterialAsset:
    word: str
    builtin: str | None = None        # rubber | metal | plastic
    material: str | None = None       # a material of the kit's .blend (its colour set per object)


@dataclass(frozen=True)
class SceneRules:
    """How scenes are sampled (CLEVR's rules by default, reference/clevr.md)."""
    min_objects: int = 3
    max_objects: int = 10
    ground: float = 3.0
    min_distance: float = 0.25
    margin: float = 0.4
    min_pixels: int = 200
    max_abs_coordinate: float = 20.0


@dataclass(frozen=True)
class Stage:
    camera: str = "clevr"
    lights: str = "clevr"
    floor: str | tuple = "clevr"      # "clevr" (the grey backdrop) or an (r, g, b) 0-255 colour


@dataclass(frozen=True, eq=False)
class Kit:
    name: str
    folder: Path
    path: Path                        # the kit.toml
    blend: Path | None
    description: str
    rotation: str
    shapes: dict                      # word -> ShapeAsset
    materials: dict                   # word -> MaterialAsset
    tables: dict                      # the Domain's shapes / sizes / materials / colors / conditions
    rules: SceneRules
    stage: Stage
    heldout: tuple                    # ((shape, colour), ...)
    sha256: str                       # of kit.toml's bytes, then the .blend's
    assets_checked: bool = False      # the .blend's names were read (bpy was there)

    @property
    def vocabulary(self) -> dict:
        """{attribute: every word a program may use}: what a model trained on the kit knows."""
        return {a: [w for v, spec in self.tables[TABLE_OF[a]].items() for w in (v, *spec["synonyms"])]
                for a in TABLE_OF}

    def record(self, ref: str | None = None) -> dict:
        """What a model config and a dataset manifest keep of the kit."""
        return {"name": self.name, "sha256": self.sha256, "vocabulary": self.vocabulary,
                **({"ref": ref} if ref is not None else {})}

    @property
    def uses_blend(self) -> bool:
        return any(not s.primitive for s in self.shapes.values()) or \
            any(m.material for m in self.materials.values())


# ---------------------------------------------------------------------------------------
# finding kits
# ---------------------------------------------------------------------------------------
def kit_dirs() -> list[Path]:
    """Folders searched for kits by name, in order: the built-in kits, $IG_LLM_KITS, and
    the data home's kits/ folder."""
    from ..home import data_home
    extra = [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return [BUILTIN_KITS, *extra, data_home() / "kits"]


def looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.endswith(".toml") or ref.startswith(".")


def find_kit(ref: str | os.PathLike) -> Path | None:
    """The kit.toml a reference names (a kit folder, its kit.toml, or a kit's name), or None."""
    ref = str(ref)
    p = Path(ref).expanduser()
    if p.is_file() and p.name == KIT_FILE:
        return p.resolve()
    if p.is_dir() and (p / KIT_FILE).is_file():
        return (p / KIT_FILE).resolve()
    if looks_like_path(ref) or not WORD.match(ref.replace("-", "_")):
        return None
    for d in kit_dirs():
        if (d / ref / KIT_FILE).is_file():
            return (d / ref / KIT_FILE).resolve()
    return None


def known_kits() -> list[str]:
    names = []
    for d in kit_dirs():
        if d.is_dir():
            names += sorted(p.parent.name for p in d.glob(f"*/{KIT_FILE}") if p.parent.name not in names)
    return names


def not_found_sentence(ref: str) -> str:
    where = ", ".join(str(d) for d in kit_dirs())
    return (f"Kit {ref!r} does not exist: no kit folder by that path, and no {ref}/{KIT_FILE} in {where}; "
            f"known kits: {', '.join(known_kits()) or 'none'} (put the kit's folder in one of those places, "
            f"or name its folder).")


_CACHE: dict = {}


def load_kit(ref: str | os.PathLike, *, check_assets: bool | None = None) -> Kit:
    """Parse the kit a reference names (folder, kit.toml or name); KitError if malformed,
    KitNotFound if absent. `check_assets`: read the .blend's names with bpy (True: import
    bpy if it can be; None: only when bpy is already imported; False: never). Parsed kits
    are cached by the files' size and time stamps."""
    path = find_kit(ref)
    if path is None:
        raise KitNotFound(not_found_sentence(str(ref)))
    check = ("bpy" in sys.modules) if check_assets is None else check_assets
    key = (path, _stamp(path), _stamp_blend(path.parent))
    kit = _CACHE.get(key)
    if kit is None or (check and not kit.assets_checked and kit.uses_blend):
        kit = parse_kit(path, check_assets=check)
        _CACHE[key] = kit
    return kit


def _stamp(p: Path):
    try:
        st = p.stat()
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _stamp_blend(folder: Path):
    return tuple((b.name, _stamp(b)) for b in sorted(folder.glob("*.blend")))


# ---------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------
class _Reader:
    """The kit.toml's text, to name the line of a key in every refusal."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def fail(self, keys: tuple, message: str, fix: str):
        raise KitError(f"{self.path}, line {self.line(keys)}: {message}; {fix}.")

    def line(self, keys: tuple) -> int:
        """The line where the dotted key `keys` is written (header, dotted key or inline
        table); the nearest enclosing key's line when the exact one is not found."""
        keys = tuple(str(k) for k in keys)
        best, best_len, header = 1, 0, ()
        for no, raw in enumerate(self.lines, start=1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            m = re.match(r"^\[\[?\s*(.+?)\s*\]\]?$", line)
            if m:
                header = _split_dotted(m.group(1))
                n = _common(header, keys)
                if n == len(header) and n > best_len:
                    best, best_len = no, n
                continue
            m = re.match(r"^((?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*'))*)"
                         r"\s*=(.*)$", line)
            if not m:
                continue
            here = header + _split_dotted(m.group(1))
            n = _common(here, keys)
            if n < len(here):
                continue
            rest = keys[n:]
            inline = m.group(2)
            for k in rest:       # keys of inline tables on the same line
                hit = re.search(r"(?:^|[{,\s])" + re.escape(k) + r"\s*=", inline)
                if not hit:
                    break
                n += 1
                inline = inline[hit.end():]
            if n > best_len:
                best, best_len = no, n
        return best


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def _split_dotted(text: str) -> tuple:
    return tuple(p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text))


def _common(a: tuple, b: tuple) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def parse_kit(path: str | os.PathLike, *, check_assets: bool = False) -> Kit:
    """Parse and check one kit.toml (see the module docstring); KitError on any problem."""
    path = Path(path)
    if path.is_dir():
        path = path / KIT_FILE
    if not path.is_file():
        raise KitNotFound(f"Kit file {path} does not exist; a kit is a folder holding {KIT_FILE}.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise KitError(f"{path} is not UTF-8 text; save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        what = re.sub(r"\s*\(at line.*\)", "", str(err)) or "invalid TOML"
        dup = " (a word or key written twice)" if "overwrite" in what.lower() else ""
        if m:
            raise KitError(f"{path}, line {m.group(1)}: {what[0].lower() + what[1:]}{dup}; fix that line.") from None
        raise KitError(f"{path} is not valid TOML ({what}); fix it.") from None
    r = _Reader(path, text)
    folder = path.parent

    for key in data:
        if key not in TABLES:
            r.fail((key,), f"unknown table or key {key!r}", f"a kit has {', '.join(TABLES)}")
        if not isinstance(data[key], dict):
            r.fail((key,), f"{key} must be a table", f"write it as [{key}] with key = value lines")
    head = data.get("kit", {})
    _known(r, ("kit",), head, KIT_KEYS)
    name = _get(r, ("kit", "name"), head, str, folder.name)
    if not WORD.match(name.replace("-", "_")):
        r.fail(("kit", "name"), f"the kit name {name!r} is not a plain word",
               "use lower-case letters, digits, '_' and '-'")
    description = _get(r, ("kit", "description"), head, str, "")
    rotation = _get(r, ("kit", "rotation"), head, str, "yaw")
    if rotation not in ROTATIONS:
        r.fail(("kit", "rotation"), f"rotation = {rotation!r} is not one of {', '.join(ROTATIONS)}",
               'use "yaw" or "none"')
    if rotation == "free":
        r.fail(("kit", "rotation"), 'rotation = "free" needs three angles per object, which the objects '
               "program (one yaw number) cannot write yet", 'use "yaw" (turns about the vertical) or "none"')

    seen: dict = {}           # word -> where it was defined, across the whole kit

    def claim(word: str, keys: tuple):
        if not WORD.match(word):
            r.fail(keys, f"{word!r} is not a program word", "use lower-case letters, digits and '_', "
                   "starting with a letter")
        if word in seen:
            r.fail(keys, f"the word {word!r} is used twice (also at {'.'.join(seen[word])})",
                   "give every shape, colour, material, size and synonym its own word")
        seen[word] = keys

    # -- shapes --------------------------------------------------------------------------
    shapes, shape_table = {}, {}
    for word, spec in _table(r, data, "shapes").items():
        keys = ("shapes", word)
        claim(word, keys)
        spec, src, value = _asset_source(r, keys, spec, "shape", ("primitive", "object", "collection"),
                                         PRIMITIVES, SHAPE_KEYS, example=("cube", "object", "MyObject"), noun="primitive")
        default_sym = PRIMITIVES[value] if src == "primitive" else BLEND_SYMMETRY
        sym = _get(r, keys + ("symmetry",), spec, (int, float), default_sym)
        if sym < 0 or sym > 360:
            r.fail(keys + ("symmetry",), f"symmetry = {sym} is outside 0..360 degrees",
                   "give the yaw period in degrees (90 for a cube, 0 for a round shape, 360 for none)")
        if rotation == "none":
            sym = 0
        synonyms = _synonyms(r, keys, spec, claim)
        shapes[word] = ShapeAsset(word, **{src: value})
        shape_table[word] = {"synonyms": synonyms, "rotation_symmetry_deg": int(sym) if sym == int(sym) else sym}

    # -- colours ------------------------------------------------------------------------
    colors = {}
    for word, spec in _table(r, data, "colors").items():
        keys = ("colors", word)
        claim(word, keys)
        if isinstance(spec, list):
            spec = {"rgb": spec}
        elif not isinstance(spec, dict):
            r.fail(keys, f"colour {word} must be [r, g, b] or a table", f"write {word} = [173, 35, 35]")
        _known(r, keys, spec, COLOR_KEYS)
        rgb = spec.get("rgb")
        if not (isinstance(rgb, list) and len(rgb) == 3 and all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb)):
            r.fail(keys, f"colour {word} needs rgb = three whole numbers 0..255", f"write {word} = [173, 35, 35]")
        colors[word] = {"rgb": list(rgb), "synonyms": _synonyms(r, keys, spec, claim)}

    # -- materials ----------------------------------------------------------------------
    materials, material_table = {}, {}
    for word, spec in _table(r, data, "materials").items():
        keys = ("materials", word)
        claim(word, keys)
        spec, src, value = _asset_source(r, keys, spec, "material", ("builtin", "material"), BUILTIN_MATERIALS,
                                         MATERIAL_KEYS, example=("rubber", "material", "MyMaterial"),
                                         noun="material")
        materials[word] = MaterialAsset(word, **{src: value})
        material_table[word] = {"synonyms": _synonyms(r, keys, spec, claim)}

    # -- sizes --------------------------------------------------------------------------
    sizes = {}
    for word, spec in _table(r, data, "sizes").items():
        keys = ("sizes", word)
        claim(word, keys)
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"scale": spec}
        elif not isinstance(spec, dict):
            r.fail(keys, f"size {word} must be a scale or a table", f"write {word} = 0.7")
        _known(r, keys, spec, SIZE_KEYS)
        scale = _get(r, keys + ("scale",), spec, (int, float))
        if not (math.isfinite(scale) and 0 < scale <= 100):
            r.fail(keys + ("scale",), f"scale {scale} is not a positive size", "give the half-extent, for example 0.7")
        sizes[word] = {"scale": float(scale), "synonyms": _synonyms(r, keys, spec, claim)}

    # -- scene rules --------------------------------------------------------------------
    scene = data.get("scene", {})
    _known(r, ("scene",), scene, SCENE_KEYS)
    d = SceneRules()
    count = _get(r, ("scene", "objects"), scene, list, [d.min_objects, d.max_objects])
    if not (len(count) == 2 and all(isinstance(c, int) and not isinstance(c, bool) for c in count)
            and 1 <= count[0] <= count[1] <= 255):
        r.fail(("scene", "objects"), f"objects = {count} is not a range [min, max] of whole numbers with "
               "1 <= min <= max <= 255", "write for example objects = [3, 10]")
    rules = SceneRules(
        min_objects=count[0], max_objects=count[1],
        ground=float(_positive(r, ("scene", "ground"), scene, d.ground)),
        min_distance=float(_positive(r, ("scene", "min_distance"), scene, d.min_distance, zero=True)),
        margin=float(_positive(r, ("scene", "margin"), scene, d.margin, zero=True)),
        min_pixels=_get(r, ("scene", "min_pixels"), scene, int, d.min_pixels),
        max_abs_coordinate=float(_positive(r, ("scene", "max_abs_coordinate"), scene, d.max_abs_coordinate)))
    if rules.min_pixels < 0:
        r.fail(("scene", "min_pixels"), f"min_pixels = {rules.min_pixels} is negative", "give 0 or more")
    if rules.ground + max(s["scale"] for s in sizes.values()) > rules.max_abs_coordinate:
        r.fail(("scene", "ground"), f"ground = {rules.ground:g} puts objects beyond max_abs_coordinate = "
               f"{rules.max_abs_coordinate:g}", "raise max_abs_coordinate or shrink the ground")
    smallest = min(s["scale"] for s in sizes.values())
    fit = packing_bound(rules.ground, smallest, rules.min_distance)
    if rules.max_objects > fit:
        r.fail(("scene", "objects"), f"objects = {count} is impossible: at most {fit} objects of the smallest "
               f"size ({smallest:g}) fit on a ground of ±{rules.ground:g} with {rules.min_distance:g} between "
               "them when placed at random", "lower the count, shrink the sizes or min_distance, or widen the ground")

    # -- stage --------------------------------------------------------------------------
    st = data.get("stage", {})
    _known(r, ("stage",), st, STAGE_KEYS)
    for key in ("camera", "lights"):
        value = _get(r, ("stage", key), st, str, "clevr")
        if value not in STAGE_PRESETS:
            r.fail(("stage", key), f"stage {key} {value!r} is not available", f"use one of {', '.join(STAGE_PRESETS)}")
    floor = st.get("floor", "clevr")
    if isinstance(floor, list):
        if not (len(floor) == 3 and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                                        for c in floor)):
            r.fail(("stage", "floor"), "floor needs three whole numbers 0..255", 'write floor = [128, 128, 128] or "clevr"')
        floor = tuple(floor)
    elif floor not in STAGE_PRESETS:
        r.fail(("stage", "floor"), f"floor {floor!r} is not available", 'use "clevr" or an [r, g, b] colour')
    stage = Stage(floor=floor)

    # -- held-out pairs / conditions ------------------------------------------------------
    conditions = {"none": {}}
    heldout: tuple = ()
    if "heldout" in data and "conditions" in data:
        r.fail(("conditions",), "a kit has either [heldout] pairs or named [conditions], not both",
               "keep one of the two")
    if "heldout" in data:
        table = data["heldout"]
        _known(r, ("heldout",), table, HELDOUT_KEYS)
        pairs = table.get("pairs", [])
        if not isinstance(pairs, list) or not pairs:
            r.fail(("heldout", "pairs"), "heldout.pairs must be a non-empty list of [shape, colour] pairs",
                   'write pairs = [["torus", "red"]]')
        out = []
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in shapes and pair[1] in colors):
                r.fail(("heldout", "pairs"), f"{pair!r} is not a [shape, colour] pair of the kit's words",
                       f"use shapes from {', '.join(shapes)} and colours from {', '.join(colors)}")
            if tuple(pair) in out:
                r.fail(("heldout", "pairs"), f"the pair {pair!r} is listed twice", "list each pair once")
            out.append(tuple(pair))
        heldout = tuple(out)
        train, held = {}, {}
        for shape in shapes:
            gone = [c for s, c in heldout if s == shape]
            if not gone:
                continue
            keep = [c for c in colors if c not in gone]
            if not keep:
                r.fail(("heldout", "pairs"), f"every colour of shape {shape} is held out, so training would "
                       "never see it", "hold out fewer of its colours")
            train[shape], held[shape] = keep, [c for c in colors if c in gone]
        conditions.update({"train": train, "heldout": held})
    for cname, rule in data.get("conditions", {}).items():
        keys = ("conditions", cname)
        if cname == "none" or not re.match(r"^[A-Za-z0-9_\-]+$", cname):
            r.fail(keys, f"condition name {cname!r} is not allowed", "name it with letters and digits, not 'none'")
        if not isinstance(rule, dict):
            r.fail(keys, f"condition {cname} must map shapes to colour lists", f'write {cname} = {{ cube = ["red"] }}')
        for shape, allowed in rule.items():
            if shape not in shapes:
                r.fail(keys + (shape,), f"condition {cname} names {shape!r}, which is not a shape of the kit",
                       f"use one of {', '.join(shapes)}")
            if not (isinstance(allowed, list) and allowed and all(c in colors for c in allowed)):
                r.fail(keys + (shape,), f"condition {cname} gives {shape} {allowed!r}, not a non-empty list of "
                       "the kit's colours", f"use colours from {', '.join(colors)}")
        conditions[cname] = {s: list(c) for s, c in rule.items()}

    # -- the .blend -----------------------------------------------------------------------
    blend = _blend_path(r, head, folder)
    needs_blend = [(("shapes", s.word), f"object {s.object!r}" if s.object else f"collection {s.collection!r}")
                   for s in shapes.values() if not s.primitive]
    needs_blend += [(("materials", m.word), f"material {m.material!r}") for m in materials.values() if m.material]
    if needs_blend and blend is None:
        keys, what = needs_blend[0]
        r.fail(keys, f"{'.'.join(keys)} names {what} of a .blend, but the kit has none",
               f"put the .blend next to {KIT_FILE} (or name it with blend = \"...\" under [kit])")
    checked = False
    if blend is not None and needs_blend and check_assets:
        names = blend_names(blend)
        if names is not None:
            checked = True
            for s in shapes.values():
                kind, want = ("objects", s.object) if s.object else ("collections", s.collection)
                if not s.primitive and want not in names[kind]:
                    r.fail(("shapes", s.word), f"shape {s.word} names {kind[:-1]} {want!r}, which {blend.name} does "
                           f"not have", f"{kind} there: {', '.join(sorted(names[kind])) or 'none'}")
            for m in materials.values():
                if m.material and m.material not in names["materials"]:
                    r.fail(("materials", m.word), f"material {m.word} names {m.material!r}, which {blend.name} "
                           "does not have", f"materials there: {', '.join(sorted(names['materials'])) or 'none'}")

    digest = hashlib.sha256(raw)
    if blend is not None:
        with open(blend, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    tables = {"shapes": shape_table, "sizes": sizes, "materials": material_table, "colors": colors,
              "conditions": conditions}
    return Kit(name=name, folder=folder.resolve(), path=path.resolve(), blend=blend, description=description,
               rotation=rotation, shapes=shapes, materials=materials, tables=tables, rules=rules, stage=stage,
               heldout=heldout, sha256=digest.hexdigest(), assets_checked=checked or not needs_blend)


def packing_bound(ground: float, radius: float, gap: float) -> int:
    """At most how many discs of `radius` (plus half the gap each) the sampler can place
    with centres in [-ground, ground]^2: it drops them one by one at random positions, and
    such a placement jams when the discs cover about RANDOM_DENSITY of the area they can
    reach (random sequential adsorption; the densest packing would be 0.907)."""
    r = radius + gap / 2
    return max(1, int(RANDOM_DENSITY * (2 * ground + 2 * r) ** 2 / (math.pi * r * r)))


def _blend_path(r: _Reader, head: dict, folder: Path) -> Path | None:
    if "blend" in head:
        p = folder / head["blend"]
        if not p.is_file():
            r.fail(("kit", "blend"), f"blend = {head['blend']!r} does not exist in {folder}",
                   "put the .blend there or fix the name")
        return p.resolve()
    found = sorted(folder.glob("*.blend"))
    if len(found) > 1:
        r.fail(("kit",), f"{folder} holds {len(found)} .blend files", 'name the one to use with blend = "..." under [kit]')
    return found[0].resolve() if found else None


def blend_names(blend: Path) -> dict | None:
    """{"objects", "collections", "materials": names} in a .blend, read with bpy (nothing
    is appended); None when bpy cannot be imported here."""
    try:
        import bpy
    except ImportError:
        return None
    try:
        with bpy.data.libraries.load(str(blend), link=False) as (src, _dst):
            return {"objects": set(src.objects), "collections": set(src.collections),
                    "materials": set(src.materials)}
    except (OSError, RuntimeError) as err:
        raise KitError(f"{blend} cannot be read by Blender ({err}); save it again from Blender.") from None


def _table(r: _Reader, data: dict, key: str) -> dict:
    table = data.get(key)
    if not table:
        r.fail((key,), f"the kit has no {key}" if table is None else f"[{key}] is empty",
               f"list at least one under [{key}]")
    return table


def _asset_source(r: "_Reader", keys: tuple, spec, kind: str, sources: tuple, builtins, allowed: tuple,
                  example: tuple, noun: str) -> tuple[dict, str, str]:
    """One shape or material entry: a built-in's name, or a table naming exactly one source
    (the built-in, or an asset of the kit's .blend). Returns (table, source key, value)."""
    word = keys[-1]
    builtin_key, blend_key, blend_example = sources[0], example[1], example[2]
    if isinstance(spec, str):
        spec = {builtin_key: spec}
    elif not isinstance(spec, dict):
        r.fail(keys, f"{kind} {word} must be a built-in name or a table",
               f'write {word} = "{example[0]}" or {word} = {{ {blend_key} = "{blend_example}" }}')
    _known(r, keys, spec, allowed)
    named = [k for k in sources if k in spec]
    if len(named) != 1:
        r.fail(keys, f"{kind} {word} names {len(named)} sources ({', '.join(named) or 'none'})",
               f"give exactly one of {', '.join(sources)}")
    src = named[0]
    value = _get(r, keys + (src,), spec, str)
    if src == builtin_key and value not in builtins:
        r.fail(keys + (src,), f"{value!r} is not a built-in {noun}",
               f"use one of {', '.join(builtins)}, or {blend_key} = \"...\" for one of the kit's .blend")
    return spec, src, value


def _known(r: _Reader, keys: tuple, table: dict, allowed: tuple) -> None:
    for k in table:
        if k not in allowed:
            r.fail(keys + (k,), f"unknown key {'.'.join(keys + (k,))}", f"known keys there: {', '.join(allowed)}")


def _get(r: _Reader, keys: tuple, table: dict, kind, default=...):
    if keys[-1] not in table:
        if default is ...:
            r.fail(keys[:-1], f"{'.'.join(keys)} is missing", f"add {keys[-1]} = ...")
        return default
    value = table[keys[-1]]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join({int: "a whole number", float: "a number", str: "a string", list: "a list"}[k]
                            for k in kinds)
        r.fail(keys, f"{'.'.join(keys)} = {value!r} is not {names}", f"write it as {names}")
    return value


def _positive(r: _Reader, keys: tuple, table: dict, default: float, zero: bool = False) -> float:
    value = _get(r, keys, table, (int, float), default)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        r.fail(keys, f"{'.'.join(keys)} = {value} is not {'0 or more' if zero else 'positive'}",
               "give a finite number")
    return value


def _synonyms(r: _Reader, keys: tuple, spec: dict, claim) -> list:
    syn = spec.get("synonyms", [])
    if not (isinstance(syn, list) and all(isinstance(s, str) for s in syn)):
        r.fail(keys + ("synonyms",), "synonyms must be a list of words", 'write synonyms = ["grey"]')
    for s in syn:
        claim(s, keys + ("synonyms",))
    return list(syn)


__all__ = ["Kit", "KitError", "KitNotFound", "ShapeAsset", "MaterialAsset", "SceneRules", "Stage", "load_kit",
           "parse_kit", "find_kit", "kit_dirs", "known_kits", "packing_bound", "BUILTIN_KITS", "PRIMITIVES",
           "BUILTIN_MATERIALS"]
