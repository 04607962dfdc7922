"""One mixin for the add-on's modal job operators (Image to Scene, Install Runtime).

Starts a :class:`..jobs.Job` through the registry, polls it from a window timer, shows
its progress where the user started it — the status bar (text and the window's progress
cursor) as well as the sidebar / preferences drawn from ``WindowManager.ig_llm_job`` —
and stops it on Esc. Background mode (no event loop) runs the job synchronously.
Subclasses set ``job_kind`` and ``state_prefix`` and implement ``finish_job``.
"""
from __future__ import annotations

import bpy

from ..jobs import REGISTRY, Job

REDRAW_AREAS = ("VIEW_3D", "PREFERENCES", "STATUSBAR", "FILE_BROWSER")


def tag_redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in REDRAW_AREAS:
                area.tag_redraw()


class JobOperatorMixin:
    job_kind = "image"
    job_label = "IG-LLM"
    state_prefix = ""            # WindowManager.ig_llm_job.<prefix>running / progress / status
    _timer = None

    # -- the state the panels draw -------------------------------------------------------
    def _set_state(self, context, **values) -> None:
        state = context.window_manager.ig_llm_job
        for key, value in values.items():
            setattr(state, self.state_prefix + key, value)

    def start_job(self, context, job: Job) -> set:
        REGISTRY.add(self.job_kind, job)
        if bpy.app.background or context.window is None:   # no event loop: run here
            job.run_sync()
            return self.finish_job(context, job)
        self._set_state(context, running=True, progress=0.0, status="Starting")
        job.start()
        wm = context.window_manager
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        self._show(context, job)
        return {"RUNNING_MODAL"}

    def _show(self, context, job: Job) -> None:
        pct = int(round(100 * job.fraction))
        self._set_state(context, progress=job.fraction, status=job.text)
        context.window_manager.progress_update(pct)
        if context.workspace is not None:
            context.workspace.status_text_set(f"{self.job_label}: {job.text or 'working'} ({pct} %) — Esc to cancel")
        tag_redraw(context)

    def modal(self, context, event):
        job = REGISTRY.get(self.job_kind)
        if job is None:
            self._end(context)
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}    # the rest of Blender keeps working
        job.poll()
        self._show(context, job)
        if not job.finished:
            return {"PASS_THROUGH"}
        self._end(context)
        return self.finish_job(context, job)

    def _end(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        self._set_state(context, running=False)
        tag_redraw(context)

    def finish_job(self, context, job: Job) -> set:   # pragma: no cover - overridden
        raise NotImplementedError
