"""The worker/queue logic behind the UI: progress, cancel, hand-over to the main thread."""
import queue
import threading
import time

import pytest

from ig_llm.jobs import Cancelled, Job, JobState, Progress


def _steps(progress, n, gate=None, seen=None):
    """A work function: n steps, each reported; optionally waits on `gate` at step 1."""
    for i in range(n):
        progress(i / n, f"step {i}")
        if seen is not None:
            seen.append(i)
        if gate is not None and i == 1:
            gate.wait(5)
    return {"steps": n, "thread": threading.current_thread().name}


def test_progress_then_result_is_handed_over_on_poll():
    gate = threading.Event()
    job = Job(_steps, 4, gate, name="t").start()
    deadline = time.time() + 5
    while job.fraction < 0.25 and time.time() < deadline:
        job.poll()
        time.sleep(0.01)
    assert job.state is JobState.RUNNING and job.fraction == 0.25 and job.text == "step 1"
    assert job.result is None  # nothing handed over while running
    gate.set()
    assert job.wait(5)
    assert job.state is JobState.DONE and job.fraction == 1.0
    # the work ran in the worker thread, not in the thread that polls
    assert job.result["thread"].startswith("ig_llm-") and job.result["steps"] == 4
    assert job.seconds > 0


def test_cancel_is_immediate_and_drops_the_late_result():
    gate, seen = threading.Event(), []
    job = Job(_steps, 10, gate, seen).start()
    while len(seen) < 2:
        time.sleep(0.005)
    job.cancel()
    assert job.state is JobState.CANCELLED and job.finished  # at once, before the worker stops
    gate.set()
    job.wait(5)
    assert job.state is JobState.CANCELLED and job.result is None
    assert not job.worker_alive
    assert seen == [0, 1]  # the worker stopped at its next progress call


def test_result_of_a_job_cancelled_during_its_last_step_is_dropped():
    gate = threading.Event()

    def work(progress):
        progress(0.5, "last step")
        gate.wait(5)
        return "late result"

    job = Job(work).start()
    while job.text != "last step":
        job.poll()
        time.sleep(0.005)
    job.cancel()
    gate.set()
    job.wait(5)
    assert job.state is JobState.CANCELLED and job.result is None


def test_error_in_worker_is_handed_over_with_its_traceback():
    def work(progress):
        progress(0.1, "about to fail")
        raise FileNotFoundError("no such model")

    job = Job(work).start()
    job.wait(5)
    assert job.state is JobState.FAILED
    assert isinstance(job.error, FileNotFoundError) and "no such model" in job.error_traceback


def test_run_sync_runs_in_the_calling_thread():
    job = Job(_steps, 3).run_sync()
    assert job.state is JobState.DONE
    assert job.result["thread"] == threading.current_thread().name


def test_progress_raises_cancelled_in_the_worker():
    def work(progress):
        progress.check()
        assert not progress.cancelled
        return "ok"

    assert Job(work).run_sync().result == "ok"
    job = Job(lambda p: p(0.5, "x"))
    job.cancel()
    assert job.state is JobState.CANCELLED
    with pytest.raises(RuntimeError):  # a job cancelled before it started never starts
        job.start()


def test_progress_fraction_is_clamped():
    job = Job(lambda p: p(7.0, "over")).start()
    job.wait(5)
    assert job.state is JobState.DONE and job.fraction == 1.0
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        Progress(queue.Queue(), ev)(0.1)


def test_registry_owns_one_job_per_kind_and_cancels_all():
    import threading

    from ig_llm.jobs import JobRegistry

    gate = threading.Event()

    def wait(progress):
        gate.wait(5)
        progress(1.0)

    reg = JobRegistry()
    a = reg.add("image", Job(wait)).start()
    b = reg.add("install", Job(wait)).start()
    with pytest.raises(RuntimeError, match="already running"):
        reg.add("image", Job(wait))
    assert reg.running() and reg.running("image") and reg.get("install") is b
    assert reg.cancel_all() == 2
    gate.set()
    assert a.wait(5) and b.wait(5)
    assert a.state is JobState.CANCELLED and b.state is JobState.CANCELLED and not reg.running()
    reg.add("image", Job(lambda p: 1)).run_sync()     # a finished job makes room
    reg.clear()
    assert reg.get("image") is None
