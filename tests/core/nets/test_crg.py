"""CRG encoder (seed 003; METHODS.md §2): architecture, dropout, cyclic training, pipeline, registry."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from studio.core.nets import build, class_name_of
from studio.core.nets.crg import CRGEncoder
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.irse import init_weights
from studio.core.nets.stylegan2 import Generator


def _small(**kw) -> CRGEncoder:
    args = {"input_size": 16, "out_dim": 8, "channels": (16, 32, 64), "convs": (1, 1, 1), "hidden": 128}
    args.update(kw)
    return init_weights(CRGEncoder(**args), torch.Generator().manual_seed(1))


def test_vgg19_layout():
    with torch.device("meta"):
        enc = CRGEncoder()
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    drops = [m for m in enc.features if isinstance(m, torch.nn.Dropout2d)]
    assert len(drops) == 5 and all(d.p == 0.5 for d in drops)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc.features) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.features) == 16
    assert enc.pool.output_size == (2, 2) and enc.head[-1].out_features == 512


@pytest.mark.parametrize("size", [32, 48, 64])
def test_any_input_size_and_num_ws_copies(size):
    one = _small(input_size=32).eval()
    rows = _small(input_size=32, num_ws=5).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        v, ws = one(x), rows(x)
    assert v.shape == (2, 8) and ws.shape == (2, 5, 8)
    torch.testing.assert_close(ws, v[:, None].expand(2, 5, 8))  # same weights (same seed), 5 copies


def test_config_validation():
    with pytest.raises(ValueError, match="space"):
        CRGEncoder(space="wplus")
    with pytest.raises(ValueError, match="too small"):
        CRGEncoder(input_size=16)  # 5 pooling blocks need >= 32 px
    with pytest.raises(ValueError, match="equally long"):
        CRGEncoder(channels=(8, 16), convs=(1,))


def test_dropout_only_in_training():
    enc = _small(dropout=0.5, batch_norm=False)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        enc.eval()
        a, b = enc(x), enc(x)
        enc.train()
        c, d = enc(x), enc(x)
    assert torch.equal(a, b)
    assert not torch.allclose(c, d)


def test_cyclic_training_lowers_z_mse():
    """METHODS.md §2: draw z, render G(z), minimise MSE(E(G(z)), z); a random tiny G, 100 steps."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, w_dim=32, img_resolution=16, channel_base=512, channel_max=32, mapping_layers=2)
    G = G.eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    E = init_weights(CRGEncoder(input_size=16, out_dim=8, channels=(16, 32, 64), convs=(1, 1, 1), hidden=128), gen)
    z_val = torch.randn(64, 8, generator=gen)
    with torch.no_grad():
        x_val = G(z_val)

    def val_loss() -> float:
        E.eval()
        with torch.no_grad():
            loss = F.mse_loss(E(x_val), z_val).item()
        E.train()
        return loss

    opt = torch.optim.Adam(E.parameters(), lr=1e-3, eps=1e-8)
    start = val_loss()
    for _ in range(100):
        z = torch.randn(16, 8, generator=gen)
        with torch.no_grad():
            x = G(z)
        loss = F.mse_loss(E(x), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    end = val_loss()
    assert end < 0.9 * start, (start, end)


def test_pipeline_z_goes_through_mapping_and_w_rows_repeat():
    torch.manual_seed(2)
    G = Generator(z_dim=8, w_dim=16, img_resolution=16, channel_base=512, channel_max=16).eval()
    x = torch.randn(2, 3, 16, 16)
    ez = _small(out_dim=8).eval()
    pipe = EncoderPipeline(ez, G, None, kind="crg", start_from_latent_avg=False, out_size=16)
    with torch.no_grad():
        img, ws = pipe(x)
        torch.testing.assert_close(ws, G.map(ez(x)))
    assert img.shape == (2, 3, 16, 16) and ws.shape == (2, G.num_ws, 16)
    with pytest.raises(ValueError, match="start_from_latent_avg"):
        EncoderPipeline(ez, G, G.w_avg, kind="crg")
    ew = _small(out_dim=16, space="w").eval()
    pipe = EncoderPipeline(ew, G, G.w_avg, kind="crg", out_size=16)  # one w + latent_avg (broadcast)
    with torch.no_grad():
        torch.testing.assert_close(pipe.encode(x), ew(x)[:, None].expand(2, G.num_ws, 16) + G.w_avg)
    with pytest.raises(TypeError):
        EncoderPipeline(torch.nn.Identity(), G, None, kind="crg", start_from_latent_avg=False)


def test_registry_round_trip():
    enc = _small(num_ws=3, space="w", batch_norm=True).eval()
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(enc.config).items()}  # as JSON
    again = build(class_name_of(enc), cfg)
    assert class_name_of(enc) == "CRGEncoder" and again.config == enc.config
    again.load_state_dict(enc.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(enc(x), again.eval()(x))
