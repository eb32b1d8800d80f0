"""The error types that library code raises for bad user input.

Each message says what went wrong and what the user can do about it; the GUI shows it verbatim.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class of every error StyleStudio reports to the user (never a bug)."""


class CheckpointError(StudioError):
    """A model file could not be read: wrong format, truncated, unsafe, or a shape mismatch."""

    def __init__(self, path, message: str):
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")


class ImageError(StudioError):
    """An image could not be used: missing, unreadable, truncated, unsupported or absurdly large."""

    def __init__(self, path, message: str):
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")


class NoFaceError(StudioError):
    """No usable face was found in an image; the message says what to try."""

    def __init__(self, path, message: str):
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")


class DirectionError(StudioError):
    """An edit direction could not be used: wrong size for the loaded generator, unreadable file,
    degenerate data (e.g. one class only), or an unknown name."""

    def __init__(self, message: str, *, path=None):
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")


class ProjectError(StudioError):
    """A ``.stylestudio`` project could not be saved or reopened (corrupt, other version, or made
    with a different model than the one loaded)."""

    def __init__(self, message: str, *, path=None):
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")
