"""Small pure functions on latents (W+ rows, layer groups, direction edits, style mixing). No I/O, no globals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

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


# ----------------------------------------------------------------------------
# Editing math (METHODS.md §5). ``ws`` is W+ [..., num_ws, w_dim] (torch); rows are W+ indices.

GROUPS = ("coarse", "medium", "fine")


def resolve_span(span: tuple[int, int] | None, num_ws: int) -> tuple[int, int]:
    """A half-open W+ row range ``(start, stop)``; ``None`` means every row. Raises ValueError if
    it does not fit ``num_ws`` or is empty."""
    if span is None:
        return 0, num_ws
    start, stop = int(span[0]), int(span[1])
    if not 0 <= start < stop <= num_ws:
        raise ValueError(f"layer range {start}-{stop - 1} does not fit a W+ of {num_ws} rows (0-{num_ws - 1})")
    return start, stop


def as_wplus(latent, num_ws: int, w_dim: int) -> torch.Tensor:
    """A W latent [w_dim], W+ [num_ws, w_dim] or [1, num_ws, w_dim] -> W+ [num_ws, w_dim] float32.

    Raises ValueError naming the shapes when the latent does not fit the generator.
    """
    import torch

    t = torch.as_tensor(latent).detach().to(torch.float32)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2 and t.shape[0] == 1 and num_ws != 1:
        t = t[0]
    if t.ndim == 1 and t.shape[0] == w_dim:
        return t.unsqueeze(0).repeat(num_ws, 1)
    if t.ndim == 2 and tuple(t.shape) == (num_ws, w_dim):
        return t.clone()
    raise ValueError(f"latent of shape {list(t.shape)} does not fit this generator: expected W [{w_dim}] "
                     f"or W+ [{num_ws}, {w_dim}]")


def apply_direction(ws: torch.Tensor, direction: torch.Tensor, alpha: float,
                    span: tuple[int, int] | None = None) -> torch.Tensor:
    """``w' = w + alpha * n`` on the W+ rows in ``span`` (all rows if None); other rows unchanged.

    ws: [..., num_ws, w_dim]; direction n: [w_dim] (unit length by convention). Returns a new tensor.
    """
    import torch

    start, stop = resolve_span(span, ws.shape[-2])
    n = torch.as_tensor(direction, dtype=ws.dtype, device=ws.device).reshape(-1)
    if n.shape[0] != ws.shape[-1]:
        raise ValueError(f"direction has {n.shape[0]} values but W has w_dim={ws.shape[-1]}")
    out = ws.clone()
    out[..., start:stop, :] = ws[..., start:stop, :] + float(alpha) * n
    return out


def group_row_strengths(num_ws: int, strengths: Mapping[str, float]) -> np.ndarray:
    """Per-row mixing strengths [num_ws] (float64) from ``{'coarse': s, 'medium': s, 'fine': s}``
    (missing groups are 0). Each strength must lie in [0, 1]."""
    out = np.zeros(num_ws, dtype=np.float64)
    groups = layer_groups(num_ws)
    for name, s in strengths.items():
        if name not in groups:
            raise ValueError(f"unknown layer group {name!r}; use one of {', '.join(GROUPS)}")
        s = float(s)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"mixing strength for {name} must be in [0, 1], got {s}")
        a, b = groups[name]
        out[a:b] = s
    return out


def mix_rows(source: torch.Tensor, reference: torch.Tensor, row_strengths) -> torch.Tensor:
    """Style mixing (METHODS.md §5): row i becomes ``lerp(source_i, reference_i, t_i)``.

    source, reference: [..., num_ws, w_dim]; row_strengths: [num_ws] in [0, 1]. A row with t = 0 is
    exactly the source row, t = 1 exactly the reference row.
    """
    import torch

    if source.shape != reference.shape:
        raise ValueError(f"reference W+ {list(reference.shape)} does not match the source {list(source.shape)}")
    t = torch.as_tensor(np.asarray(row_strengths, dtype=np.float64)).to(source.dtype).to(source.device)
    if t.ndim != 1 or t.shape[0] != source.shape[-2]:
        raise ValueError(f"need one strength per W+ row ({source.shape[-2]}), got {list(t.shape)}")
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("mixing strengths must lie in [0, 1]")
    t = t.reshape(-1, 1)
    out = torch.lerp(source, reference, t)
    out = torch.where(t == 0, source, out)   # exact ends, whatever lerp's rounding
    return torch.where(t == 1, reference, out)


def truncate_rows(ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
    """Truncation ``w_avg + psi * (w - w_avg)`` on rows ``[:cutoff]`` (all if None) of ws [..., num_ws, w_dim].
    ``psi == 1`` returns ``ws`` unchanged (the same values, bit for bit)."""
    import torch

    if psi == 1:
        return ws
    w_avg = torch.as_tensor(w_avg, dtype=ws.dtype, device=ws.device)
    out = ws.clone()
    stop = ws.shape[-2] if cutoff is None else int(cutoff)
    out[..., :stop, :] = w_avg.lerp(ws[..., :stop, :], float(psi))
    return out


def changed_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bool [num_ws]: the W+ rows where two W+ tensors [..., num_ws, w_dim] differ (any element)."""
    ne = a != b
    return ne.reshape(-1, a.shape[-2], a.shape[-1]).any(dim=2).any(dim=0)


def project_out(v: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``v`` minus its projection onto the span of ``others`` (rows, [k, d]), renormalised to unit length
    (InterFaceGAN's conditional manipulation). Raises ValueError if ``v`` lies in that span."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    b = np.asarray(others, dtype=np.float64).reshape(-1, v.shape[0])
    q, _ = np.linalg.qr(b.T)                   # orthonormal basis of span(others), [d, k]
    r = v - q @ (q.T @ v)
    norm = float(np.linalg.norm(r))
    if norm < 1e-6 * max(float(np.linalg.norm(v)), 1e-30):
        raise ValueError("the direction lies in the span of the directions to project out")
    return r / norm
