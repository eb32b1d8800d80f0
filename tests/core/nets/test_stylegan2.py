"""Unit tests of the StyleGAN2 building blocks (no fixtures needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from studio.core.latent import layer_groups
from studio.core.nets import build, class_name_of, ops
from studio.core.nets.stylegan2 import (Discriminator, Generator, minibatch_stddev, num_ws_for,
                                        truncate)


def tiny_G(res=32, **kw):
    return Generator(z_dim=32, w_dim=32, img_resolution=res, channel_base=512, channel_max=32, **kw)


def test_upfirdn2d_matches_naive_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g)
    f = torch.randn(4, 4, generator=g)
    y = ops.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4)
    # naive: zero-insert, pad, true convolution (flipped kernel), per channel
    z = torch.zeros(2, 3, 10, 12)
    z[:, :, ::2, ::2] = x
    z = F.pad(z, [2, 1, 2, 1])
    ref = F.conv2d(z.reshape(6, 1, *z.shape[2:]), (f * 4).flip([0, 1])[None, None]).reshape(2, 3, 10, 12)
    torch.testing.assert_close(y, ref)


def test_conv2d_resample_up_equals_upsample_then_conv():
    # transposed stride-2 conv + FIR == (zero-insert + FIR) then a padded true convolution (the
    # reference's up path does not flip the weight, so it convolves where conv2d correlates)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 6, 6, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    f = ops.setup_filter()
    y = ops.conv2d_resample(x, w, f, up=2, padding=1)
    up = ops.upsample2d(x, f)
    ref = F.conv2d(up, w.flip([2, 3]), padding=1)
    assert y.shape == ref.shape == (1, 5, 12, 12)
    # equal away from the borders (the two orders pad differently at the edges)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-4, rtol=1e-4)


def test_conv2d_resample_down_shapes_and_linearity():
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(6, 4, 3, 3)
    f = ops.setup_filter()
    y = ops.conv2d_resample(x, w, f, down=2, padding=1)
    assert y.shape == (2, 6, 4, 4)
    y2 = ops.conv2d_resample(2 * x, w, f, down=2, padding=1)
    torch.testing.assert_close(y2, 2 * y)


def test_bias_act_gain_and_clamp():
    x = torch.tensor([[-2.0, 0.5, 300.0]]).reshape(1, 3, 1, 1)
    b = torch.tensor([1.0, 0.0, 0.0])
    y = ops.bias_act(x, b, act="lrelu", clamp=256).flatten()
    s2 = np.sqrt(2)
    torch.testing.assert_close(y, torch.tensor([-0.2 * s2, 0.5 * s2, 256.0], dtype=torch.float32))


def test_fused_and_non_fused_modconv_agree():
    G = tiny_G().eval()
    ws = G.map(torch.randn(3, 32))
    with torch.no_grad():
        a = G.synthesis(ws, fused=True)
        b = G.synthesis(ws, fused=False)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert a.shape == (3, 3, 32, 32)


@pytest.mark.parametrize("res,expected", [(4, 2), (8, 4), (64, 10), (256, 14), (1024, 18)])
def test_num_ws(res, expected):
    assert num_ws_for(res) == expected
    if res <= 64:
        assert tiny_G(res).num_ws == expected


def test_noise_modes():
    G = tiny_G().eval()
    ws = G.map(torch.randn(1, 32))
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.fill_(0.5)
    with torch.no_grad():
        c1, c2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        n = G.synthesis(ws, noise_mode="none")
        r1 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
        r2 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
        r3 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(r1, r2)
    assert not torch.allclose(c1, n) and not torch.allclose(r1, r3)
    with pytest.raises(ValueError):
        G.synthesis(ws, noise_mode="bogus")


def test_truncation_and_cutoff():
    w_avg = torch.zeros(8)
    ws = torch.ones(2, 6, 8)
    torch.testing.assert_close(truncate(ws, w_avg, 0.5), torch.full((2, 6, 8), 0.5))
    t = truncate(ws, w_avg, 0.5, cutoff=2)
    assert torch.all(t[:, :2] == 0.5) and torch.all(t[:, 2:] == 1)
    assert truncate(ws, w_avg, 1.0) is ws


def test_synthesis_rejects_wrong_ws_shape():
    G = tiny_G()
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(1, G.num_ws + 1, 32))


def test_config_rebuilds_network():
    G = tiny_G(conv_clamp=256)
    cfg = dataclasses.asdict(G.config)
    G2 = build(class_name_of(G), cfg)
    assert G2.config == G.config
    assert {k: v.shape for k, v in G2.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    D = Discriminator(img_resolution=32, channel_base=512, channel_max=32)
    D2 = build(class_name_of(D), dataclasses.asdict(D.config))
    assert D2.config == D.config


def test_discriminator_shapes_and_mbstd():
    D = Discriminator(img_resolution=32, channel_base=512, channel_max=32)
    out = D(torch.randn(8, 3, 32, 32))
    assert out.shape == (8, 1)
    x = torch.randn(4, 6, 3, 3)
    y = minibatch_stddev(x, group_size=2)
    assert y.shape == (4, 7, 3, 3)
    # the stddev channel of sample i equals that of the sample in the same group position
    ref = ((x.reshape(2, 2, 6, 3, 3) - x.reshape(2, 2, 6, 3, 3).mean(0)).square().mean(0) + 1e-8).sqrt().mean([1, 2, 3])
    torch.testing.assert_close(y[:2, 6, 0, 0], ref)
    torch.testing.assert_close(y[2:, 6, 0, 0], ref)


def test_gradients_flow_through_generator_and_discriminator():
    G = tiny_G(16)
    D = Discriminator(img_resolution=16, channel_base=256, channel_max=32)
    z = torch.randn(4, 32)
    loss = F.softplus(-D(G(z, noise_mode="random"))).mean()
    loss.backward()
    assert all(p.grad is not None for p in G.synthesis.parameters() if p.requires_grad)
    assert G.mapping.fc0.weight.grad is not None


def test_w_avg_tracking():
    G = tiny_G()
    w = torch.ones(4, 32)
    G.mapping.update_w_avg(w)
    torch.testing.assert_close(G.w_avg, torch.full((32,), 1 - G.config.w_avg_beta))


def test_layer_groups():
    assert layer_groups(18) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 18)}
    assert layer_groups(10) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 10)}
    assert layer_groups(6) == {"coarse": (0, 4), "medium": (4, 6), "fine": (6, 6)}
    for n in (2, 6, 10, 14, 18):
        g = layer_groups(n)
        covered = [i for a, b in g.values() for i in range(a, b)]
        assert covered == list(range(n))
