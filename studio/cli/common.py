"""Helpers shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.core.errors import CheckpointError, StudioError

from studio.core.pack import default_pack  # noqa: F401 (re-exported for the commands)


def resolve_model(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    pack = default_pack()
    if pack is None:
        raise CheckpointError(None, "no model given and no default model pack is installed; pass a model "
                                    "file (NVIDIA .pkl, rosinality/pSp/e4e/E2Style .pt, or a StyleStudio pack)")
    return pack


def parse_range_list(text: str) -> list[int]:
    """'1-4,7,10-11' -> [1, 2, 3, 4, 7, 10, 11]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else (part, None)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError(f"empty range {part!r}")
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    return out


def read_npy(path: str | Path, what: str = "array") -> np.ndarray:
    """A .npy file (never pickled objects); errors say which file and what was expected."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise StudioError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise StudioError(f"{path}: not a readable .npy {what} ({e})") from None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (resolving links and ``..``; False if either is missing)."""
    try:
        return Path(a).resolve() == Path(b).resolve() or Path(a).samefile(b)
    except OSError:
        return False


def check_not_input(out: str | Path | None, *inputs: str | Path | None, flag: str = "--out") -> None:
    """Refuse an output path that is one of the command's input files (it would be overwritten)."""
    if out is None:
        return
    for src in inputs:
        if src is not None and same_file(out, src):
            raise StudioError(f"{flag} {out} is an input file of this command and would be overwritten; "
                              f"choose another name")
