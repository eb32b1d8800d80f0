"""rosinality generators against the official outputs (fixture README §2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.formats import load_checkpoint
from studio.core.formats.rosinality_pt import rosinality_name_table
from studio.core.nets.stylegan2 import truncate
from tests.conftest import fixture_dir
from tests.fixtures_util import fixture_seed, make_state_checked, to_torch

pytestmark = pytest.mark.fixtures
NAME = "rosinality_stylegan2_256"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = fixture_dir(NAME)
    state = make_state_checked(d, "g_ema_listing.jsonl", fixture_seed(d))
    ref = np.load(d / "outputs.npz")
    path = tmp_path_factory.mktemp("ros") / "stylegan2.pt"
    torch.save({"g_ema": to_torch(state), "latent_avg": torch.from_numpy(ref["truncation_latent"][0])}, path)
    return d, state, ref, load_checkpoint(path), path


def test_format_and_config(fx):
    _, _, ref, bundle, _ = fx
    G = bundle.generator
    assert bundle.format == "rosinality"
    assert G.img_resolution == 256 and G.num_ws == ref["w_plus"].shape[1]
    np.testing.assert_array_equal(bundle.w_avg.numpy(), ref["truncation_latent"][0])


def test_weights_read_back_exactly(fx):
    _, state, _, bundle, _ = fx
    G = bundle.generator
    ours = G.state_dict()
    num_convs = len([k for k in state if k.startswith("convs.") and k.endswith(".conv.weight")])
    n_mlp = len([k for k in state if k.startswith("style.") and k.endswith(".weight")])
    table = rosinality_name_table(num_convs, n_mlp)
    checked = 0
    for key, ref in state.items():
        if key.endswith("kernel"):
            continue
        dst, _ = table[key]
        np.testing.assert_array_equal(ours[dst].numpy().reshape(ref.shape), ref, err_msg=key)
        checked += 1
    assert checked == len(ours) - 1  # everything but mapping.w_avg


def test_mapping(fx):
    _, _, ref, bundle, _ = fx
    with torch.no_grad():
        w = bundle.generator.mapping(torch.from_numpy(ref["z"]))
        wb = bundle.generator.mapping(torch.from_numpy(ref["z_b"]))
    np.testing.assert_allclose(w.numpy(), ref["w"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wb.numpy(), ref["w_b"], rtol=1e-4, atol=1e-4)


def _broadcast(w, n):
    return w[:, None].repeat(1, n, 1)


def test_images_and_mixing_and_truncation(fx):
    _, _, ref, bundle, _ = fx
    G = bundle.generator
    w, wb = torch.from_numpy(ref["w"]), torch.from_numpy(ref["w_b"])
    with torch.no_grad():
        img = G.synthesis(_broadcast(w, G.num_ws))
        np.testing.assert_allclose(img.numpy(), ref["img_w"], atol=1e-3, rtol=0)
        # inject_index 4: rows 0-3 from w[:1], 4.. from w_b
        lat = torch.cat([_broadcast(w[:1], 4), _broadcast(wb, G.num_ws - 4)], dim=1)
        np.testing.assert_allclose(lat.numpy(), ref["latent_mix_inject4"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(G.synthesis(lat).numpy(), ref["img_mix_inject4"], atol=1e-3, rtol=0)
        lt = truncate(_broadcast(w[:1], G.num_ws), torch.from_numpy(ref["truncation_latent"][0]), 0.7)
        np.testing.assert_allclose(lt.numpy(), ref["latent_trunc07"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(G.synthesis(lt).numpy(), ref["img_trunc07"], atol=1e-3, rtol=0)
        img = G.synthesis(torch.from_numpy(ref["w_plus"]))
        np.testing.assert_allclose(img.numpy(), ref["img_wplus"], atol=1e-3, rtol=0)


def test_training_checkpoint_without_latent_avg(fx, tmp_path):
    d, state, ref, bundle, _ = fx
    import argparse

    path = tmp_path / "000100.pt"
    args = argparse.Namespace(size=256, latent=512, n_mlp=8, channel_multiplier=2, lr_mlp=0.01)
    torch.save({"g_ema": to_torch(state), "args": args}, path)
    b2 = load_checkpoint(path)
    assert any("latent_avg" in n for n in b2.notes)
    # the estimate is the mean of mapped z: deterministic and near the mean of the fixture's w
    b3 = load_checkpoint(path)
    np.testing.assert_array_equal(b2.w_avg.numpy(), b3.w_avg.numpy())
    with torch.no_grad():
        z = torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
        mean = b2.generator.mapping(z).mean(0)
    assert torch.nn.functional.cosine_similarity(mean, b2.w_avg, dim=0) > 0.95


def test_missing_and_misshapen_tensors(fx, tmp_path):
    _, state, _, _, _ = fx
    sd = to_torch(state)
    broken = dict(sd)
    broken.pop("convs.3.conv.modulation.bias")
    torch.save({"g_ema": broken}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "a.pt")
    broken = dict(sd)
    broken["to_rgbs.1.conv.weight"] = torch.zeros(1, 3, 7, 1, 1)
    torch.save({"g_ema": broken}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "b.pt")
    broken = dict(sd)
    broken["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    torch.save({"g_ema": broken}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="kernel"):
        load_checkpoint(tmp_path / "c.pt")
