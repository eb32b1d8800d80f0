"""The pack's alignment-profile derivation (trainers/pack/derive_profile.py): the fit's algebra on
synthetic faces, and a small fit on real UTKFace chips that must re-align chips far better than FFHQ."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from studio.core.align import FFHQ, AlignmentProfile, align_face, crop_quad, get_profile
from tests.conftest import DATA
from trainers.pack import derive_profile as D

CHIPS = DATA / "utkface" / "images"


def _synthetic_chips(profile: AlignmentProfile, n: int, size: int, seed: int = 0) -> np.ndarray:
    """Landmarks of ``n`` varied faces, each moved so that ``profile``'s crop is exactly the chip frame."""
    rng = np.random.default_rng(seed)
    lm = rng.normal(0, 5, (n, 68, 2)) + 50
    for i in range(n):
        half_eye = rng.uniform(12, 20)
        lm[i, 36:42] = [-half_eye, 0] + rng.normal(0, 1.5, (6, 2))
        lm[i, 42:48] = [half_eye, 0] + rng.normal(0, 1.5, (6, 2))
        mouth_y, mouth_w = rng.uniform(25, 45), rng.uniform(10, 16)
        lm[i, 48:60] = [0, mouth_y] + rng.normal(0, 1.5, (12, 2))
        lm[i, 48] = [-mouth_w, mouth_y + rng.normal(0, 1)]
        lm[i, 54] = [mouth_w, mouth_y + rng.normal(0, 1)]
        a = np.radians(rng.uniform(-20, 20))
        lm[i] = lm[i] @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + rng.uniform(20, 80, 2)
    t = D.RecipeTerms.from_landmarks(lm)
    c, x, _ = t.crop(profile)
    C, H = D.frame_target(size)
    h = np.hypot(*x.T)
    # similarity taking each crop square onto the frame: rotate by -angle(u), scale H / h
    d = lm - c[:, None]
    rot = np.stack([(d * t.u[:, None]).sum(-1), (d * t.v[:, None]).sum(-1)], -1)
    return rot * (H / h)[:, None, None] + C


def test_recipe_terms_match_align_crop_quad():
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 200, (68, 2))
    p = AlignmentProfile(zoom=0.63, offset_x=0.02, offset_y=0.3, mouth_scale=2.1, center_shift=0.2)
    quad, qsize = crop_quad(lm, p)
    c, x, y = D.RecipeTerms.from_landmarks(lm).crop(p)
    np.testing.assert_allclose(quad, np.stack([c - x - y, c - x + y, c + x + y, c + x - y])[:, 0], atol=1e-9)
    assert qsize == pytest.approx(2 * np.hypot(*x[0]))


@pytest.mark.parametrize("fit_cs", [False, True])
def test_fit_recovers_a_known_profile(fit_cs):
    truth = replace(FFHQ, zoom=0.6, offset_x=0.03, offset_y=0.28, center_shift=0.35 if fit_cs else 0.1)
    lm = _synthetic_chips(truth, 40, 128)
    f = D.fit_profile(lm, 128, base=FFHQ, fit_center_shift=fit_cs)
    for k in ("zoom", "offset_x", "offset_y", "center_shift"):
        assert getattr(f.profile, k) == pytest.approx(getattr(truth, k), abs=1e-7), k
    assert f.corner_err.max() < 1e-6
    # and the crop really is the frame: the chip re-aligns onto itself
    t = D.RecipeTerms.from_landmarks(lm)
    np.testing.assert_allclose(D.normalized_landmarks(lm, t, f.profile), (lm + 0.5) / 128, atol=1e-7)


def test_robust_fit_ignores_outliers():
    truth = replace(FFHQ, zoom=0.6, offset_x=0.0, offset_y=0.3)
    lm = _synthetic_chips(truth, 40, 128)
    lm[:3] = lm[:3] * 0.6 + 30  # three chips with wrong landmarks (a missed face)
    f = D.fit_profile(lm, 128)
    assert f.profile.zoom == pytest.approx(0.6, abs=2e-3) and f.profile.offset_y == pytest.approx(0.3, abs=5e-3)
    assert (f.weights[:3] < 0.5).all()


def test_fit_on_utkface_chips_realigns_them(tmp_path):
    if not CHIPS.is_dir():
        pytest.skip(f"UTKFace chips not found at {CHIPS} (set STYLESTUDIO_SHARED)")
    fit_paths, val_paths = D.sample_chips(CHIPS, 20, 8, seed=1)
    ok, lm, _failed = D.detect_all(fit_paths)
    assert len(ok) >= 16, f"dlib found faces in only {len(ok)}/20 chips"
    size = D.load_rgb(ok[0]).shape[0]
    prof = replace(D.fit_profile(lm, size).profile, output_size=64, transform_size=256)
    # the 600-chip fit gives zoom ~0.63, offset_y ~0.32: the crop is much tighter and lower than FFHQ's
    assert 0.55 < prof.zoom < 0.72 and 0.2 < prof.offset_y < 0.42 and abs(prof.offset_x) < 0.08

    v_ok, v_lm, _ = D.detect_all(val_paths)
    assert len(v_ok) >= 6
    m_fit = D.realign_metrics(v_ok, v_lm, prof, size, redetect=False)
    m_ffhq = D.realign_metrics(v_ok, v_lm, FFHQ, size, redetect=False)
    err, err_ffhq = m_fit["lm_mapped_pct"]["mean"], m_ffhq["lm_mapped_pct"]["mean"]
    assert err < 4.0, m_fit
    assert err < 0.35 * err_ffhq, (m_fit, m_ffhq)
    assert m_fit["pixel_mad"]["mean"] < 0.6 * m_ffhq["pixel_mad"]["mean"]
    # the mapped error is what the image shows: check one chip's re-aligned pixels directly
    img = D.load_rgb(v_ok[0])
    out = align_face(img, v_lm[0], prof, output_size=size).image
    assert np.abs(out.astype(float) - img).mean() < np.abs(align_face(img, v_lm[0], FFHQ, output_size=size).image
                                                           .astype(float) - img).mean()


def test_committed_profile_is_loadable():
    p = D.DEFAULT_OUT
    if not p.is_file():
        pytest.skip(f"{p} not generated yet (python -m trainers.pack.derive_profile)")
    prof = get_profile(p)
    assert prof.name == "utkface-64" and prof.output_size == 64 and prof.transform_size == 256
    assert "derivation" in json.loads(p.read_text())
