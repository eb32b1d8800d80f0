"""Small pure functions on latents (W+ rows, layer groups). No I/O, no globals."""

from __future__ import annotations

import math

# METHODS.md §1: NVIDIA's style-mixing groups in W+ indices.
COARSE_END = 4   # resolutions 4-8
MEDIUM_END = 8   # resolutions 16-32


def layer_groups(num_ws: int) -> dict[str, tuple[int, int]]:
    """``{'coarse': (start, stop), 'medium': ..., 'fine': ...}`` half-open W+ index ranges.

    coarse = 0-3 (4-8 px), medium = 4-7 (16-32 px), fine = 8..num_ws-1 (64 px and up). Groups that
    a small model lacks are empty ranges (start == stop).
    """
    if num_ws < 1:
        raise ValueError("num_ws must be positive")
    c = min(COARSE_END, num_ws)
    m = min(MEDIUM_END, num_ws)
    return {"coarse": (0, c), "medium": (c, m), "fine": (m, num_ws)}


def resolution_of_ws_index(i: int) -> int:
    """The synthesis resolution that W+ row ``i`` styles (0 -> 4, 1-2 -> 8, 3-4 -> 16, ...)."""
    return 2 ** (2 + math.ceil(i / 2)) if i > 0 else 4
