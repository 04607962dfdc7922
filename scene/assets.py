"""Procedural CLEVR-looking assets: the three shape meshes and the two node materials,
plus what asset kits (scene/kits.py) bring: Blender's primitives, a third built-in
material (plastic), and the objects, collections and materials of a kit's .blend.

CLEVR ships its shapes and materials as .blend files; here they are rebuilt from numbers
(see reference/clevr.md) so the extension needs no binary assets. Every asset is created
once per .blend and found again by name afterwards, so building many scenes (the dataset
renderer does one per image) costs nothing extra. Cached meshes carry
``mesh["ig_llm_cached"]``; the builder copies them (or links them, for throw-away renders).

Every shape mesh fits in [-1, 1]^3 with its lowest point at z = -1 and its vertical axis
through the origin, so an object of scale s placed at z = s stands on the floor. A kit's
.blend object (or collection, its meshes joined) is appended, its modifiers applied, and
moved and scaled to that box; its own materials are dropped (the kit's colour and
material words dress it), and the appended datablocks nothing uses are removed again.

Meshes are built with bmesh only: no operator that needs a window or a context, so this
works in the `bpy` module in background mode.
"""
from __future__ import annotations

import math

import bmesh
import bpy
from mathutils import Vector

from .domain import Domain, load_domain

MESH_PREFIX = "IG-LLM "          # mesh "IG-LLM cube", material "IG-LLM red metal"
CACHED = "ig_llm_cached"         # on every cached (template) mesh
CUBE_FLAT = 0.77                 # flat faces reach ±0.77; edges rounded by 0.23
CYLINDER_FLAT = 0.92             # flat cap reaches radius 0.92; rims rounded by 0.08
ARC_SEGMENTS = 4                 # segments per rounded edge (quarter circle)
CYLINDER_SEGMENTS = 48           # around the cylinder's axis
SPHERE_SEGMENTS = (48, 24)       # UV sphere (u, v)


# ---------------------------------------------------------------------------------------
# meshes
# ---------------------------------------------------------------------------------------
CLEVR_SHAPES = {"cube": "rounded_cube", "sphere": "uv_sphere", "cylinder": "bevelled_cylinder"}
# primitive -> cached mesh name (CLEVR's three keep their names from before kits)
PRIMITIVE_MESHES = {"rounded_cube": "cube", "uv_sphere": "sphere", "sphere": "sphere",
                    "bevelled_cylinder": "cylinder", "cube": "box", "cylinder": "plain cylinder", "cone": "cone",
                    "torus": "torus", "suzanne": "suzanne", "icosphere": "icosphere"}
SMOOTH_ANGLE = math.radians(40)  # Blender's primitives: edges sharper than this stay sharp
TORUS_RADII = (0.65, 0.35)       # major, minor (outer radius 1)


def shape_mesh(shape: str, domain: Domain | None = None) -> bpy.types.Mesh:
    """The cached mesh of the shape word `shape`: CLEVR's ('cube', 'sphere', 'cylinder'),
    or what the domain's kit says (a primitive, or an object / collection of its .blend)."""
    kit = getattr(domain, "kit", None)
    if kit is None:
        if shape not in CLEVR_SHAPES:
            raise KeyError(f"no mesh for shape {shape!r}; known: {', '.join(CLEVR_SHAPES)}")
        return primitive_mesh(CLEVR_SHAPES[shape])
    asset = kit.shapes.get(shape)
    if asset is None:
        raise KeyError(f"no mesh for shape {shape!r} in kit {kit.name}; known: {', '.join(kit.shapes)}")
    return primitive_mesh(asset.primitive) if asset.primitive else blend_mesh(kit, asset)


def own_copy(mesh: bpy.types.Mesh) -> bpy.types.Mesh:
    """A copy of a cached mesh that is an object's own (not marked as a template)."""
    copy = mesh.copy()
    if CACHED in copy:
        del copy[CACHED]
    return copy


def primitive_mesh(primitive: str) -> bpy.types.Mesh:
    """The cached mesh of one built-in primitive (scene/kits.py PRIMITIVES)."""
    if primitive not in PRIMITIVE_MESHES:
        raise KeyError(f"no built-in primitive {primitive!r}; known: {', '.join(PRIMITIVE_MESHES)}")
    name = MESH_PREFIX + PRIMITIVE_MESHES[primitive]
    mesh = bpy.data.meshes.get(name)
    if mesh is not None:
        return mesh
    if primitive not in _CLEVR_BUILDERS:
        return _blender_primitive(primitive, name)
    verts, faces, normals = _CLEVR_BUILDERS[primitive]()
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bm_verts = [bm.verts.new(v) for v in verts]
    for f in faces:
        bm.faces.new([bm_verts[i] for i in f])
    for f in bm.faces:
        f.smooth = True
    bm.to_mesh(mesh)
    bm.free()
    # Exact (analytic) normals: with plain smooth shading the big flat faces of the cube
    # and the caps of the cylinder would shade with a gradient towards their rounded rims.
    mesh.normals_split_custom_set_from_vertices([tuple(n) for n in normals])
    mesh.use_fake_user = False
    mesh[CACHED] = True
    return mesh


def _blender_primitive(primitive: str, name: str) -> bpy.types.Mesh:
    """One of Blender's own primitives, made with bmesh.ops (no operator, no context),
    fitted to the shape box; smooth, with edges sharper than SMOOTH_ANGLE kept sharp."""
    bm = bmesh.new()
    if primitive == "cube":
        bmesh.ops.create_cube(bm, size=2.0)
    elif primitive in ("cylinder", "cone"):
        bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments=CYLINDER_SEGMENTS, radius1=1.0,
                              radius2=1.0 if primitive == "cylinder" else 0.0, depth=2.0)
    elif primitive == "torus":
        _torus(bm, *TORUS_RADII)
    elif primitive == "suzanne":
        bmesh.ops.create_monkey(bm)
    elif primitive == "icosphere":      # turned to stand on a face (three-fold about Z), not on a tip
        bmesh.ops.create_icosphere(bm, subdivisions=1, radius=1.0)
        bm.normal_update()
        down = min(bm.faces, key=lambda f: f.normal.z).normal
        bmesh.ops.rotate(bm, verts=bm.verts[:], cent=(0.0, 0.0, 0.0),
                         matrix=down.rotation_difference(Vector((0.0, 0.0, -1.0))).to_matrix())
    for f in bm.faces:
        f.smooth = True
    fit_to_shape_box(bm)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    mesh.set_sharp_from_angle(angle=SMOOTH_ANGLE)
    mesh[CACHED] = True
    return mesh


def _torus(bm, major: float, minor: float, segments: int = CYLINDER_SEGMENTS, rings: int = 16) -> None:
    """A torus about Z (Blender's Add > Torus, made with bmesh)."""
    grid = []
    for i in range(segments):
        u = 2 * math.pi * i / segments
        row = []
        for j in range(rings):
            v = 2 * math.pi * j / rings
            rad = major + minor * math.cos(v)
            row.append(bm.verts.new((rad * math.cos(u), rad * math.sin(u), minor * math.sin(v))))
        grid.append(row)
    for i in range(segments):
        for j in range(rings):
            a, b = grid[i][j], grid[(i + 1) % segments][j]
            c, d = grid[(i + 1) % segments][(j + 1) % rings], grid[i][(j + 1) % rings]
            bm.faces.new((a, b, c, d))
    bmesh.ops.recalc_face_normals(bm, faces=bm.faces[:])


def fit_to_shape_box(bm) -> None:
    """Move and scale a bmesh so it fits [-1, 1]^3: centred in x and y, its largest
    half-extent 1, its lowest point at z = -1 (an object of scale s at z = s stands on
    the floor)."""
    if not bm.verts:
        return
    lo = [min(v.co[k] for v in bm.verts) for k in range(3)]
    hi = [max(v.co[k] for v in bm.verts) for k in range(3)]
    half = max((h - l) / 2 for l, h in zip(lo, hi)) or 1.0
    centre = Vector(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]))
    for v in bm.verts:
        v.co = (v.co - centre) / half + Vector((0.0, 0.0, -1.0))


def blend_mesh(kit, asset) -> bpy.types.Mesh:
    """The cached mesh of a kit shape that is an object or a collection of the kit's .blend:
    appended, modifiers applied, joined (a collection), fitted to the shape box; what was
    appended and is not needed afterwards is removed again. KitError when the .blend lacks it."""
    from .kits import KitError
    name = f"{MESH_PREFIX}{kit.name} {asset.word}"
    mesh = bpy.data.meshes.get(name)
    if mesh is not None and mesh.get("ig_llm_kit") == kit.sha256:
        return mesh
    before = _datablocks()
    with bpy.data.libraries.load(str(kit.blend), link=False) as (src, dst):
        if asset.object:
            dst.objects = [asset.object] if asset.object in src.objects else []
        else:
            dst.collections = [asset.collection] if asset.collection in src.collections else []
    try:
        if asset.object:
            objs = [o for o in dst.objects if o is not None]
        else:
            objs = [o for c in dst.collections if c is not None for o in c.all_objects]
        objs = [o for o in objs if o.type in ("MESH", "CURVE", "SURFACE", "META", "FONT")]
        if not objs:
            raise KitError(f"{kit.path}: shape {asset.word} names {asset.source}, which {kit.blend.name} does not "
                           "have as a mesh; fix the name in kit.toml or add it to the .blend.")
        bm = bmesh.new()
        holder = bpy.data.collections.new("IG-LLM kit import")
        scene = bpy.context.scene
        scene.collection.children.link(holder)
        try:
            for o in objs:
                if o.name not in holder.objects:
                    holder.objects.link(o)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            depsgraph.update()
            for o in objs:
                evaluated = o.evaluated_get(depsgraph)
                part = bpy.data.meshes.new_from_object(evaluated, preserve_all_data_layers=False, depsgraph=depsgraph)
                part.transform(o.matrix_world)
                bm.from_mesh(part)
                bpy.data.meshes.remove(part)
        finally:
            scene.collection.children.unlink(holder)
            bpy.data.collections.remove(holder)
        for f in bm.faces:
            f.material_index = 0
        fit_to_shape_box(bm)
        if mesh is not None:           # a stale cache of an earlier version of the kit
            mesh.name = mesh.name + " (old)"
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
        bm.free()
        mesh[CACHED] = True
        mesh["ig_llm_kit"] = kit.sha256
        mesh["ig_llm_source"] = asset.source
        return mesh
    finally:
        _remove_new_unused(before, keep={name})


_APPENDABLE = ("objects", "meshes", "curves", "materials", "collections", "node_groups", "images", "textures",
               "lights", "cameras", "metaballs", "fonts")


def _datablocks() -> set[int]:
    return {b.as_pointer() for kind in _APPENDABLE for b in getattr(bpy.data, kind)}


def _remove_new_unused(before: set[int], keep=()) -> None:
    """Remove what an append brought in (objects first, then whatever is left unused)."""
    for obj in [o for o in bpy.data.objects if o.as_pointer() not in before]:
        bpy.data.objects.remove(obj, do_unlink=True)
    for coll in [c for c in bpy.data.collections if c.as_pointer() not in before]:
        bpy.data.collections.remove(coll)
    for _ in range(3):                   # materials free node groups, which free images
        for kind in _APPENDABLE[1:]:
            pool = getattr(bpy.data, kind)
            for block in [b for b in pool if b.as_pointer() not in before and b.users == 0 and b.name not in keep]:
                pool.remove(block)


def _rounded_cube():
    """Rounded box: each point q of a subdivided cube surface is moved to
    clamp(q) + r * normalize(q - clamp(q)), which is flat inside ±CUBE_FLAT and a
    quarter circle of radius r = 1 - CUBE_FLAT over every edge and corner."""
    r = 1.0 - CUBE_FLAT
    # grid coordinates along one face axis: the arc steps are spaced by equal angles
    arc = [CUBE_FLAT + r * math.tan(k / ARC_SEGMENTS * math.pi / 4) for k in range(ARC_SEGMENTS + 1)]
    ts = [-t for t in reversed(arc)] + arc
    index, verts, normals, faces = {}, [], [], []

    def vert(q):
        key = tuple(round(c, 6) for c in q)
        if key not in index:
            c = Vector([max(-CUBE_FLAT, min(CUBE_FLAT, x)) for x in q])
            d = Vector(q) - c
            n = d.normalized() if d.length > 1e-9 else None
            index[key] = len(verts)
            verts.append(c + n * r if n is not None else Vector(q))
            normals.append(n)
        return index[key]

    for axis in range(3):
        for sign in (-1.0, 1.0):
            # cyclic axes: u x v points along +axis; swapped for the negative side
            u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
            if sign < 0:  # keep every face's winding outward
                u_axis, v_axis = v_axis, u_axis
            grid = []
            for tu in ts:
                row = []
                for tv in ts:
                    q = [0.0, 0.0, 0.0]
                    q[axis], q[u_axis], q[v_axis] = sign, tu, tv
                    row.append(vert(q))
                grid.append(row)
            face_normal = [0.0, 0.0, 0.0]
            face_normal[axis] = sign
            for i in range(len(ts) - 1):
                for j in range(len(ts) - 1):
                    faces.append((grid[i][j], grid[i + 1][j], grid[i + 1][j + 1], grid[i][j + 1]))
            # vertices on the flat part of this face take the face normal
            for row in grid:
                for vi in row:
                    if normals[vi] is None:
                        normals[vi] = Vector(face_normal)
    return verts, faces, normals


def _bevelled_cylinder():
    """Radius 1, height 2, rims rounded so the flat caps reach radius CYLINDER_FLAT:
    a profile in (radius, z) revolved about Z."""
    r = 1.0 - CYLINDER_FLAT
    profile = []  # (radius, z, normal_r, normal_z) from the top centre down to the bottom centre
    profile.append((0.0, 1.0, 0.0, 1.0))
    for k in range(ARC_SEGMENTS + 1):            # top rim: from the cap to the side
        a = k / ARC_SEGMENTS * math.pi / 2
        profile.append((CYLINDER_FLAT + r * math.sin(a), CYLINDER_FLAT + r * math.cos(a), math.sin(a), math.cos(a)))
    for k in range(ARC_SEGMENTS + 1):            # bottom rim: from the side to the cap
        a = math.pi / 2 + k / ARC_SEGMENTS * math.pi / 2
        profile.append((CYLINDER_FLAT + r * math.sin(a), -CYLINDER_FLAT + r * math.cos(a), math.sin(a), math.cos(a)))
    profile.append((0.0, -1.0, 0.0, -1.0))

    verts, normals, faces = [], [], []
    top = len(verts)
    verts.append(Vector((0, 0, 1)))
    normals.append(Vector((0, 0, 1)))
    rings = profile[1:-1]
    for s in range(CYLINDER_SEGMENTS):
        phi = 2 * math.pi * s / CYLINDER_SEGMENTS
        c, sn = math.cos(phi), math.sin(phi)
        for rad, z, nr, nz in rings:
            verts.append(Vector((rad * c, rad * sn, z)))
            normals.append(Vector((nr * c, nr * sn, nz)).normalized())
    bottom = len(verts)
    verts.append(Vector((0, 0, -1)))
    normals.append(Vector((0, 0, -1)))

    n = len(rings)

    def at(s, k):
        return 1 + (s % CYLINDER_SEGMENTS) * n + k

    for s in range(CYLINDER_SEGMENTS):
        faces.append((top, at(s, 0), at(s + 1, 0)))
        for k in range(n - 1):
            faces.append((at(s, k), at(s, k + 1), at(s + 1, k + 1), at(s + 1, k)))
        faces.append((bottom, at(s + 1, n - 1), at(s, n - 1)))
    return verts, faces, normals


def _uv_sphere():
    """Radius-1 UV sphere; the normal of every vertex is its position."""
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=SPHERE_SEGMENTS[0], v_segments=SPHERE_SEGMENTS[1], radius=1.0)
    bm.verts.index_update()
    verts = [v.co.copy() for v in bm.verts]
    faces = [tuple(v.index for v in f.verts) for f in bm.faces]
    bm.free()
    return verts, faces, [v.normalized() for v in verts]


_CLEVR_BUILDERS = {"rounded_cube": _rounded_cube, "bevelled_cylinder": _bevelled_cylinder, "uv_sphere": _uv_sphere,
                   "sphere": _uv_sphere}


# ---------------------------------------------------------------------------------------
# materials
# ---------------------------------------------------------------------------------------
def material(color_name: str, material_name: str, domain: Domain | None = None) -> bpy.types.Material:
    """The cached node material for one (colour, material) pair, e.g. ('red', 'metal').

    The colour is the domain's 0-255 RGB divided by 255, fed straight into the shader's
    Color input as CLEVR does (no sRGB conversion). A kit's material word is a built-in
    (rubber, metal, plastic) or a material of its .blend, tinted with the colour."""
    domain = domain or load_domain()
    kit = domain.kit
    name = f"{MESH_PREFIX}{color_name} {material_name}" if kit is None else \
        f"{MESH_PREFIX}{kit.name} {color_name} {material_name}"
    mat = bpy.data.materials.get(name)
    if mat is not None and (kit is None or mat.get("ig_llm_kit") == kit.sha256):
        return mat
    builtin, source = material_source(material_name, kit)
    rgba = (*domain.rgb(color_name), 1.0)
    if source is not None:
        mat = tinted_material(kit, source, name, rgba)
    else:
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        nodes.clear()
        out = nodes.new("ShaderNodeOutputMaterial")
        out.location = (600, 0)
        shader = _MATERIAL_BUILDERS[builtin](nodes, links, rgba)
        links.new(shader, out.inputs["Surface"])
        mat.metallic = 1.0 if builtin == "metal" else 0.0
        mat.roughness = {"metal": 0.25, "plastic": 0.15}.get(builtin, 0.7)
    mat.diffuse_color = rgba           # what Solid view shows
    mat["ig_llm_color"], mat["ig_llm_material"] = color_name, material_name
    if kit is not None:
        mat["ig_llm_kit"] = kit.sha256
    return mat


def material_source(material_name: str, kit) -> tuple[str | None, str | None]:
    """(built-in shader name, None) or (None, the kit .blend's material name) of a material word."""
    if kit is None:
        if material_name not in _MATERIAL_BUILDERS:
            raise KeyError(f"no shader for material {material_name!r}; known: {', '.join(_MATERIAL_BUILDERS)}")
        return material_name, None
    asset = kit.materials.get(material_name)
    if asset is None:
        raise KeyError(f"no material {material_name!r} in kit {kit.name}; known: {', '.join(kit.materials)}")
    return asset.builtin, asset.material


def tinted_material(kit, source: str, name: str, rgba) -> bpy.types.Material:
    """A copy of the kit .blend's material `source` named `name`, its colour set to `rgba`:
    every unlinked Base Color of a Principled BSDF, every RGB node named or labelled
    "Color", and every unlinked "Color" input of a node group get it."""
    from .kits import KitError
    original = _appended_material(kit, source)
    if original is None:
        raise KitError(f"{kit.path}: a material word names material {source!r}, which {kit.blend.name} does not "
                       "have; fix the name in kit.toml or add it to the .blend.")
    mat = original.copy()
    mat.name = name
    if mat.node_tree is not None:
        for node in mat.node_tree.nodes:
            if node.type == "BSDF_PRINCIPLED" and not node.inputs["Base Color"].is_linked:
                node.inputs["Base Color"].default_value = rgba
            elif node.type == "RGB" and "color" in (node.label or node.name).lower().replace("colour", "color"):
                node.outputs[0].default_value = rgba
            elif node.type == "GROUP" and "Color" in node.inputs and not node.inputs["Color"].is_linked:
                node.inputs["Color"].default_value = rgba
    return mat


def _appended_material(kit, source: str):
    """The kit .blend's material `source`, appended once per kit version (a template that
    the per-colour copies share node groups and images with)."""
    name = f"{MESH_PREFIX}{kit.name} {source} (from the kit)"
    mat = bpy.data.materials.get(name)
    if mat is not None and mat.get("ig_llm_kit") == kit.sha256:
        return mat
    with bpy.data.libraries.load(str(kit.blend), link=False) as (src, dst):
        dst.materials = [source] if source in src.materials else []
    got = next((m for m in dst.materials if m is not None), None)
    if got is not None:
        got.name = name
        got["ig_llm_kit"] = kit.sha256
    return got


def _glossy(nodes, color, roughness, distribution, location):
    # Blender 4.x names the Glossy BSDF node "ShaderNodeBsdfAnisotropic" (it merged the two).
    node = nodes.new("ShaderNodeBsdfAnisotropic")
    node.distribution = distribution
    node.inputs["Color"].default_value = color
    node.inputs["Roughness"].default_value = roughness
    node.location = location
    return node


def _rubber(nodes, links, rgba):
    """Fresnel-weighted Diffuse/Sheen mix, then a Fresnel(IOR 1.2) mix with a white glossy
    (CLEVR's 'Rubber' group: matte with a faint sheen)."""
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Color"].default_value = rgba
    diffuse.location = (-400, 150)
    sheen = nodes.new("ShaderNodeBsdfSheen")
    sheen.distribution = "ASHIKHMIN"    # the old Velvet BSDF
    sheen.inputs["Color"].default_value = rgba
    sheen.inputs["Roughness"].default_value = 1.0
    sheen.location = (-400, 0)
    fresnel_a = nodes.new("ShaderNodeFresnel")
    fresnel_a.location = (-400, 300)
    mix_a = nodes.new("ShaderNodeMixShader")
    mix_a.location = (-150, 150)
    links.new(fresnel_a.outputs["Fac"], mix_a.inputs["Fac"])
    links.new(diffuse.outputs["BSDF"], mix_a.inputs[1])
    links.new(sheen.outputs[0], mix_a.inputs[2])

    glossy = _glossy(nodes, (1.0, 1.0, 1.0, 1.0), 0.59, "BECKMANN", (-150, -100))
    fresnel_b = nodes.new("ShaderNodeFresnel")
    fresnel_b.inputs["IOR"].default_value = 1.2
    fresnel_b.location = (-150, 300)
    mix_b = nodes.new("ShaderNodeMixShader")
    mix_b.location = (200, 0)
    links.new(fresnel_b.outputs["Fac"], mix_b.inputs["Fac"])
    links.new(mix_a.outputs["Shader"], mix_b.inputs[1])
    links.new(glossy.outputs["BSDF"], mix_b.inputs[2])
    return mix_b.outputs["Shader"]


def _metal(nodes, links, rgba):
    """40 % rough glossy (GGX 0.447) + 60 % sharp glossy (0.1), both tinted by the colour."""
    rough = _glossy(nodes, rgba, 0.447, "GGX", (-250, 100))
    sharp = _glossy(nodes, rgba, 0.1, "GGX", (-250, -100))
    mix = nodes.new("ShaderNodeMixShader")
    mix.inputs["Fac"].default_value = 0.6   # weight of the second (sharp) shader
    mix.location = (200, 0)
    links.new(rough.outputs["BSDF"], mix.inputs[1])
    links.new(sharp.outputs["BSDF"], mix.inputs[2])
    return mix.outputs["Shader"]


def _plastic(nodes, links, rgba):
    """Glossy plastic (a kit's third built-in): one Principled BSDF, dielectric, smooth."""
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.location = (200, 0)
    for key, value in PRINCIPLED["plastic"].items():
        bsdf.inputs[key].default_value = value
    bsdf.inputs["Base Color"].default_value = rgba
    return bsdf.outputs["BSDF"]


_MATERIAL_BUILDERS = {"rubber": _rubber, "metal": _metal, "plastic": _plastic}


# ---------------------------------------------------------------------------------------
# editable materials (what an import gives the user)
# ---------------------------------------------------------------------------------------
# The CLEVR node setups above reproduce the training renders exactly, but an artist cannot
# tune a Diffuse/Sheen/Glossy mix with the usual controls. Imports get one Principled BSDF
# instead, set to look like CLEVR's (checked by re-predicting a render of a built scene:
# tests/test_good_guest.py). The dataset renderer keeps the CLEVR setups.
PRINCIPLED = {   # material word -> Principled inputs
    "rubber": {"Metallic": 0.0, "Roughness": 0.6, "IOR": 1.2},
    "metal": {"Metallic": 1.0, "Roughness": 0.25, "IOR": 1.45},
    "plastic": {"Metallic": 0.0, "Roughness": 0.15, "IOR": 1.5},
}
SHARED_SUFFIX = " (shared)"      # shared editable materials: "IG-LLM red metal (shared)"


def editable_material(name: str, color_name: str, material_name: str, domain: Domain | None = None,
                      *, reuse: bool = False) -> bpy.types.Material:
    """A new Principled BSDF material called `name` (Blender may add a suffix) for one
    (colour, material) pair. `reuse`: an existing material of that name made by this
    function for the same pair is returned instead (shared materials); a user's material
    that happens to have the name is never taken over."""
    domain = domain or load_domain()
    kit_hash = domain.kit.sha256 if domain.kit is not None else None
    mat = bpy.data.materials.get(name)
    if reuse and mat is not None and (mat.get("ig_llm_color"), mat.get("ig_llm_material"),
                                      mat.get("ig_llm_kit")) == (color_name, material_name, kit_hash):
        return mat
    builtin, source = material_source(material_name, domain.kit)
    rgba = (*domain.rgb(color_name), 1.0)
    if source is not None:            # a kit's own material: a tinted copy, as artists made it
        mat = tinted_material(domain.kit, source, name, rgba)
        mat.diffuse_color = rgba
        mat["ig_llm_color"], mat["ig_llm_material"], mat["ig_llm_kit"] = color_name, material_name, kit_hash
        return mat
    inputs = PRINCIPLED.get(builtin)
    if inputs is None:
        raise KeyError(f"no shader for material {material_name!r}; known: {', '.join(PRINCIPLED)}")
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.diffuse_color = rgba           # what Solid view shows
    mat.metallic, mat.roughness = inputs["Metallic"], inputs["Roughness"]
    mat["ig_llm_color"], mat["ig_llm_material"] = color_name, material_name
    if kit_hash is not None:
        mat["ig_llm_kit"] = kit_hash
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = rgba
    for key, value in inputs.items():
        bsdf.inputs[key].default_value = value
    return mat


def shared_material_name(color_name: str, material_name: str) -> str:
    return f"{MESH_PREFIX}{color_name} {material_name}{SHARED_SUFFIX}"
