"""CBAM and the SAE encoder (seed 001; METHODS.md §2)."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from studio.core.nets import build, class_name_of
from studio.core.nets.irse import init_weights
from studio.core.nets.psp import GradualStyleEncoder
from studio.core.nets.sae import (
    CBAM,
    ChannelAttention,
    SAEEncoder,
    SpatialAttention,
    attention_loss,
)


def _seeded(module, seed=0):
    return init_weights(module, torch.Generator().manual_seed(seed))


def test_channel_attention_formula_and_broadcast():
    ca = _seeded(ChannelAttention(8, reduction=2))
    assert ca.mlp[0].weight.shape == (4, 8) and ca.mlp[2].weight.shape == (8, 4)
    x = torch.randn(2, 8, 5, 6)
    m = ca(x)
    assert m.shape == (2, 8, 1, 1) and bool(((m > 0) & (m < 1)).all())
    want = torch.sigmoid(ca.mlp(x.mean(dim=(2, 3))) + ca.mlp(x.amax(dim=(2, 3))))  # one shared MLP
    torch.testing.assert_close(m[:, :, 0, 0], want)
    y = m * x  # broadcast over H x W: every pixel of channel c scaled by the same weight
    torch.testing.assert_close(y / x, m.expand_as(x), rtol=1e-5, atol=1e-5)


def test_spatial_attention_formula():
    sa = _seeded(SpatialAttention())
    assert sa.conv.weight.shape == (1, 2, 7, 7) and sa.conv.bias is None and sa.conv.padding == (3, 3)
    x = torch.randn(2, 8, 9, 10)
    m = sa(x)
    assert m.shape == (2, 1, 9, 10)
    desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # [mean; max]
    torch.testing.assert_close(m, torch.sigmoid(F.conv2d(desc, sa.conv.weight, padding=3)))
    with pytest.raises(ValueError):
        SpatialAttention(6)


def test_dominant_channel_gets_the_highest_weight():
    ca = ChannelAttention(6, reduction=1)
    with torch.no_grad():  # MLP = identity on non-negative inputs: weights grow with the pooled values
        for lin in (ca.mlp[0], ca.mlp[2]):
            lin.weight.copy_(torch.eye(6))
            lin.bias.zero_()
    x = torch.rand(3, 6, 4, 4) * 0.1
    x[:, 4] += 2.0
    m = ca(x)[:, :, 0, 0]
    assert m.argmax(dim=1).tolist() == [4, 4, 4]


def test_dominant_position_gets_the_highest_weight():
    sa = SpatialAttention(7)
    with torch.no_grad():  # centre taps only: Ms = sigmoid(mean_c + max_c) per pixel
        sa.conv.weight.zero_()
        sa.conv.weight[0, :, 3, 3] = 1.0
    x = torch.rand(2, 5, 8, 8) * 0.1
    x[:, :, 2, 6] += 3.0
    m = sa(x)[:, 0]
    assert [divmod(int(i), 8) for i in m.flatten(1).argmax(dim=1)] == [(2, 6), (2, 6)]


def test_cbam_composition_and_gradients():
    cbam = _seeded(CBAM(16, reduction=4))
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    y = cbam(x)
    f1 = cbam.channel(x) * x
    torch.testing.assert_close(y, cbam.spatial(f1) * f1)
    y.square().sum().backward()
    for name, p in cbam.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_sae_light_shapes_features_and_gradients():
    enc = _seeded(SAEEncoder(n_styles=10, num_layers=10, backbone="resnet", width=8, input_size=64, w_dim=32))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    codes, feats = enc(x, return_features=True)
    assert codes.shape == (2, 10, 32)
    assert [tuple(f.shape) for f in feats] == enc.feature_shapes(2) == [(2, 64, 4, 4), (2, 64, 8, 8), (2, 64, 16, 16)]
    enc.eval()
    with torch.no_grad():
        c2, f2 = enc(x, return_features=True)
        torch.testing.assert_close(enc(x), c2)
        torch.testing.assert_close(enc.codes_from_features(enc.attention_features(x)), c2)
    # the attention loss reaches every parameter except the style heads (they read F'' only)
    enc.train()
    loss = attention_loss(enc.attention_features(x), [f.detach() * 0.5 for f in f2])
    loss.backward()
    for name, p in enc.named_parameters():
        if name.startswith(("cbam.", "latlayer", "input_layer")):
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_attention_loss():
    a = [torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)]
    assert attention_loss(a, a).item() == 0
    b = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)]
    assert attention_loss(a, b).item() == pytest.approx(0.5)  # mean of per-level MSE (1 and 0)
    with pytest.raises(ValueError):
        attention_loss(a, b[:1])


def test_sae_official_size_and_psp_keys():
    with torch.device("meta"):
        enc = SAEEncoder()
        codes, feats = enc(torch.empty(2, 3, 256, 256), return_features=True)
        psp = GradualStyleEncoder()
    assert codes.shape == (2, 18, 512)
    assert [tuple(f.shape) for f in feats] == [(2, 512, 16, 16), (2, 512, 32, 32), (2, 512, 64, 64)]
    # pSp's keys plus the CBAM modules: a pSp checkpoint initialises everything else
    sae_sd, psp_sd = enc.state_dict(), psp.state_dict()
    assert all(sae_sd[k].shape == v.shape for k, v in psp_sd.items())
    extra = sorted(set(sae_sd) - set(psp_sd))
    assert extra and all(k.startswith("cbam.") for k in extra)
    assert enc.cbam[0].channel.mlp[0].weight.shape == (32, 512)  # reduction 16


def test_sae_registry_round_trip():
    enc = _seeded(SAEEncoder(n_styles=6, num_layers=10, backbone="resnet", width=8, input_size=32, w_dim=16,
                             reduction=4)).eval()
    again = build(class_name_of(enc), asdict(enc.config))
    assert type(again) is SAEEncoder and again.config == enc.config
    again.load_state_dict(enc.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(x), again.eval()(x))
