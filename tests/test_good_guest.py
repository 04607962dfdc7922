"""An import is a good guest (issue #23): it adds, names what it adds, and Replace / Rebuild
remove only what an import made — never an object, mesh, material or image of the user's,
wherever they put it. Runs in the bpy module with the add-on registered."""
import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import PROGRAM, orphans, png, scene_settings, snapshot, user_scene  # noqa: E402
from ig_llm.operators import apply  # noqa: E402
from ig_llm.scene.program import parse  # noqa: E402

pytestmark = pytest.mark.usefixtures("registered_addon", "empty_scene")


def _import(name="img", **kw):
    return apply.apply_result(bpy.context.scene, parse(PROGRAM), PROGRAM, name=name, source=f"{name}.png", **kw)


# -- adding only ---------------------------------------------------------------------------
def test_default_import_only_adds(tmp_path):
    user_scene()
    before, objects_before = scene_settings(), set(bpy.data.objects.keys())
    col = apply.apply_result(bpy.context.scene, parse(PROGRAM), PROGRAM, name="CLEVR_x", source="x.png")
    assert scene_settings() == before
    assert set(bpy.data.objects.keys()) - objects_before == {o.name for o in col.objects}
    assert col.name == "CLEVR_x" and len(col.objects) == 2 and not col.children
    assert all(o.type == "MESH" and o.active_material.use_nodes for o in col.objects)
    assert col["ig_llm_text"].as_string() == PROGRAM and bpy.context.scene.ig_llm.program == col["ig_llm_text"]
    assert orphans() == []

    # asked for: its own camera and lamps in a child collection; the user's camera stays active
    img_path = tmp_path / "CLEVR_y.png"
    png(img_path)
    bg = apply.load_image_datablock(str(img_path))
    col2 = apply.apply_result(bpy.context.scene, parse(PROGRAM), PROGRAM, name="CLEVR_y", source=str(img_path),
                              add_camera=True, background_image=bg)
    assert scene_settings() == before
    (rig,) = col2.children
    cams = [o for o in rig.objects if o.type == "CAMERA"]
    assert len(cams) == 1 and cams[0].data.background_images[0].image == bg
    assert len([o for o in rig.objects if o.type == "LIGHT"]) == 4


def test_replace_removes_everything_earlier_results_made_and_leaves_no_orphans(tmp_path):
    user_scene()
    before = scene_settings()
    counts = None
    for i in range(3):    # repeated imports with REPLACE do not pile up
        img_path = tmp_path / f"img{i}.png"
        png(img_path)
        bg = apply.load_image_datablock(str(img_path))
        apply.apply_result(bpy.context.scene, parse(PROGRAM), PROGRAM, name=f"img{i}", source=str(img_path),
                           replace=True, add_camera=True, background_image=bg)
        now = {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "materials", "texts", "images",
                                                       "cameras", "lights", "collections")}
        assert counts is None or now == counts
        counts = now
    assert [c.name for c in apply.result_collections(bpy.context.scene)] == ["img2"]
    assert orphans() == [] and scene_settings() == before
    assert [i.name for i in bpy.data.images] == ["img2.png"]
    # and removing the last result leaves exactly the user's scene
    apply.remove_result(bpy.data.collections["img2"])
    assert orphans() == [] and scene_settings() == before
    assert sorted(bpy.data.objects.keys()) == ["User Camera", "User Cube"]
    assert not bpy.data.texts and not bpy.data.images and not bpy.data.lights and len(bpy.data.cameras) == 1


def test_rebuild_from_edited_text_and_bad_edit_changes_nothing():
    col = apply.apply_result(bpy.context.scene, parse(PROGRAM), PROGRAM, name="img",
                             source="img.png")
    text = col["ig_llm_text"]
    text.clear()
    text.write(PROGRAM.splitlines()[0] + "\n")  # the user deletes the sphere
    assert bpy.ops.ig_llm.rebuild() == {"FINISHED"}
    cols = apply.result_collections(bpy.context.scene)
    assert [c.name for c in cols] == ["img"] and len(cols[0].objects) == 1

    text.write("add(shape='pyramid')\n")  # a typo: nothing may change
    before = snapshot()
    with pytest.raises(RuntimeError, match="Malformed scene program"):
        bpy.ops.ig_llm.rebuild()
    assert snapshot() == before



# -- the user's work survives Replace and Rebuild -------------------------------------------
def _users_things(col):
    """The user's own object moved into the imported collection, their own material and
    mesh assigned to imported objects, and an imported material used by their own cube."""
    mine = bpy.data.objects.new("My Object", bpy.data.meshes.new("My Mesh"))
    col.objects.link(mine)
    cube, sphere = sorted((o for o in col.objects if o.pass_index), key=lambda o: o.pass_index)
    my_mat = bpy.data.materials.new("My Material")
    cube.data.materials[0] = my_mat
    imported_mat = sphere.active_material
    bpy.data.objects["User Cube"].data.materials.append(imported_mat)
    my_mesh = bpy.data.meshes.new("My Other Mesh")
    sphere.data = my_mesh
    return mine, my_mat, imported_mat, my_mesh


def _survived(mine, my_mat, imported_mat, my_mesh, where):
    assert bpy.data.objects.get("My Object") == mine and mine.name in where.objects
    assert bpy.data.materials.get("My Material") == my_mat and (my_mat.users > 0 or my_mat.use_fake_user)
    assert bpy.data.objects["User Cube"].data.materials[0] == imported_mat   # still there, still theirs
    assert bpy.data.meshes.get("My Other Mesh") == my_mesh and my_mesh.users > 0
    assert orphans() == []          # kept with a fake user: saving the file does not drop them


def test_replace_keeps_the_users_objects_materials_and_meshes():
    user_scene()
    col = _import()
    things = _users_things(col)
    new = _import(replace=True)
    assert [c.name for c in apply.result_collections(bpy.context.scene)] == ["img"] and new.name == "img"
    _survived(*things, where=bpy.context.scene.collection)   # moved to the result's parent
    assert "My Object" not in new.objects


def test_rebuild_keeps_the_users_objects_in_the_rebuilt_collection():
    user_scene()
    col = _import()
    things = _users_things(col)
    new = apply.rebuild_from_text(bpy.context.scene, col["ig_llm_text"])
    _survived(*things, where=new)


def test_remove_result_moves_a_users_collection_inside_it_out_whole():
    col = _import(add_camera=True)
    mine = bpy.data.collections.new("My Collection")
    col.children[0].children.link(mine)          # inside the camera rig, even
    obj = bpy.data.objects.new("Inside", None)
    mine.objects.link(obj)
    apply.remove_result(col)
    assert mine.name in bpy.context.scene.collection.children and obj.name in mine.objects


def test_an_image_of_the_users_survives_replace(tmp_path):
    path = tmp_path / "mine.png"
    png(path)
    users_image = bpy.data.images.load(str(path))   # theirs, already in the file
    assert apply.load_image_datablock(str(path)) == users_image
    _import(add_camera=True, background_image=users_image)
    _import(replace=True)
    assert bpy.data.images.get("mine.png") == users_image


# -- names, materials, selection, scale ----------------------------------------------------
def _names(col):
    return sorted(o.name for o in col.all_objects)


def test_objects_are_named_by_import_and_role_unique_and_stable_across_rebuild():
    a = _import("photo")
    b = _import("photo")                          # a second import of the same picture
    assert _names(a) == ["photo cube 1", "photo sphere 2"]
    assert _names(b) == ["photo.001 cube 1", "photo.001 sphere 2"]
    assert {o.data.name for o in a.objects} == {"photo cube 1", "photo sphere 2"}
    rebuilt = apply.rebuild_from_text(bpy.context.scene, a["ig_llm_text"])
    assert rebuilt.name == "photo" and _names(rebuilt) == ["photo cube 1", "photo sphere 2"]


def test_second_replace_with_camera_gives_camera_and_lamps_their_plain_names():
    for _ in range(2):
        col = _import("shot", add_camera=True, replace=True)
    assert col.name == "shot" and col.children[0].name == "shot Camera"
    assert _names(col) == ["shot Back", "shot Camera", "shot Fill", "shot Key", "shot Sun",
                           "shot cube 1", "shot sphere 2"]
    assert col["ig_llm_text"].name == "shot program"


def test_materials_are_per_import_unless_shared_and_are_principled():
    a, b = _import("one"), _import("two")
    mat_a = a.objects["one cube 1"].active_material
    assert mat_a.name == "one red metal" and mat_a != b.objects["two cube 1"].active_material
    nodes = mat_a.node_tree.nodes
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    assert nodes["Material Output"].inputs["Surface"].links[0].from_node == bsdf
    assert bsdf.inputs["Metallic"].default_value == 1.0
    assert tuple(bsdf.inputs["Base Color"].default_value)[:3] == pytest.approx(
        [c / 255 for c in (173, 35, 35)], abs=1e-6)
    assert a.objects["one sphere 2"].active_material.node_tree.nodes["Principled BSDF"].inputs[
        "Metallic"].default_value == 0.0
    c, d = _import("three", share_materials=True), _import("four", share_materials=True)
    shared = c.objects["three cube 1"].active_material
    assert shared == d.objects["four cube 1"].active_material and shared.name == "IG-LLM red metal (shared)"


def test_new_objects_are_selected_and_the_first_is_active():
    cube = user_scene()
    cube.select_set(True)
    bpy.context.view_layer.objects.active = cube
    col = _import()
    first = next(o for o in col.objects if o.pass_index == 1)
    assert bpy.context.view_layer.objects.active == first
    assert sorted(o.name for o in bpy.context.selected_objects) == _names(col)


def test_size_is_applied_to_the_mesh():
    col = _import()
    cube, sphere = (col.objects["img cube 1"], col.objects["img sphere 2"])
    assert tuple(cube.scale) == (1.0, 1.0, 1.0) and tuple(sphere.scale) == (1.0, 1.0, 1.0)
    assert cube.dimensions.z == pytest.approx(1.4, abs=1e-4)      # large: 0.7 x the [-1, 1] mesh
    assert sphere.dimensions.z == pytest.approx(0.7, abs=1e-4)    # small: 0.35
    from ig_llm.scene.builder import scene_from_collection
    assert [o.size for o in scene_from_collection(col).objects] == ["large", "small"]


# -- Match the Picture -----------------------------------------------------------------------
def test_match_the_picture_adds_the_floor_and_the_pictures_render_size(tmp_path):
    user_scene()
    before = scene_settings()
    col = _import(add_camera=False, picture_size=(640, 427))
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (640, 427, 100)
    assert scene.camera.name == "img Camera" and "img Floor" in col.children[0].objects
    assert scene.view_settings.view_transform == "Standard"
    assert scene.world.name == before["world"]   # the world is never touched
    apply.remove_result(col)                 # the floor goes with the rest, the user's camera comes back
    assert "img Floor" not in bpy.data.objects and "img Floor" not in bpy.data.meshes
    assert scene.camera.name == "User Camera"


def test_the_operator_has_match_the_picture_off_by_default_and_one_undo_step():
    """One import is one undo step: Blender pushes one step when an operator with the UNDO
    flag finishes; the job's result is applied inside that call (modal() returns
    FINISHED from finish_job). The bpy module has no undo stack to step back through
    (`ed.undo` fails its poll without a window manager's undo system), so this checks the
    flags and that an undo push is accepted; the undo itself is verified by reading."""
    op = bpy.ops.import_scene.image_to_scene.get_rna_type()
    assert op.properties["match_picture"].default is False
    from ig_llm.operators.image_to_scene import IG_LLM_OT_rebuild, IMPORT_SCENE_OT_image_to_scene
    assert "UNDO" in IMPORT_SCENE_OT_image_to_scene.bl_options and "UNDO" in IG_LLM_OT_rebuild.bl_options
    assert bpy.ops.ed.undo_push(message="IG-LLM import") == {"FINISHED"}


# -- the model still reads what an import builds ------------------------------------------
READABLE = ("add(shape='cube', color='blue', material='rubber', size='large', loc=(-2.200, -1.500, +0.700), rotation=+0.400)\n"
            "add(shape='sphere', color='red', material='metal', size='large', loc=(+0.500, -2.500, +0.700))\n"
            "add(shape='cylinder', color='green', material='rubber', size='small', loc=(+2.300, +0.300, +0.350))\n"
            "add(shape='sphere', color='yellow', material='rubber', size='small', loc=(-0.500, +2.200, +0.350))\n")


def test_a_render_of_an_imported_scene_is_read_back_by_the_shipped_model(tmp_path):
    """The import's Principled materials must keep the picture readable: render the built
    scene on CLEVR's stage and predict it again with the shipped model (NumPy runtime)."""
    pytest.importorskip("safetensors")
    from ig_llm.model.inference import Predictor
    from ig_llm.scene.builder import build_scene
    from ig_llm.scene.stage import configure_render, render_to, setup_stage

    truth = parse(READABLE)
    col = apply.apply_result(bpy.context.scene, truth, READABLE, name="img", source="img.png")
    setup_stage()
    configure_render(480, 320, 32)
    render_to(tmp_path / "rebuilt.png", quiet=True)
    (scene, _program), = Predictor(runtime="numpy").predict([str(tmp_path / "rebuilt.png")])

    def words(s):
        return sorted((o.shape, o.color, o.material, o.size) for o in s.objects)
    assert words(scene) == words(truth)
    assert all(next(n for n in o.active_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
               for o in col.objects)
    # the dataset renderer's build keeps CLEVR's own node setups (the training look)
    clevr = build_scene(truth, collection_name="training look", linked_meshes=True)
    assert not any(n.type == "BSDF_PRINCIPLED" for o in clevr.objects
                   for n in o.material_slots[0].material.node_tree.nodes)
