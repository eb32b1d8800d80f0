"""Paste-back: round trip into real photos, exactness outside the mask, masks, colour matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.align import FFHQ, align_face, align_photo
from studio.core.errors import ImageError
from studio.core.imageio import load_image
from studio.core.paste import MASK_EPS, face_mask, paste_back
from tests.conftest import DATA

FACES = DATA / "faces"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def astronaut_1024():
    img = load_image(FACES / "astronaut.png")[0]
    return img, align_photo(img, FFHQ, 1024)[0]


@pytest.mark.parametrize("name", ["astronaut.png", "nonaligned_rotated_offset.jpg"])
@pytest.mark.parametrize("kind", ["hull", "ellipse"])
def test_round_trip_1024(name, kind, astronaut_1024):
    """Acceptance: align at 1024, paste the unedited crop back: PSNR >= 35 dB in the mask, exact outside."""
    if name == "astronaut.png":
        img, a = astronaut_1024
    else:
        img = load_image(FACES / name)[0]
        a = align_photo(img, FFHQ, 1024)[0]
    out, m = paste_back(img, a.image, a.transform, mask=kind, return_mask=True)
    assert out.shape == img.shape and out.dtype == np.uint8
    inside = m >= 0.5
    assert inside.sum() > 5000
    psnr = _psnr(out[inside], img[inside])
    assert psnr >= 35.0, psnr
    outside = m == 0
    np.testing.assert_array_equal(out[outside], img[outside])
    # the changed pixels are all within the mask's support, which is around the face only
    changed = (out != img).any(axis=2)
    assert not (changed & outside).any()
    assert outside.mean() > 0.8


def test_edit_changes_only_the_face(astronaut_1024):
    img, a = astronaut_1024
    edit = a.image.copy()
    edit[:] = (0, 255, 0)  # an extreme "edit"
    out, m = paste_back(img, edit, a.transform, feather=0.03, return_mask=True)
    full = m >= 0.999
    assert full.sum() > 3000
    assert np.abs(out[full].astype(int) - [0, 255, 0]).max() <= 1
    np.testing.assert_array_equal(out[m == 0], img[m == 0])
    # the face landmarks are inside the fully pasted region
    lm = np.round(a.transform.landmarks).astype(int)
    assert full[lm[:, 1], lm[:, 0]].mean() > 0.95
    # soft edge: intermediate mask values exist
    assert ((m > 0.05) & (m < 0.95)).sum() > 500


def test_edited_face_at_another_size(astronaut_1024):
    img, a = astronaut_1024
    small = np.asarray(Image.fromarray(a.image).resize((256, 256), Image.Resampling.LANCZOS))
    out, m = paste_back(img, small, a.transform, return_mask=True)
    assert _psnr(out[m >= 0.5], img[m >= 0.5]) > 30
    np.testing.assert_array_equal(out[m == 0], img[m == 0])


def test_face_larger_in_photo_than_aligned():
    """Upsampling path (photo face bigger than the aligned image), on a photo with the face at the border."""
    img = load_image(FACES / "celebahq_male_005735.jpg")[0]
    a = align_photo(img, FFHQ, 256)[0]
    assert a.transform.scale() > 2 and max(a.transform.pad) > 0
    out, m = paste_back(img, a.image, a.transform, return_mask=True)
    # a 256 px crop blown up ~4x loses the photo's fine detail: ~29.6 dB (a 2 px misplacement gives < 25)
    assert _psnr(out[m >= 0.5], img[m >= 0.5]) > 27
    np.testing.assert_array_equal(out[m == 0], img[m == 0])


def test_colour_match(astronaut_1024):
    img, a = astronaut_1024
    tinted = np.clip(a.image.astype(int) + (60, -20, 30), 0, 255).astype(np.uint8)
    plain, m = paste_back(img, tinted, a.transform, return_mask=True)
    matched = paste_back(img, tinted, a.transform, color_match=True)
    inside = m >= 0.5
    ref_mean = img[inside].mean(0)
    err_plain = np.abs(plain[inside].mean(0) - ref_mean).max()
    err_matched = np.abs(matched[inside].mean(0) - ref_mean).max()
    assert err_plain > 25 and err_matched < 5
    np.testing.assert_array_equal(matched[m == 0], img[m == 0])


def test_mask_properties(astronaut_1024):
    _, a = astronaut_1024
    for kind in ("hull", "ellipse"):
        m = face_mask(a.transform, 256, kind, feather=0.05)
        assert m.shape == (256, 256) and m.dtype == np.float32
        assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
        assert (m[0] == 0).all() and (m[-1] == 0).all() and (m[:, 0] == 0).all() and (m[:, -1] == 0).all()
        assert ((m > 0) & (m < MASK_EPS)).sum() == 0
        lm = np.round(a.transform.to_aligned(a.transform.landmarks, 256)).astype(int)
        assert (m[lm[:, 1], lm[:, 0]] > 0.99).mean() > 0.95
    hard = face_mask(a.transform, 256, "hull", feather=0.0)
    soft = face_mask(a.transform, 256, "hull", feather=0.08)
    assert ((hard > 0) & (hard < 1)).sum() < ((soft > 0) & (soft < 1)).sum()
    assert (soft > 0).sum() > (hard > 0).sum()
    with pytest.raises(ValueError):
        face_mask(a.transform, 64, "square")


def test_mask_without_landmarks_uses_template(astronaut_1024):
    _, a = astronaut_1024
    from dataclasses import replace

    t = replace(a.transform, landmarks=None)
    m = face_mask(t, 128)
    assert m[64, 64] == pytest.approx(1.0) and m[2, 2] == 0.0


def test_paste_errors(astronaut_1024):
    img, a = astronaut_1024
    with pytest.raises(ImageError, match="square"):
        paste_back(img, a.image[:, :500], a.transform)
    with pytest.raises(ImageError, match="same photo"):
        paste_back(img[:300], a.image, a.transform)


def test_large_photo_pasted_at_full_resolution():
    base = load_image(FACES / "astronaut.png")[0]
    big = np.asarray(Image.fromarray(base).resize((2048, 2048), Image.Resampling.BICUBIC))
    lm = align_photo(base, FFHQ, 256)[0].transform.landmarks * 4 + 1.5
    a = align_face(big, np.round(lm).astype(np.int64), FFHQ, output_size=128)
    assert a.transform.shrink > 1
    out, m = paste_back(big, a.image, a.transform, return_mask=True)
    assert out.shape == big.shape
    np.testing.assert_array_equal(out[m == 0], big[m == 0])
    assert _psnr(out[m >= 0.5], big[m >= 0.5]) > 30


def test_tight_crop_mask_fades_at_the_aligned_border():
    """A tight-crop profile (the UTKFace pack: forehead and cheeks reach the chip's border) must not
    leave a seam: the mask rises from 0 at the border no faster than the border fade allows."""
    from studio.core.align import get_profile
    from studio.core.paste import BORDER_FADE, BORDER_FADE_MIN

    img = load_image(FACES / "astronaut.png")[0]
    profile = get_profile(str(Path(__file__).resolve().parents[2] / "trainers" / "pack" / "alignment-utkface.json"))
    a = align_photo(img, profile, 64)[0]
    m = face_mask(a.transform, 64, "hull")
    assert m[m.shape[0] // 2, m.shape[1] // 2] == pytest.approx(1.0)
    assert m[3].max() > 0.05, "the face reaches the top border in this frame (the case under test)"
    k = np.arange(64, dtype=np.float64)
    limit = np.maximum(np.minimum(k, k[::-1]) - 1, 0) / (BORDER_FADE_MIN * 64) + 1e-6
    assert (m <= limit[:, None]).all() and (m <= limit[None, :]).all()
    # the forehead side, far from the landmarks (brows ~11 px down), gets a wide fade
    top = np.maximum(k[:8] - 1, 0) / (0.8 * BORDER_FADE * 64) + 1e-6
    assert (m[:8] <= top[:, None]).all()


def test_change_only_paste_keeps_the_photo_where_nothing_changed(astronaut_1024):
    """With the unedited reconstruction as base: no edit gives the photo back bit for bit (however far
    the reconstruction is from the photo), and an edit adds exactly its change, warped, inside the mask."""
    img, a = astronaut_1024
    small = np.asarray(Image.fromarray(a.image).resize((64, 64), Image.Resampling.LANCZOS))  # a blurry "inversion"
    assert np.array_equal(paste_back(img, small, a.transform, base_aligned=small), img)
    brighter = np.clip(small.astype(int) + 20, 0, 255).astype(np.uint8)
    brighter[small > 235] = small[small > 235]  # no clipping: the change is +20 wherever it is
    out, m = paste_back(img, brighter, a.transform, base_aligned=small, return_mask=True)
    np.testing.assert_array_equal(out[m == 0], img[m == 0])
    full = (m >= 0.999) & (img.max(2) < 230)
    d = out[full].astype(int) - img[full].astype(int)
    assert np.median(d) == 20 and np.abs(d - 20).mean() < 1.5
    # the photo's own detail stays: the result is far closer to the photo than a replaced blurry face
    replaced, _ = paste_back(img, brighter, a.transform, return_mask=True)
    from PIL import ImageFilter

    def hp(x):  # the fine detail: the image minus its blur
        return x.astype(float) - np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(3)), float)

    inside = m >= 0.5
    assert np.abs(hp(out) - hp(img))[inside].mean() < 0.2 * np.abs(hp(replaced) - hp(img))[inside].mean()
    with pytest.raises(ImageError, match="same size"):
        paste_back(img, small, a.transform, base_aligned=a.image)
