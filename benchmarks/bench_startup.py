"""Cold start and memory of the app: time to a usable window and peak RSS with the default pack.

Each run starts a fresh Python process (offscreen Qt unless ``--platform`` says otherwise) that
builds the real :class:`~studio.gui.main_window.MainWindow` the way ``stylestudio`` does and reports,
measured from the moment the parent started the process:

* ``window``: the window is shown and the event loop has processed its first events (usable:
  menus, File ▸ Open, drag and drop work);
* ``model``: the default pack is loaded in its worker and the direction sliders are built (editing
  can start);
* with ``--edit``: a sample photo opened, its face aligned and inverted with the fastest encoder,
  and one slider move rendered (``edited``).

Peak RSS is the child's ``ru_maxrss`` (from ``os.wait4``), i.e. the whole process's high-water mark
including that editing when ``--edit`` is given.

    python benchmarks/bench_startup.py                  # 5 cold starts, table of medians
    python benchmarks/bench_startup.py --edit --runs 3  # peak RSS while editing a photo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "faces" / "celebahq_male_005735.jpg"
START_BAR_S, RSS_BAR_MB = 3.0, 1536

CHILD = r"""
import json, os, sys, time
T0 = float(os.environ["BENCH_T0"])
marks = {}
def mark(name):
    marks.setdefault(name, time.time() - T0)
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
app.setApplicationName("StyleStudio")
from studio.gui.main_window import MainWindow
win = MainWindow(settings=False, recovery_dir=False, recover="ignore")  # no autosave left behind, no modal recovery question
win.show()
QTimer.singleShot(0, lambda: mark("window"))
edit = os.environ.get("BENCH_EDIT") == "1"
photo = os.environ.get("BENCH_PHOTO", "")
def finish():
    print("BENCH " + json.dumps(marks), flush=True)
    win.shutdown()
    app.quit()
def on_model():
    mark("model")
    if not edit:
        QTimer.singleShot(0, finish)
        return
    win.open_path(photo)
def on_photo():
    mark("photo")
    win.invert()
def on_inverted():
    mark("inverted")
    s = next(iter(win._sliders.values()), None)
    if s is None:
        QTimer.singleShot(0, finish)
        return
    lo, hi = s.slider.minimum(), s.slider.maximum()
    s.slider.setValue(int(lo + 0.8 * (hi - lo)))
    s.released.emit(s.name)  # as on mouse release: the full render
def on_frame(gen, final):
    if "inverted" in marks and final and "edited" not in marks:
        mark("edited")
        QTimer.singleShot(0, finish)
win.model_loaded.connect(on_model)
win.photo_ready.connect(on_photo)
win.inversion_finished.connect(on_inverted)
win.frame_shown.connect(on_frame)
QTimer.singleShot(int(float(os.environ.get("BENCH_TIMEOUT", "120")) * 1000), finish)
app.exec()
"""


def one_run_rss(*, edit: bool, photo: Path, platform_name: str, timeout: float) -> dict:
    """:func:`one_run` with the child's peak RSS (MB) from ``os.wait4``."""
    import tempfile

    env = dict(os.environ, QT_QPA_PLATFORM=platform_name, BENCH_EDIT="1" if edit else "0",
               BENCH_PHOTO=str(photo), BENCH_TIMEOUT=str(timeout), PYTHONPATH=str(REPO))
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        env["BENCH_T0"] = repr(time.time())
        p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=fout, stderr=ferr, env=env, cwd=str(REPO),
                             text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    marks = {}
    for line in out.splitlines():
        if line.startswith("BENCH "):
            marks = json.loads(line[6:])
    if "window" not in marks:
        raise SystemExit(f"the app did not report (exit {p.returncode}):\n{err[-3000:]}")
    marks["peak_rss_mb"] = ru.ru_maxrss / 1024.0  # Linux: kilobytes
    return marks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--edit", action="store_true", help="also open a photo, invert it and move a slider")
    ap.add_argument("--photo", type=Path, default=PHOTO)
    ap.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM of the child (offscreen, xcb, ...)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a run gives up")
    ap.add_argument("--json", type=Path, default=None, help="write the per-run numbers here")
    a = ap.parse_args(argv)
    if a.edit and not a.photo.is_file():
        raise SystemExit(f"{a.photo} not found: pass --photo")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"QT_QPA_PLATFORM={a.platform}, {a.runs} runs" + (", with an edit" if a.edit else ""))
    runs = [one_run_rss(edit=a.edit, photo=a.photo, platform_name=a.platform, timeout=a.timeout) for _ in range(a.runs)]
    keys = [k for k in ("window", "model", "photo", "inverted", "edited") if all(k in r for r in runs)]
    print(f"\n{'stage':<24} {'median s':>9} {'min s':>7} {'max s':>7}")
    labels = {"window": "window usable", "model": "default pack loaded", "photo": "photo aligned",
              "inverted": "inverted (fastest)", "edited": "slider edit shown"}
    for k in keys:
        v = [r[k] for r in runs]
        print(f"{labels[k]:<24} {statistics.median(v):>9.2f} {min(v):>7.2f} {max(v):>7.2f}")
    rss = [r["peak_rss_mb"] for r in runs]
    print(f"{'peak RSS (MB)':<24} {statistics.median(rss):>9.0f} {min(rss):>7.0f} {max(rss):>7.0f}")
    w = statistics.median(r["window"] for r in runs)
    m = statistics.median(r.get("model", float("nan")) for r in runs)
    print(f"\ncold start to a usable window {w:.2f} s: bar <= {START_BAR_S:g} s {'ok' if w <= START_BAR_S else 'NOT MET'} "
          f"(the default pack is loaded in the background by {m:.2f} s); peak RSS {max(rss):.0f} MB: "
          f"bar <= {RSS_BAR_MB} MB {'ok' if max(rss) <= RSS_BAR_MB else 'NOT MET'}")
    if a.json:
        a.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
