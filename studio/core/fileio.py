"""The one way StyleStudio writes files: atomically (temp file in the same folder, fsync, rename),
so a crash or kill never leaves a truncated file behind.

Everything the app, the CLI and the trainers write goes through :func:`atomic_write_bytes` (the text,
JSON and NumPy helpers below build the bytes in memory first). The exceptions are append-only logs
(``metrics.jsonl``, ``log.txt``, TensorBoard events), whose readers skip a torn last line;
``tests/test_atomic_writes.py`` keeps the list."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def not_a_regular_file(path: str | Path) -> str | None:
    """Why ``path`` (which exists) cannot be read as a file - a pipe (opening one blocks until
    something writes to it), a device or a socket - or None for a regular file, a folder or a path
    that is missing (the caller's own open reports those)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"is {kind}, not a file; give the file itself"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``; readers see either the old file or the complete new one. A
    symbolic link is written through (its target is replaced), not replaced by a plain file."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (power loss); best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj, *, indent: int | None = 1, **dumps_kwargs) -> None:
    """``obj`` as JSON (one trailing newline), written atomically; ``dumps_kwargs`` go to ``json.dumps``."""
    import json

    atomic_write_text(path, json.dumps(obj, indent=indent, **dumps_kwargs) + "\n")


def atomic_save_npy(path: str | Path, array) -> None:
    """One array as ``.npy`` (``allow_pickle=False``), written atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | Path, *, compressed: bool = False, **arrays) -> None:
    """Arrays as an ``.npz`` archive (``path`` is used as given: no ``.npz`` is appended), written atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
