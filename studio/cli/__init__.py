"""The ``stylestudio`` command line.

Each sub-command lives in its own module ``studio/cli/cmd_<name>.py`` exposing
``register(subparsers)``; it adds its parser and sets ``func`` (``args -> int`` exit code).
Library errors (:class:`studio.core.errors.StudioError`) are printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        return _launch_app(parser, smoke_test=args.smoke_test)
    try:
        return int(args.func(args) or 0)
    except StudioError as e:
        print(f"stylestudio {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _launch_app(parser: argparse.ArgumentParser, smoke_test: str | None = None) -> int:
    try:
        from studio.gui.app import run_app  # noqa: WPS433 (optional layer)
    except ModuleNotFoundError:
        parser.print_help()
        return 0 if smoke_test is None else 1
    return run_app(smoke_test=smoke_test)
