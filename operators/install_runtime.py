"""Preferences > Install PyTorch Runtime (optional): the right build, asked first, only online.

It installs everything optional that a command needs (``deps.RUNTIME_REQUIREMENTS``: torch and
its kin for training and GPU models, SciPy for ``evaluate``, Pillow); ``deps.require`` names
this button when something is missing.
"""
from __future__ import annotations

import bpy

from ..errors import UserError
from ..jobs import REGISTRY, Job, JobState
from ..panels.common import ROOT_PACKAGE
from . import deps
from .modal import JobOperatorMixin


def user_site_packages(create: bool = False) -> str | None:
    """<extension user folder>/site-packages, or None outside Blender's extension system."""
    try:
        return bpy.utils.extension_path_user(ROOT_PACKAGE, path="site-packages", create=create)
    except (ValueError, RuntimeError):
        return None


def confirm_message(build: deps.TorchBuild) -> str:
    return (f"Download about {build.download_mb:,} MB (PyTorch {deps.TORCH_VERSION}, {build.label} build, "
            "plus transformers, open_clip, Pillow and SciPy) into this extension's user folder? Only needed for "
            "training, evaluate and GPU models; the shipped model runs without it.")


class IG_LLM_OT_install_runtime(JobOperatorMixin, bpy.types.Operator):
    """Download PyTorch (the build for this computer's platform and GPU) into this extension's user folder. Optional: the shipped model runs without it"""
    bl_idname = "ig_llm.install_runtime"
    bl_label = deps.INSTALL_BUTTON
    bl_options = {"INTERNAL"}

    job_kind, job_label, state_prefix = "install", "Installing PyTorch", "install_"

    # for offline installs and tests: a folder of wheels, no index (no network used)
    find_links: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    requirements: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"},
                                           description="Space-separated; empty = the runtime")

    def invoke(self, context, event):
        refusal = self._refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        if self.find_links:
            return self.execute(context)
        build = deps.torch_build()
        return context.window_manager.invoke_confirm(
            self, event, title=deps.INSTALL_BUTTON, message=confirm_message(build), confirm_text="Download")

    def _refusal(self) -> str:
        """One sentence when nothing may be installed, else ''."""
        if not self.find_links and not bpy.app.online_access:
            return deps.offline_sentence()
        if not self.find_links and deps.torch_build().unsupported:
            return deps.torch_build().unsupported
        if REGISTRY.running(self.job_kind):
            return "The PyTorch runtime is already being installed."
        return ""

    def execute(self, context):
        refusal = self._refusal()
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        target = user_site_packages(create=False)
        if target is None:
            self.report({"ERROR"}, "Install the extension through Blender (Get Extensions or "
                                   "Install from Disk) before installing its PyTorch runtime.")
            return {"CANCELLED"}
        if self.find_links:
            reqs, index_args = self.requirements.split() or list(deps.RUNTIME_REQUIREMENTS), ()
        else:
            build = deps.torch_build()
            reqs, index_args = self.requirements.split() or build.requirements(), build.pip_index_args()
        self._target = target
        job = Job(deps.install, target, reqs, find_links=self.find_links or None,
                  no_index=bool(self.find_links), index_args=index_args, name="install")
        return self.start_job(context, job)

    def finish_job(self, context, job):
        self._set_state(context, running=False)
        if job.state is JobState.DONE:
            deps.add_to_sys_path(self._target)
            self._set_state(context, status="Installed")
            self.report({"INFO"}, f"PyTorch runtime installed into {self._target}.")
            return {"FINISHED"}
        if job.state is JobState.CANCELLED:
            self._set_state(context, status="Cancelled")
            self.report({"WARNING"}, "Installing the PyTorch runtime was cancelled; nothing was changed.")
            return {"CANCELLED"}
        self._set_state(context, status="Failed")
        msg = str(job.error) if isinstance(job.error, UserError) else (
            f"Installing the PyTorch runtime failed ({job.error.__class__.__name__}: {job.error}).")
        self.report({"ERROR"}, msg)
        return {"CANCELLED"}


classes = (IG_LLM_OT_install_runtime,)
