"""StyleGAN2 training terms against finite differences / closed forms (tiny models)."""

from __future__ import annotations

import math

import pytest
import torch

from trainers import losses
from trainers.augment import AdaptiveP, augment


def test_r1_matches_finite_differences():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 5 * 5, 1)).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    r1 = losses.r1_penalty(x, D(x))
    eps = 1e-6
    fd = torch.zeros(2, dtype=torch.float64)
    flat = x.detach().clone().reshape(2, -1)
    for i in range(flat.shape[1]):
        e = torch.zeros_like(flat)
        e[:, i] = eps
        d_plus = D((flat + e).reshape(x.shape)).squeeze(1)
        d_minus = D((flat - e).reshape(x.shape)).squeeze(1)
        fd += ((d_plus - d_minus) / (2 * eps)).detach().square()
    torch.testing.assert_close(r1.detach(), fd, rtol=1e-6, atol=1e-9)
    # differentiable w.r.t. D's weights (double backward)
    r1.sum().backward()
    assert D[0].weight.grad is not None and D[0].weight.grad.abs().sum() > 0


def test_path_length_closed_form():
    # img = A ws (linear "generator"): J^T y = A^T y, so the path length is known exactly.
    torch.manual_seed(1)
    n, L, d, P = 3, 4, 5, 2 * 3 * 3
    A = torch.randn(P, L * d, dtype=torch.float64)
    ws = torch.randn(n, L, d, dtype=torch.float64, requires_grad=True)
    img = (ws.reshape(n, -1) @ A.T).reshape(n, 2, 3, 3)
    y = torch.randn(n, 2, 3, 3, dtype=torch.float64)
    pen, lengths, new_mean = losses.path_length_penalty(img, ws, torch.tensor(0.5, dtype=torch.float64), noise=y,
                                                        decay=0.1)
    jty = (y.reshape(n, -1) @ A).reshape(n, L, d)
    expected = jty.square().sum(2).mean(1).sqrt()
    torch.testing.assert_close(lengths.detach(), expected)
    a = 0.5 + 0.1 * (expected.mean() - 0.5)
    torch.testing.assert_close(new_mean, a)
    torch.testing.assert_close(pen.detach(), (expected - a).square())


def test_lazy_ratio_and_ema():
    assert losses.lazy_ratio(16) == pytest.approx(16 / 17)
    assert losses.lazy_ratio(0) == 1.0
    # half-life: after ema_kimg*1000 images the old weights count half
    beta = losses.ema_beta(32, cur_nimg=10**9, ema_kimg=10, rampup=0.05)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    # ramp-up early in training shortens the half-life
    assert losses.ema_beta(32, cur_nimg=1000, ema_kimg=10, rampup=0.05) < beta
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    losses.update_ema(a, b, 0.75)
    torch.testing.assert_close(a.weight.detach(), 0.75 * wa + 0.25 * wb)


def test_logistic_and_hinge():
    r, f = torch.tensor([2.0]), torch.tensor([-1.0])
    assert losses.d_logistic(r, f).item() == pytest.approx(math.log1p(math.exp(-1)) + math.log1p(math.exp(-2)))
    assert losses.g_nonsaturating(f).item() == pytest.approx(math.log1p(math.exp(1)))
    assert losses.d_hinge(r, f).item() == 0.0 and losses.g_hinge(f).item() == 1.0


@pytest.mark.parametrize("op", ["color", "translation", "cutout"])
def test_augmentation_is_differentiable(op):
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = augment(x, 1.0, torch.Generator().manual_seed(0), global_batch=4, ops=(op,))
    assert y.shape == x.shape and not torch.equal(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_augmentation_p0_is_identity_and_slices_match_global():
    x = torch.randn(8, 3, 16, 16)
    assert torch.equal(augment(x, 0.0, torch.Generator(), global_batch=8), x)
    full = augment(x, 0.7, torch.Generator().manual_seed(3), global_batch=8)
    for r in range(2):
        part = augment(x[r::2], 0.7, torch.Generator().manual_seed(3), global_batch=8, sl=slice(r, None, 2))
        torch.testing.assert_close(part, full[r::2])


def test_adaptive_p_moves_towards_target():
    ada = AdaptiveP(p=0.0, target=0.6, speed_kimg=1.0, interval=4)
    for _ in range(4):
        ada.accumulate(0.9)  # D overconfident on reals -> more augmentation
    ada.step(32)
    assert ada.p == pytest.approx(32 * 4 / 1000)
    for _ in range(4):
        ada.accumulate(0.1)
    ada.step(32)
    assert ada.p == pytest.approx(0.0)
    for _ in range(4):
        ada.accumulate(0.1)
    ada.step(32)
    assert ada.p == 0.0  # clamped
    st = ada.state_dict()
    ada2 = AdaptiveP()
    ada2.load_state_dict(st)
    assert ada2.p == ada.p


def test_a_fixed_p_survives_loading_another_runs_state():
    """--augment diffaugment continuing a snapshot trained with ADA at p = 0 (the pack's generator) used
    to load p = 0 and train without any augmentation."""
    always = AdaptiveP(p=1.0, fixed=True)
    always.load_state_dict(AdaptiveP(p=0.0).state_dict())
    assert always.p == 1.0
    never = AdaptiveP(p=0.0, fixed=True)
    never.load_state_dict(AdaptiveP(p=0.7).state_dict())
    assert never.p == 0.0
