"""Entry script of the PyInstaller app (packaging/stylestudio.spec): the ``stylestudio`` command."""

import multiprocessing
import sys

from studio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
