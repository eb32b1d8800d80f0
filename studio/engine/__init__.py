"""The editing engine: plain Python on top of :mod:`studio.core` (no Qt), shared by the GUI, the CLI
and the tests. Sessions hold edits as undoable commands; the renderer caches per-layer activations
and renders on a latest-wins worker thread.

The names below are imported on first use (PEP 562), so importing a torch-free submodule (workers,
training, recovery) does not import torch: the window appears before PyTorch has loaded.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StyleMixer": "studio.engine.mixing",
    "Cancelled": "studio.engine.cancel",
    "CancelToken": "studio.engine.cancel",
    "Frame": "studio.engine.renderer",
    "Renderer": "studio.engine.renderer",
    "RenderWorker": "studio.engine.renderer",
    "AppliedDirection": "studio.engine.session",
    "Command": "studio.engine.session",
    "EditSession": "studio.engine.session",
    "EditState": "studio.engine.session",
    "ModelIdentity": "studio.engine.session",
    "compose": "studio.engine.session",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'studio.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
