"""Identity descriptors (dlib ResNet, 128-d) and the ID similarity used by benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.align import FFHQ, align_photo
from studio.core.errors import NoFaceError
from studio.core.identity import (SAME_PERSON_DISTANCE, cosine_similarity, face_descriptor, identity_distance,
                                  identity_similarity, is_same_person)
from studio.core.imageio import load_image
from tests.conftest import DATA

FACES = DATA / "faces"


@pytest.fixture(scope="module")
def photos():
    names = ["astronaut.png", "celebahq_female_039913.jpg", "celebahq_male_005735.jpg"]
    return {n: load_image(FACES / n)[0] for n in names}


@pytest.fixture(scope="module")
def descriptors(photos):
    return {n: face_descriptor(img) for n, img in photos.items()}


def test_descriptor_shape_and_scale(descriptors):
    for d in descriptors.values():
        assert d.shape == (128,) and d.dtype == np.float64
        assert 1.0 < np.linalg.norm(d) < 2.0  # dlib descriptors have a norm of about 1.5


def test_same_image_is_identical(photos, descriptors):
    img = photos["astronaut.png"]
    assert identity_similarity(img, img) == pytest.approx(1.0, abs=1e-9)
    assert identity_distance(img, img) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(face_descriptor(img), descriptors["astronaut.png"], atol=1e-9)


def test_aligned_crop_is_the_same_person(photos, descriptors):
    img = photos["astronaut.png"]
    aligned = align_photo(img, FFHQ, 256)[0].image
    d_al = face_descriptor(aligned)
    dist = float(np.linalg.norm(d_al - descriptors["astronaut.png"]))
    assert dist < SAME_PERSON_DISTANCE
    assert cosine_similarity(d_al, descriptors["astronaut.png"]) > 0.92
    # aligned=True (no detection, FFHQ template box) agrees with the detected face
    d_tpl = face_descriptor(aligned, aligned=True)
    assert float(np.linalg.norm(d_tpl - d_al)) < 0.35


def test_different_people_are_far_apart(descriptors):
    names = list(descriptors)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = descriptors[names[i]], descriptors[names[j]]
            assert np.linalg.norm(a - b) > SAME_PERSON_DISTANCE
            assert cosine_similarity(a, b) < 0.92


def test_similarity_scale_consistent_with_distance(descriptors):
    a, b = descriptors["astronaut.png"], descriptors["celebahq_female_039913.jpg"]
    cos = cosine_similarity(a, b)
    d2 = np.linalg.norm(a) ** 2 + np.linalg.norm(b) ** 2 - 2 * cos * np.linalg.norm(a) * np.linalg.norm(b)
    assert np.sqrt(d2) == pytest.approx(np.linalg.norm(a - b), rel=1e-9)


def test_is_same_person(photos):
    img = photos["celebahq_male_005735.jpg"]
    assert is_same_person(img, img[:, ::-1].copy())  # a mirrored photo is still the same person
    assert not is_same_person(img, photos["celebahq_female_039913.jpg"])


def test_no_face_raises():
    coffee = load_image(FACES / "noface_coffee.png")[0]
    with pytest.raises(NoFaceError, match="no face"):
        face_descriptor(coffee)
    with pytest.raises(NoFaceError):
        identity_similarity(coffee, coffee)
