"""LPIPS v0.1 without torchvision against the reference numbers of ../shared/data/lpips/README.md, and the
app's own copy of the backbone weights (``resources/lpips``, safetensors shards) against the originals."""

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
    assert d0 == pytest.approx(REFERENCE[net][0], abs=1e-4) and d1 == pytest.approx(REFERENCE[net][1], abs=1e-4)
    assert torch.equal(same, torch.zeros(2))


@pytest.mark.skipif(not RESOURCES.is_dir() or not LPIPS_DATA.is_dir(), reason="weights not found")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_app_copy_holds_the_same_tensors(net):
    ours = load_weight_files(find_weights(net, RESOURCES))
    orig = load_weight_files(find_weights(net, LPIPS_DATA))
    assert set(ours) == set(orig) and all(torch.equal(ours[k], orig[k]) for k in orig)
    FeatureNet(net, RESOURCES)  # loads strictly
