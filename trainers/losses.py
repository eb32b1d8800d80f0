"""StyleGAN2 losses and regularisers as small pure functions (seed 004, METHODS.md §1).

Everything that carries state (the path-length mean) is passed in and returned, never hidden.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
