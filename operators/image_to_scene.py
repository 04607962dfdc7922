"""File > Import > Image to Scene, drag-and-drop, Cancel, Rebuild (Blender main thread).

The operator checks its input on the main thread, then runs :func:`.task.infer` as a
:class:`..jobs.Job`: in a worker thread under Blender's UI (a modal operator polls the
job from a window timer, draws progress, and stops it on Esc or the panel's Cancel), or
synchronously in background mode, where there is no event loop. Only this module and
:mod:`.apply` touch ``bpy.data``, and only once the job has finished successfully —
a failed or cancelled job leaves the scene exactly as it was.
"""
from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..errors import UserError
from ..jobs import Job, JobState
from ..scene.program import ProgramError
from . import apply, task

IMAGE_GLOB = ";".join("*" + ext for ext in task.IMAGE_EXTENSIONS)

# The job the UI shows; one image job at a time (the model is big, the CPU is shared).
ACTIVE: dict[str, Job | None] = {"image": None, "install": None}


def _prefs(context):
    from ..panels.preferences import get_preferences

    return get_preferences(context)


def _tag_redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


def _error_sentence(job: Job) -> str:
    err = job.error
    if isinstance(err, ProgramError):
        return f"The model wrote a program that cannot be built ({err}): try another model or image."
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, MemoryError):
        return "Out of memory while running the model: choose a smaller image or the CPU device."
    return (f"Image to Scene failed ({err.__class__.__name__}: {err}); the scene was not changed. "
            "See the system console for details.")


class IMPORT_SCENE_OT_image_to_scene(bpy.types.Operator, ImportHelper):
    """Turn a reference image into an editable 3D scene (IG-LLM)"""
    bl_idname = "import_scene.image_to_scene"
    bl_label = "Image to Scene"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ""
    filter_glob: StringProperty(default=IMAGE_GLOB, options={"HIDDEN"})
    image_name: StringProperty(
        name="Image Datablock", options={"HIDDEN", "SKIP_SAVE"},
        description="Use this image of the .blend instead of a file")
    model_dir: StringProperty(
        name="Model", subtype="DIR_PATH", default="",
        description="Checkpoint folder; empty = the add-on preferences' model (default: shipped)")
    mode: EnumProperty(
        name="Mode", default="ADD",
        items=(("ADD", "Add", "Add a new collection beside what is there"),
               ("REPLACE", "Replace", "Remove the collections IG-LLM built before")))
    add_stage: BoolProperty(name="Camera and Lights", default=True,
                            description="Add the matching CLEVR camera, lamps and backdrop")
    set_background: BoolProperty(name="Image as Camera Background", default=True,
                                 description="Show the reference image behind the camera view")

    _job: Job | None = None
    _timer = None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.label(text="Model", icon="FILE_FOLDER")
        layout.prop(self, "model_dir", text="")
        layout.label(text="Scene", icon="SCENE_DATA")
        layout.prop(self, "mode", expand=True)
        layout.prop(self, "add_stage")
        sub = layout.row()
        sub.enabled = self.add_stage
        sub.prop(self, "set_background")

    def invoke(self, context, event):
        if self.filepath or self.image_name:  # dropped on the viewport, or the panel's Run
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    # -- main-thread checks, then the job ------------------------------------------------
    def _request(self, context) -> dict:
        """Check everything cheap before a job starts; raises a UserError."""
        task.check_runtime()
        prefs = _prefs(context)
        model_dir = self.model_dir or (prefs.model_dir if prefs else "")
        model = task.check_model_dir(bpy.path.abspath(model_dir) if model_dir else None)
        if self.image_name:
            img = bpy.data.images.get(self.image_name)
            if img is None:
                raise task.TaskError(f"No image called {self.image_name!r} in this file: pick another image.")
            pixels = _image_pixels(img)
            source, name, label = pixels, img.name, img.filepath or img.name
        else:
            path = task.check_image_file(bpy.path.abspath(self.filepath))
            source, name, label = str(path), path.name, str(path)
        return dict(image=source, image_name=name, label=label, model_dir=model,
                    device=prefs.device if prefs else "auto", threads=prefs.threads if prefs else 0)

    def execute(self, context):
        if ACTIVE["image"] is not None and not ACTIVE["image"].finished:
            self.report({"ERROR"}, "An Image to Scene job is already running: wait for it or press Cancel.")
            return {"CANCELLED"}
        try:
            req = self._request(context)
        except UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._req = req
        job = Job(task.infer, req["image"], model_dir=req["model_dir"], device=req["device"],
                  threads=req["threads"], image_name=req["image_name"], name="image")
        ACTIVE["image"] = job
        if bpy.app.background or context.window is None:  # no event loop: run here
            job.run_sync()
            return self._finish(context, job)
        state = context.window_manager.ig_llm_job
        state.running, state.progress, state.status = True, 0.0, "Starting"
        job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = ACTIVE["image"]
        if job is None:
            return self._stop(context, {"CANCELLED"})
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}  # the rest of Blender keeps working
        job.poll()
        state = context.window_manager.ig_llm_job
        state.progress, state.status = job.fraction, job.text
        _tag_redraw(context)
        if not job.finished:
            return {"PASS_THROUGH"}
        return self._finish(context, job)

    def _stop(self, context, result):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.ig_llm_job.running = False
        _tag_redraw(context)
        return result

    def _finish(self, context, job: Job):
        """Main thread: hand the finished job's result over to Blender data."""
        state = context.window_manager.ig_llm_job
        if job.state is JobState.CANCELLED:
            state.status = "Cancelled"
            self.report({"WARNING"}, "Image to Scene was cancelled; the scene was not changed.")
            return self._stop(context, {"CANCELLED"})
        if job.state is JobState.FAILED:
            state.status = "Failed"
            if not isinstance(job.error, UserError):
                print(job.error_traceback)
            self.report({"ERROR"}, _error_sentence(job))
            return self._stop(context, {"CANCELLED"})
        scene, program = job.result
        req = self._req
        bg = None
        try:
            if self.add_stage and self.set_background:
                bg = (bpy.data.images.get(self.image_name) if self.image_name
                      else apply.load_image_datablock(req["image"]))
            col = apply.apply_result(
                context.scene, scene, program, name=apply.collection_name_for(req["image_name"]),
                source=req["label"], replace=self.mode == "REPLACE", add_stage=self.add_stage,
                background_image=bg)
        except (ProgramError, RuntimeError) as exc:
            if bg is not None and not self.image_name and bg.users == 0:
                bpy.data.images.remove(bg)  # loaded for this run only: leave no trace
            state.status = "Failed"
            self.report({"ERROR"}, f"The model wrote a program that cannot be built ({exc}): "
                                   "try another model or image.")
            return self._stop(context, {"CANCELLED"})
        settings = context.scene.ig_llm
        settings.result_objects = len(col.objects)
        settings.result_seconds = job.seconds
        settings.result_collection = col.name
        state.progress, state.status = 1.0, "Done"
        self.report({"INFO"}, f"Built {len(col.objects)} objects in collection '{col.name}' "
                              f"in {job.seconds:.1f} s.")
        return self._stop(context, {"FINISHED"})


def _image_pixels(img):
    """An Image datablock's pixels as an (H, W, 4) float array, top row first."""
    import numpy as np

    width, height = img.size[:]
    if width == 0 or height == 0:
        if img.source == "FILE" and img.filepath and not os.path.isfile(bpy.path.abspath(img.filepath)):
            raise task.TaskError(f"The image {img.name} has no pixels: its file {img.filepath} is missing.")
        raise task.TaskError(f"The image {img.name} is empty (0 x 0 pixels): choose another image.")
    task._check_size(width, height, img.name)
    buf = np.empty(width * height * 4, dtype=np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(height, width, 4)[::-1].copy()


class IG_LLM_OT_cancel_job(bpy.types.Operator):
    """Stop the running IG-LLM job; the scene stays as it was"""
    bl_idname = "ig_llm.cancel_job"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        stopped = False
        for key, job in ACTIVE.items():
            if job is not None and not job.finished:
                job.cancel()
                stopped = True
        if not stopped:
            self.report({"INFO"}, "No IG-LLM job is running.")
        return {"FINISHED"}


class IG_LLM_OT_rebuild(bpy.types.Operator):
    """Rebuild the scene from the (edited) program text"""
    bl_idname = "ig_llm.rebuild"
    bl_label = "Rebuild from Program"
    bl_options = {"REGISTER", "UNDO"}

    text_name: StringProperty(name="Text", options={"SKIP_SAVE"},
                              description="Text datablock with the program; empty = the panel's")

    def execute(self, context):
        text = bpy.data.texts.get(self.text_name) if self.text_name else context.scene.ig_llm.program
        if text is None:
            self.report({"ERROR"}, "No program to rebuild from: run Image to Scene first or pick a Text.")
            return {"CANCELLED"}
        try:
            col = apply.rebuild_from_text(context.scene, text)
        except ProgramError as exc:
            self.report({"ERROR"}, f"{exc} — fix the text '{text.name}' and Rebuild again.")
            return {"CANCELLED"}
        context.scene.ig_llm.result_objects = len(col.objects)
        context.scene.ig_llm.result_collection = col.name
        self.report({"INFO"}, f"Rebuilt {len(col.objects)} objects in collection '{col.name}'.")
        return {"FINISHED"}


class IMPORT_SCENE_FH_image_to_scene(bpy.types.FileHandler):
    """Drop an image on the 3D Viewport to turn it into a scene."""
    bl_idname = "IMPORT_SCENE_FH_image_to_scene"
    bl_label = "Image to Scene (IG-LLM)"
    bl_import_operator = "import_scene.image_to_scene"
    bl_file_extensions = ";".join(task.IMAGE_EXTENSIONS)

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def menu_import(self, context):
    self.layout.operator(IMPORT_SCENE_OT_image_to_scene.bl_idname, text="Image to Scene (IG-LLM)")


classes = (IMPORT_SCENE_OT_image_to_scene, IG_LLM_OT_cancel_job, IG_LLM_OT_rebuild,
           IMPORT_SCENE_FH_image_to_scene)
