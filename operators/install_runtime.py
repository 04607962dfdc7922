"""Preferences > Install Model Runtime: pip into the extension's user folder, off the main thread."""
from __future__ import annotations

import bpy

from ..errors import UserError
from ..jobs import Job, JobState
from . import deps
from .image_to_scene import ACTIVE, _tag_redraw
from ..panels.common import ROOT_PACKAGE


def user_site_packages(create: bool = False) -> str | None:
    """<extension user folder>/site-packages, or None outside Blender's extension system."""
    try:
        return bpy.utils.extension_path_user(ROOT_PACKAGE, path="site-packages", create=create)
    except (ValueError, RuntimeError):
        return None


class IG_LLM_OT_install_runtime(bpy.types.Operator):
    """Download and install PyTorch and the model runtime into this extension's user folder"""
    bl_idname = "ig_llm.install_runtime"
    bl_label = "Install Model Runtime"
    bl_options = {"INTERNAL"}

    # for offline installs and tests: a folder of wheels, no index
    find_links: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    requirements: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"},
                                           description="Space-separated; empty = the runtime")

    _timer = None

    def execute(self, context):
        if ACTIVE["install"] is not None and not ACTIVE["install"].finished:
            self.report({"ERROR"}, "The model runtime is already being installed.")
            return {"CANCELLED"}
        target = user_site_packages(create=False)
        if target is None:
            self.report({"ERROR"}, "Install the extension through Blender (Get Extensions or "
                                   "Install from Disk) before installing its model runtime.")
            return {"CANCELLED"}
        reqs = self.requirements.split() or list(deps.RUNTIME_REQUIREMENTS)
        job = Job(deps.install, target, reqs, find_links=self.find_links or None,
                  no_index=bool(self.find_links), name="install")
        ACTIVE["install"] = job
        self._target = target
        if bpy.app.background or context.window is None:
            job.run_sync()
            return self._finish(context, job)
        state = context.window_manager.ig_llm_job
        state.install_running, state.install_progress, state.install_status = True, 0.0, "Starting"
        job.start()
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = ACTIVE["install"]
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        job.poll()
        state = context.window_manager.ig_llm_job
        state.install_progress, state.install_status = job.fraction, job.text
        _tag_redraw(context)
        if not job.finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(context, job)

    def _finish(self, context, job):
        state = context.window_manager.ig_llm_job
        state.install_running = False
        if job.state is JobState.DONE:
            deps.add_to_sys_path(self._target)
            state.install_status = "Installed"
            self.report({"INFO"}, f"Model runtime installed into {self._target}.")
            return {"FINISHED"}
        if job.state is JobState.CANCELLED:
            state.install_status = "Cancelled"
            self.report({"WARNING"}, "Installing the model runtime was cancelled; nothing was changed.")
            return {"CANCELLED"}
        state.install_status = "Failed"
        msg = str(job.error) if isinstance(job.error, UserError) else (
            f"Installing the model runtime failed ({job.error.__class__.__name__}: {job.error}).")
        self.report({"ERROR"}, msg)
        return {"CANCELLED"}


classes = (IG_LLM_OT_install_runtime,)
