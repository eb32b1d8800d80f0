"""Drive the real StyleStudio window through an edit and save PNG screenshots of each stage.

    python scripts/screenshot.py OUT_DIR [--photo PHOTO] [--reference PHOTO] [--model MODEL]

Run by ``scripts/screenshot.sh`` under Xvfb (or with QT_QPA_PLATFORM=offscreen). Loads the default
pack (or MODEL), opens a sample photo, inverts it with the first encoder, moves two direction
sliders, mixes the coarse styles of a reference face, and writes one PNG per stage (the window as
drawn by Qt, ``QWidget.grab``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
FACES = SHARED / "data" / "faces"


def wait_for(app, signal, timeout_s: float = 60.0, check=None) -> tuple:
    """Process events until ``signal`` fires (and ``check(*args)`` holds); returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, got = QEventLoop(), []

    def hit(*args):
        if check is None or check(*args):
            got.append(args)
            loop.quit()

    signal.connect(hit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(hit)
    if not got:
        raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {signal}")
    return got[0]


def settle(app, ms: int = 300) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--photo", type=Path, default=FACES / "celebahq_female_039913.jpg")
    ap.add_argument("--reference", type=Path, default=FACES / "celebahq_male_005735.jpg")
    ap.add_argument("--model", default=None, help="model file or pack (default: the embedded pack)")
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import MainWindow

    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(["stylestudio"])
    app.setApplicationName("StyleStudio")
    win = MainWindow(model_path=args.model, settings=False, recovery_dir=False, recover="ignore")  # no autosave left behind, no modal recovery question
    win.resize(1400, 900)
    win.show()
    shots = []

    def shot(name: str, what: str) -> None:
        settle(app)
        path = args.out / f"{name}.png"
        win.grab().save(str(path))
        shots.append((path, what))
        print(f"{path}: {what}", flush=True)

    wait_for(app, win.model_loaded, 120)
    shot("01-start", "the window with the default pack loaded, before any photo")

    win.open_path(args.photo)
    wait_for(app, win.photo_ready, 120)
    shot("02-photo", f"{args.photo.name} opened: the aligned face (left) and the photo (right)")

    encoders = [m for m in ("e2style", "crg", "psp", "e4e") if m in win.model.encoders] or ["optimize"]
    win.set_method(encoders[0])
    win.invert()
    wait_for(app, win.paste_shown, 300)
    shot("03-inverted", f"inverted with {encoders[0]}: the reconstruction and the photo with it pasted back")

    names = list(win._sliders)
    for name, frac in ((names[0], 0.8), (names[2 % len(names)], 0.8)):
        s = win._sliders[name].slider
        s.setValue(int(s.maximum() * frac))
        wait_for(app, win.frame_shown, 60, check=lambda g, final: final and win.is_current(g))
    wait_for(app, win.paste_shown, 60)
    shot("04-sliders", f"directions '{names[0]}' and '{names[2 % len(names)]}' moved to 80% of their range")

    win.reference_from_photo(args.reference)
    wait_for(app, win.reference_ready, 300)
    win.mixing.groups["coarse"].slider.setValue(100)
    wait_for(app, win.paste_shown, 60)
    side = win.side_scroll
    side.verticalScrollBar().setValue(side.verticalScrollBar().maximum())
    shot("05-mixing", f"style mixing: coarse rows from {args.reference.name} (thumbnail in the mixing panel)")

    win.dir_advanced.setChecked(True)
    win.mixing.per_layer_check.setChecked(True)
    wait_for(app, win.frame_shown, 60, check=lambda g, final: final and win.is_current(g))
    side.verticalScrollBar().setValue(side.verticalScrollBar().maximum())
    shot("06-advanced", "advanced mode: layer ranges per direction and per-layer mixing strengths")

    win.show_original.setChecked(True)
    shot("07-before", "'Show original' on: the aligned photo and the untouched photo for comparison")
    win.show_original.setChecked(False)

    win.show_model_info()
    settle(app, 500)
    box = app.activeModalWidget() or next((w for w in app.topLevelWidgets() if w.isVisible() and w is not win), None)
    if box is not None:
        box.grab().save(str(args.out / "08-model-info.png"))
        print(f"{args.out / '08-model-info.png'}: Model ▸ Model information", flush=True)
        box.close()

    win.shutdown()
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
