"""Imports point down only: core <- engine <- gui; trainers use core; only gui imports Qt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "PyQt5", "PyQt6", "qtpy", "shiboken6", "pyqtgraph")
RULES = {
    "studio/core": ("studio.engine", "studio.gui", "studio.cli", "trainers", *QT),
    "studio/engine": ("studio.gui", "studio.cli", "trainers", *QT),
    "trainers": ("studio.engine", "studio.gui", "studio.cli", *QT),
    "studio/cli": ("studio.gui", *QT),  # the CLI may launch the GUI lazily (see _launch_app)
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports(layer):
    bad = []
    for py in sorted((ROOT / layer).rglob("*.py")):
        for line, mod in _imports(py):
            if any(mod == f or mod.startswith(f + ".") for f in RULES[layer]):
                if layer == "studio/cli" and py.name == "__init__.py" and mod.startswith("studio.gui"):
                    continue
                bad.append(f"{py.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)
