"""The editing engine: plain Python on top of :mod:`studio.core` (no Qt), shared by the GUI, the CLI
and the tests. Sessions hold edits as undoable commands; the renderer caches per-layer activations
and renders on a latest-wins worker thread."""

from studio.engine.mixing import StyleMixer
from studio.engine.renderer import Cancelled, CancelToken, Frame, Renderer, RenderWorker
from studio.engine.session import (
    AppliedDirection,
    Command,
    EditSession,
    EditState,
    ModelIdentity,
    compose,
)

__all__ = [
    "AppliedDirection",
    "CancelToken",
    "Cancelled",
    "Command",
    "EditSession",
    "EditState",
    "Frame",
    "ModelIdentity",
    "RenderWorker",
    "Renderer",
    "StyleMixer",
    "compose",
]
