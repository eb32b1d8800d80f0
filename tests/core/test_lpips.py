"""LPIPS v0.1 without torchvision against the reference numbers of ../shared/data/lpips/README.md, and the
app's own copy of the backbone weights (``resources/lpips``: AlexNet in float16 as the original, VGG16
in 8-bit, see ``trainers/tools/lpips_resources.py``) against the originals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.lpips import LPIPS
from studio.core.nets.perceptual import FeatureNet, find_weights, load_weight_files
from tests.conftest import DATA, REPO

LPIPS_DATA = DATA / "lpips"
RESOURCES = REPO / "resources" / "lpips"
# README "Verification": ex_ref vs ex_p0, vs ex_p1 (alex matches the official lpips package's output)
REFERENCE = {"alex": (0.7219, 0.1376), "vgg": (0.5686, 0.4217)}
# the app's 8-bit VGG16 may move a distance by this much (relative); measured on 128 UTKFace pairs: mean
# 0.1%, max 1.1%, and 0.3% on the reference pair
INT8_REL = 0.012


def _img(name: str) -> torch.Tensor:
    a = np.asarray(Image.open(LPIPS_DATA / "example_imgs" / name).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1)[None] / 127.5 - 1


@pytest.mark.skipif(not (LPIPS_DATA / "example_imgs").is_dir(), reason="shared LPIPS example images not found")
@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("where", ["shared", "resources"])
def test_reference_values(net, where):
    weights_dir = LPIPS_DATA if where == "shared" else RESOURCES
    if not weights_dir.is_dir():
        pytest.skip(f"{weights_dir} not found")
    lp = LPIPS(net, weights_dir)
    ref, p0, p1 = _img("ex_ref.png"), _img("ex_p0.png"), _img("ex_p1.png")
    with torch.no_grad():
        d0, d1 = float(lp(ref, p0)), float(lp(ref, p1))
        same = lp(torch.cat([ref, p0]), torch.cat([ref, p0]))
    quantized = where == "resources" and find_weights(net, RESOURCES) == RESOURCES / "vgg16_features_int8.safetensors"
    tol = dict(rel=INT8_REL) if quantized else dict(abs=1e-4)
    assert d0 == pytest.approx(REFERENCE[net][0], **tol) and d1 == pytest.approx(REFERENCE[net][1], **tol)
    assert torch.equal(same, torch.zeros(2))


@pytest.mark.skipif(not RESOURCES.is_dir() or not LPIPS_DATA.is_dir(), reason="weights not found")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_app_copy_holds_the_same_tensors(net):
    ours = load_weight_files(find_weights(net, RESOURCES))
    orig = load_weight_files(find_weights(net, LPIPS_DATA))
    assert set(ours) == set(orig)
    if net == "alex":
        assert all(torch.equal(ours[k], orig[k]) for k in orig)
    else:  # 8-bit weights: within half a quantisation step of the original, per output channel; biases exact
        for k, w in orig.items():
            if w.dim() == 4:
                step = w.float().abs().amax(dim=(1, 2, 3), keepdim=True) / 127
                assert ((ours[k] - w.float()).abs() <= step / 2 + 1e-6).all(), k
            else:
                assert torch.equal(ours[k], w), k
    FeatureNet(net, RESOURCES)  # loads strictly


def test_int8_round_trip_and_damaged_files(tmp_path, monkeypatch):
    """quantize_int8 / dequantize_int8: exact for values on the grid, a clear error for a scale-less int8
    tensor; the resources tool writes a VGG16 the loader finds before any other copy in the folder."""
    from safetensors.torch import save_file

    from studio.core.errors import CheckpointError
    from studio.core.nets.perceptual import dequantize_int8, quantize_int8

    w = torch.randint(-127, 128, (2, 5, 5, 5), generator=torch.Generator().manual_seed(0)).float() * 0.01
    w[:, 0, 0, 0] = 1.27  # each channel's largest |w|: the scale is 0.01 and every value lies on the grid
    q = quantize_int8({"features.0.weight": w, "features.0.bias": torch.ones(2)})
    assert q["features.0.weight"].dtype == torch.int8 and q["features.0.weight.int8_scale"].shape == (2,)
    back = dequantize_int8(q)
    assert set(back) == {"features.0.weight", "features.0.bias"} and torch.allclose(back["features.0.weight"], w,
                                                                                        atol=1e-6)
    bad = tmp_path / "vgg16_features_int8.safetensors"
    save_file({"features.0.weight": q["features.0.weight"]}, str(bad))
    with pytest.raises(CheckpointError, match="8-bit"):
        load_weight_files(bad)

    # full precision wins wherever it is; the 8-bit copy is the fallback
    (tmp_path / "exact").mkdir()
    exact = tmp_path / "exact" / "vgg16_features_fp16.safetensors"
    save_file({"features.0.bias": torch.ones(2)}, str(exact))
    assert find_weights("vgg") != bad
    import studio.core.nets.perceptual as perceptual

    monkeypatch.setattr(perceptual, "default_weight_dirs", lambda: [tmp_path, tmp_path / "exact"])
    assert find_weights("vgg") == exact
    exact.unlink()
    assert find_weights("vgg") == bad


@pytest.mark.skipif(not LPIPS_DATA.is_dir(), reason="shared LPIPS weights not found")
def test_resources_tool_writes_one_vgg_copy(tmp_path):
    """trainers.tools.lpips_resources: int8 by default, fp16 shards under 20 MB on request; switching
    format leaves exactly one VGG16 copy for the loader; the AlexNet tensors and heads are the originals."""
    from trainers.tools.lpips_resources import write

    out = tmp_path / "lpips"
    write(LPIPS_DATA, out, vgg="fp16")
    shards = sorted(out.glob("vgg16_features_fp16.part*.safetensors"))
    assert len(shards) >= 2 and all(p.stat().st_size < 20_000_000 for p in shards)
    assert find_weights("vgg", out) == shards
    orig = load_weight_files(find_weights("vgg", LPIPS_DATA))
    ours = load_weight_files(shards)
    assert set(ours) == set(orig) and all(torch.equal(ours[k], orig[k]) for k in orig)

    write(LPIPS_DATA, out)
    assert not list(out.glob("vgg16_features_fp16*")) and find_weights("vgg", out) == out / "vgg16_features_int8.safetensors"
    assert (out / "lpips_v0.1_vgg_lin.pth").read_bytes() == (LPIPS_DATA / "lpips_v0.1_vgg_lin.pth").read_bytes()
    alex = load_weight_files(find_weights("alex", out))
    alex_orig = load_weight_files(find_weights("alex", LPIPS_DATA))
    assert all(torch.equal(alex[k], alex_orig[k]) for k in alex_orig)
