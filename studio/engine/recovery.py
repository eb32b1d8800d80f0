"""Autosave and crash recovery for the editor (plain Python, no Qt).

While an edit is open the window autosaves it to a per-user recovery folder: one file per window,
``autosave-<pid>-<n>.stylestudio``. The file is an ordinary ``.stylestudio`` project (it opens with
:meth:`~studio.engine.session.EditSession.load`) with one more member, ``recovery.json``: the writer's
pid and process start time, the time of the save, the model and the photo (path and face index).
Every save is atomic (:func:`~studio.core.fileio.atomic_write_bytes`), so a kill at any moment
leaves either the previous autosave or the new one.

A clean exit (or a save of the project) removes the file; so at start a file whose writer process is
no longer running is an edit lost in a crash: :func:`find_recoverable` lists them, newest first.

:class:`Autosaver` writes on its own thread (latest request wins), so the caller never waits on the
disk; ``discard()`` waits for a write in flight before removing the file.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

ENV_DIR = "STYLESTUDIO_RECOVERY_DIR"
PREFIX = "autosave-"
SUFFIX = ".stylestudio"
MEMBER = "recovery.json"
FORMAT = "stylestudio-recovery"
_counter = itertools.count(1)


def recovery_dir(default: str | Path | None = None) -> Path | None:
    """``$STYLESTUDIO_RECOVERY_DIR`` if set, else ``default`` (the GUI passes the per-user app data
    folder + ``recovery``); None when neither is given."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return None if default is None else Path(default)


# ----------------------------------------------------------------------------
# Processes


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None where
    unknown. With the pid it tells a live writer from a new process that reuses its pid."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_bytes()
    except (OSError, ValueError):
        return None
    try:
        return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22 (starttime); comm may hold spaces
    except (ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None = None) -> bool:
    """True while process ``pid`` runs (and, when ``start`` is given and known, is the same process)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return False
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused
    return True


# ----------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class RecoveryInfo:
    """An autosave found on disk. ``time``: seconds since the epoch of the save."""

    path: Path
    pid: int
    time: float
    model_path: str = ""
    photo: str | None = None
    face: int = 0
    extra: dict | None = None

    @property
    def when(self) -> str:
        """The save time in local time, for the question to the user."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))


def recovery_bytes(project: bytes, *, model_path: str = "", photo: str | None = None, face: int = 0,
                   pid: int | None = None, now: float | None = None, **extra) -> bytes:
    """``project`` (the bytes of a ``.stylestudio`` file) with ``recovery.json`` added."""
    pid = os.getpid() if pid is None else int(pid)
    meta = {"format": FORMAT, "version": 1, "pid": pid, "process_start": process_start(pid),
            "time": time.time() if now is None else float(now), "model_path": str(model_path or ""),
            "photo": None if photo is None else str(photo), "face": int(face), **extra}
    buf = io.BytesIO(project)
    buf.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, json.dumps(meta, indent=1))
    return buf.getvalue()


def read_info(path: str | Path) -> RecoveryInfo:
    """The ``recovery.json`` of an autosave; raises ``ValueError`` for a file that is not one."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(MEMBER)
            if info.file_size > 1 << 20:
                raise ValueError("recovery.json is implausibly large")
            meta = json.loads(zf.read(info))
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as e:
        raise ValueError(f"{path}: not an autosave ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an autosave (wrong format tag)")
    try:
        pid, t = int(meta["pid"]), float(meta["time"])
        face = int(meta.get("face") or 0)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: damaged recovery.json ({e})") from None
    known = {"format", "version", "pid", "process_start", "time", "model_path", "photo", "face"}
    photo = meta.get("photo")
    return RecoveryInfo(path, pid, t, str(meta.get("model_path") or ""), None if photo is None else str(photo),
                        face, {k: v for k, v in meta.items() if k not in known} or None)


def _writer_alive(path: Path) -> bool:
    """For a file named ``autosave-<pid>-...``: is its writer still running (start time from the file)?"""
    try:
        pid = int(path.name[len(PREFIX):].split("-")[0].split(".")[0])
    except ValueError:
        return False
    start = None
    if path.suffix == SUFFIX:
        try:
            with zipfile.ZipFile(path) as zf:
                start = json.loads(zf.read(MEMBER)).get("process_start")
        except Exception:  # noqa: BLE001 - damaged: judged by the pid alone
            start = None
    return process_alive(pid, start if isinstance(start, int) else None)


def find_recoverable(folder: str | Path | None, *, alive: Callable[[Path], bool] = _writer_alive,
                     clean: bool = True) -> list[RecoveryInfo]:
    """Autosaves in ``folder`` whose writer process is gone, newest first. With ``clean``, files of
    dead writers that are not readable autosaves, and their stale temp files, are removed."""
    if folder is None:
        return []
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        if p.name.startswith(f".{PREFIX}") and p.name.endswith(".tmp"):  # a write cut short
            if clean and not alive(folder / (p.name[1:].split(SUFFIX)[0] + SUFFIX)):
                p.unlink(missing_ok=True)
            continue
        if not (p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)) or not p.is_file():
            continue
        if alive(p):
            continue  # another window is editing it
        try:
            out.append(read_info(p))
        except ValueError as e:
            log.warning("ignoring a damaged autosave: %s", e)
            if clean:
                p.unlink(missing_ok=True)
    out.sort(key=lambda i: i.time, reverse=True)
    return out


def load(info: RecoveryInfo, *, model=None):
    """The :class:`~studio.engine.session.EditSession` of an autosave (``model``: the loaded
    generator's identity; another model's edit raises :class:`~studio.core.errors.ProjectError`)."""
    from studio.engine.session import EditSession

    return EditSession.load(info.path, model=model)


def remove(path: str | Path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        log.warning("cannot remove the autosave %s: %s", path, e)


# ----------------------------------------------------------------------------
# Writer


class Autosaver:
    """Writes one window's autosave, ``folder/autosave-<pid>-<n>.stylestudio``, on a background thread.

    ``submit(data)`` and ``discard()`` never block on the disk: the newest request replaces one not
    yet carried out. ``on_saved(path)`` / ``on_error(exc)`` run on the writer thread after each write.
    """

    def __init__(self, folder: str | Path, *, on_saved: Callable[[Path], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None):
        self.folder = Path(folder)
        self.path = self.folder / f"{PREFIX}{os.getpid()}-{next(_counter)}{SUFFIX}"
        self.on_saved, self.on_error = on_saved, on_error
        self.saves = 0                 # completed writes
        self.last_seconds = 0.0        # duration of the last write (serialising and fsync included)
        self._cond = threading.Condition()
        self._pending: tuple = None   # (data, a function making it, or None = remove; replaces)
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def submit(self, data: bytes | Callable[[], bytes], *, replaces: str | Path | None = None) -> None:
        """Write ``data`` (the bytes of :func:`recovery_bytes`, or a function that makes them on the
        writer thread from a snapshot of the edit) soon; ``replaces``: an older autosave (e.g. the one
        just recovered) removed once this one is on disk."""
        with self._cond:
            old = self._pending[1] if self._pending is not None else None
            self._request((data, Path(replaces) if replaces is not None else old))

    def discard(self, *, wait: bool = False) -> None:
        """Remove the file (after a write in flight); ``wait``: return only once it is gone."""
        with self._cond:
            self._request((None, None))
        if wait:
            self.flush()

    def _request(self, item) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending = item
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stylestudio-autosave", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every request is carried out; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, *, discard: bool = True) -> None:
        """Remove the file (``discard``) or finish the last write, then stop the writer thread."""
        if discard:
            with self._cond:
                self._pending = None
                while self._busy:
                    self._cond.wait()
            remove(self.path)
        else:
            self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                (data, replaces), self._pending = self._pending, None
                self._busy = True
            try:
                if data is None:
                    remove(self.path)
                    continue
                t0 = time.perf_counter()
                if callable(data):
                    data = data()
                atomic_write_bytes(self.path, data)
                self.last_seconds = time.perf_counter() - t0
                self.saves += 1
                if replaces is not None and replaces != self.path:
                    remove(replaces)
                if self.on_saved is not None:
                    self.on_saved(self.path)
            except BaseException as e:  # noqa: BLE001 - reported, the editor goes on
                log.warning("autosave to %s failed: %s", self.path, e)
                if self.on_error is not None:
                    self.on_error(e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
