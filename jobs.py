"""Background jobs for the Blender UI: a worker thread, a message queue, cancel.

Blender's rule is that only the main thread may touch ``bpy.data``. So a long job (model
inference) runs a plain function in a worker thread; the worker never sees bpy, it only
reports progress and finally hands back a plain Python result through a queue. The main
thread calls :meth:`Job.poll` from a timer (a modal operator's timer event, or
``bpy.app.timers``), reads the progress for the progress bar, and when the job is done
turns the result into Blender data itself.

Cancel is cooperative and immediate for the caller: :meth:`Job.cancel` marks the job
cancelled at once (the result of a job that was cancelled is never handed over, so the
scene stays exactly as it was), and the worker stops at its next progress call, which
raises :class:`Cancelled` inside it.

In background mode (``blender --background``, the ``bpy`` module) there is no event loop,
so :meth:`Job.run_sync` runs the same function in the calling thread.

Pure Python: no bpy, no torch. The unit tests drive it directly (tests/test_jobs.py).
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from enum import Enum
from typing import Any, Callable

__all__ = ["Cancelled", "Job", "JobRegistry", "JobState", "Progress", "REGISTRY"]


class Cancelled(Exception):
    """Raised inside the worker by :class:`Progress` once the job was cancelled."""


class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class Progress:
    """What the work function gets as its first argument.

    ``progress(fraction, text)`` reports how far the job is (0..1) and raises
    :class:`Cancelled` when the job was cancelled, so a worker that reports progress
    between its steps also stops between them. ``progress.cancelled`` lets long inner
    loops (e.g. token generation) poll without reporting.
    """

    def __init__(self, messages: "queue.Queue", cancel_event: threading.Event):
        self._messages = messages
        self._cancel = cancel_event

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def __call__(self, fraction: float, text: str = "") -> None:
        self.check()
        self._messages.put(("progress", min(1.0, max(0.0, float(fraction))), str(text)))


class Job:
    """One run of ``work(progress, *args, **kwargs)`` off the main thread.

    Main-thread side: :meth:`start`, :meth:`poll`, :meth:`cancel`, and the attributes
    ``state``, ``fraction``, ``text``, ``result``, ``error`` (the exception), ``seconds``.
    Only :meth:`poll` changes those attributes, so whoever polls sees a consistent job.
    """

    def __init__(self, work: Callable[..., Any], *args, name: str = "job", **kwargs):
        self.name = name
        self._work, self._args, self._kwargs = work, args, kwargs
        self._messages: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = JobState.PENDING
        self.fraction = 0.0
        self.text = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.error_traceback = ""
        self._started = 0.0
        self.seconds = 0.0

    # -- worker side -------------------------------------------------------------------
    def _run(self) -> None:
        """Runs in the worker thread; everything it learns goes through the queue."""
        progress = Progress(self._messages, self._cancel)
        try:
            result = self._work(progress, *self._args, **self._kwargs)
            progress.check()  # cancelled during the last step: drop the result
        except Cancelled:
            self._messages.put(("cancelled",))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
            self._messages.put(("error", exc, traceback.format_exc()))
        else:
            self._messages.put(("done", result))

    # -- main-thread side --------------------------------------------------------------
    def start(self) -> "Job":
        """Start the worker thread (daemon: a job never keeps Blender from quitting)."""
        if self.state is not JobState.PENDING:
            raise RuntimeError(f"job {self.name!r} was already started")
        self.state = JobState.RUNNING
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"ig_llm-{self.name}", daemon=True)
        self._thread.start()
        return self

    def run_sync(self) -> "Job":
        """Run in the calling thread (background mode: no event loop to poll from)."""
        if self.state is not JobState.PENDING:
            raise RuntimeError(f"job {self.name!r} was already started")
        self.state = JobState.RUNNING
        self._started = time.perf_counter()
        self._run()
        self.poll()
        return self

    def cancel(self) -> None:
        """Stop the job. From now on the job is CANCELLED and never hands a result over."""
        self._cancel.set()
        if not self.state.finished:
            self.state = JobState.CANCELLED
            self.text = "Cancelled"
            self.seconds = time.perf_counter() - self._started if self._started else 0.0

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def worker_alive(self) -> bool:
        """True while the worker thread still runs (a cancelled worker finishes its step)."""
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> bool:
        """Drain the queue (main thread). Returns True when something changed."""
        changed = False
        while True:
            try:
                msg = self._messages.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            if self.state is JobState.CANCELLED:
                continue  # a cancelled job's late messages and result are dropped
            kind = msg[0]
            if kind == "progress":
                self.fraction, self.text = msg[1], msg[2]
                continue
            self.seconds = time.perf_counter() - self._started
            if kind == "done":
                self.state, self.result, self.fraction = JobState.DONE, msg[1], 1.0
            elif kind == "error":
                self.state, self.error, self.error_traceback = JobState.FAILED, msg[1], msg[2]
            elif kind == "cancelled":
                self.state, self.text = JobState.CANCELLED, "Cancelled"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker thread ends, then poll; True when the job finished.

        For tests and the command line only: the UI never blocks, it polls.
        """
        if self._thread is not None:
            self._thread.join(timeout)
        self.poll()
        return self.finished


class JobRegistry:
    """The one owner of the add-on's background jobs: at most one running job per kind
    ("image", "install"); the UI, the Cancel button, Esc and ``unregister()`` all go
    through it, so no job outlives the add-on and every job can be stopped the same way."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}

    def get(self, kind: str) -> Job | None:
        return self._jobs.get(kind)

    def running(self, kind: str | None = None) -> bool:
        jobs = self._jobs.values() if kind is None else [self._jobs.get(kind)]
        return any(j is not None and not j.finished for j in jobs)

    def add(self, kind: str, job: Job) -> Job:
        """Own `job` (not started yet); refuses while a job of the same kind runs."""
        if self.running(kind):
            raise RuntimeError(f"a {kind} job is already running")
        self._jobs[kind] = job
        return job

    def cancel_all(self) -> int:
        """Cancel every unfinished job; returns how many were stopped."""
        stopped = 0
        for job in self._jobs.values():
            if not job.finished:
                job.cancel()
                stopped += 1
        return stopped

    def clear(self) -> None:
        self.cancel_all()
        self._jobs.clear()


REGISTRY = JobRegistry()
