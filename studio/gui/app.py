"""``stylestudio`` with no arguments: the Qt application."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ICON_NAMES = ("stylestudio.svg", "stylestudio-256.png", "stylestudio-128.png", "stylestudio-48.png")


def icon_files() -> list[Path]:
    """The app icon's files (``resources/icons`` in the checkout, ``studio/resources/icons`` in a
    wheel or a PyInstaller bundle)."""
    from studio.core.pack import PACK_ROOTS

    for root in PACK_ROOTS:
        found = [root / "icons" / n for n in ICON_NAMES if (root / "icons" / n).is_file()]
        if found:
            return found
    return []


def app_icon():
    """The window icon (a QIcon with every size found), or None when the icons are not installed."""
    from PySide6.QtGui import QIcon

    files = icon_files()
    if not files:
        return None
    icon = QIcon()
    for f in files:
        icon.addFile(str(f))
    return icon


def run_app(argv: list[str] | None = None, *, smoke_test: str | None = None) -> int:
    """Start the window (files named in ``argv`` are opened) and run the event loop.

    ``smoke_test``: a PNG path: load the default pack, render a random face, write it there and exit
    (0 on success; used by ``packaging/build.sh`` on the built app, e.g. with QT_QPA_PLATFORM=offscreen).
    """
    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import MainWindow

    argv = list(sys.argv if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("StyleStudio")
    app.setOrganizationName("StyleStudio")
    app.setDesktopFileName("stylestudio")  # packaging/stylestudio.desktop (Wayland app id)
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    if smoke_test is not None:
        return _smoke_test(app, MainWindow, Path(smoke_test))
    win = MainWindow(confirm_close=True)  # an unsaved edit: Save / Discard / Cancel
    win.show()
    for path in argv[1:]:  # in order: a model named before a photo is loaded first
        if not path.startswith("-"):
            win.open_path(path)
    return int(app.exec())


def _smoke_test(app, window_cls, out: Path, timeout_s: float = 300.0) -> int:
    """Open the window on the default pack, draw a random face, save the render to ``out``, exit."""
    import inspect
    import time

    from PySide6.QtCore import QTimer

    from studio.core.pack import default_pack

    t0 = time.perf_counter()
    if default_pack() is None:
        print("smoke-test: no model pack installed", flush=True)
        return 1
    kwargs: dict = {"settings": False}  # leave the user's settings and autosaves alone
    if "recovery_dir" in inspect.signature(window_cls).parameters:
        kwargs["recovery_dir"] = False
    win = window_cls(**kwargs)
    win.show()
    state = {"rc": 1}

    def say(text: str) -> None:
        print(f"smoke-test: {text} ({time.perf_counter() - t0:.1f} s)", flush=True)

    def finish(rc: int) -> None:
        state["rc"] = rc
        app.exit(rc)

    def loaded() -> None:
        say(f"model loaded: {win.model.describe() if win.model is not None else '?'}")
        win.random_face()

    def frame(_gen: int, final: bool) -> None:
        if not final or win.edit_image is None or state["rc"] == 0:
            return
        from studio.core.imageio import save_image

        img = win.edit_image
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(out, img)
        say(f"rendered a {img.shape[1]}x{img.shape[0]} face to {out}")
        finish(0)

    def message(kind: str, title: str, text: str) -> None:
        if kind == "error":
            say(f"error: {title}: {text}")
            finish(1)

    win.model_loaded.connect(loaded)
    win.frame_shown.connect(frame)
    win.message_shown.connect(message)
    QTimer.singleShot(int(timeout_s * 1000), lambda: (say("timed out"), finish(1)))
    app.exec()
    win.shutdown()
    win.close()
    return state["rc"]
