"""Background jobs for the app: a small thread-pool job runner with cancellation and progress.

Plain Python (no Qt). A job is a function ``fn(ctx: JobContext)``; it reports progress with
``ctx.progress(value)`` (any object, e.g. an :class:`~studio.core.inversion.InversionProgress`) and
checks ``ctx.token`` (a :class:`~studio.engine.renderer.CancelToken`) between steps. The runner calls
exactly one of ``on_done(result)``, ``on_error(exc)`` or ``on_cancelled()`` when the job ends; every
callback runs on the worker thread, so a UI wraps them (``studio.gui.jobs`` turns them into Qt
signals on the GUI thread).

A job may carry a ``key``: submitting a job with the same key cancels the older one
("latest wins", e.g. paste-back of successive renders), and results of a superseded job are
delivered to ``on_cancelled`` instead of ``on_done``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from studio.engine.cancel import CancelToken, Cancelled

log = logging.getLogger(__name__)

__all__ = ["JobContext", "JobHandle", "JobRunner", "Cancelled", "CancelToken"]


@dataclass
class JobContext:
    """What a running job sees: its cancel token and a progress reporter."""

    token: CancelToken
    _progress: Callable[[Any], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` once the job was cancelled."""
        self.token.raise_if_cancelled()

    def progress(self, value: Any) -> None:
        if self._progress is not None:
            self._progress(value)


@dataclass
class JobHandle:
    """A submitted job: ``cancel()`` it, ``wait()`` for it, read ``state``
    ('pending', 'running', 'done', 'error', 'cancelled')."""

    id: int
    name: str
    key: str | None
    token: CancelToken = field(default_factory=CancelToken)
    state: str = "pending"
    result: Any = None
    error: BaseException | None = None
    future: Future | None = None
    _finished: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job ended (its end callback has run)."""
        return self._finished.wait(timeout)


class JobRunner:
    """Runs jobs on a thread pool (``max_workers`` threads)."""

    def __init__(self, max_workers: int = 2, *, name: str = "stylestudio-job"):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._next_id = 0
        self._jobs: dict[int, JobHandle] = {}
        self._by_key: dict[str, JobHandle] = {}
        self._closed = False

    def submit(self, fn: Callable[[JobContext], Any], *, name: str = "job", key: str | None = None,
               on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None,
               on_cancelled: Callable[[], None] | None = None,
               on_progress: Callable[[Any], None] | None = None) -> JobHandle:
        with self._lock:
            if self._closed:
                raise RuntimeError("the job runner is shut down")
            self._next_id += 1
            h = JobHandle(self._next_id, name, key)
            self._jobs[h.id] = h
            if key is not None:
                old = self._by_key.get(key)
                if old is not None:
                    old.cancel()
                self._by_key[key] = h

        def progress(value):
            if not h.token.cancelled and on_progress is not None:
                on_progress(value)

        def run():
            ctx = JobContext(h.token, progress)
            try:
                if h.token.cancelled:
                    raise Cancelled()
                h.state = "running"
                result = fn(ctx)
                if h.token.cancelled:
                    raise Cancelled()
                h.result, h.state = result, "done"
                if on_done is not None:
                    on_done(result)
            except Cancelled:
                h.state = "cancelled"
                if on_cancelled is not None:
                    on_cancelled()
            except BaseException as e:  # noqa: BLE001 - every failure reaches the caller
                h.error, h.state = e, "error"
                if on_error is not None:
                    on_error(e)
                else:
                    log.exception("job %s failed", name)
            finally:
                with self._lock:
                    self._jobs.pop(h.id, None)
                    if key is not None and self._by_key.get(key) is h:
                        del self._by_key[key]
                h._finished.set()

        h.future = self._pool.submit(run)
        return h

    def running(self) -> list[JobHandle]:
        with self._lock:
            return list(self._jobs.values())

    def cancel_all(self) -> None:
        for h in self.running():
            h.cancel()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is pending or running."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = self.running()
            if not jobs:
                return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            jobs[0].wait(left)

    def shutdown(self, *, cancel: bool = True, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
        if cancel:
            self.cancel_all()
        self._pool.shutdown(wait=wait, cancel_futures=cancel)
