"""View3D > Sidebar > IG-LLM: image, Run/Cancel, progress, result, program, Rebuild."""
from __future__ import annotations

import bpy

from .common import CATEGORY


class _IGLLMPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class VIEW3D_PT_ig_llm(_IGLLMPanel, bpy.types.Panel):
    bl_label = "Image to Scene"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.ig_llm
        job = context.window_manager.ig_llm_job

        layout.prop(settings, "source", expand=True)
        if settings.source == "FILE":
            layout.prop(settings, "filepath", text="")
        else:
            layout.template_ID(settings, "image", open="image.open")

        col = layout.column(align=True)
        col.prop(settings, "replace")
        col.prop(settings, "add_camera")
        col.prop(settings, "match_picture")
        sub = col.column(align=True)
        sub.enabled = settings.add_camera or settings.match_picture
        sub.prop(settings, "set_active_camera")
        sub.prop(settings, "set_background")

        if job.running:
            layout.progress(factor=job.progress, type="BAR", text=job.status or "Working…")
            layout.operator("ig_llm.cancel_job", text="Cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.5
            ready = bool(settings.filepath) if settings.source == "FILE" else settings.image is not None
            row.enabled = ready
            row.operator_context = "EXEC_DEFAULT"   # the panel already shows the options
            op = row.operator("import_scene.image_to_scene", text="Run", icon="PLAY")
            if settings.source == "FILE":
                op.filepath = bpy.path.abspath(settings.filepath)
            elif settings.image is not None:
                op.image_name = settings.image.name
            op.mode = "REPLACE" if settings.replace else "ADD"
            op.add_camera = settings.add_camera
            op.set_active_camera = settings.set_active_camera
            op.set_background = settings.set_background
            op.match_picture = settings.match_picture
            if job.status and job.status not in ("Done",):
                layout.label(text=job.status, icon="INFO")

        if settings.result_objects >= 0:
            box = layout.box()
            box.label(text=f"{settings.result_objects} objects in '{settings.result_collection}'",
                      icon="OUTLINER_COLLECTION")
            box.label(text=f"Time: {settings.result_seconds:.1f} s", icon="TIME")
            if not settings.result_in_domain:
                box.label(text="Not like the training scenes: a guess", icon="ERROR")
            if settings.result_confidence >= 0:
                box.label(text=f"Confidence: {settings.result_confidence:.2f}")


class VIEW3D_PT_ig_llm_program(_IGLLMPanel, bpy.types.Panel):
    bl_label = "Program"
    bl_parent_id = "VIEW3D_PT_ig_llm"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.ig_llm
        layout.template_ID(settings, "program")
        text = settings.program
        if text is None:
            layout.label(text="Run an image to get its program.")
            return
        col = layout.column(align=True)
        for line in text.lines[:20]:
            col.label(text=line.body)
        if len(text.lines) > 20:
            col.label(text=f"… {len(text.lines) - 20} more lines")
        layout.label(text="Edit it in the Text Editor, then:", icon="TEXT")
        layout.operator("ig_llm.rebuild", icon="FILE_REFRESH")


classes = (VIEW3D_PT_ig_llm, VIEW3D_PT_ig_llm_program)
