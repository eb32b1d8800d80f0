"""Work-arounds for bugs of the Qt bindings.

PySide6 6.12.0 on CPython 3.11 drops a reference to ``None`` on every call of a C++ method that
returns void (``QSlider.setValue``, ``QLabel.setText``, ...): ``sys.getrefcount(None)`` falls by one
per call until CPython aborts with "Fatal Python error: none_dealloc" after some minutes of slider
dragging. The same bindings lose a reference to ``True`` on every ``emit()`` of a signal declared in
Python (its bool return value), so after a few thousand renders or progress reports CPython aborts
with "Fatal Python error: bool_dealloc" - mid-session, or at exit. CPython 3.12+ made ``None``,
``True`` and ``False`` immortal (PEP 683), so there it is harmless. Until the bindings are fixed (or
pinned), :func:`install_none_guard` tops the three singletons' reference counts up from a timer.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

NONE_FLOOR = 1 << 20       # top up when fewer references than this are left
NONE_TOP_UP = 1 << 24      # references added per top-up (a count only: no memory is used)
CHECK_MS = 250

_timer = None


def none_leaks() -> bool:
    """True when a void Qt call loses a reference to ``None`` here (CPython < 3.12 and an affected PySide6)."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject

    o = QObject()
    before = sys.getrefcount(None)
    for _ in range(8):
        o.setObjectName("x")  # void
    return sys.getrefcount(None) < before - 4


def bool_leaks() -> bool:
    """True when emitting a Python-declared Qt signal loses a reference to ``True`` or ``False`` here."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal(int)

    o = _Probe()
    o.ping.connect(lambda _v: None)
    before = sys.getrefcount(True) + sys.getrefcount(False)
    for _ in range(8):
        o.ping.emit(1)
    return sys.getrefcount(True) + sys.getrefcount(False) < before - 4


def top_up_none() -> None:
    """Add references to ``None``, ``True`` and ``False`` when a count runs low (CPython < 3.12 only)."""
    if sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        if sys.getrefcount(obj) < NONE_FLOOR:
            # ob_refcnt is the first field of every CPython object; id() is its address
            ctypes.c_ssize_t.from_address(id(obj)).value += NONE_TOP_UP


def install_none_guard() -> bool:
    """Start the top-up timer once per process if the bindings leak ``None`` (returns whether it runs)."""
    global _timer
    if _timer is not None:
        return True
    leaks = [name for name, test in (("None", none_leaks), ("True/False", bool_leaks)) if test()]
    if not leaks:
        return False
    from PySide6.QtCore import QCoreApplication, QTimer

    log.warning("this PySide6 loses references to %s on CPython %d.%d; guarding against the crash "
                "(install another PySide6 version or Python >= 3.12 to fix it properly)",
                " and ".join(leaks), *sys.version_info[:2])
    top_up_none()
    _timer = QTimer(QCoreApplication.instance())
    _timer.setInterval(CHECK_MS)
    _timer.timeout.connect(top_up_none)
    _timer.start()
    return True
