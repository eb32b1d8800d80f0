"""IR / IR-SE backbone pieces and the encoder shapes (no fixtures; meta tensors for the big nets)."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from studio.core.nets.e2style import E2StyleEncoder, E2StyleStage
from studio.core.nets.irse import (
    BottleneckIR,
    IRBackbone,
    SEModule,
    init_weights,
    num_layers_from_units,
    stage_ends,
    unit_specs,
)
from studio.core.nets.psp import Encoder4Editing, EqualLinear, GradualStyleBlock, GradualStyleEncoder


@pytest.mark.parametrize("depth,units", [(50, 24), (100, 49), (152, 50)])
def test_unit_specs(depth, units):
    specs = unit_specs(depth)
    assert len(specs) == units and num_layers_from_units(units) == depth
    ends = stage_ends(depth)
    assert ends[-1] == units - 1
    # The first unit of each stage has stride 2 and changes nothing else but (maybe) the channels.
    starts = [0] + [e + 1 for e in ends[:-1]]
    assert [i for i, s in enumerate(specs) if s.stride == 2] == starts
    assert [specs[e].depth for e in ends] == [64, 128, 256, 512]
    assert specs[0].in_channels == 64


def test_stage_ends_depth50_match_official_taps():
    assert stage_ends(50) == (2, 6, 20, 23)
    with pytest.raises(ValueError):
        unit_specs(34)


def test_se_module_formula():
    gen = torch.Generator().manual_seed(0)
    se = init_weights(SEModule(32, 16), gen)
    x = torch.randn(2, 32, 5, 5, generator=gen)
    s = x.mean(dim=(2, 3))  # [2, 32]
    w1, w2 = se.fc1.weight[:, :, 0, 0], se.fc2.weight[:, :, 0, 0]
    want = x * torch.sigmoid(torch.relu(s @ w1.T) @ w2.T)[:, :, None, None]
    torch.testing.assert_close(se(x), want, rtol=1e-6, atol=1e-6)
    assert se.fc1.bias is None and se.fc2.bias is None and se.fc1.weight.shape == (2, 32, 1, 1)
    with torch.no_grad():
        se.fc2.weight.zero_()  # sigmoid(0) = 1/2
    torch.testing.assert_close(se(x), 0.5 * x)


@pytest.mark.parametrize("cin,depth,stride", [(16, 16, 1), (16, 16, 2), (16, 32, 2), (16, 32, 1)])
@pytest.mark.parametrize("se", [False, True])
def test_bottleneck_shapes_and_shortcut(cin, depth, stride, se):
    gen = torch.Generator().manual_seed(1)
    unit = init_weights(BottleneckIR(cin, depth, stride, se=se), gen).eval()
    x = torch.randn(2, cin, 12, 12, generator=gen)
    y = unit(x)
    assert y.shape == (2, depth, 12 // stride, 12 // stride)
    assert isinstance(unit.res_layer[-1], SEModule) == se
    assert len(unit.res_layer) == (6 if se else 5)
    if cin == depth:  # MaxPool2d(1, stride) = plain subsampling
        assert isinstance(unit.shortcut_layer, torch.nn.MaxPool2d)
        torch.testing.assert_close(unit.shortcut_layer(x), x[:, :, ::stride, ::stride])
        torch.testing.assert_close(y - unit.res_layer(x), x[:, :, ::stride, ::stride])
    else:
        conv = unit.shortcut_layer[0]
        assert conv.bias is None and conv.kernel_size == (1, 1) and conv.stride == (stride, stride)
    assert all(m.bias is None for m in unit.res_layer if isinstance(m, torch.nn.Conv2d))


def test_construction_leaves_global_rng_alone_and_init_is_seeded():
    state = torch.random.get_rng_state()
    a = IRBackbone(50, "ir", in_channels=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = type(a)(**asdict(a.config))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    init_weights(a, torch.Generator().manual_seed(5))
    init_weights(b, torch.Generator().manual_seed(5))
    assert all(torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))
    init_weights(b, torch.Generator().manual_seed(6))
    assert not torch.equal(a.input_layer[0].weight, b.input_layer[0].weight)


def test_backbone_feature_sizes():
    net = IRBackbone(50, "ir_se").eval()
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, 64, 64), taps=(2, 6, 20, 23))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4)]


def test_equal_linear_and_style_block():
    lin = EqualLinear(4, 3, lr_mul=0.5)
    x = torch.randn(2, 4)
    torch.testing.assert_close(lin(x), x @ (lin.weight * 0.5 / 2).T + lin.bias * 0.5)
    blk = GradualStyleBlock(8, 8, 16)
    convs = [m for m in blk.convs if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.stride == (2, 2) for c in convs)
    assert all(m.negative_slope == 0.01 for m in blk.convs if isinstance(m, torch.nn.LeakyReLU))
    assert blk(torch.randn(3, 8, 16, 16)).shape == (3, 8)


@pytest.mark.parametrize("cls", [GradualStyleEncoder, Encoder4Editing])
@pytest.mark.parametrize("n_styles", [18, 14])
def test_pyramid_encoders_shapes(cls, n_styles):
    with torch.device("meta"):
        enc = cls(n_styles=n_styles)
        out = enc(torch.empty(2, 3, 256, 256))
        again = type(enc)(**asdict(enc.config))
    assert out.shape == (2, n_styles, 512)
    assert [s.spatial for s in enc.styles] == [16] * 3 + [32] * 4 + [64] * (n_styles - 7)
    assert again.config == enc.config
    keys = list(enc.state_dict())
    assert keys[:7] == [
        "input_layer.0.weight", "input_layer.1.weight", "input_layer.1.bias", "input_layer.1.running_mean",
        "input_layer.1.running_var", "input_layer.1.num_batches_tracked", "input_layer.2.weight",
    ]
    assert keys[-4:] == ["latlayer1.weight", "latlayer1.bias", "latlayer2.weight", "latlayer2.bias"]


def test_e2style_shapes_and_stages():
    with torch.device("meta"):
        enc = E2StyleEncoder(num_stages=3)
        x = torch.empty(2, 3, 256, 256)
        codes = enc.first(x)
        delta = enc.refine(2, x, torch.empty(2, 3, 256, 256))
        stage = E2StyleStage(in_channels=6, head_rows=(7, 4, 3))
    assert codes.shape == delta.shape == (2, 18, 512)
    assert stage.n_styles == 14 and stage.output_layer_3[3].out_features == 7 * 512
    assert enc.stages[0].input_layer[0].in_channels == 3 and enc.stages[2].input_layer[0].in_channels == 6
    assert enc.active_stages == 3
    enc.set_active_stages(1)
    assert enc.active_stages == 1
    with pytest.raises(ValueError):
        enc.set_active_stages(4)
    with pytest.raises(IndexError):
        enc.refine(3, x, x)
