"""Face detection + 68 landmarks (dlib) on the sample photos in shared/data/faces."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from studio.core import faces as F
from studio.core.errors import NoFaceError
from studio.core.imageio import load_image
from tests.conftest import DATA

FACES = DATA / "faces"


def _photo(name: str) -> np.ndarray:
    p = FACES / name
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return load_image(p)[0]


def test_model_files_located_without_importing_the_package():
    d = F.models_dir()
    for name in (F.PREDICTOR_68, F.RECOGNITION_MODEL):
        p = F.model_path(name)
        assert p.parent == d and p.stat().st_size > 1_000_000


def test_missing_models_give_install_hint(monkeypatch):
    monkeypatch.setattr(F.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(F.FaceModelError, match="pip install face-recognition-models"):
        F.models_dir()


def test_astronaut_best_first_and_dlib_order():
    img = _photo("astronaut.png")
    best = F.detect_faces(img)
    raw = F.detect_faces(img, order="dlib")
    assert len(best) == len(raw) >= 1
    assert [f.score for f in best] == sorted((f.score for f in best), reverse=True)
    assert [f.index for f in raw] == list(range(len(raw)))
    face = best[0]
    # README: the face is at about x 170-280, y 60-185
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    assert 170 < cx < 280 and 60 < cy < 185
    assert face.score > 0.5
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.int64
    # landmarks sit inside (a slightly grown) face box; eyes above the mouth
    lm = face.landmarks
    assert (lm[:, 0] > face.box[0] - 20).all() and (lm[:, 0] < face.box[2] + 20).all()
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean()


def test_two_faces_photo():
    img = _photo("two_faces_celebahq.jpg")
    faces = F.detect_faces(img)
    assert len(faces) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
    assert centres[0] < 1024 < centres[1]  # one in each half
    for f in faces:
        assert f.width > 300 and f.score > 0.5


def test_no_face_photo_raises_with_advice():
    p = FACES / "noface_coffee.png"
    img = _photo("noface_coffee.png")
    with pytest.raises(NoFaceError) as e:
        F.detect_faces(img, path=p)
    msg = str(e.value)
    assert str(p) in msg and "no face" in msg and "Try" in msg
    assert F.detect_faces(img, raise_if_none=False) == []


def test_rotated_offset_face():
    img = _photo("nonaligned_rotated_offset.jpg")
    faces = F.detect_faces(img)
    assert len(faces) == 1
    f = faces[0]
    # README: patch centre (1011, 351); the face is inside that 462 px patch
    cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
    assert abs(cx - 1011) < 120 and abs(cy - 351) < 120
    # the face is tilted ~20 deg counter-clockwise: the eye line rises to the right
    eye_l, eye_r = f.landmarks[36:42].mean(0), f.landmarks[42:48].mean(0)
    angle = np.degrees(np.arctan2(-(eye_r[1] - eye_l[1]), eye_r[0] - eye_l[0]))
    assert 10 < angle < 30


@pytest.mark.parametrize("name", ["celebahq_female_039913.jpg", "celebahq_male_005735.jpg"])
def test_aligned_celebahq_one_face(name):
    faces = F.detect_faces(_photo(name))
    assert len(faces) == 1


def test_plan_detection_budget():
    assert F.plan_detection(512, 512) == F.DetectPlan(1, 1)          # official detector(img, 1)
    assert F.plan_detection(608, 608) == F.DetectPlan(1, 1)          # a rotated (expanded) 512 image
    assert F.plan_detection(866, 1155) == F.DetectPlan(1, 0)         # 1 MP: full size, no upsampling
    p = F.plan_detection(3000, 4000)                                 # 12 MP: shrunk by an integer factor
    assert p == F.DetectPlan(3, 0) and p.scale == pytest.approx(1 / 3)
    assert 1000 * 1334 <= F.DEFAULT_DETECT_BUDGET
    assert F.plan_detection(3000, 4000, budget=None) == F.DetectPlan(1, 1)
    assert F.plan_detection(100, 100, upsample=2) == F.DetectPlan(1, 2)
    for h, w in ((2000, 1500), (4321, 1234), (9000, 9000)):
        p = F.plan_detection(h, w)

        def cells(k):
            return -(-h // k) * -(-w // k)

        assert cells(p.reduce) <= F.DEFAULT_DETECT_BUDGET < cells(p.reduce - 1)  # the smallest factor that fits


def test_large_photo_detects_on_downscaled_copy_and_maps_back():
    small = _photo("astronaut.png")
    big = np.asarray(Image.fromarray(small).resize((2048, 2048), Image.Resampling.LANCZOS))
    plan = F.plan_detection(2048, 2048)
    assert plan.reduce == 2
    ref = F.detect_faces(small, budget=None)[0]
    got = F.detect_faces(big)[0]
    # box and landmarks come back in full-resolution pixels (4x the small image)
    assert np.abs(np.array(got.box) - 4 * np.array(ref.box)).max() < 40
    err = np.abs(got.landmarks - (4 * ref.landmarks + 1.5)).mean()
    assert err < 8, err


def test_small_face_in_large_photo_found_by_the_second_pass():
    """A ~135 px face in a 12 MP photo: too small for the 2.2 MP first pass, found by the 8.8 MP
    retry, with its box in full-resolution pixels; without the retry it is 'no face'."""
    face = _photo("celebahq_female_039913.jpg")
    n = 215
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    canvas[1200:1200 + n, 2500:2500 + n] = np.asarray(Image.fromarray(face).resize((n, n), Image.Resampling.LANCZOS))
    h, w = canvas.shape[:2]
    first, retry = F.plan_detection(h, w), F.plan_detection(h, w, budget=F.RETRY_DETECT_BUDGET)
    assert retry.scanned(h, w) > first.scanned(h, w)
    with pytest.raises(NoFaceError):
        F.detect_faces(canvas, retry_budget=None)
    faces = F.detect_faces(canvas)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 2500 <= x0 < x1 <= 2500 + n and 1200 <= y0 < y1 <= 1200 + n + 20
    assert F.detect_faces(canvas, budget=None)[0].box == pytest.approx(faces[0].box, abs=n // 8)  # the official scan agrees
    # a small photo is scanned at full resolution at once: no second pass to make
    small = F.plan_detection(512, 512)
    assert F.plan_detection(512, 512, budget=F.RETRY_DETECT_BUDGET).scanned(512, 512) == small.scanned(512, 512)


def test_landmarks_for_box_matches_detection():
    img = _photo("astronaut.png")
    f = F.detect_faces(img, budget=None)[0]
    np.testing.assert_array_equal(F.landmarks_for_box(img, f.box), f.landmarks)


def test_last_detection_is_official_rule():
    img = _photo("astronaut.png")
    raw = F.detect_faces(img, budget=None, order="dlib")
    last = F.last_detection(img)
    assert last.index == len(raw) - 1 and last.box == raw[-1].box


def test_min_score_filters():
    img = _photo("astronaut.png")
    allf = F.detect_faces(img)
    top = F.detect_faces(img, min_score=allf[0].score - 1e-9)
    assert len(top) == 1 and top[0].box == allf[0].box


def test_thread_safe_concurrent_calls():
    img = _photo("astronaut.png")
    ref = [(f.box, f.landmarks.tolist()) for f in F.detect_faces(img)]
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append([(f.box, f.landmarks.tolist()) for f in F.detect_faces(img)])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 9 and all(r == ref for r in results)


def test_bad_order_argument():
    with pytest.raises(ValueError):
        F.detect_faces(np.zeros((64, 64, 3), np.uint8), order="largest")


@pytest.mark.parametrize("budget", [0, -1, -2_200_000, 0.5, float("nan"), float("inf"), float("-inf"), "2e6"])
def test_plan_detection_rejects_budgets_that_never_fit(budget):
    """0 / negative / NaN / inf used to loop forever (or raise deep inside): a clear ValueError now."""
    import signal

    def on_alarm(*_):
        raise TimeoutError("plan_detection still running after 5 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(5)
    try:
        with pytest.raises(ValueError, match="budget"):
            F.plan_detection(400, 600, budget=budget)
        with pytest.raises(ValueError, match="budget"):
            F.detect_faces(np.zeros((40, 60, 3), np.uint8), budget=budget)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert F.plan_detection(400, 600, budget=1) == F.DetectPlan(600, 0)  # the smallest budget that fits
    assert F.plan_detection(400, 600, budget=np.int64(240_000)) == F.DetectPlan(1, 0)
