"""NVIDIA stylegan2-ada-pytorch pickles against the official outputs (fixture README §1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.formats import detect_format, load_checkpoint
from tests.conftest import fixture_dir
from tests.fixtures_util import fixture_seed, make_state_checked

pytestmark = pytest.mark.fixtures
NAME = "nvidia_stylegan2_ada_small"


@pytest.fixture(scope="module")
def fx():
    d = fixture_dir(NAME)
    bundle = load_checkpoint(d / "network-snapshot-000000.pkl")
    return d, bundle, np.load(d / "outputs.npz")


def _ours_vs_listing(net, state):
    ours = net.state_dict()
    for key, ref in state.items():
        if key.endswith("resample_filter"):
            continue  # fixed FIR buffers: checked by the reader, not stored
        np.testing.assert_array_equal(ours[key].numpy(), ref, err_msg=key)
    assert set(ours) == {k for k in state if not k.endswith("resample_filter")}


def test_detected_from_content(fx, tmp_path):
    d, bundle, _ = fx
    assert bundle.format == "nvidia-pkl"
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes((d / "network-snapshot-000000.pkl").read_bytes())
    assert detect_format(renamed) == "nvidia-pkl"


def test_weights_read_back_exactly_from_G_ema(fx):
    d, bundle, _ = fx
    seed = fixture_seed(d)
    _ours_vs_listing(bundle.generator, make_state_checked(d, "G_listing.jsonl", seed))
    _ours_vs_listing(bundle.discriminator, make_state_checked(d, "D_listing.jsonl", seed))
    # G (seed + 1000) deliberately differs: we must have taken G_ema.
    g_state = make_state_checked(d, "G_listing.jsonl", seed + 1000)
    assert not np.array_equal(bundle.generator.state_dict()["mapping.fc0.weight"].numpy(), g_state["mapping.fc0.weight"])
    np.testing.assert_array_equal(bundle.w_avg.numpy(), bundle.generator.mapping.w_avg.numpy())


@pytest.mark.parametrize("key,kw", [("ws_psi1", {}), ("ws_psi07", {"psi": 0.7}),
                                    ("ws_psi07_cutoff4", {"psi": 0.7, "cutoff": 4})])
def test_mapping(fx, key, kw):
    _, bundle, ref = fx
    with torch.no_grad():
        ws = bundle.generator.map(torch.from_numpy(ref["z"]), **kw)
    np.testing.assert_allclose(ws.numpy(), ref[key], rtol=1e-4, atol=1e-4)


def test_mapping_b(fx):
    _, bundle, ref = fx
    with torch.no_grad():
        ws = bundle.generator.map(torch.from_numpy(ref["z_b"]))
    np.testing.assert_allclose(ws.numpy(), ref["ws_b_psi1"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("img_key,ws_key,noise_mode", [
    ("img_psi1_const", "ws_psi1", "const"),
    ("img_psi07_const", "ws_psi07", "const"),
    ("img_psi1_nonoise", "ws_psi1", "none"),
    ("img_mix_const", "ws_mix", "const"),
])
def test_synthesis(fx, img_key, ws_key, noise_mode, fused):
    _, bundle, ref = fx
    with torch.no_grad():
        img = bundle.generator.synthesis(torch.from_numpy(ref[ws_key]), noise_mode=noise_mode, fused=fused)
    np.testing.assert_allclose(img.numpy(), ref[img_key], atol=1e-3, rtol=0)


def test_mixing_rows(fx):
    _, bundle, ref = fx
    with torch.no_grad():
        a = bundle.generator.map(torch.from_numpy(ref["z"]))
        b = bundle.generator.map(torch.from_numpy(ref["z_b"]))
    mix = b.clone()
    mix[:, :4] = a[:, :4]
    np.testing.assert_allclose(mix.numpy(), ref["ws_mix"], rtol=1e-4, atol=1e-4)


def test_full_forward(fx):
    _, bundle, ref = fx
    with torch.no_grad():
        img = bundle.generator(torch.from_numpy(ref["z"]), psi=0.7, noise_mode="const")
    np.testing.assert_allclose(img.numpy(), ref["img_G_forward_psi07_const"], atol=1e-3, rtol=0)


def test_discriminator_runs_on_generated_images(fx):
    _, bundle, ref = fx
    with torch.no_grad():
        img = torch.from_numpy(ref["img_psi1_const"]).repeat(2, 1, 1, 1)
        logits = bundle.discriminator(img)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
