"""Property groups: what the sidebar panel edits (per scene, saved in the .blend) and
the live job state (per window manager, never saved)."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)


class CameraOptions:
    """What an import adds around its objects; shared by the import operator (File > Import)
    and the sidebar's settings (Blender collects annotations from mixins, as ImportHelper's)."""
    add_camera: BoolProperty(name="Camera and Lights", default=False,
                             description="Add a camera and lamps of its own (CLEVR's) to the new collection")
    set_active_camera: BoolProperty(name="Make Camera Active", default=False,
                                    description="Look through the new camera (changes the scene's active camera)")
    set_background: BoolProperty(name="Image as Camera Background", default=True,
                                 description="Show the reference image behind the new camera's view")
    match_picture: BoolProperty(
        name="Match the Picture", default=False,
        description="Set the scene up so a render looks like the picture: CLEVR's camera, lamps and floor, "
                    "the camera made active, the render size set to the picture's and the Standard view "
                    "transform (changes those scene settings)")


class IGLLM_SceneSettings(CameraOptions, bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Source", default="FILE",
        items=(("FILE", "File", "An image file on disk"),
               ("IMAGE", "Image", "An image already in this .blend file")))
    filepath: StringProperty(name="Image File", subtype="FILE_PATH",
                             description="The reference image to turn into a scene")
    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="An image datablock of this .blend file")
    replace: BoolProperty(name="Replace Previous", default=False,
                          description="Remove the scenes IG-LLM built before in this scene")
    program: PointerProperty(name="Program", type=bpy.types.Text,
                             description="The scene program (edit it, then Rebuild)")
    result_objects: IntProperty(name="Objects", default=-1)
    result_seconds: FloatProperty(name="Time", default=0.0, unit="TIME_ABSOLUTE")
    result_collection: StringProperty(name="Collection")
    result_confidence: FloatProperty(name="Confidence", default=-1.0, min=-1.0, max=1.0,
                                     description="How much the picture looked like the training scenes (-1: unknown)")
    result_in_domain: BoolProperty(name="Like the Training Scenes", default=True)


class IGLLM_JobState(bpy.types.PropertyGroup):
    """Mirrors the running job for drawing (the Job object itself lives in Python)."""
    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(default="")
    install_running: BoolProperty(default=False)
    install_progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    install_status: StringProperty(default="")


classes = (IGLLM_SceneSettings, IGLLM_JobState)


def register_properties() -> None:
    bpy.types.Scene.ig_llm = PointerProperty(type=IGLLM_SceneSettings)
    bpy.types.WindowManager.ig_llm_job = PointerProperty(type=IGLLM_JobState)


def unregister_properties() -> None:
    del bpy.types.WindowManager.ig_llm_job
    del bpy.types.Scene.ig_llm
