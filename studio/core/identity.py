"""Identity similarity with dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``).

The model maps a face (found by the 68-landmark predictor and cut to a 150x150 chip) to a
128-d descriptor. dlib's own rule: two faces are the same person when the **euclidean distance**
of their descriptors is below **0.6** (99.38% on LFW). Descriptors have a norm of about 1.5.

:func:`identity_similarity` reports the **cosine similarity** of the two descriptors, the scale of
the ID metric used by pSp/e4e/HyperStyle benchmarks: 1.0 = identical descriptors, unrelated people
typically 0.75-0.90 with this model, and dlib's 0.6 distance corresponds to about 0.92 for
descriptors of norm 1.5 (``cos = 1 - d^2 / (|a| |b| * 2)``). Use :func:`identity_distance` (and
:data:`SAME_PERSON_DISTANCE`) for the same-person decision, the similarity for averages in benchmarks.

One descriptor costs ~100-200 ms on two CPU cores (plus detection, unless ``aligned=True``).
"""

from __future__ import annotations

import logging

import numpy as np

from studio.core.errors import NoFaceError
from studio.core.faces import Face, _dlib, _get, detect_faces, model_lock
from studio.core.imageio import as_rgb_array

log = logging.getLogger(__name__)

#: dlib's same-person threshold on the euclidean distance between descriptors.
SAME_PERSON_DISTANCE = 0.6

#: Where dlib's detector puts the face box in an FFHQ-aligned image, as fractions of the side
#: (left, top, right, bottom); measured on FFHQ-aligned CelebA-HQ faces. Used for aligned inputs.
ALIGNED_FACE_BOX = (0.18, 0.28, 0.785, 0.89)


def _template_face(arr: np.ndarray) -> Face:
    h, w = arr.shape[:2]
    l, t, r, b = ALIGNED_FACE_BOX
    box = (int(round(l * w)), int(round(t * h)), int(round(r * w)), int(round(b * h)))
    from studio.core.faces import landmarks_for_box

    return Face(box=box, score=float("nan"), landmarks=landmarks_for_box(arr, box), index=-1)


def face_descriptor(img, face: Face | None = None, *, aligned: bool | None = None, path=None) -> np.ndarray:
    """128-d dlib descriptor ``(128,) float64`` of one face in an RGB ``(H, W, 3) uint8`` image.

    ``face``: use this detection; otherwise the best detected face. ``aligned=True`` skips
    detection and assumes an FFHQ-aligned square image (generator outputs); ``None`` detects and
    falls back to that assumption for square images where nothing is detected.
    Raises :class:`NoFaceError` when no face can be used.
    """
    arr = as_rgb_array(img, name=None if path is None else str(path))
    if face is None:
        if aligned:
            face = _template_face(arr)
        else:
            faces = detect_faces(arr, raise_if_none=False, path=path)
            if faces:
                face = faces[0]
            elif aligned is None and arr.shape[0] == arr.shape[1]:
                log.info("no face detected in a square image; assuming an FFHQ-aligned face")
                face = _template_face(arr)
            else:
                detect_faces(arr, raise_if_none=True, path=path)  # raises NoFaceError with the hint
    dlib = _dlib()
    rec = _get("recognizer")
    rect = dlib.rectangle(*[int(v) for v in face.box])
    parts = dlib.points()
    for x, y in np.asarray(face.landmarks):
        parts.append(dlib.point(int(x), int(y)))
    shape = dlib.full_object_detection(rect, parts)
    with model_lock():
        d = rec.compute_face_descriptor(arr, shape)
    return np.asarray(d, dtype=np.float64)


def identity_distance(img_a, img_b, *, aligned: bool | None = None) -> float:
    """Euclidean distance between the descriptors of the best face in each image (< 0.6: same person)."""
    a = face_descriptor(img_a, aligned=aligned)
    b = face_descriptor(img_b, aligned=aligned)
    return float(np.linalg.norm(a - b))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors, in [-1, 1]."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def identity_similarity(img_a, img_b, *, aligned: bool | None = None) -> float:
    """ID similarity of the best face in two images: cosine of dlib 128-d descriptors (1.0 = same).

    See the module docstring for the scale. ``aligned``: as in :func:`face_descriptor`.
    Raises :class:`NoFaceError` if either image has no usable face.
    """
    return cosine_similarity(face_descriptor(img_a, aligned=aligned), face_descriptor(img_b, aligned=aligned))


def is_same_person(img_a, img_b, *, aligned: bool | None = None) -> bool:
    """dlib's rule: descriptor distance below :data:`SAME_PERSON_DISTANCE`."""
    return identity_distance(img_a, img_b, aligned=aligned) < SAME_PERSON_DISTANCE


__all__ = ["SAME_PERSON_DISTANCE", "ALIGNED_FACE_BOX", "face_descriptor", "identity_distance",
           "identity_similarity", "cosine_similarity", "is_same_person", "NoFaceError"]
