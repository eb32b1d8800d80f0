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

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

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
done = []
def finish():
    if done:
        return
    done.append(1)
    print("BENCH " + json.dumps(marks), flush=True)
    win.shutdown()
    app.quit()
def on_message(kind, title, text):
    # an error or warning box (no model, no face in the photo, ...): the run failed; say why
    if kind in ("error", "warning") and not done:
        marks.setdefault("error", f"{title}: {' '.join(str(text).split())}")
        QTimer.singleShot(0, finish)
def on_timeout():
    marks["timed_out"] = True
    finish()
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
        marks.setdefault("error", "the model has no direction slider to move")
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
win.message_shown.connect(on_message)
QTimer.singleShot(int(float(os.environ.get("BENCH_TIMEOUT", "120")) * 1000), on_timeout)
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


LABELS = {"window": "window usable", "model": "default pack loaded", "photo": "photo aligned",
          "inverted": "inverted (fastest)", "edited": "slider edit shown"}


def run_failure(marks: dict, *, edit: bool, timeout: float) -> str | None:
    """Why a run did not get through every stage it should have (None: it did): the error the app
    showed (e.g. no face in the photo), or the stage it did not reach within ``timeout``."""
    expected = ["window", "model"] + (["photo", "inverted", "edited"] if edit else [])
    missing = next((k for k in expected if k not in marks), None)
    if marks.get("error"):
        return marks["error"] + (f" (did not reach: {LABELS[missing]})" if missing else "")
    if missing is None:
        return None
    if marks.get("timed_out"):
        return f"did not reach '{LABELS[missing]}' within --timeout {timeout:g} s"
    return f"the app stopped before '{LABELS[missing]}'"


def qt_platforms() -> list[str] | None:
    """Names of the Qt platform plugins PySide6 ships here (None: cannot tell)."""
    try:
        from PySide6.QtCore import QLibraryInfo

        d = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
        names = sorted({p.name.split(".")[0].removeprefix("lib").removeprefix("q") for p in d.iterdir()})
    except (ImportError, OSError, AttributeError):
        return None
    return names or None


def check_platform(ap, value: str) -> None:
    """--platform: every name of a QT_QPA_PLATFORM value ('offscreen', 'xcb:opt', 'wayland;xcb') is a
    plugin PySide6 has, and xcb / wayland have a display to talk to."""
    known = qt_platforms()
    names = [part.split(":")[0].strip() for part in value.split(";") if part.strip()]
    if not names:
        ap.error("--platform: empty; pass a Qt platform such as offscreen or xcb")
    if known is not None:
        bad = [n for n in names if not any(n == k or n.startswith(k + "-") for k in known)]
        if bad:
            ap.error(f"--platform: unknown Qt platform {', '.join(map(repr, bad))}; this PySide6 has "
                     f"{', '.join(known)}")
    if len(names) == 1:  # a fallback list may name a platform without a display
        if names[0] == "xcb" and not os.environ.get("DISPLAY"):
            ap.error("--platform xcb: DISPLAY is not set (no X server); use --platform offscreen")
        if names[0].startswith("wayland") and not os.environ.get("WAYLAND_DISPLAY"):
            ap.error(f"--platform {names[0]}: WAYLAND_DISPLAY is not set; use --platform offscreen")


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--runs", type=_cli.int_at_least(1), default=5, help="cold starts (fresh processes) to time")
    ap.add_argument("--edit", action="store_true", help="also open a photo, invert it and move a slider")
    ap.add_argument("--photo", type=Path, default=PHOTO, help="photo (one face) opened with --edit")
    ap.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM of the child (offscreen, xcb, ...)")
    ap.add_argument("--timeout", type=_cli.float_at_least(0, strict=True), default=120.0,
                    help="seconds before a run gives up (the run then fails)")
    ap.add_argument("--json", type=Path, default=None, help="JSON file for the per-run numbers (default: none written)")
    return ap


def check_args(ap, a) -> None:
    """Checks of the parsed arguments made before the first run: an argparse error (exit 2)."""
    if a.edit:
        _cli.check_image(ap, a.photo, "--photo", "pass --photo PATH of a photo with one face")
    elif a.photo != PHOTO:
        ap.error("--photo is only used with --edit; add --edit (or leave --photo out)")
    check_platform(ap, a.platform)
    if a.json is not None:
        _cli.check_out_file(ap, a.json, "--json")


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    check_args(ap, a)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"QT_QPA_PLATFORM={a.platform}, {a.runs} runs" + (", with an edit" if a.edit else ""))
    runs = []
    for i in range(a.runs):
        r = one_run_rss(edit=a.edit, photo=a.photo, platform_name=a.platform, timeout=a.timeout)
        runs.append(r)
        why = run_failure(r, edit=a.edit, timeout=a.timeout)
        if why:
            if a.json:
                _write_json(a.json, runs)
            print(f"error: run {i + 1} of {a.runs} failed: {why}", file=sys.stderr)
            return 1
    keys = [k for k in ("window", "model", "photo", "inverted", "edited") if all(k in r for r in runs)]
    print(f"\n{'stage':<24} {'median s':>9} {'min s':>7} {'max s':>7}")
    for k in keys:
        v = [r[k] for r in runs]
        print(f"{LABELS[k]:<24} {statistics.median(v):>9.2f} {min(v):>7.2f} {max(v):>7.2f}")
    rss = [r["peak_rss_mb"] for r in runs]
    print(f"{'peak RSS (MB)':<24} {statistics.median(rss):>9.0f} {min(rss):>7.0f} {max(rss):>7.0f}")
    w = statistics.median(r["window"] for r in runs)
    m = statistics.median(r.get("model", float("nan")) for r in runs)
    print(f"\ncold start to a usable window {w:.2f} s: bar <= {START_BAR_S:g} s {'ok' if w <= START_BAR_S else 'NOT MET'} "
          f"(the default pack is loaded in the background by {m:.2f} s); peak RSS {max(rss):.0f} MB: "
          f"bar <= {RSS_BAR_MB} MB {'ok' if max(rss) <= RSS_BAR_MB else 'NOT MET'}")
    if a.json:
        _write_json(a.json, runs)
    return 0


def _write_json(path: Path, runs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    sys.exit(main())
