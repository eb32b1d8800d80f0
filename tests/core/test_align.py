"""FFHQ alignment: golden fixtures of the official pSp ``align_face``, the transform, profiles.

Fixture tolerance (``fixtures/README.md`` "Tolerances"): landmarks, detections and the crop quad
must be **exactly** equal; aligned images may differ by at most :data:`ALIGN_TOL` = 1 grey level
(max abs diff) since we make the same PIL calls. Measured on the shared set: max abs diff 0 (identical) for
``aligned_256``, ``aligned_1024_t1024`` and ``aligned_1024_t4096`` in both folders.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.core.align import (FFHQ, FFHQ_1024, AlignmentProfile, AlignmentProfileError, AlignTransform,
                               align_face, align_face_official, align_photo, crop_quad, gaussian_filter_hw,
                               get_profile)
from studio.core.errors import NoFaceError
from studio.core.faces import detect_faces
from studio.core.imageio import load_image
from tests.conftest import DATA, FIXTURES

ALIGN_TOL = 1  # grey levels, max abs diff per pixel and channel
VARIANTS = {"aligned_256.png": (256, 256), "aligned_1024_t1024.png": (1024, 1024), "aligned_1024_t4096.png": (1024, 4096)}

_ALIGN_ROOT = FIXTURES / "ffhq_align"
_CASES = sorted(p.name for p in _ALIGN_ROOT.iterdir() if (p / "input.png").is_file()) if _ALIGN_ROOT.is_dir() else []


def _case(name: str):
    d = _ALIGN_ROOT / name
    img, _ = load_image(d / "input.png")
    return d, img, np.load(d / "landmarks.npz")


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def _no_cases():
    pytest.skip(f"no ffhq_align fixtures under {FIXTURES} (set STYLESTUDIO_FIXTURES)")


# ---------------------------------------------------------------------------------------------
# Golden fixtures (official output, "last detection" rule = compatibility mode)


@pytest.mark.fixtures
@pytest.mark.parametrize("name", _CASES or ["<none>"])
def test_fixture_input_detections_and_landmarks_exact(name):
    if not _CASES:
        _no_cases()
    d, img, ref = _case(name)
    # load_image gives what dlib.load_rgb_image gives (the file's RGB pixels)
    raw = np.asarray(Image.open(d / "input.png").convert("RGB"))
    np.testing.assert_array_equal(img, raw)
    assert tuple(ref["input_shape"]) == img.shape
    faces = detect_faces(img, upsample=1, budget=None, order="dlib")
    np.testing.assert_array_equal(np.array([f.box for f in faces]), ref["detections"])
    meta = json.loads((d / "meta.json").read_text())
    np.testing.assert_array_equal(np.array([f.box for f in faces]), np.array(meta["detections_ltrb"]))
    # the default budget must not change anything for images of this size
    faces_default = detect_faces(img, order="dlib")
    assert [f.box for f in faces_default] == [f.box for f in faces]
    np.testing.assert_array_equal(faces[-1].landmarks, ref["landmarks_68"])
    quad, qsize = crop_quad(ref["landmarks_68"])
    np.testing.assert_array_equal(quad, ref["quad"])
    assert qsize == float(ref["qsize"])


@pytest.mark.fixtures
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", _CASES or ["<none>"])
def test_fixture_official_alignment(name, variant):
    if not _CASES:
        _no_cases()
    d, img, ref = _case(name)
    out_size, t_size = VARIANTS[variant]
    got = align_face_official(img, out_size, t_size)
    want = np.asarray(Image.open(d / variant).convert("RGB"))
    assert got.image.shape == want.shape == (out_size, out_size, 3)
    diff = np.abs(got.image.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= ALIGN_TOL, f"{name}/{variant}: max {diff.max()}, mean {diff.mean():.4f}"
    # the same result from the landmark-level API
    again = align_face(img, ref["landmarks_68"], FFHQ, output_size=out_size, transform_size=t_size)
    np.testing.assert_array_equal(again.image, got.image)
    np.testing.assert_array_equal(got.transform.quad, ref["quad"])


@pytest.mark.fixtures
@pytest.mark.parametrize("name", _CASES or ["<none>"])
def test_fixture_default_mode_picks_best_face(name):
    """Default = most confident face; compatibility = last detection. Both tested on every case."""
    if not _CASES:
        _no_cases()
    d, img, ref = _case(name)
    raw = detect_faces(img, upsample=1, budget=None, order="dlib")
    best = max(raw, key=lambda f: f.score)
    default = align_photo(img, FFHQ, 256)[0]
    np.testing.assert_array_equal(default.transform.landmarks, best.landmarks)
    official = np.asarray(Image.open(d / "aligned_256.png").convert("RGB"))
    if best.index == len(raw) - 1:
        # one detection (or the best is also the last): both modes agree with the official output
        assert np.abs(default.image.astype(int) - official.astype(int)).max() <= ALIGN_TOL
        return
    # several detections and the official code aligns another one (e.g. the mission patch)
    last = raw[-1]
    assert best.score >= last.score and not np.array_equal(default.transform.landmarks, last.landmarks)
    if _iou(best.box, last.box) < 0.3:  # a different region of the photo: a different picture
        assert np.abs(default.image.astype(int) - official.astype(int)).mean() > 10
    # when a single-face sibling fixture is a top crop of this input with the same landmarks and
    # the crop window inside it, the default output must equal the sibling's official output
    for other in _CASES:
        if other == name:
            continue
        od, oimg, oref = _case(other)
        if (oref["detections"].shape[0] == 1 and oimg.shape[1] == img.shape[1] and oimg.shape[0] < img.shape[0]
                and np.array_equal(oimg, img[: oimg.shape[0]])
                and np.array_equal(oref["landmarks_68"], best.landmarks)
                and default.transform.shrink == 1 and default.transform.pad == (0, 0, 0, 0)
                and default.transform.crop is not None and default.transform.crop[3] < oimg.shape[0]):
            sib = np.asarray(Image.open(od / "aligned_256.png").convert("RGB"))
            assert np.abs(default.image.astype(int) - sib.astype(int)).max() <= ALIGN_TOL


# ---------------------------------------------------------------------------------------------
# The scipy-equivalent Gaussian (the padding step's blur)


def test_gaussian_matches_closed_form_on_a_delta():
    for sigma in (1.3, 4.0, 9.5):  # direct (r <= 12) and FFT paths
        n = 101
        a = np.zeros((n, n, 1), np.float32)
        a[50, 50, 0] = 1000.0
        out = gaussian_filter_hw(a, sigma)[:, :, 0].astype(np.float64)
        r = int(4.0 * sigma + 0.5)
        x = np.arange(-r, r + 1)
        k = np.exp(-0.5 * x ** 2 / sigma ** 2)
        k /= k.sum()
        want = np.zeros((n, n))
        want[50 - r:51 + r, 50 - r:51 + r] = 1000.0 * np.outer(k, k)
        np.testing.assert_allclose(out, want, atol=2e-4)


def test_gaussian_reflect_mode_and_paths_agree():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 33, 3)).astype(np.float32)
    # a constant image stays constant (normalised kernel, symmetric extension)
    c = np.full((30, 20, 3), 77.0, np.float32)
    np.testing.assert_allclose(gaussian_filter_hw(c, 25.0), c, atol=1e-3)
    # 'reflect' = half-sample symmetric: filtering the mirrored-padded image equals filtering inside
    big = np.pad(a, ((40, 40), (33, 33), (0, 0)), mode="symmetric")
    inner = gaussian_filter_hw(big, 3.0)[40:80, 33:66]
    np.testing.assert_allclose(gaussian_filter_hw(a, 3.0), inner, atol=1e-3)
    # kernels just below / above the direct-sum limit give the same numbers
    from studio.core import align as A

    w, r = A._gaussian_kernel(2.5)
    assert r <= 12
    direct = A._filter_last(a, w, r)
    fft_w = np.zeros(2 * 13 + 1)
    fft_w[13 - r:13 + r + 1] = w
    via_fft = A._filter_last(a, fft_w, 13)
    np.testing.assert_allclose(direct, via_fft, atol=1e-4)


def test_gaussian_equals_scipy_when_available():
    nd = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    for shape, sigma in (((64, 48, 3), 2.6), ((50, 40, 3), 13.3), ((300, 260, 3), 7.1)):
        a = np.float32(rng.integers(0, 256, shape))
        np.testing.assert_array_equal(gaussian_filter_hw(a, sigma), nd.gaussian_filter(a, [sigma, sigma, 0]))


# ---------------------------------------------------------------------------------------------
# The transform: maps aligned pixels to photo pixels through shrink / crop / pad


def _fake_landmarks(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    """68 landmarks whose eyes/mouth corners are at the given points (the rest are unused by the crop)."""
    lm = np.zeros((68, 2), np.int64)
    lm[:] = np.round((np.array(eye_l) + np.array(mouth_r)) / 2)
    lm[36:42] = eye_l
    lm[42:48] = eye_r
    lm[48] = mouth_l
    lm[54] = mouth_r
    return lm


def _gradient_photo(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([x / (w - 1) * 255, y / (h - 1) * 255, np.full_like(x, 128)], axis=2).round().astype(np.uint8)


@pytest.mark.parametrize("case", ["plain", "shrink", "pad", "rotated"])
def test_transform_maps_pixels(case):
    """Aligned pixel (u, v) shows the photo at to_photo(u, v): checked on a linear-gradient photo."""
    W, H = {"plain": (400, 360), "shrink": (2400, 2000), "pad": (300, 260), "rotated": (500, 420)}[case]
    photo = _gradient_photo(W, H)
    if case == "plain":
        lm = _fake_landmarks((170, 160), (230, 160), (178, 230), (222, 230))
    elif case == "shrink":
        lm = _fake_landmarks((900, 800), (1400, 800), (960, 1380), (1340, 1380))
    elif case == "pad":
        lm = _fake_landmarks((60, 50), (120, 50), (68, 120), (112, 120))
    else:
        lm = _fake_landmarks((200, 200), (258, 170), (240, 270), (278, 250))
    size = 128
    a = align_face(photo, lm, FFHQ, output_size=size)
    t = a.transform
    if case == "shrink":
        assert t.shrink > 1
    if case == "pad":
        assert max(t.pad) > 0
    uv = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).reshape(-1, 2)
    xy = t.to_photo(uv)
    m = 3 + 3 * t.shrink  # LANCZOS shrink bends a gradient within its kernel radius of the border
    inside = (xy[:, 0] > m) & (xy[:, 0] < W - 1 - m) & (xy[:, 1] > m) & (xy[:, 1] < H - 1 - m)
    assert inside.sum() > 0.2 * len(uv)
    want_r = xy[inside, 0] / (W - 1) * 255
    want_g = xy[inside, 1] / (H - 1) * 255
    got = a.image.reshape(-1, 3)[inside].astype(np.float64)
    assert np.abs(got[:, 0] - want_r).max() < 2.5
    assert np.abs(got[:, 1] - want_g).max() < 2.5
    # the crop square's corners land on the aligned image's corners; round trip is the identity
    corners = t.to_aligned(t.quad, size)
    want = np.array([[0, 0], [0, size], [size, size], [size, 0]]) - 0.5
    assert np.abs(corners - want).max() < (1.0 if case == "shrink" else 1e-6)
    np.testing.assert_allclose(t.to_aligned(t.to_photo(uv[:50])), uv[:50], atol=1e-9)


def test_canonical_eye_and_mouth_positions():
    """FFHQ geometry: the same face moved, rotated and scaled lands at the same aligned positions."""
    base = np.array([[-30.0, 0], [30, 0], [-22, 70], [22, 70]])  # eye L, eye R, mouth L, mouth R
    pos = []
    for angle, scale, (tx, ty) in ((0, 1.0, (200, 160)), (25, 1.3, (380, 300)), (-40, 2.2, (400, 250))):
        c, s_ = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        pts = base @ (scale * np.array([[c, s_], [-s_, c]])) + (tx, ty)
        lm = _fake_landmarks(*np.round(pts).astype(int))
        a = align_face(_gradient_photo(800, 700), lm, FFHQ, output_size=256)
        pos.append(a.transform.to_aligned(np.array([lm[36], lm[42], (lm[48] + lm[54]) / 2]), 256))
    for p in pos[1:]:
        np.testing.assert_allclose(p, pos[0], atol=1.5)
    # crop centre (128, 128) = eye centre + 0.1 * eye-to-mouth; eyes level, mouth centred below
    eye_c, mouth = pos[0][:2].mean(0), pos[0][2]
    np.testing.assert_allclose(eye_c + 0.1 * (mouth - eye_c), [127.5, 127.5], atol=1.0)
    assert abs(pos[0][0, 1] - pos[0][1, 1]) < 1.0 and abs(mouth[0] - 127.5) < 1.0


def test_transform_json_roundtrip():
    lm = _fake_landmarks((60, 50), (120, 50), (68, 120), (112, 120))
    a = align_face(_gradient_photo(300, 260), lm, FFHQ, output_size=64)
    d = json.loads(json.dumps(a.transform.to_dict()))
    t2 = AlignTransform.from_dict(d)
    np.testing.assert_array_equal(t2.aligned_to_photo_matrix(), a.transform.aligned_to_photo_matrix())
    np.testing.assert_array_equal(t2.landmarks, a.transform.landmarks)
    assert t2.pad == a.transform.pad and t2.profile == FFHQ.to_dict()
    with pytest.raises(AlignmentProfileError, match="malformed"):
        AlignTransform.from_dict({"quad": [[0, 0]]})
    with pytest.raises(AlignmentProfileError, match="newer"):
        AlignTransform.from_dict(dict(d, version=99))


# ---------------------------------------------------------------------------------------------
# Sizes and profiles


@pytest.mark.parametrize("size,tsize", [(64, None), (100, None), (300, None), (128, 512)])
def test_any_output_size(size, tsize):
    img = load_image(DATA / "faces" / "astronaut.png")[0]
    face = detect_faces(img)[0]
    a = align_face(img, face.landmarks, FFHQ, output_size=size, transform_size=tsize)
    assert a.image.shape == (size, size, 3) and a.image.dtype == np.uint8
    assert a.transform.output_size == size and a.transform.transform_size == (tsize or size)
    ref = align_face(img, face.landmarks, FFHQ, output_size=256).image
    small = np.asarray(Image.fromarray(ref).resize((size, size), Image.Resampling.LANCZOS))
    assert np.abs(small.astype(int) - a.image.astype(int)).mean() < 8


def test_profile_geometry():
    lm = _fake_landmarks((170, 160), (230, 160), (178, 230), (222, 230))
    q0, s0 = crop_quad(lm, FFHQ)
    q1, s1 = crop_quad(lm, AlignmentProfile(zoom=1.5))
    assert s1 == pytest.approx(1.5 * s0)
    np.testing.assert_allclose(q1.mean(0), q0.mean(0))
    q2, s2 = crop_quad(lm, AlignmentProfile(offset_x=0.2, offset_y=-0.1))
    assert s2 == pytest.approx(s0)
    np.testing.assert_allclose(q2.mean(0) - q0.mean(0), [0.2 * s0 / 2, -0.1 * s0 / 2], atol=1e-9)
    # half-size = max(|e2e| * eye_scale, |e2m| * mouth_scale): here |e2e| = 60, |e2m| = 70
    assert s0 == pytest.approx(2 * max(60 * 2.0, 70 * 1.8))
    _, s3 = crop_quad(lm, AlignmentProfile(eye_scale=3.0))
    assert s3 == pytest.approx(2 * 60 * 3.0)


def test_profile_serialisation_and_lookup(tmp_path):
    p = AlignmentProfile(name="pack", output_size=128, zoom=1.2, offset_y=0.05)
    assert AlignmentProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert get_profile("ffhq") is FFHQ and get_profile("FFHQ-1024") is FFHQ_1024 and get_profile(None) is FFHQ
    assert get_profile({"name": "x", "output_size": 64}).output_size == 64
    f = tmp_path / "profile.json"
    f.write_text(json.dumps(p.to_dict()))
    assert get_profile(str(f)) == p
    man = tmp_path / "manifest.json"
    man.write_text(json.dumps({"alignment_profile": {"name": "m", "output_size": 128}, "licence": "x"}))
    assert get_profile(man).name == "m"
    man.write_text(json.dumps({"alignment_profile": "ffhq"}))
    assert get_profile(man) is FFHQ
    with pytest.raises(AlignmentProfileError, match="unknown alignment profile key"):
        AlignmentProfile.from_dict({"scale": 2})
    with pytest.raises(AlignmentProfileError, match="output_size"):
        AlignmentProfile.from_dict({"output_size": "big"})
    with pytest.raises(AlignmentProfileError, match="zoom"):
        AlignmentProfile(zoom=0)
    with pytest.raises(AlignmentProfileError, match="unknown alignment profile"):
        get_profile("celeba-weird")
    with pytest.raises(AlignmentProfileError, match="not found"):
        get_profile(tmp_path / "missing.json")


def test_ffhq_1024_profile_keeps_supersampling_ratio():
    lm = _fake_landmarks((170, 160), (230, 160), (178, 230), (222, 230))
    a = align_face(_gradient_photo(400, 360), lm, FFHQ_1024, output_size=64)
    assert a.transform.transform_size == 256
    b = align_face(_gradient_photo(400, 360), lm, FFHQ_1024)
    assert b.image.shape == (1024, 1024, 3) and b.transform.transform_size == 4096


@pytest.mark.parametrize("bad, match", [
    ({"output_size": 60000, "transform_size": 60000}, "output_size must be 8 to 8192"),
    ({"output_size": 64, "transform_size": 200000}, "transform_size must be at most 16384"),
    ({"zoom": 1e12}, "zoom must be a number in"),
    ({"eye_scale": 1e9}, "eye_scale"),
])
def test_absurd_profiles_are_refused(bad, match):
    """A pack or --profile cannot make the aligner allocate gigabytes (a 60000-px transform is ~10 GB)."""
    with pytest.raises(AlignmentProfileError, match=match):
        AlignmentProfile.from_dict(bad)
    lm = _fake_landmarks((170, 160), (230, 160), (178, 230), (222, 230))
    with pytest.raises(ValueError, match="at most"):
        align_face(_gradient_photo(400, 360), lm, FFHQ, output_size=64, transform_size=100000)


def test_a_crop_many_times_the_photo_still_aligns():
    """A large (allowed) zoom on a small photo shrinks it below 1 px in the official recipe: the
    result is a padded, blurry crop, not PIL's 'height and width must be > 0'."""
    lm = _fake_landmarks((17, 16), (23, 16), (18, 23), (22, 23))
    a = align_face(_gradient_photo(40, 36), lm, AlignmentProfile(name="far", output_size=16, zoom=100))
    assert a.image.shape == (16, 16, 3)


def test_degenerate_landmarks_and_no_face():
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(NoFaceError, match="degenerate"):
        align_face(img, np.full((68, 2), 10))
    with pytest.raises(NoFaceError, match="68"):
        align_face(img, np.zeros((5, 2)))
    coffee = load_image(DATA / "faces" / "noface_coffee.png")[0]
    with pytest.raises(NoFaceError):
        align_photo(coffee)
    with pytest.raises(NoFaceError):
        align_face_official(coffee)


def test_align_photo_all_faces_best_first():
    img = load_image(DATA / "faces" / "two_faces_celebahq.jpg")[0]
    out = align_photo(img, FFHQ, 128, all_faces=True)
    assert len(out) == 2
    assert all(a.image.shape == (128, 128, 3) for a in out)
    xs = [a.transform.quad[:, 0].mean() for a in out]
    assert min(xs) < 1024 < max(xs)


def test_region_resize_within_one_grey_level():
    """Large photos shrink only the face region: at most 1 grey level from the official full resize."""
    rng = np.random.default_rng(3)
    photo = np.clip(_gradient_photo(2400, 2000).astype(int) + rng.integers(-40, 40, (2000, 2400, 3)), 0, 255)
    photo = photo.astype(np.uint8)
    lm = _fake_landmarks((1000, 800), (1200, 800), (1030, 1030), (1170, 1030))
    exact = align_face(photo, lm, FFHQ, output_size=128, exact=True)
    fast = align_face(photo, lm, FFHQ, output_size=128, exact=False)
    assert exact.transform.shrink > 1 and exact.transform.crop is not None
    d = np.abs(exact.image.astype(int) - fast.image.astype(int))
    assert d.max() <= 1 and d.mean() < 0.01
    np.testing.assert_array_equal(exact.transform.aligned_to_photo_matrix(), fast.transform.aligned_to_photo_matrix())
