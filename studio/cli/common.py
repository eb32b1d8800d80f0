"""Helpers shared by CLI commands."""

from __future__ import annotations

import os
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
    """A .npy file (never pickled objects); errors say which file and what was expected.

    Only plain arrays are read: a file that is not a .npy array (text, an image, random bytes, a .npz
    archive) or that holds Python objects is refused with a one-line message; the message never
    suggests loading it unsafely (StyleStudio never unpickles a file it is given)."""
    path = Path(path)
    not_array = (f"{path}: not a .npy {what} file (or it holds Python objects, which StyleStudio never loads); "
                 f"expected a NumPy array saved with numpy.save")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic != b"\x93NUMPY":
                if magic.startswith(b"PK\x03\x04"):
                    raise StudioError(f"{path}: a .npz archive of several arrays, not a single .npy {what}")
                raise StudioError(not_array)
            f.seek(0)
            a = np.load(f, allow_pickle=False)
    except StudioError:
        raise
    except FileNotFoundError:
        raise StudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise StudioError(f"{path}: is a folder, not a .npy {what} file") from None
    except OSError as e:
        raise StudioError(f"{path}: cannot read it ({e.strerror or e})") from None
    except MemoryError:
        raise StudioError(f"{path}: damaged .npy {what} (its header claims an implausibly large array)") from None
    except (ValueError, EOFError) as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise StudioError(not_array) from None
        raise StudioError(f"{path}: damaged or truncated .npy {what} ({e or 'no data'})") from None
    if not isinstance(a, np.ndarray) or a.dtype.hasobject:
        raise StudioError(not_array)
    return a


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


def check_outputs(outputs, inputs=(), *, may_update: dict | None = None) -> None:
    """Refuse, before anything is written, output paths that cannot or must not be written.

    ``outputs``: ``(path, flag, is_image)`` triples (``path`` None = not asked for). Each must not be an
    input, nor a folder, nor another output; its folder must exist, be a folder and be writable; an
    image must have a suffix save_image writes. ``may_update``: {flag: input} an output may replace
    (a project saved over the project it was read from: the write is atomic, the input already read)."""
    from studio.core.imageio import SAVE_FORMATS, SAVE_SUFFIXES_TEXT

    seen: dict[Path, str] = {}
    for path, flag, image in outputs:
        if path is None:
            continue
        p = Path(path)
        own = (may_update or {}).get(flag)
        check_not_input(p, *(i for i in inputs if i is not None and not (own is not None and same_file(i, own))),
                        flag=flag)
        if not p.parent.exists() and not p.parent.is_symlink():  # not created for it: a typo, most likely
            raise StudioError(f"cannot write {p}: folder {p.parent} does not exist")
        check_output(p, folder=False, flag=flag)  # not a folder, not under a file, a writable folder
        if image and p.suffix.lower() not in SAVE_FORMATS:
            raise StudioError(f"{flag} {p}: unknown image suffix; use {SAVE_SUFFIXES_TEXT}")
        key = p.resolve()
        if key in seen:
            raise StudioError(f"{flag} and {seen[key]} name the same file {p}; choose different names")
        seen[key] = flag


def check_output(path: str | Path, *, folder: bool, flag: str = "--out") -> Path:
    """Refuse, before any work, an output path that cannot be written: a folder that is an existing
    file, a file that is an existing folder, a path under a file, or one in a read-only folder."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise StudioError(f"{flag} {path} is an existing file; give a folder name")
        if not folder and path.is_dir():
            raise StudioError(f"{flag} {path} is a folder; give a file name")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise StudioError(f"{flag} {path}: {parent} is not a folder: it is a file, so nothing can be created under it")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise StudioError(f"{flag} {path}: the folder {parent} is not writable")
    return path
