"""``stylestudio`` with no arguments: the Qt application."""

from __future__ import annotations

import logging
import sys


def run_app(argv: list[str] | None = None) -> int:
    """Start the window (files named in ``argv`` are opened) and run the event loop."""
    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import MainWindow

    argv = list(sys.argv if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("StyleStudio")
    app.setOrganizationName("StyleStudio")
    win = MainWindow()
    win.show()
    for path in argv[1:]:
        if not path.startswith("-"):
            win.open_path(path)
            break
    return int(app.exec())
