"""Command-line helpers shared by the benchmark scripts (``benchmarks/bench_*.py``).

* :func:`make_parser`: an ``argparse`` parser whose ``--help`` shows the script's docstring with
  its line breaks and every option's default;
* ``type=`` converters (:func:`int_at_least`, :func:`float_at_least`, :func:`name_list`, ...):
  a bad value is an argparse error naming the flag (exit status 2), never a traceback later on;
* checks made right after parsing, before any model is loaded (:func:`check_file`,
  :func:`check_dir`, :func:`check_image`, :func:`check_out_dir`, :func:`check_device`, ...): each
  ends in ``parser.error(...)``, one line saying which flag is wrong and what to pass instead.

The scripts import this module as ``_cli`` (run as ``python benchmarks/bench_x.py``, or with
``benchmarks/`` on ``sys.path`` as the tests do) or as ``benchmarks._cli``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "HelpFormatter",
    "check_choices",
    "check_device",
    "check_dir",
    "check_file",
    "check_image",
    "check_image_dir",
    "check_out_dir",
    "check_out_file",
    "check_path",
    "float_at_least",
    "float_in_range",
    "int_at_least",
    "int_in_range",
    "int_list",
    "make_parser",
    "name_list",
    "option_help_missing",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description (the module docstring) keeps its line breaks; an option's help gets
    "(default: X)" unless it already says its default, the default is None / False, or it is a
    positional argument."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "%(default)" in text or "(default" in text
                or action.default is None or action.default is False or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def make_parser(doc: str | None, script: str, **kw) -> argparse.ArgumentParser:
    """A parser for a benchmark script: ``doc`` shown whole, defaults shown, ``prog`` the script's
    file name (``script``: its ``__file__``) whatever ``sys.argv[0]`` is."""
    kw.setdefault("formatter_class", HelpFormatter)
    return argparse.ArgumentParser(prog=Path(script).name, description=doc, **kw)


# ----------------------------------------------------------------------------
# type= converters (their errors read "argument --flag: ...")


def _named(fn: Callable, name: str) -> Callable:
    fn.__name__ = name  # argparse names a converter that raised ValueError by its __name__
    return fn


def int_at_least(lo: int, why: str = "") -> Callable[[str], int]:
    """A whole number >= ``lo``; ``why`` is added to the error ("FD needs 2 samples per side")."""
    return int_in_range(lo, None, why)


def int_in_range(lo: int | None, hi: int | None, why: str = "") -> Callable[[str], int]:
    """A whole number in [lo, hi] (None: no bound)."""
    def parse(text: str) -> int:
        try:
            v = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be {rng}{f' ({why})' if why else ''}, got {v}")
        return v
    return _named(parse, "int")


def float_at_least(lo: float, *, strict: bool = False, why: str = "") -> Callable[[str], float]:
    """A finite number >= ``lo`` (> ``lo`` with ``strict``)."""
    return float_in_range(lo, None, lo_open=strict, why=why)


def float_in_range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False,
                   why: str = "") -> Callable[[str], float]:
    """A finite number in the range from ``lo`` to ``hi`` (None: no bound; ``*_open``: excluded)."""
    def parse(text: str) -> float:
        try:
            v = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi:
            parts = []
            if lo is not None:
                parts.append(f"{'>' if lo_open else '>='} {lo:g}")
            if hi is not None:
                parts.append(f"{'<' if hi_open else '<='} {hi:g}")
            raise argparse.ArgumentTypeError(f"must be {' and '.join(parts)}{f' ({why})' if why else ''}, got {v:g}")
        return v
    return _named(parse, "float")


def name_list(choices: Iterable[str], what: str = "name") -> Callable[[str], list[str]]:
    """A comma list of names out of ``choices`` (order kept, repeats dropped, at least one)."""
    choices = tuple(choices)
    known = ", ".join(choices)

    def parse(text: str) -> list[str]:
        items = list(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
        if not items:
            raise argparse.ArgumentTypeError(f"empty list: give one or more of {known} (comma separated)")
        bad = [s for s in items if s not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what}{'s' if len(bad) > 1 else ''} "
                                             f"{', '.join(map(repr, bad))}; choose from {known} (comma separated)")
        return items
    return _named(parse, "list")


def int_list(lo: int = 1, why: str = "") -> Callable[[str], list[int]]:
    """A comma list of whole numbers, each >= ``lo`` (order kept, repeats dropped, at least one)."""
    one = int_at_least(lo, why)

    def parse(text: str) -> list[int]:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list: give one or more whole numbers, comma separated")
        try:
            return list(dict.fromkeys(one(s) for s in items))
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None
    return _named(parse, "list")


# ----------------------------------------------------------------------------
# Checks after parsing (defaults included), before any heavy work


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_path(ap: argparse.ArgumentParser, path, flag: str, hint: str = "") -> Path:
    """``path`` exists (a file or a folder) and can be read."""
    p = Path(path)
    if not p.exists():
        ap.error(f"{flag}: {p} not found{_hint(hint)}")
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        ap.error(f"{flag}: {p} cannot be read (permissions){_hint(hint)}")
    return p


def check_file(ap: argparse.ArgumentParser, path, flag: str, hint: str = "") -> Path:
    """``path`` is a readable file."""
    p = check_path(ap, path, flag, hint)
    if not p.is_file():
        ap.error(f"{flag}: {p} is not a file{_hint(hint)}")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as e:
        ap.error(f"{flag}: {p} cannot be read ({e.strerror or e}){_hint(hint)}")
    return p


def check_dir(ap: argparse.ArgumentParser, path, flag: str, hint: str = "") -> Path:
    """``path`` is a readable folder."""
    p = check_path(ap, path, flag, hint)
    if not p.is_dir():
        ap.error(f"{flag}: {p} is not a folder{_hint(hint)}")
    return p


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def check_image_dir(ap: argparse.ArgumentParser, path, flag: str, *, recursive: bool = False,
                    suffixes: Iterable[str] = IMAGE_SUFFIXES, hint: str = "") -> Path:
    """``path`` is a readable folder with at least one image file (in a sub-folder too if ``recursive``)."""
    p = check_dir(ap, path, flag, hint)
    suffixes = tuple(suffixes)
    files = p.rglob("*") if recursive else p.iterdir()
    if not any(f.suffix.lower() in suffixes and f.is_file() for f in files):
        ap.error(f"{flag}: no images ({'/'.join(s[1:] for s in suffixes)}) in {p}"
                 f"{' or its sub-folders' if recursive else ''}{_hint(hint)}")
    return p


def check_image(ap: argparse.ArgumentParser, path, flag: str, hint: str = "") -> Path:
    """``path`` is a readable file that Pillow recognises as an image (header only: cheap)."""
    p = check_file(ap, path, flag, hint)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        ap.error(f"{flag}: {p} is not a readable image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                 f"{_hint(hint)}")
    return p


def _writable_ancestor(p: Path) -> Path | None:
    """The nearest existing ancestor of ``p``, or None when that is no writable folder."""
    for a in [p, *p.parents]:
        if a.exists():
            return a if a.is_dir() and os.access(a, os.W_OK | os.X_OK) else None
    return None


def check_out_dir(ap: argparse.ArgumentParser, path, flag: str) -> Path:
    """``path`` is a folder or can be made one (it is no file; its nearest existing ancestor is writable)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        ap.error(f"{flag}: {p} exists and is not a folder; pass a folder for the outputs")
    if _writable_ancestor(p) is None:
        ap.error(f"{flag}: cannot write under {p} (permissions); pass a writable folder")
    return p


def check_out_file(ap: argparse.ArgumentParser, path, flag: str) -> Path:
    """``path`` can be written as a file (it is no folder; its folder exists or can be made)."""
    p = Path(path)
    if p.is_dir():
        ap.error(f"{flag}: {p} is a folder; pass a file name")
    if p.exists() and not os.access(p, os.W_OK):
        ap.error(f"{flag}: {p} cannot be overwritten (permissions)")
    if _writable_ancestor(p.parent) is None:
        ap.error(f"{flag}: cannot write {p} (its folder is not writable); pass another path")
    return p


def check_device(ap: argparse.ArgumentParser, device: str, flag: str = "--device", *, allow_auto: bool = False) -> str:
    """``device`` is a PyTorch device this machine has: cpu, cuda, cuda:N, mps (and 'auto' if allowed)."""
    if allow_auto and device == "auto":
        return device
    import torch

    names = "cpu, cuda, cuda:N" + (", auto" if allow_auto else "")
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        ap.error(f"{flag}: unknown device {device!r}; pass one of {names}")
    if d.type == "cpu":
        return device
    if d.type == "cuda":
        if not torch.cuda.is_available():
            ap.error(f"{flag}: {device!r} but CUDA is not available here (torch {torch.__version__}); "
                     f"pass --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            ap.error(f"{flag}: {device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    if d.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return device
    ap.error(f"{flag}: device {device!r} is not available here; pass one of {names}")


def check_choices(ap: argparse.ArgumentParser, values: Iterable[str], available: Iterable[str], flag: str,
                  why: str = "") -> None:
    """Every name in ``values`` is one of ``available`` (e.g. the methods a loaded model offers)."""
    available = list(available)
    bad = [v for v in values if v not in available]
    if bad:
        ap.error(f"{flag}: {', '.join(map(repr, bad))} not available{f' ({why})' if why else ''}; "
                 f"available: {', '.join(available) or 'none'}")


def option_help_missing(ap: argparse.ArgumentParser) -> list[str]:
    """Option strings of ``ap``'s actions without a help text (for the tests)."""
    return [a.option_strings[0] if a.option_strings else a.dest for a in ap._actions
            if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
