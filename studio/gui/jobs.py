"""Qt adapter for :class:`studio.engine.workers.JobRunner` and the render worker: worker-thread
callbacks become calls on the GUI thread.

Every callback from a worker thread is wrapped into ``(callable, args)`` and emitted through one
signal of a ``QObject`` living on the GUI thread; Qt queues the cross-thread emission, so the slot
(and the callable) run on the GUI thread. Nothing here waits on a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from studio.engine.workers import JobContext, JobHandle, JobRunner

log = logging.getLogger(__name__)


class GuiCall(QObject):
    """``post(fn, *args)`` from any thread runs ``fn(*args)`` on this object's (GUI) thread."""

    _posted = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._posted.connect(self._run)

    def post(self, fn: Callable, *args) -> None:
        self._posted.emit((fn, args))

    def wrap(self, fn: Callable | None) -> Callable | None:
        """A thread-safe version of ``fn`` that runs it on the GUI thread."""
        if fn is None:
            return None
        return lambda *args: self.post(fn, *args)

    @Slot(object)
    def _run(self, item) -> None:
        fn, args = item
        try:
            fn(*args)
        except Exception:  # a bug in a slot must not kill the event loop
            log.exception("error in a GUI callback")


class QtJobs(QObject):
    """Submit engine jobs whose callbacks run on the GUI thread.

    Signals: ``busy_changed(bool)`` when the first job starts / the last one ends.
    """

    busy_changed = Signal(bool)

    def __init__(self, runner: JobRunner | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner or JobRunner(max_workers=2)
        self.call = GuiCall(self)
        self._active: dict[int, JobHandle] = {}

    def submit(self, fn: Callable[[JobContext], Any], *, name: str = "job", key: str | None = None,
               on_done: Callable[[Any], None] | None = None, on_error: Callable[[BaseException], None] | None = None,
               on_cancelled: Callable[[], None] | None = None,
               on_progress: Callable[[Any], None] | None = None) -> JobHandle:
        box: dict[str, JobHandle] = {}

        def end(cb, *args):
            h = box.get("h")
            if h is not None and self._active.pop(h.id, None) is not None and not self._active:
                self.busy_changed.emit(False)
            if cb is not None:
                cb(*args)

        h = self.runner.submit(
            fn, name=name, key=key,
            on_done=lambda r: self.call.post(end, on_done, r),
            on_error=lambda e: self.call.post(end, on_error, e),
            on_cancelled=lambda: self.call.post(end, on_cancelled),
            on_progress=self.call.wrap(on_progress))
        box["h"] = h
        was_idle = not self._active
        self._active[h.id] = h
        if was_idle:
            self.busy_changed.emit(True)
        return h

    @property
    def busy(self) -> bool:
        return bool(self._active)

    def cancel_all(self) -> None:
        for h in list(self._active.values()):
            h.cancel()

    def shutdown(self, *, cancel: bool = True) -> None:
        """Stop the workers; ``cancel=False`` lets queued jobs run first (file writes)."""
        self.runner.shutdown(cancel=cancel, wait=True)
