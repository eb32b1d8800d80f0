"""Which face of a photo the app edits without asking (weak detections next to a clear face)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.faces import Face
from studio.engine.workspace import WEAK_FACE_GAP, WEAK_FACE_SCORE, PhotoFaces, read_photo
from tests.conftest import DATA

FACES = DATA / "faces"


def _photo(*scores: float) -> PhotoFaces:
    faces = [Face(box=(0, 0, 10, 10), score=s, landmarks=np.zeros((68, 2), np.int64), index=i)
             for i, s in enumerate(scores)]
    return PhotoFaces("x.png", np.zeros((10, 10, 3), np.uint8), None, faces)


@pytest.mark.parametrize("scores, weak, default", [
    ((1.5,), [False], 0),
    ((0.05,), [False], 0),                    # a lone weak detection is still the face to edit
    ((1.16, 0.12), [False, True], 0),         # the astronaut and the patch on her suit
    ((2.2, 1.9), [False, False], None),       # two clear faces: ask
    ((0.6, 0.25), [False, False], None),      # within the gap: ask
    ((1.5, 0.35), [False, False], None),      # above the weak score: ask
    ((2.0, 0.1, -0.2), [False, True, True], 0),
])
def test_weak_detections(scores, weak, default):
    p = _photo(*scores)
    assert [p.is_weak(i) for i in range(len(scores))] == weak
    assert p.clear_faces() == [i for i, w in enumerate(weak) if not w]
    assert p.default_face() == default


def test_thresholds_are_sane():
    assert 0 < WEAK_FACE_SCORE < WEAK_FACE_GAP


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_sample_photos():
    astronaut = read_photo(FACES / "astronaut.png")
    assert len(astronaut.faces) >= 1 and astronaut.default_face() == 0
    assert all(astronaut.is_weak(i) for i in range(1, len(astronaut.faces)))
    two = read_photo(FACES / "two_faces_celebahq.jpg")
    assert len(two.faces) == 2 and two.default_face() is None
