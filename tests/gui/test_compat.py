"""The guard against PySide6 builds that lose references to None / True / False on CPython < 3.12."""

from __future__ import annotations

import sys

import pytest


def test_top_up_keeps_none_alive(qapp, monkeypatch):
    from studio.gui import compat

    if sys.version_info >= (3, 12):
        assert not compat.none_leaks()
        pytest.skip("None is immortal on CPython >= 3.12")
    before = sys.getrefcount(None)
    monkeypatch.setattr(compat, "NONE_FLOOR", before + 10)
    compat.top_up_none()
    assert sys.getrefcount(None) >= before + compat.NONE_TOP_UP - 100
    monkeypatch.setattr(compat, "NONE_FLOOR", 1)
    now = sys.getrefcount(None)
    compat.top_up_none()  # enough left: nothing added
    assert abs(sys.getrefcount(None) - now) < 100


def test_guard_outlasts_the_leak(qapp):
    """More void Qt calls than None has references in a fresh process with torch (~54k): the crash
    without the guard."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QLabel

    from studio.gui import compat

    if not compat.install_none_guard():
        pytest.skip("these bindings do not lose references to None")
    label = QLabel()
    start = sys.getrefcount(None)
    for i in range(100_000):
        label.setText("x")  # void: loses one reference each with the affected bindings
        if i % 10_000 == 0:
            QCoreApplication.processEvents()
    assert start - sys.getrefcount(None) > 80_000  # the leak is real here ...
    assert sys.getrefcount(None) > compat.NONE_FLOOR // 2  # ... and the guard keeps None alive


def test_guard_outlasts_the_bool_leak(qapp):
    """More signal emits than True has references (each emit() drops one with the affected bindings):
    without the guard the process aborts with 'bool_dealloc' (seen at exit of the training screenshots)."""
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    from studio.gui import compat

    if not compat.bool_leaks():
        pytest.skip("these bindings do not lose references to True / False")
    assert compat.install_none_guard()

    class Emitter(QObject):
        done = Signal(int, bool)

    e = Emitter()
    e.done.connect(lambda *_: None)
    start = sys.getrefcount(True)
    for i in range(100_000):
        e.done.emit(i, False)
        if i % 10_000 == 0:
            QCoreApplication.processEvents()
    assert sys.getrefcount(True) > compat.NONE_FLOOR // 2  # alive, whatever the leak took
    assert start - sys.getrefcount(True) > 80_000 or sys.getrefcount(True) > start  # the leak is real here
