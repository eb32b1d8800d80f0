"""Drive the Training window through a real (small) E2Style run and save PNG screenshots.

    python scripts/screenshot_training.py OUT_DIR [--model MODEL] [--data FOLDER] [--runs DIR]

Run by ``scripts/screenshot_training.sh`` under Xvfb (or with QT_QPA_PLATFORM=offscreen). Starts
``trainers.encoder --arch e2style --stages 3`` on the default pack's generator (or MODEL) from the
window's form with an aggressive abortion schedule (absolute mode, a threshold the loss does not
reach, so every check counts: a stage is dropped every ``patience`` checks), and grabs the window
while the run goes, after each abort, after Stop (SIGTERM) and after Resume.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
UTKFACE = SHARED / "data" / "utkface" / "images"


def wait_until(app, cond, timeout_s: float, what: str) -> None:
    """Process events until ``cond()`` holds."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.time() + timeout_s
    while not cond():
        if time.time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        loop = QEventLoop()
        QTimer.singleShot(100, loop.quit)
        loop.exec()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default=None, help="generator (default: the embedded pack)")
    ap.add_argument("--data", default=str(UTKFACE) if UTKFACE.is_dir() else None,
                    help="aligned faces (default: shared UTKFace if present, else generated faces)")
    ap.add_argument("--runs", type=Path, default=None, help="runs folder (default OUT/runs)")
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from studio.gui.training import TrainingWindow

    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or args.out / "runs"
    app = QApplication.instance() or QApplication(["stylestudio"])
    app.setApplicationName("StyleStudio")
    # In the app the window is opened from the editor, whose load_model takes the snapshot.
    win = TrainingWindow(poll_ms=250, use_snapshot=lambda path: print(f"use snapshot: {path}", flush=True))
    win.resize(1500, 980)
    win.show()

    def shot(name: str, what: str) -> None:
        wait_until(app, lambda: True, 0, "")
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(400, loop.quit)
        loop.exec()
        path = args.out / f"{name}.png"
        win.grab().save(str(path))
        print(f"{path}: {what}", flush=True)

    win.set_trainer("encoder")
    opts = {"arch": "e2style", "model": args.model, "data": args.data, "max_images": 400 if args.data else None,
            "out": runs, "width": 16, "depth": "10", "stages": 3, "abort": "absolute", "abort_threshold": 0.02,
            "abort_patience": 5, "check_every": 2, "min_stages": 1, "batch": 4, "steps": 200, "lr": 1e-3,
            "lambda_lpips": 0, "eval_every": 6, "eval_batch": 8, "threads": 1, "log_every": 1,
            "snapshot_every": 10}
    for k, v in opts.items():
        win.set_option(k, "" if v is None else v)
    shot("01-form", "the Training window before a run: the encoder form with the abortion options")
    if not win.start():
        print("could not start:", win.messages, file=sys.stderr)
        return 1
    wait_until(app, lambda: win.model is not None and win.model.step >= 4, 300, "the first steps")
    shot("02-running", "a few steps in: loss curves per term, sec/step, ETA, abort_count climbing")
    wait_until(app, lambda: len(win.model.aborts) >= 1 and win.model.step >= 14, 600, "the first abort")
    shot("03-first-abort", "after the first abort: stage 3 dropped (lane, table, dashed line), compute saved")
    wait_until(app, lambda: len(win.model.aborts) >= 2 and win.model.step >= 25
               and win.sample_view.image() is not None, 600, "the second abort")
    shot("04-second-abort", "after the second abort: one stage left, the latest sample grid shown")
    win.stop()
    wait_until(app, lambda: not win.process_running and win.model.ended is not None, 300, "the stop")
    shot("05-stopped", "after Stop (SIGTERM): the trainer snapshotted and logged its end")
    win.resume()
    wait_until(app, lambda: win.model.sessions[-1]["event"] == "resume" and win.model.step >= 0
               and win.model.records > 0, 300, "the resume")
    step0 = win.model.step
    wait_until(app, lambda: win.model.step >= step0 + 4, 300, "steps after the resume")
    shot("06-resumed", "after Resume (--resume RUN_DIR): the curves continue from the snapshot")
    win.stop()
    wait_until(app, lambda: not win.process_running, 300, "the second stop")
    print(f"run directory: {win.model.run_dir}", flush=True)
    win.shutdown()
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
