"""Slider-drag latency through the GUI path: ``QSlider.valueChanged`` -> session command -> render
worker -> frame posted to the GUI thread -> canvas pixmap set and repainted, in ms.

The real :class:`~studio.gui.main_window.MainWindow` on the default pack (or ``--model``), a sample
photo inverted with the first encoder (so every final frame also starts a paste-back job, as in
use). Directions on all rows, on the coarse rows and on the fine rows (the render cache recomputes
from the first changed row). Two ways of moving a slider:

* ``step``: one move, wait until its frame is on the canvas, next move (the latency of one edit);
* ``drag``: a move every ``--interval`` ms (a 60 Hz drag) with the slider held down; latest wins, so
  only some moves get a frame: "shown" counts them; latency is from each shown frame's move.

"preview" rows force the progressive preview (a low-resolution skip image first; the app enables it
by default only for models of 256 px and up). "render" is the worker's own time for a final frame
(the rest of the latency is waiting for the worker, queueing to the GUI thread and painting).
Offscreen Qt unless QT_QPA_PLATFORM is set.

    python benchmarks/bench_gui_latency.py [--moves 100] [--model MODEL] [--photo PHOTO | --random-face]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

FACES = REPO.parent / "shared" / "data" / "faces"
PHOTO = FACES / "celebahq_male_005735.jpg"
ENCODER_ORDER = ("e2style", "psp", "e4e", "sae", "crg")


def pump(app, until, timeout_s: float) -> bool:
    """Process events until ``until()`` is true or ``timeout_s`` passes."""
    end = time.perf_counter() + timeout_s
    while not until():
        if time.perf_counter() > end:
            return False
        app.processEvents()
        time.sleep(0.0005)
    return True


class Probe:
    """Records request times per render generation and when each frame reached the canvas."""

    def __init__(self, win):
        self.win, self.sent, self.shown = win, {}, []  # shown: (gen, final, ms)
        self.render_ms = []  # worker time of each final frame shown
        orig = win.request_render

        def request_render():
            orig()
            gen, t = win._render_t0
            self.sent[gen] = t

        win.request_render = request_render
        win.frame_shown.connect(self._frame)

    def _frame(self, gen: int, final: bool) -> None:
        self.win.edit_view.repaint()  # the pixels are painted now
        t = time.perf_counter()
        if gen in self.sent:
            self.shown.append((gen, bool(final), (t - self.sent[gen]) * 1000))
            if final:
                self.render_ms.append(self.win.last_render_ms)

    def reset(self) -> None:
        self.sent.clear()
        self.shown.clear()
        self.render_ms.clear()


def run_step(app, win, probe, slider, moves: int) -> None:
    lo, hi = slider.minimum(), slider.maximum()
    values = np.round(np.linspace(lo, hi, moves)).astype(int)
    for v in values:
        if v == slider.value():
            v = v - 1 if v > lo else v + 1
        n = len([s for s in probe.shown if s[1]])
        slider.setValue(int(v))
        if not pump(app, lambda n=n: len([s for s in probe.shown if s[1]]) > n, 30):
            raise TimeoutError("no frame within 30 s")


def run_drag(app, win, probe, slider, moves: int, interval_ms: float) -> None:
    lo, hi = slider.minimum(), slider.maximum()
    values = np.round(lo + (hi - lo) * (0.5 - 0.5 * np.cos(np.linspace(0, 2 * np.pi, moves)))).astype(int)
    slider.setSliderDown(True)
    t_next = time.perf_counter()
    for v in values:
        pump(app, lambda t=t_next: time.perf_counter() >= t, 5)
        slider.setValue(int(v))
        t_next += interval_ms / 1000
    slider.setSliderDown(False)  # release: the final render
    last = max(probe.sent)
    pump(app, lambda: any(g == last and f for g, f, _ in probe.shown), 30)
    win.render_worker.wait_idle(30)


def pct(xs, q) -> str:
    return f"{np.percentile(xs, q):.1f}" if len(xs) else "-"


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--model", default=None, help="model file or pack (default: the embedded pack)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--photo", type=Path, default=PHOTO,
                     help="photo (one face), aligned and inverted with the first encoder the model has of "
                          + ", ".join(ENCODER_ORDER) + " (else 20 optimisation steps)")
    src.add_argument("--random-face", action="store_true", help="edit a random face of the model instead of a photo")
    ap.add_argument("--moves", type=_cli.int_at_least(2, "a drag needs two moves"), default=100,
                    help="slider moves per row of the table")
    ap.add_argument("--interval", type=_cli.float_at_least(0), default=16.0, help="ms between moves in drag mode")
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=None,
                    help="torch intra-op threads (default: torch's)")
    return ap


def check_args(ap, args) -> None:
    """Checks of the parsed arguments made before the window is built: an argparse error (exit 2)."""
    if args.model is not None:
        _cli.check_path(ap, args.model, "--model", "pass a model file or pack folder")
    if not args.random_face:
        _cli.check_image(ap, args.photo, "--photo", "pass --photo PATH of a photo with one face, or --random-face")


def _error_shown(win, since: int) -> str | None:
    """The first error / warning box the window showed after its first ``since`` messages."""
    for kind, title, text in win.messages[since:]:
        if kind in ("error", "warning"):
            return f"{title}: {' '.join(str(text).split())}"
    return None


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    check_args(ap, args)

    import torch
    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import MainWindow

    if args.threads:
        torch.set_num_threads(args.threads)
    app = QApplication.instance() or QApplication(["bench"])
    win = MainWindow(model_path=args.model, settings=False, recovery_dir=False, recover="ignore")  # no autosave left behind, no modal recovery question
    win.resize(1280, 800)
    win.show()
    if not pump(app, lambda: win.model is not None or _error_shown(win, 0), 120):
        raise SystemExit("error: the model did not load within 120 s")
    if win.model is None:
        raise SystemExit(f"error: the model did not load: {_error_shown(win, 0)}")
    m = win.model
    if not args.random_face:
        seen = len(win.messages)
        win.open_path(args.photo)
        pump(app, lambda: win.aligned is not None or _error_shown(win, seen), 120)
        if win.aligned is None:
            why = _error_shown(win, seen) or "no face aligned within 120 s"
            raise SystemExit(f"error: --photo {args.photo}: {why}")
        method = next((k for k in ENCODER_ORDER if k in m.encoders), "optimize")
        win.set_method(method)
        win.optimize_steps = 20
        win.invert()
        pump(app, lambda: win.pasted_image is not None or _error_shown(win, seen), 300)
        if win.pasted_image is None:
            raise SystemExit(f"error: inverting {args.photo.name} with {method} failed: "
                             f"{_error_shown(win, seen) or 'no result within 300 s'}")
        source = f"{args.photo.name} inverted with {method}"
    else:
        win.random_face()
        pump(app, lambda: win.edit_image is not None, 60)
        source = "random face"
    probe = Probe(win)

    # one direction per row span: all rows, the first rows, the last rows
    dirs = [ad.direction for ad in win.session.directions]
    by_span = {}
    for d in dirs:
        by_span.setdefault(d.span(m.num_ws), d)
    spans = sorted(by_span, key=lambda s: (s[0], -s[1]))
    picks = []
    for want in ((0, m.num_ws), min(spans, key=lambda s: (s[0], s[1])), max(spans, key=lambda s: s[0])):
        if want in by_span and by_span[want] not in picks:
            picks.append(by_span[want])

    print(f"# GUI slider latency: {m.describe()}; {source}; canvas {win.edit_view.width()}x{win.edit_view.height()}")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {win.device}, Qt platform {os.environ.get('QT_QPA_PLATFORM')}, {args.moves} moves per row")
    print()
    print("| mode | direction (rows) | preview | moves | shown | preview p50 | preview p95 | final p50 | final p95 "
          "| render p50 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for progressive in (False, True):
        win.render_worker.progressive = True if progressive else None
        for d in picks:
            slider = win._sliders[d.name].slider
            a, b = d.span(m.num_ws)
            for mode in ("step", "drag"):
                probe.reset()
                if mode == "step":
                    run_step(app, win, probe, slider, args.moves)
                else:
                    run_drag(app, win, probe, slider, args.moves, args.interval)
                pre = [ms for _, f, ms in probe.shown if not f]
                fin = [ms for _, f, ms in probe.shown if f]
                print(f"| {mode} | {d.name} ({a}-{b - 1}) | {'on' if progressive else 'off'} | {args.moves} | "
                      f"{len(fin)} | {pct(pre, 50)} | {pct(pre, 95)} | {pct(fin, 50)} | {pct(fin, 95)} | "
                      f"{pct(probe.render_ms, 50)} |", flush=True)
            slider.setValue(0)
            win.render_worker.wait_idle(30)
            pump(app, lambda: False, 0.2)
    win.shutdown()
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
