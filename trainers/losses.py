"""StyleGAN2 losses and regularisers as small pure functions (seed 004, METHODS.md §1), and the
encoders' identity loss (METHODS.md §2, :class:`IdentityLoss`).

Everything that carries state (the path-length mean) is passed in and returned, never hidden.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic D loss per sample: softplus(D(fake)) + softplus(-D(real))."""
    return F.softplus(fake_logits) + F.softplus(-real_logits)


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss per sample: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits)


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits) + F.relu(1 + fake_logits)


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits


def r1_penalty(real_img: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample on reals (x must require grad). Differentiable (create_graph)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True, only_inputs=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_length_penalty(img: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor, *, noise: torch.Tensor,
                        decay: float = 0.01, reduce_mean=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length regularisation ``(||J_w^T y|| - a)^2`` (y ~ N(0, I) / sqrt(H W)).

    Returns (penalty per sample, path lengths per sample, updated running mean ``a``).
    ``reduce_mean`` averages the batch mean of the lengths over processes (torchrun).
    """
    (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True, only_inputs=True)
    lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()  # [N]
    batch_mean = lengths.detach().mean()
    if reduce_mean is not None:
        batch_mean = reduce_mean(batch_mean)
    new_mean = pl_mean + decay * (batch_mean - pl_mean)
    return (lengths - new_mean).square(), lengths, new_mean.detach()


def pl_noise(shape, gen: torch.Generator, sl: slice, device) -> torch.Tensor:
    """The random image-space direction y, scaled by 1/sqrt(H*W); drawn globally, sliced per rank."""
    n = torch.randn(shape, generator=gen)[sl].to(device)
    return n / math.sqrt(shape[2] * shape[3])


def lazy_ratio(interval: int) -> float:
    """Adam correction for lazy regularisation: lr *= c, beta ** c with c = interval / (interval + 1)."""
    return interval / (interval + 1) if interval > 0 else 1.0


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """G_ema decay per step: half-life ema_kimg (ramped up to cur_nimg * rampup early in training)."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None and rampup > 0:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, src: torch.nn.Module, beta: float) -> None:
    for pe, p in zip(ema.parameters(), src.parameters()):
        pe.copy_(p.detach().lerp(pe, beta))
    for be, b in zip(ema.buffers(), src.buffers()):
        be.copy_(b)


class IdentityLoss(nn.Module):
    """Identity loss of the encoders: ``1 - cos`` of dlib face-recognition features
    (:mod:`studio.core.nets.facerec`) of a reconstruction and its target, per sample.

    Inputs are batches of faces aligned with the generator's alignment ``profile`` (a name, dict or
    :class:`studio.core.align.AlignmentProfile`; default FFHQ), RGB in ``[-1, 1]``, any square size.
    Each is cut to dlib's 150x150 face chip by one fixed, differentiable crop: the square
    :func:`studio.core.nets.facerec.aligned_chip_box` where dlib would cut the chip of its mean face
    (FFHQ: 0.150-0.859 across, 0.253-0.962 down; the pack's tight ``utkface-64`` crop: -0.059-1.060
    and -0.048-1.072, the part outside the image black, as dlib pads). It is resampled bilinearly
    (``grid_sample``, after an antialiased shrink when the box is over 225 px). dlib itself fits the
    chip to each face's landmarks; on the shared CelebA-HQ and UTKFace photos the fixed crop of the
    aligned face gives descriptors with a cosine of 0.99 (mean; 0.98 min) to dlib's on the photo.

    ``levels=1``: the 128-d descriptor only (pSp / e4e / SAE's ``L_ID``); ``levels=5``: E2Style's
    multi-layer loss, the sum of ``1 - cos`` over the four stage outputs (flattened) and the
    descriptor. The target's features are computed without gradient; the reconstruction's carry it.
    """

    def __init__(self, profile=None, *, levels: int = 1, facerec: nn.Module | None = None,
                 device: str | torch.device | None = None):
        super().__init__()
        from studio.core.nets.facerec import CHIP_SIZE, aligned_chip_box, load_facerec

        net = facerec if facerec is not None else load_facerec(device or "cpu")
        self._net = (net,)  # unregistered: frozen, never saved with a trainer's model
        self.levels = int(levels)
        self.chip_size = CHIP_SIZE
        self.box = aligned_chip_box(profile)

    @property
    def net(self) -> nn.Module:
        return self._net[0]

    def chips(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` in ``[-1, 1]`` -> dlib face chips ``[N, 3, 150, 150]`` in ``[0, 255]``."""
        l, t, r, b = self.box
        x = (x.float() + 1.0) * 127.5
        side = (r - l) * x.shape[-1]
        if side > 1.5 * self.chip_size:  # shrink first: bilinear sampling alone would alias
            x = F.interpolate(x, scale_factor=self.chip_size / side, mode="bilinear", antialias=True,
                              align_corners=False, recompute_scale_factor=False)
        theta = x.new_tensor([[r - l, 0.0, l + r - 1.0], [0.0, b - t, t + b - 1.0]]).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], 3, self.chip_size, self.chip_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.flatten(1) for f in self.net.features(self.chips(x), levels=self.levels)]

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[N]``: ``sum_levels (1 - cos(f(recon), f(target)))`` (0 = same features)."""
        net = self.net
        if next(net.parameters()).device != recon.device:
            net.to(recon.device)
        with torch.no_grad():
            ft = self.features(target)
        fr = self.features(recon)
        return sum(1.0 - F.cosine_similarity(a, b.detach(), dim=1, eps=1e-8) for a, b in zip(fr, ft))
