"""Procedural CLEVR-looking assets: the three shape meshes and the two node materials.

CLEVR ships its shapes and materials as .blend files; here they are rebuilt from numbers
(see reference/clevr.md) so the extension needs no binary assets. Every asset is created
once per .blend and found again by name afterwards, so building many scenes (the dataset
renderer does one per image) costs nothing extra.

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
CUBE_FLAT = 0.77                 # flat faces reach ±0.77; edges rounded by 0.23
CYLINDER_FLAT = 0.92             # flat cap reaches radius 0.92; rims rounded by 0.08
ARC_SEGMENTS = 4                 # segments per rounded edge (quarter circle)
CYLINDER_SEGMENTS = 48           # around the cylinder's axis
SPHERE_SEGMENTS = (48, 24)       # UV sphere (u, v)


# ---------------------------------------------------------------------------------------
# meshes
# ---------------------------------------------------------------------------------------
def shape_mesh(shape: str) -> bpy.types.Mesh:
    """The cached mesh of `shape` ('cube', 'sphere', 'cylinder'), spanning [-1, 1]^3."""
    name = MESH_PREFIX + shape
    mesh = bpy.data.meshes.get(name)
    if mesh is not None:
        return mesh
    builders = {"cube": _rounded_cube, "cylinder": _bevelled_cylinder, "sphere": _uv_sphere}
    if shape not in builders:
        raise KeyError(f"no mesh for shape {shape!r}; known: {', '.join(builders)}")
    verts, faces, normals = builders[shape]()
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
    return mesh


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


# ---------------------------------------------------------------------------------------
# materials
# ---------------------------------------------------------------------------------------
def material(color_name: str, material_name: str, domain: Domain | None = None) -> bpy.types.Material:
    """The cached node material for one (colour, material) pair, e.g. ('red', 'metal').

    The colour is the domain's 0-255 RGB divided by 255, fed straight into the shader's
    Color input as CLEVR does (no sRGB conversion)."""
    domain = domain or load_domain()
    name = f"{MESH_PREFIX}{color_name} {material_name}"
    mat = bpy.data.materials.get(name)
    if mat is not None:
        return mat
    if material_name not in _MATERIAL_BUILDERS:
        raise KeyError(f"no shader for material {material_name!r}; known: {', '.join(_MATERIAL_BUILDERS)}")
    rgba = (*domain.rgb(color_name), 1.0)
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.diffuse_color = rgba           # what Solid view shows
    mat.metallic = 1.0 if material_name == "metal" else 0.0
    mat.roughness = 0.25 if material_name == "metal" else 0.7
    mat["ig_llm_color"], mat["ig_llm_material"] = color_name, material_name
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (600, 0)
    shader = _MATERIAL_BUILDERS[material_name](nodes, links, rgba)
    links.new(shader, out.inputs["Surface"])
    return mat


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


_MATERIAL_BUILDERS = {"rubber": _rubber, "metal": _metal}


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
}
SHARED_SUFFIX = " (shared)"      # shared editable materials: "IG-LLM red metal (shared)"


def editable_material(name: str, color_name: str, material_name: str, domain: Domain | None = None,
                      *, reuse: bool = False) -> bpy.types.Material:
    """A new Principled BSDF material called `name` (Blender may add a suffix) for one
    (colour, material) pair. `reuse`: an existing material of that name made by this
    function for the same pair is returned instead (shared materials); a user's material
    that happens to have the name is never taken over."""
    mat = bpy.data.materials.get(name)
    if reuse and mat is not None and (mat.get("ig_llm_color"), mat.get("ig_llm_material")) == (
            color_name, material_name):
        return mat
    domain = domain or load_domain()
    inputs = PRINCIPLED.get(material_name)
    if inputs is None:
        raise KeyError(f"no shader for material {material_name!r}; known: {', '.join(PRINCIPLED)}")
    rgba = (*domain.rgb(color_name), 1.0)
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.diffuse_color = rgba           # what Solid view shows
    mat.metallic, mat.roughness = inputs["Metallic"], inputs["Roughness"]
    mat["ig_llm_color"], mat["ig_llm_material"] = color_name, material_name
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = rgba
    for key, value in inputs.items():
        bsdf.inputs[key].default_value = value
    return mat


def shared_material_name(color_name: str, material_name: str) -> str:
    return f"{MESH_PREFIX}{color_name} {material_name}{SHARED_SUFFIX}"
