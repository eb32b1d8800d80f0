"""Light (ResNet-backbone) pSp / e4e / E2Style / SAE encoders, presets, pipeline and model-file round trips."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from studio.core.formats import load_checkpoint, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets import NETWORKS, build, class_name_of
from studio.core.nets.crg import CRGEncoder
from studio.core.nets.e2style import E2StyleEncoder
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.irse import init_weights
from studio.core.nets.light import (
    BasicBlock,
    ResNetBackbone,
    backbone_spec,
    e2style_head_rows,
    light_encoder,
    make_backbone,
)
from studio.core.nets.psp import Encoder4Editing, GradualStyleEncoder, PSPEncoderConfig
from studio.core.nets.sae import SAEEncoder
from studio.core.nets.stylegan2 import Generator


def tiny_G(res=16):
    return Generator(z_dim=32, w_dim=32, img_resolution=res, channel_base=512, channel_max=32)


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- backbone -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cin,depth,stride", [(8, 8, 1), (8, 8, 2), (8, 16, 2)])
@pytest.mark.parametrize("se", [False, True])
def test_basic_block_shapes_and_shortcut(cin, depth, stride, se):
    unit = init_weights(BasicBlock(cin, depth, stride, se=se), torch.Generator().manual_seed(0)).eval()
    x = torch.randn(2, cin, 8, 8)
    y = unit(x)
    assert y.shape == (2, depth, 8 // stride, 8 // stride) and bool((y >= 0).all())  # ends in ReLU
    assert isinstance(unit.shortcut_layer, torch.nn.Identity) == (cin == depth and stride == 1)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unit.res_layer) == 2
    assert (type(unit.res_layer[-1]).__name__ == "SEModule") == se


def test_resnet_backbone_stages():
    assert backbone_spec("resnet", 18, 32) == backbone_spec("resnet", 18, 32)
    spec = backbone_spec("resnet", 18, 32)
    assert spec.stage_ends == (1, 3, 5, 7) and spec.stage_channels == (32, 64, 128, 256)
    assert backbone_spec("resnet", 34, 8).stage_ends == (2, 6, 12, 15)
    assert backbone_spec("ir", 50).stage_ends == (2, 6, 20, 23)
    assert backbone_spec("ir", 50).stage_channels == (64, 128, 256, 512)
    net = ResNetBackbone(18, width=8).eval()
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, 64, 64), taps=spec.stage_ends)
    assert [tuple(f.shape) for f in feats] == [(1, 8, 32, 32), (1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4)]
    assert len(make_backbone("resnet", 10, "ir", 3, 8, stages=3)[1]) == 3
    with pytest.raises(ValueError, match="num_layers"):
        ResNetBackbone(50)
    with pytest.raises(ValueError, match="width"):
        make_backbone("ir", 50, "ir_se", 3, width=32)
    with pytest.raises(ValueError, match="backbone"):
        backbone_spec("vgg", 18)


# -- pSp / e4e / SAE ------------------------------------------------------------------------------


def test_official_defaults_unchanged():
    assert asdict(PSPEncoderConfig()) == {"n_styles": 18, "num_layers": 50, "mode": "ir_se", "in_channels": 3,
                                              "backbone": "ir", "width": 64, "input_size": 256, "w_dim": 512}
    with torch.device("meta"):
        psp = GradualStyleEncoder()
        e2s = E2StyleEncoder()
    assert _n_params(psp) == 267_136_704  # unchanged by the backbone option
    assert len(psp.body) == 24 and len(e2s.stages[0].body) == 24  # units 21-23 stored, as official
    assert psp.styles[0].convs[0].in_channels == 512 and psp.styles[17].linear.weight.shape == (512, 512)


@pytest.mark.parametrize("cls", [GradualStyleEncoder, Encoder4Editing, SAEEncoder])
def test_light_pyramid_encoders(cls):
    enc = cls(n_styles=10, num_layers=10, backbone="resnet", width=8, input_size=64, w_dim=24).eval()
    assert [s.spatial for s in enc.styles] == [4] * 3 + [8] * 4 + [16] * 3
    assert enc.pyramid_channels == 64 and enc.latlayer2.in_channels == 16
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10, 24)
    again = build(class_name_of(enc), asdict(enc.config))
    assert again.config == enc.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in enc.state_dict().items()}
    with pytest.raises(ValueError, match="input_size"):
        cls(backbone="resnet", num_layers=18, width=8, input_size=96)


def test_light_e2style():
    enc = E2StyleEncoder(num_stages=2, num_layers=18, backbone="resnet", width=8, head_rows=(5, 3, 2), pool=4,
                         w_dim=16).eval()
    st = enc.stages[1]
    assert len(st.body) == 6  # three stages of two units: the fourth is never read, so not built
    assert st.input_layer[0].in_channels == 6 and enc.stages[0].input_layer[0].in_channels == 3
    assert st.output_layer_3[3].in_features == 32 * 16 and st.output_layer_5[3].in_features == 8 * 16
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert enc.first(x).shape == enc.refine(1, x, x).shape == (2, 10, 16)
    assert e2style_head_rows(18) == (9, 5, 4) and e2style_head_rows(14) == (7, 4, 3)
    assert e2style_head_rows(10) == (5, 3, 2) and sum(e2style_head_rows(6)) == 6


def test_presets_are_an_order_of_magnitude_smaller():
    with torch.device("meta"):
        official = _n_params(GradualStyleEncoder())
    x = torch.randn(1, 3, 64, 64)
    for arch in ("psp", "e4e", "sae", "e2style", "crg"):
        net = light_encoder(arch).eval()
        with torch.no_grad():
            assert net(x).shape == (1, 10, 256), arch
        assert net.config.input_size == 64, arch
        assert _n_params(net) * 10 < official, arch
    with pytest.raises(ValueError, match="arch"):
        light_encoder("stylegan")


# -- pipeline and model files ---------------------------------------------------------------------

# Generator resolution, encoder input size (= the pipeline's out_size: E2Style refinement stages
# read the image together with the pooled reconstruction), w_dim (tiny_G: num_ws 6).
RES, S, W = 16, 32, 32


def _encoder(kind: str) -> torch.nn.Module:
    common = {"num_ws": 6, "w_dim": W, "input_size": S, "width": 8, "num_layers": 10}
    if kind == "crg-z":
        net = CRGEncoder(input_size=S, out_dim=32, space="z", channels=(8, 16), convs=(1, 1), hidden=16)
    elif kind == "crg-w":
        net = CRGEncoder(input_size=S, out_dim=W, space="w", channels=(8, 16), convs=(1, 1), hidden=0)
    elif kind == "e2style":
        net = light_encoder(kind, **common, num_stages=2, pool=2)
    else:
        net = light_encoder(kind, **common)
    return init_weights(net, torch.Generator().manual_seed(7)).eval()


KINDS = ["psp", "e4e", "sae", "e2style", "crg-z", "crg-w"]


def _pipeline(kind: str) -> EncoderPipeline:
    torch.manual_seed(3)
    G = tiny_G(RES).eval()
    G.mapping.w_avg.normal_()
    latent_avg = G.mapping.w_avg.repeat(G.num_ws, 1)  # [num_ws, w_dim]
    return EncoderPipeline(_encoder(kind), G, latent_avg, kind=kind.split("-")[0],
                           start_from_latent_avg=kind != "crg-z", out_size=S).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_and_stylestudio_round_trip(kind, tmp_path):
    pipe = _pipeline(kind)
    x = torch.rand(2, 3, S, S) * 2 - 1
    with torch.no_grad():
        img, ws = pipe(x)
    assert img.shape == (2, 3, S, S) and ws.shape == (2, 6, W)
    bundle = ModelBundle(format="stylestudio", path="", generator=pipe.decoder, encoder=pipe,
                         latent_avg=pipe.latent_avg)
    out = stylestudio_fmt.save(bundle, tmp_path / "enc.safetensors")
    b2 = load_checkpoint(out)
    enc2 = b2.encoder.encoder
    assert type(enc2) is type(pipe.encoder) and enc2.config == pipe.encoder.config
    assert b2.encoder.config == pipe.config
    sa, sb = pipe.encoder.state_dict(), enc2.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        assert torch.equal(pipe.encoder(x), enc2(x))
        img2, ws2 = b2.encoder(x)
    assert torch.equal(ws, ws2) and torch.equal(img, img2)


def test_new_classes_are_registered():
    for name in ("SAEEncoder", "CRGEncoder"):
        assert name in NETWORKS
    with pytest.raises(ValueError, match="kind"):
        EncoderPipeline(_encoder("psp"), None, None, kind="restyle", start_from_latent_avg=False)
