"""setuptools commands that put the top-level ``resources/`` folder into the wheel.

The app looks for its resources in ``studio/resources`` first and ``<checkout>/resources`` second
(:data:`studio.core.pack.PACK_ROOTS`, ``studio.core.nets.perceptual``/``facerec``). A checkout (and
an editable install) uses the second; a wheel gets a copy of ``resources/`` as package data at
``studio/resources``. Wired in by ``[tool.setuptools.cmdclass]`` in ``pyproject.toml``; the sdist
carries ``resources/`` and this file through ``MANIFEST.in``.
"""

from __future__ import annotations

import os

from setuptools.command.build_py import build_py

RESOURCES = "resources"          # relative to the project root (where setuptools runs)
TARGET = ("studio", "resources")  # inside the package
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def resource_files(root: str = RESOURCES) -> list[str]:
    """Every file under ``root``, relative to it, sorted (what the wheel gets)."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and not f.endswith(SKIP_SUFFIXES):
                out.append(os.path.relpath(os.path.join(d, f), root))
    return out


class BuildPy(build_py):
    """build_py + a copy of ``resources/`` at ``studio/resources`` (not in editable mode, where the
    app reads the checkout's own ``resources/``)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not os.path.isdir(RESOURCES):
            return
        dest = os.path.join(self.build_lib, *TARGET)
        for rel in resource_files():
            target = os.path.join(dest, rel)
            self.mkpath(os.path.dirname(target))
            self.copy_file(os.path.join(RESOURCES, rel), target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False) and os.path.isdir(RESOURCES):
            dest = os.path.join(self.build_lib, *TARGET)
            outs += [os.path.join(dest, rel) for rel in resource_files()]
        return outs
