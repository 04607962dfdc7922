"""File > Import > Image to Scene, drag-and-drop, Cancel, Rebuild (Blender main thread).

The operator checks its input on the main thread, then runs :func:`.task.infer` as a
:class:`..jobs.Job` through :class:`.modal.JobOperatorMixin`: in a worker thread under
Blender's UI (progress in the status bar and the sidebar, Esc or Cancel stops it), or
synchronously in background mode, where there is no event loop. Only this module and
:mod:`.apply` touch ``bpy.data``, and only once the job has finished successfully —
a failed or cancelled job leaves the scene exactly as it was.

Without Pillow (Blender ships none) the image file is read here, with Blender's own
loader, and its pixels go to the worker.
"""
from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..errors import UserError
from ..jobs import REGISTRY, Job, JobState
from ..panels.properties import CameraOptions
from ..scene.program import ProgramError
from . import apply, task
from .modal import JobOperatorMixin, tag_redraw

IMAGE_GLOB = ";".join("*" + ext for ext in task.IMAGE_EXTENSIONS)
OUT_OF_DOMAIN = ("this picture does not look like the scenes the model was trained on; the result is a guess")


def _prefs(context):
    from ..panels.preferences import get_preferences

    return get_preferences(context)


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


class IMPORT_SCENE_OT_image_to_scene(JobOperatorMixin, CameraOptions, bpy.types.Operator, ImportHelper):
    """Turn a reference image into an editable 3D scene (IG-LLM)"""
    bl_idname = "import_scene.image_to_scene"
    bl_label = "Image to Scene"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    job_kind, job_label, state_prefix = "image", "Image to Scene", ""
    _loaded = None

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
               ("REPLACE", "Replace", "Remove everything earlier IG-LLM imports in this scene created")))

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.label(text="Model", icon="FILE_FOLDER")
        layout.prop(self, "model_dir", text="")
        layout.label(text="Scene", icon="SCENE_DATA")
        layout.prop(self, "mode", expand=True)
        layout.prop(self, "add_camera")
        layout.prop(self, "match_picture")
        sub = layout.column()
        sub.enabled = self.add_camera or self.match_picture
        sub.prop(self, "set_active_camera")
        sub.prop(self, "set_background")

    def invoke(self, context, event):
        if self.image_name:             # the panel's Run on an image of the .blend
            return self.execute(context)
        if self.filepath:               # dropped on the viewport: the options popup, as glTF's
            popup = getattr(ImportHelper, "invoke_popup", None)
            return popup(self, context) if popup is not None else self.execute(context)
        return ImportHelper.invoke(self, context, event)

    # -- main-thread checks, then the job ------------------------------------------------
    def _request(self, context) -> dict:
        """Check everything cheap before a job starts; raises a UserError."""
        task.check_runtime()
        prefs = _prefs(context)
        model_dir = self.model_dir or (prefs.model_dir if prefs else "")
        model = task.check_model_dir(bpy.path.abspath(model_dir) if model_dir else None)
        self._loaded = None             # an Image datablock read here for this run only
        if self.image_name:
            img = bpy.data.images.get(self.image_name)
            if img is None:
                raise task.TaskError(f"No image called {self.image_name!r} in this file: pick another image.")
            source, name, label = _image_pixels(img), img.name, img.filepath or img.name
        else:
            path = task.check_image_file(bpy.path.abspath(self.filepath))
            name, label = path.name, str(path)
            if task.has_pillow():
                source = str(path)
            else:                       # Blender's own loader (it reads every format it opens)
                img = apply.load_image_datablock(str(path))
                if img.get(apply.TAG_OWNED):
                    self._loaded = img
                try:
                    source = _image_pixels(img)
                except UserError:
                    self._forget_loaded()
                    raise
        return dict(image=source, image_name=name, label=label, model_dir=model,
                    device=prefs.device if prefs else "auto", threads=prefs.threads if prefs else 0,
                    runtime=prefs.runtime if prefs else "auto")

    def _forget_loaded(self) -> None:
        img, self._loaded = getattr(self, "_loaded", None), None
        if img is not None and img.users == 0:
            bpy.data.images.remove(img)

    def execute(self, context):
        if REGISTRY.running(self.job_kind):
            self.report({"ERROR"}, "An Image to Scene job is already running: wait for it or press Cancel.")
            return {"CANCELLED"}
        try:
            req = self._request(context)
        except UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._req = req
        job = Job(task.infer, req["image"], model_dir=req["model_dir"], device=req["device"],
                  threads=req["threads"], image_name=req["image_name"], runtime=req["runtime"], name="image")
        return self.start_job(context, job)

    def finish_job(self, context, job: Job):
        """Main thread: hand the finished job's result over to Blender data."""
        if job.state is not JobState.DONE:
            self._forget_loaded()
            self._set_state(context, status="Cancelled" if job.state is JobState.CANCELLED else "Failed")
            if job.state is JobState.CANCELLED:
                self.report({"WARNING"}, "Image to Scene was cancelled; the scene was not changed.")
            else:
                if not isinstance(job.error, UserError):
                    print(job.error_traceback)
                self.report({"ERROR"}, _error_sentence(job))
            return {"CANCELLED"}
        pred = job.result
        req = self._req
        picture = None
        prefs = _prefs(context)
        try:
            if (self.add_camera or self.match_picture) and (self.set_background or self.match_picture):
                picture = (bpy.data.images.get(self.image_name) if self.image_name
                           else self._loaded or apply.load_image_datablock(req["label"]))
            bg = picture if self.set_background else None
            self._loaded = None if picture is self._loaded else self._loaded
            col = apply.apply_result(
                context.scene, pred.scene, pred.program, name=apply.collection_name_for(req["image_name"]),
                source=req["label"], replace=self.mode == "REPLACE", add_camera=self.add_camera,
                set_active_camera=self.set_active_camera, background_image=bg, domain=pred.domain,
                share_materials=bool(prefs and prefs.share_materials),
                picture_size=tuple(picture.size[:]) if self.match_picture else None)
            if picture is not None and bg is None and picture.get(apply.TAG_OWNED) and picture.users == 0:
                bpy.data.images.remove(picture)   # read for its size only
        except (ProgramError, RuntimeError) as exc:
            if picture is not None and picture.get(apply.TAG_OWNED) and picture.users == 0:
                bpy.data.images.remove(picture)  # loaded for this run only: leave no trace
            self._forget_loaded()
            self._set_state(context, status="Failed")
            self.report({"ERROR"}, f"The model wrote a program that cannot be built ({exc}): "
                                   "try another model or image.")
            return {"CANCELLED"}
        self._forget_loaded()
        if pred.confidence is not None:
            col["ig_llm_confidence"] = pred.confidence
        col["ig_llm_in_domain"] = pred.in_domain
        settings = context.scene.ig_llm
        settings.result_objects = len(col.objects)
        settings.result_seconds = job.seconds
        settings.result_collection = col.name
        settings.result_confidence = -1.0 if pred.confidence is None else pred.confidence
        settings.result_in_domain = pred.in_domain
        self._set_state(context, progress=1.0, status="Done")
        built = f"Built {len(col.objects)} objects in collection '{col.name}' in {job.seconds:.1f} s."
        if not pred.in_domain:
            self.report({"WARNING"}, f"IG-LLM: {OUT_OF_DOMAIN} (confidence {pred.confidence:.2f}). {built}")
        else:
            self.report({"INFO"}, built)
        return {"FINISHED"}


def _image_pixels(img):
    """An Image datablock's pixels for the worker, top row first: an (H, W, 4) float array,
    or for a picture with a side over ``pixels.READ_SIDE`` a ``pixels.Reduced`` that
    Blender's own ``Image.scale`` (an area average in C) read at that size: a 12 MP photo
    then never becomes a full-size float array (192 MB). Our own freshly loaded image is
    scaled in place and reloaded from its file; anyone else's is scaled as a copy. An edited
    (unsaved), float or transparent picture (Blender averages colour without alpha) is read
    whole and reduced in NumPy, in chunks of rows."""
    import numpy as np

    from ..model import pixels

    width, height = img.size[:]
    if width == 0 or height == 0:
        if img.source == "FILE" and img.filepath and not os.path.isfile(bpy.path.abspath(img.filepath)):
            raise task.TaskError(f"The image {img.name} has no pixels: its file {img.filepath} is missing.")
        raise task.TaskError(f"The image {img.name} is empty (0 x 0 pixels): choose another image.")
    task._check_size(width, height, img.name)

    def read(image, w, h):
        buf = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(buf)
        return buf.reshape(h, w, 4)[::-1]

    small = pixels.read_size(width, height)
    if small == (width, height):
        return read(img, width, height).copy()
    on_disk = img.packed_file is not None or (bool(img.filepath)
                                              and os.path.isfile(bpy.path.abspath(img.filepath)))
    if img.source == "FILE" and on_disk and not img.is_dirty and not img.is_float:
        ours = bool(img.get(apply.TAG_OWNED)) and img.users == 0     # loaded for this run only
        work = img if ours else img.copy()
        try:
            work.scale(*small)
            arr = read(work, *small)
        finally:
            if ours:
                img.reload()            # back to the file's pixels (read again only if used)
            else:
                bpy.data.images.remove(work)
        if arr[..., 3].min() >= 1.0:    # opaque: Blender's averages are the blocks' means
            return pixels.reduced_from_pixels(arr, (width, height), img.name)
    factor = -(-max(width, height) // pixels.READ_SIDE)
    return pixels.reduce_pixels(read(img, width, height), factor, img.name)


class IG_LLM_OT_cancel_job(bpy.types.Operator):
    """Stop the running IG-LLM job; the scene stays as it was"""
    bl_idname = "ig_llm.cancel_job"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        if not REGISTRY.cancel_all():
            self.report({"INFO"}, "No IG-LLM job is running.")
        tag_redraw(context)
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
        prefs = _prefs(context)
        try:
            col = apply.rebuild_from_text(context.scene, text, share_materials=bool(prefs and prefs.share_materials))
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
