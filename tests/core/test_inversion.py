"""The Inverter API: every method through one interface, with clear errors (tiny random networks)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from studio.core.inversion import (ENCODER_METHODS, METHODS, EncoderInverter, InversionError, OptimizeInverter,
                                   available_methods, bundle_encoders, image_to_tensor, make_inverter,
                                   reconstruction_metrics)
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.light import light_encoder
from studio.core.nets.stylegan2 import Generator
from studio.core.projector import ProjectorConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        g.mapping.w_avg.copy_(g.mapping(torch.randn(2000, 32)).mean(0))
    return g


def _uint8(img: torch.Tensor) -> np.ndarray:
    return ((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def face(G):
    """An 'aligned face' the generator can make exactly: its image of a known W+, as uint8."""
    with torch.no_grad():
        ws = G.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(3)))
        img = G.synthesis(ws, noise_mode="const")
    return _uint8(img), ws[0]


class Oracle(nn.Module):
    """A stand-in encoder pipeline that 'encodes' to a fixed W+ (to test the plumbing)."""

    def __init__(self, ws, kind="psp"):
        super().__init__()
        self.register_buffer("ws", ws.clone())
        self.encoder = nn.Identity()
        self.latent_avg = None
        self.config = type("C", (), {"kind": kind})()
        self.calls = 0

    def encode(self, x):
        self.calls += 1
        return self.ws.unsqueeze(0).expand(x.shape[0], -1, -1)


def _pipeline(G, arch="psp", num_ws=None):
    enc = light_encoder(arch, num_ws=num_ws or G.num_ws, w_dim=G.w_dim, input_size=32, width=8)
    return EncoderPipeline(enc, G, G.mapping.w_avg.unsqueeze(0).repeat(G.num_ws, 1), kind=arch, out_size=32).eval()


def test_registry_lists_every_method_with_reasons(G):
    infos = {m.name: m for m in available_methods(G, {})}
    assert list(infos) == list(METHODS)
    assert infos["optimize"].available and not infos["hybrid"].available
    assert all(not infos[k].available and k in infos[k].reason for k in ENCODER_METHODS)
    infos = {m.name: m for m in available_methods(G, {"e4e": object()})}
    assert infos["e4e"].available and infos["hybrid"].available and not infos["psp"].available
    assert not any(m.available for m in available_methods(None, {"psp": object()}))


def test_make_inverter_errors_are_clear(G):
    with pytest.raises(InversionError, match="unknown inversion method 'foo'"):
        make_inverter("foo", G)
    with pytest.raises(InversionError, match=r"cannot use psp: no psp encoder.*Available here: optimize"):
        make_inverter("psp", G, {})
    with pytest.raises(InversionError, match="no generator"):
        make_inverter("optimize", None)


def test_image_to_tensor_resizes_and_rejects_non_faces():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    x = image_to_tensor(img, 32)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[..., :15], torch.tensor(-1.0)) and torch.allclose(x[..., 17:], torch.tensor(1.0))
    with pytest.raises(InversionError, match="square"):
        image_to_tensor(np.zeros((40, 64, 3), np.uint8), 32)
    with pytest.raises(InversionError, match="at least 8x8"):
        image_to_tensor(np.zeros((4, 4, 3), np.uint8), 32)


def test_metrics_zero_for_identical_and_match_mse():
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    b = (a + 0.1).clamp(-1, 1)
    assert reconstruction_metrics(a, a) == {"mse": 0.0, "lpips": pytest.approx(0.0, abs=1e-7)}
    m = reconstruction_metrics(b, a)
    assert m["mse"] == pytest.approx(float(((b - a) ** 2).mean()), rel=1e-6) and m["lpips"] > 0


def test_encoder_inverter_shapes_and_metrics(G, face):
    img, _ = face
    for arch in ("psp", "e2style", "sae", "crg"):
        inv = make_inverter(arch, G, {arch: _pipeline(G, arch)})
        assert isinstance(inv, EncoderInverter) and inv.method == arch
        seen = []
        res = inv.invert(img, progress=seen.append)
        assert res.latent_wplus.shape == (G.num_ws, G.w_dim) and res.latent_wplus.device.type == "cpu"
        assert res.reconstruction.shape == (32, 32, 3) and res.reconstruction.dtype == np.uint8
        assert res.method == arch and res.seconds > 0 and not res.cancelled
        assert len(seen) == 1 and seen[0].preview is res.reconstruction
        # the reported numbers are those of the returned latent's image
        with torch.no_grad():
            recon = G.synthesis(res.latent_wplus[None], noise_mode="const")
        assert np.array_equal(_uint8(recon), res.reconstruction)
        ref = reconstruction_metrics(recon, image_to_tensor(img, 32))
        assert res.metrics["mse"] == pytest.approx(ref["mse"], rel=1e-5)
        assert res.metrics["lpips"] == pytest.approx(ref["lpips"], rel=1e-4, abs=1e-6)


def test_encoder_for_another_generator_is_refused(G):
    big = light_encoder("psp", num_ws=18, w_dim=32, input_size=32, width=8)
    pipe = EncoderPipeline(big, None, torch.zeros(18, 32), kind="psp")
    with pytest.raises(InversionError, match=r"does not fit this generator \(18 W\+ rows, the generator needs 8\).*"
                                             r"1024-px generator.*optimisation"):
        make_inverter("psp", G, {"psp": pipe})


def test_optimize_reconstructs_and_reports_progress(G, face):
    img, ws_true = face
    cfg = ProjectorConfig(steps=60, preview_every=20, w_avg_samples=2000, lpips_net="vgg")
    inv = make_inverter("optimize", G, projector_config=cfg)
    seen = []
    res = inv.invert(img, progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 61)) and all(p.total == 60 for p in seen)
    assert [p.step for p in seen if p.preview is not None] == [20, 40, 60]
    assert seen[19].preview.shape == (32, 32, 3)
    start = reconstruction_metrics(G.synthesis(G.mapping.w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1),
                                               noise_mode="const"), image_to_tensor(img, 32))
    assert res.metrics["lpips"] < 0.6 * start["lpips"]
    assert res.metrics["steps"] == 60 and res.method == "optimize"


def test_hybrid_starts_from_the_encoder_and_cancel_keeps_best(G, face):
    img, ws_true = face
    oracle = Oracle(ws_true)
    cfg = ProjectorConfig(steps=40, w_avg_samples=2000, latent_noise=0.0)
    hyb = make_inverter("hybrid", G, {"psp": oracle}, projector_config=cfg)
    assert isinstance(hyb, OptimizeInverter) and hyb.method == "hybrid" and hyb.start.method == "psp"
    stop = threading.Event()

    def progress(p):
        if p.step == 3:
            stop.set()

    res = hyb.invert(img, progress=progress, cancel=stop)
    assert oracle.calls == 1 and res.cancelled and res.metrics["steps"] == 3 and res.notes
    # started at the answer: after 3 small steps the reconstruction is still (nearly) exact
    assert res.metrics["lpips"] < 0.02
    opt = make_inverter("optimize", G, projector_config=cfg).invert(img, cancel=lambda: True)
    assert opt.cancelled and opt.metrics["lpips"] > 5 * res.metrics["lpips"]


def test_hybrid_default_budget_is_shorter(G):
    full = make_inverter("optimize", G)
    hyb = make_inverter("hybrid", G, {"e4e": Oracle(torch.zeros(G.num_ws, G.w_dim), "e4e")})
    assert hyb.config.steps < full.config.steps


def test_bundle_encoders_collects_checkpoint_and_pack_encoders(G):
    from studio.core.formats import ModelBundle

    pipe = _pipeline(G, "e4e")
    other = _pipeline(G, "crg")
    b = ModelBundle(format="x", path="", generator=G, encoder=pipe, meta={"encoders": {"crg": other, "bogus": 1}})
    assert bundle_encoders(b) == {"e4e": pipe, "crg": other}
