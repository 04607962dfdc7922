"""Helpers for tests that run in the bpy module: a user's scene, what an import may change."""
import bpy

PROGRAM = ("add(shape='cube', color='red', material='metal', size='large', loc=(-1.000, +2.000, +0.700), rotation=+0.300)\n"
           "add(shape='sphere', color='blue', material='rubber', size='small', loc=(+2.000, -1.000, +0.350))\n")


def png(path, size=(32, 24), rgb=(120, 130, 140)):
    """A small flat-colour PNG written with Blender's own image writer (no Pillow needed)."""
    img = bpy.data.images.new("ig_llm_test_png", width=size[0], height=size[1])
    img.pixels.foreach_set([*(c / 255.0 for c in rgb), 1.0] * (size[0] * size[1]))
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def snapshot():
    """Everything an import could change, by name."""
    d = bpy.data
    return {
        kind: sorted(x.name for x in getattr(d, kind))
        for kind in ("objects", "collections", "meshes", "materials", "texts", "images",
                     "cameras", "lights", "worlds")
    } | {"camera": bpy.context.scene.camera and bpy.context.scene.camera.name}


def user_scene():
    """A user's scene: a world, a camera (active), a cube, their own render/view settings."""
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("User World")
    scene.world.color = (0.2, 0.3, 0.4)
    cam = bpy.data.objects.new("User Camera", bpy.data.cameras.new("User Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cube = bpy.data.objects.new("User Cube", bpy.data.meshes.new("User Cube"))
    scene.collection.objects.link(cube)
    cube.location = (1.0, 2.0, 3.0)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = 777
    scene.view_settings.view_transform = "Filmic" if "Filmic" in [
        i.identifier for i in scene.view_settings.bl_rna.properties["view_transform"].enum_items] else "AgX"
    scene.view_settings.exposure = 0.5
    return cube


def scene_settings():
    scene = bpy.context.scene
    return dict(world=scene.world.name, world_color=tuple(scene.world.color), camera=scene.camera.name,
                engine=scene.render.engine, res=(scene.render.resolution_x, scene.render.resolution_y),
                view=scene.view_settings.view_transform, exposure=scene.view_settings.exposure,
                look=scene.view_settings.look, cube=tuple(bpy.data.objects["User Cube"].location),
                worlds=len(bpy.data.worlds), top=sorted(o.name for o in scene.collection.objects))


def orphans():
    """Datablocks nothing uses (what File > Clean Up would purge)."""
    d = bpy.data
    return sorted(f"{kind}:{x.name}" for kind in ("objects", "meshes", "materials", "texts", "images",
                                                  "cameras", "lights", "collections", "worlds")
                  for x in getattr(d, kind) if x.users == 0 and not x.use_fake_user)
