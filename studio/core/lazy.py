"""A module imported on first attribute access.

``from studio.core.lazy import torch`` in a module that needs PyTorch only inside its functions lets
the GUI import it (and show the window) before PyTorch has loaded, which takes seconds on a laptop
CPU. The first ``torch.<name>`` imports it for real.
"""

from __future__ import annotations

import importlib
import types


class LazyModule(types.ModuleType):
    """Stands in for module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self.__name__), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


torch = LazyModule("torch")
