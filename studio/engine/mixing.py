"""Style mixing controls (METHODS.md §5): coarse / medium / fine rows of W+ from a reference face.

Plain Python (no Qt). Group boundaries come from the model's ``num_ws`` through
:func:`studio.core.latent.layer_groups`; the math is :func:`studio.core.latent.mix_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.core.latent import (
    GROUPS,
    as_wplus,
    group_row_strengths,
    layer_groups,
    mix_rows,
)
from studio.core.lazy import torch


@dataclass
class StyleMixer:
    """Which W+ rows come from a reference latent, and how strongly.

    num_ws: W+ rows of the model. reference: [num_ws, w_dim] float32 or None (no mixing).
    strengths: per group ('coarse', 'medium', 'fine') in [0, 1]; 0 = source rows, 1 = reference rows.
    per_layer: advanced mode, [num_ws] strengths in [0, 1] that replace the group strengths when set.
    """

    num_ws: int
    reference: np.ndarray | None = None
    strengths: dict[str, float] = field(default_factory=lambda: {g: 0.0 for g in GROUPS})
    per_layer: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.strengths = {g: float(self.strengths.get(g, 0.0)) for g in GROUPS}
        group_row_strengths(self.num_ws, self.strengths)  # validates
        if self.reference is not None:
            self.reference = np.ascontiguousarray(np.asarray(self.reference, dtype=np.float32))
            if self.reference.ndim != 2 or self.reference.shape[0] != self.num_ws:
                raise ValueError(f"reference must be W+ [{self.num_ws}, w_dim], got {list(self.reference.shape)}")
        if self.per_layer is not None:
            self.per_layer = _check_per_layer(self.per_layer, self.num_ws)

    @property
    def groups(self) -> dict[str, tuple[int, int]]:
        """Half-open W+ row ranges of the groups for this model."""
        return layer_groups(self.num_ws)

    def set_reference(self, latent, w_dim: int) -> None:
        """Reference from a W [w_dim] or W+ latent ([num_ws, w_dim] or [1, num_ws, w_dim])."""
        self.reference = as_wplus(latent, self.num_ws, w_dim).numpy()

    def set_strength(self, group: str, value: float) -> None:
        s = dict(self.strengths)
        s[group] = float(value)
        group_row_strengths(self.num_ws, s)  # validates name and range
        self.strengths = s

    def row_strengths(self) -> np.ndarray:
        """Strength of each W+ row [num_ws] float64 (per-layer mode if set, else the groups)."""
        if self.per_layer is not None:
            return self.per_layer.copy()
        return group_row_strengths(self.num_ws, self.strengths)

    @property
    def active(self) -> bool:
        return self.reference is not None and bool(np.any(self.row_strengths() > 0))

    def apply(self, ws: torch.Tensor) -> torch.Tensor:
        """Mixed W+ [..., num_ws, w_dim] (``ws`` itself when inactive)."""
        if not self.active:
            return ws
        ref = torch.from_numpy(self.reference).to(ws.device, ws.dtype).expand_as(ws)
        return mix_rows(ws, ref, self.row_strengths())

    def copy(self) -> StyleMixer:
        return StyleMixer(self.num_ws, None if self.reference is None else self.reference.copy(), dict(self.strengths),
                          None if self.per_layer is None else self.per_layer.copy())

    def to_json(self) -> dict:
        """Settings without the reference array (stored beside it as .npy)."""
        return {"strengths": dict(self.strengths),
                "per_layer": None if self.per_layer is None else [float(x) for x in self.per_layer],
                "has_reference": self.reference is not None}


def _check_per_layer(values, num_ws: int) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.shape[0] != num_ws:
        raise ValueError(f"per-layer mixing needs {num_ws} strengths (one per W+ row), got {a.shape[0]}")
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError("per-layer mixing strengths must lie in [0, 1]")
    return a
