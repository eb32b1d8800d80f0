"""Cancellation shared by the engine's workers (no torch: the GUI imports it before any model)."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """A job stopped because its :class:`CancelToken` was cancelled (not an error)."""


class CancelToken:
    """A thread-safe cancel flag. Jobs call :meth:`raise_if_cancelled` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:  # usable as a ``should_stop`` callable
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()
