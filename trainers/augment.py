"""Differentiable augmentation for small data sets (DiffAugment ops applied with probability p,
p adapted ADA-style from the sign of D's outputs on reals).

All randomness is drawn for the *global* batch from a passed ``torch.Generator`` and sliced for this
rank (``sl``), so a torchrun job and a single process draw identical augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPS = ("color", "translation", "cutout")


def _rand(gen: torch.Generator, shape, sl: slice, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen)[sl].to(device)


def augment(x: torch.Tensor, p: float, gen: torch.Generator, *, global_batch: int, sl: slice = slice(None),
            ops: tuple[str, ...] = OPS) -> torch.Tensor:
    """Augment x [b, C, H, W] (this rank's slice of a global batch). Each op hits a sample with prob p.

    Gradients flow through every op (translation and cutout are index/mask operations).
    """
    if p <= 0:
        return x
    B, dev = global_batch, x.device
    n, c, h, w = x.shape
    for op in ops:
        apply = (_rand(gen, [B], sl, dev) < p).to(x.dtype).view(n, 1, 1, 1)
        if op == "color":
            r = _rand(gen, [B, 3], sl, dev)
            bright = (r[:, 0] - 0.5).view(n, 1, 1, 1)
            y = x + bright
            mean = y.mean(dim=1, keepdim=True)
            y = (y - mean) * (r[:, 1] * 2).view(n, 1, 1, 1) + mean  # saturation
            mean = y.mean(dim=[1, 2, 3], keepdim=True)
            y = (y - mean) * (r[:, 2] + 0.5).view(n, 1, 1, 1) + mean  # contrast
        elif op == "translation":
            ratio = 0.125
            sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
            r = _rand(gen, [B, 2], sl, dev)
            tx = (r[:, 0] * (2 * sx + 1)).long() - sx
            ty = (r[:, 1] * (2 * sy + 1)).long() - sy
            gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
            gx = (gx[None] + tx.view(n, 1, 1) + 1).clamp(0, w + 1)
            gy = (gy[None] + ty.view(n, 1, 1) + 1).clamp(0, h + 1)
            xp = F.pad(x, [1, 1, 1, 1])
            flat = (gy * (w + 2) + gx).view(n, 1, h * w).expand(n, c, h * w)
            y = xp.reshape(n, c, -1).gather(2, flat).view(n, c, h, w)
        elif op == "cutout":
            ratio = 0.5
            ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
            r = _rand(gen, [B, 2], sl, dev)
            ox = (r[:, 0] * (w + (1 - cw % 2))).long()
            oy = (r[:, 1] * (h + (1 - ch % 2))).long()
            gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
            inside = ((gx[None] >= (ox - cw // 2).view(n, 1, 1)) & (gx[None] < (ox - cw // 2 + cw).view(n, 1, 1)) &
                      (gy[None] >= (oy - ch // 2).view(n, 1, 1)) & (gy[None] < (oy - ch // 2 + ch).view(n, 1, 1)))
            y = x * (~inside).unsqueeze(1).to(x.dtype)
        else:
            raise ValueError(f"unknown augmentation {op!r}")
        x = torch.lerp(x, y, apply)
    return x


@dataclass
class AdaptiveP:
    """ADA's controller: p moves so that E[sign(D(real))] approaches ``target``.

    ``p += sign(rt - target) * batch * interval / (speed_kimg * 1000)`` every ``interval`` steps.
    """

    p: float = 0.0
    target: float = 0.6
    speed_kimg: float = 100.0
    interval: int = 4
    fixed: bool = False
    _acc: float = 0.0
    _count: int = 0
    last_rt: float = 0.0

    def accumulate(self, real_logits_sign_mean: float) -> None:
        self._acc += real_logits_sign_mean
        self._count += 1

    def step(self, global_batch: int) -> None:
        if self.fixed or self._count < self.interval:
            return
        rt = self._acc / self._count
        self.last_rt = rt
        adjust = (1.0 if rt > self.target else -1.0) * global_batch * self._count / (self.speed_kimg * 1000)
        self.p = float(min(max(self.p + adjust, 0.0), 1.0))
        self._acc, self._count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "acc": self._acc, "count": self._count, "last_rt": self.last_rt}

    def load_state_dict(self, d: dict) -> None:
        # A fixed p (--augment diffaugment: 1, none: 0) is the run's setting, not state: a run that
        # continues a snapshot made with another --augment keeps its own p.
        if not self.fixed:
            self.p = float(d["p"])
        self._acc, self._count = float(d["acc"]), int(d["count"])
        self.last_rt = float(d.get("last_rt", 0.0))
