"""Add-on preferences: model folder, device, CPU threads, and the model-runtime installer."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..operators import deps
from ..operators.task import SHIPPED_MODEL_DIR, missing_modules
from .common import ROOT_PACKAGE


class IGLLM_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    model_dir: StringProperty(
        name="Model Folder", subtype="DIR_PATH", default="",
        description="A trained IG-LLM checkpoint folder; empty = the model shipped with the extension")
    device: EnumProperty(
        name="Device", default="auto",
        items=(("auto", "Auto", "CUDA or Apple MPS when available, else the CPU"),
               ("cpu", "CPU", "Always the CPU (the built-in NumPy runtime)"),
               ("cuda", "CUDA", "An NVIDIA GPU (needs the PyTorch runtime)"),
               ("mps", "MPS", "Apple Silicon GPU (needs the PyTorch runtime)")))
    runtime: EnumProperty(
        name="Runtime", default="auto",
        items=(("auto", "Auto", "NumPy on the CPU, PyTorch on a GPU or for models NumPy cannot run"),
               ("numpy", "NumPy", "The built-in runtime: needs nothing installed"),
               ("torch", "PyTorch", "The optional PyTorch runtime (install it below)")))
    threads: IntProperty(name="CPU Threads", default=0, min=0, max=256,
                         description="Threads for PyTorch on the CPU; 0 = PyTorch's default")
    share_materials: BoolProperty(
        name="Share Materials Between Imports", default=False,
        description="One material per colour and material across all imports (editing one recolours every "
                    "import); off: each import gets its own materials")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "model_dir")
        if not self.model_dir:
            col.label(text=f"Using the shipped model: {SHIPPED_MODEL_DIR}", icon="INFO")
        row = col.row()
        row.prop(self, "runtime")
        row.prop(self, "device")
        row.prop(self, "threads")
        col.prop(self, "share_materials")

        box = layout.box()
        box.label(text="Optional: PyTorch Runtime (training, GPU and large models)")
        box.label(text="Not needed for the shipped model: it runs with what Blender has.", icon="INFO")
        job = context.window_manager.ig_llm_job
        if job.install_running:
            box.progress(factor=job.install_progress, type="BAR", text=job.install_status or "Installing…")
            box.operator("ig_llm.cancel_job", text="Cancel", icon="CANCEL")
            return
        missing = missing_modules(list(deps.RUNTIME_MODULES))
        build = deps.torch_build()
        if not missing:
            box.label(text="Installed", icon="CHECKMARK")
        elif build.unsupported:
            box.label(text=build.unsupported, icon="INFO")
        else:
            box.label(text=f"For this computer: PyTorch {deps.TORCH_VERSION}, {build.label} build, "
                           f"about {build.download_mb:,} MB download.")
            if not bpy.app.online_access:
                box.label(text="Online access is off (Preferences > System > Network).", icon="ERROR")
        if job.install_status:
            box.label(text=job.install_status)
        row = box.row()
        row.enabled = bool(missing) and not build.unsupported
        row.operator("ig_llm.install_runtime", icon="IMPORT")


def get_preferences(context=None):
    """The add-on preferences, or None when the package is registered without Blender's
    add-on system (tests that call register() directly)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    return addon.preferences if addon is not None else None


classes = (IGLLM_AddonPreferences,)
