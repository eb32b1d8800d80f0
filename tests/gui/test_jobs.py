"""The job runner (plain Python) and its Qt adapter: callbacks arrive on the GUI thread."""

from __future__ import annotations

import threading
import time

from studio.engine.workers import JobRunner


def test_runner_done_progress_error_cancel():
    r = JobRunner(max_workers=2)
    seen = []
    h = r.submit(lambda ctx: (ctx.progress(1), ctx.progress(2), 42)[-1], on_progress=seen.append,
                 on_done=lambda v: seen.append(("done", v)))
    assert h.wait(5) and h.state == "done" and h.result == 42
    assert seen == [1, 2, ("done", 42)]

    errs = []
    h = r.submit(lambda ctx: 1 / 0, on_error=errs.append)
    assert h.wait(5) and h.state == "error" and isinstance(errs[0], ZeroDivisionError)

    started, cancelled = threading.Event(), []

    def slow(ctx):
        started.set()
        while True:
            ctx.check()
            time.sleep(0.005)

    h = r.submit(slow, on_cancelled=lambda: cancelled.append(True))
    assert started.wait(5)
    h.cancel()
    assert h.wait(5) and h.state == "cancelled" and cancelled == [True]
    r.shutdown()


def test_same_key_supersedes_older_job():
    r = JobRunner(max_workers=2)
    gate = threading.Event()
    done, cancelled = [], []

    def job(v):
        def fn(ctx):
            gate.wait(5)
            return v
        return fn

    a = r.submit(job(1), key="k", on_done=done.append, on_cancelled=lambda: cancelled.append(1))
    b = r.submit(job(2), key="k", on_done=done.append, on_cancelled=lambda: cancelled.append(2))
    gate.set()
    assert a.wait(5) and b.wait(5)
    assert done == [2] and cancelled == [1]
    assert r.wait_idle(5)
    r.shutdown()


def test_qt_adapter_calls_back_on_gui_thread(qtbot):
    from studio.gui.jobs import QtJobs

    jobs = QtJobs()
    threads = []
    main = threading.get_ident()
    with qtbot.waitSignal(jobs.busy_changed, timeout=5000, check_params_cb=lambda b: b is False):
        jobs.submit(lambda ctx: (ctx.progress(0), threading.get_ident())[-1],
                    on_progress=lambda p: threads.append(threading.get_ident()),
                    on_done=lambda worker: threads.append((worker, threading.get_ident())))
    assert threads[0] == main and threads[1][1] == main and threads[1][0] != main
    jobs.shutdown()
