"""Cold start: the window is built before PyTorch loads (it loads with the first model, in a worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from PySide6.QtWidgets import QApplication
app = QApplication([])
from studio.gui.main_window import MainWindow
win = MainWindow(model_path="", settings=False)
win.show()
app.processEvents()
print("TORCH", "torch" in sys.modules)
print("DEVICES", [win.device_combo.itemData(i) for i in range(win.device_combo.count())])
win.shutdown()
"""


def test_window_builds_without_importing_torch():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=str(REPO),
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "TORCH False" in r.stdout, r.stdout
    assert "DEVICES ['cpu']" in r.stdout


def test_lazy_torch_proxy():
    from studio.core.lazy import LazyModule

    m = LazyModule("json")
    assert m.dumps([1]) == "[1]"
    assert "lazy" in repr(m)
