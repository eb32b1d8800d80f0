"""The ``stylestudio`` command line.

Each sub-command lives in its own module ``studio/cli/cmd_<name>.py`` exposing
``register(subparsers)``; it adds its parser and sets ``func`` (``args -> int`` exit code).
Library errors (:class:`studio.core.errors.StudioError`) are printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from studio import __version__
from studio.core.errors import StudioError

# Order = order in --help.
_COMMANDS = [
    "info",
    "convert",
    "generate",
    "align",
    "invert",
    "paste",
    "train",
    "edit",
    "directions",
    "mix",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylestudio",
        description="Edit faces with StyleGAN2. Without a sub-command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"stylestudio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    # Packaging smoke test of the window: load the pack, render a face to PNG, exit (packaging/build.sh).
    parser.add_argument("--smoke-test", metavar="PNG", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            mod = importlib.import_module(f"studio.cli.cmd_{name}")
        except ModuleNotFoundError as e:  # a command whose module is not there yet
            if e.name == f"studio.cli.cmd_{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    files = _files_to_open(parser, argv)
    args = parser.parse_args([a for a in argv if a not in files] if files else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        return _launch_app(parser, smoke_test=args.smoke_test, files=files)
    try:
        return int(args.func(args) or 0)
    except StudioError as e:
        print(f"stylestudio {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the command was told to read or write: say which and why, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        what = e.strerror or str(e)
        print(f"stylestudio {args.command}: error: {where}{what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _files_to_open(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``stylestudio photo.jpg [model.pkl ...]``: the files to open in the app, when the first
    positional argument is not a sub-command (each must exist); [] otherwise."""
    positional, skip = [], False
    for a in argv:
        if skip:  # the value of an option that takes one
            skip = False
        elif a == "--smoke-test":
            skip = True
        elif not a.startswith("-"):
            positional.append(a)
    if not positional or positional[0] in _COMMANDS:
        return []
    missing = [a for a in positional if not Path(a).exists()]
    if missing:
        parser.error(f"{missing[0]!r} is neither a command ({', '.join(_COMMANDS)}) nor an existing file to open")
    return positional


def _display_problem() -> str | None:
    """Why the window cannot open on this Linux session (no display, a missing Qt xcb library), or None."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). Run it on a desktop session "
                "(or under xvfb-run), or use a sub-command: stylestudio --help")
    if not os.environ.get("WAYLAND_DISPLAY"):
        import ctypes.util

        if ctypes.util.find_library("xcb-cursor") is None:
            return ("Qt's X11 (xcb) platform needs the libxcb-cursor0 library: install it with "
                    "`sudo apt-get install libxcb-cursor0` (scripts/setup-env.sh installs it)")
    return None


def _launch_app(parser: argparse.ArgumentParser, smoke_test: str | None = None, files: list[str] | None = None) -> int:
    try:
        from studio.gui.app import run_app  # noqa: WPS433 (optional layer)
    except ModuleNotFoundError:
        parser.print_help()
        return 0 if smoke_test is None else 1
    problem = None if smoke_test is not None else _display_problem()
    if problem is not None:
        print(f"stylestudio: cannot open the window: {problem}", file=sys.stderr)
        return 2
    return run_app(["stylestudio", *(files or [])], smoke_test=smoke_test)
