"""Derive the pack's alignment profile from the UTKFace chips it was trained on.

The pack's generator learns the framing of its training images: UTKFace "aligned & cropped" chips
(``../shared/data/utkface/images``; 200 px originals, 128 px in our copy), made by UTKFace's own
aligner, tight from forehead to chin. A user photo must be aligned (:mod:`studio.core.align`, the
FFHQ recipe with an :class:`~studio.core.align.AlignmentProfile`) so that the face lands where it
lands in a chip. The chips are already aligned, so the profile can be *measured* on them:

1. dlib 68 landmarks on a deterministic sample of chips (upscaled 2x for detection and sub-pixel
   landmarks; chips where no face is found are counted and skipped);
2. per chip, the FFHQ-recipe quantities (eye centre, eye-to-eye ``e2e``, eye-to-mouth ``e2m``, the
   crop's unit axis ``u`` and base half-size ``h0 = max(|e2e| eye_scale, |e2m| mouth_scale)``) in
   chip pixels, and a fit of ``zoom``/``offset_x``/``offset_y`` (optionally ``center_shift`` and the
   eye/mouth scale ratio) so that the profile's crop square is the chip frame (centre
   ``((S-1)/2, (S-1)/2)`` in pixel-centre coordinates, half-size ``S/2``, axis-aligned). With
   ``x = zoom h0 u`` and ``c = eye_avg + center_shift e2m + zoom h0 (offset_x u + offset_y v)``
   the squared corner error, averaged over the 4 corners, is ``|c - C|^2 + 2 |x - (S/2, 0)|^2``:
   linear in ``(zoom, zoom offset_x, zoom offset_y[, center_shift])``, so it is solved by
   (Huber-reweighted) linear least squares. The crop's rotation follows each face's eye/mouth line
   and has no profile parameter; its residual (the chips' own tilt) is reported;
3. validation on *other* chips: each chip re-aligned by the profile at the chip's size, compared
   with the chip (mean absolute pixel difference; landmark error = mean distance of the 68 chip
   landmarks mapped into the re-aligned image, and of landmarks re-detected there, in % of the
   width), for FFHQ and the derived profile. The sample photos (``../shared/data/faces``) are checked
   too: where their landmarks land, compared with the chips' mean landmark template;
4. the profile (output 64 px, the pack's resolution; QUAD transform at 256 px) is written as
   ``{"alignment_profile": {...}, "derivation": {...}}``, the pack manifest's key, so
   ``studio.core.align.get_profile(path)`` reads it directly; ``derivation`` holds the statistics.

    python -m trainers.pack.derive_profile [--n 600] [--out trainers/pack/alignment-utkface.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from studio.core.align import FFHQ, AlignmentProfile, align_face
from studio.core.fileio import atomic_write_text
from studio.core.imageio import save_image

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("STYLESTUDIO_SHARED", REPO.parent / "shared"))
DEFAULT_DATA = SHARED / "data" / "utkface" / "images"
DEFAULT_PHOTOS = SHARED / "data" / "faces"
DEFAULT_OUT = REPO / "trainers" / "pack" / "alignment-utkface.json"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}

#: Scale of the chips for detection/landmarks (dlib landmarks are integers: 2x gives 0.5-px steps).
DETECT_UPSCALE = 2
#: Huber threshold of the robust fit, in robust standard deviations of the per-chip corner error.
HUBER_K = 2.5
#: A recipe change (centre shift, eye/mouth scale ratio) is adopted only when it lowers the
#: validation corner error by at least this fraction and this many % of the width.
ADOPT_REL, ADOPT_ABS = 0.10, 0.25


#---------------------------------------------------------------------------------------------------
# Data


def list_chips(root: Path) -> list[Path]:
    """All images under ``root`` (one level), sorted by name."""
    return sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def sample_chips(root: Path, n: int, n_val: int = 0, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Two disjoint deterministic samples (fit, validation) of the chips under ``root``."""
    files = list_chips(root)
    if n + n_val > len(files):
        raise ValueError(f"asked for {n} + {n_val} chips, {root} has {len(files)}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order[:n]], [files[i] for i in order[n:n + n_val]]


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def chip_landmarks(arr: np.ndarray, upscale: int = DETECT_UPSCALE) -> np.ndarray | None:
    """68 dlib landmarks ``(68, 2) float`` of the best face in a small aligned image, in its pixels
    (centre convention), or ``None`` when no face is found.

    The image is upscaled (LANCZOS) ``upscale`` times: dlib's HOG detector wants faces over ~80 px
    and its landmarks are integers. Detection tries upsample 0, then 1.
    """
    from PIL import Image

    from studio.core.faces import detect_faces

    h, w = arr.shape[:2]
    big = np.asarray(Image.fromarray(arr).resize((w * upscale, h * upscale), Image.Resampling.LANCZOS)) \
        if upscale > 1 else arr
    for up in (0, 1):
        faces = detect_faces(big, upsample=up, budget=None, order="best", raise_if_none=False)
        if faces:
            return (faces[0].landmarks.astype(np.float64) + 0.5) / upscale - 0.5
    return None


def detect_all(paths: list[Path], *, progress: bool = False) -> tuple[list[Path], np.ndarray, list[Path]]:
    """Landmarks of every chip: (paths with a face, ``(N, 68, 2)`` landmarks, paths without)."""
    ok, lms, failed = [], [], []
    t0 = time.time()
    for i, p in enumerate(paths):
        lm = chip_landmarks(load_rgb(p))
        if lm is None:
            failed.append(p)
        else:
            ok.append(p)
            lms.append(lm)
        if progress and (i + 1) % 100 == 0:
            print(f"  landmarks {i + 1}/{len(paths)} ({time.time() - t0:.0f} s, {len(failed)} without a face)",
                  file=sys.stderr, flush=True)
    return ok, np.asarray(lms, dtype=np.float64).reshape(-1, 68, 2), failed


#---------------------------------------------------------------------------------------------------
# The FFHQ recipe, vectorised over faces (the same algebra as studio.core.align._crop_quad)


@dataclass
class RecipeTerms:
    """Per-face FFHQ-recipe quantities, ``(N, 2)`` vectors / ``(N,)`` scalars, in image pixels."""

    eye_avg: np.ndarray
    e2e: np.ndarray
    e2m: np.ndarray
    u: np.ndarray  # unit x axis of the crop (right in the aligned image)
    v: np.ndarray  # unit y axis (down)

    @classmethod
    def from_landmarks(cls, lm: np.ndarray) -> RecipeTerms:
        lm = np.asarray(lm, dtype=np.float64).reshape(-1, 68, 2)
        eye_l, eye_r = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
        eye_avg = (eye_l + eye_r) * 0.5
        e2e = eye_r - eye_l
        e2m = (lm[:, 48] + lm[:, 54]) * 0.5 - eye_avg
        x = e2e - e2m[:, ::-1] * [-1.0, 1.0]
        u = x / np.hypot(x[:, 0], x[:, 1])[:, None]
        v = u[:, ::-1] * [-1.0, 1.0]
        return cls(eye_avg, e2e, e2m, u, v)

    def h0(self, eye_scale: float = 2.0, mouth_scale: float = 1.8) -> np.ndarray:
        """Half-size of the crop before ``zoom`` (pixels)."""
        return np.maximum(np.hypot(*self.e2e.T) * eye_scale, np.hypot(*self.e2m.T) * mouth_scale)

    @property
    def angle_deg(self) -> np.ndarray:
        """Rotation of the crop (degrees, positive = clockwise on screen): the face's tilt."""
        return np.degrees(np.arctan2(self.u[:, 1], self.u[:, 0]))

    def crop(self, p: AlignmentProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre ``(N, 2)``, half-size vector ``x`` ``(N, 2)`` and ``y`` of the profile's crop squares."""
        h = self.h0(p.eye_scale, p.mouth_scale) * p.zoom
        x = self.u * h[:, None]
        y = self.v * h[:, None]
        c = self.eye_avg + self.e2m * p.center_shift + x * p.offset_x + y * p.offset_y
        return c, x, y


def frame_target(size: int) -> tuple[np.ndarray, float]:
    """Centre (pixel-centre coords) and half-size of a ``size`` px image as a crop square."""
    return np.full(2, (size - 1) / 2.0), size / 2.0


def corner_error(terms: RecipeTerms, p: AlignmentProfile, size: int) -> np.ndarray:
    """Per face: RMS distance of the crop's 4 corners from the ``size`` px frame's, in % of ``size``."""
    c, x, _ = terms.crop(p)
    C, H = frame_target(size)
    e2 = np.sum((c - C) ** 2, 1) + 2 * np.sum((x - [H, 0.0]) ** 2, 1)
    return np.sqrt(e2) / size * 100


def normalized_landmarks(lm: np.ndarray, terms: RecipeTerms, p: AlignmentProfile) -> np.ndarray:
    """Landmarks in the profile's aligned frame, as fractions of the width (0..1, centre 0.5)."""
    c, x, _y = terms.crop(p)
    h = np.hypot(*x.T)
    d = np.asarray(lm, np.float64).reshape(-1, 68, 2) - c[:, None]
    # aligned edge coordinate / width: 0.5 + (d . u) / (2h)
    return np.stack([(d * terms.u[:, None]).sum(-1), (d * terms.v[:, None]).sum(-1)], -1) / (2 * h[:, None, None]) + 0.5


#---------------------------------------------------------------------------------------------------
# The fit


@dataclass
class Fit:
    profile: AlignmentProfile
    corner_err: np.ndarray  # per face, % of width
    weights: np.ndarray     # final robust weights (1 = not down-weighted)

    def summary(self) -> dict:
        e = self.corner_err
        return {"corner_rms_pct": {"mean": _r(e.mean()), "median": _r(np.median(e)), "p90": _r(np.percentile(e, 90)),
                                   "max": _r(e.max())},
                "downweighted": int((self.weights < 1).sum())}


def fit_profile(lm: np.ndarray, size: int, *, base: AlignmentProfile = FFHQ, fit_center_shift: bool = False,
                robust: bool = True, iters: int = 20) -> Fit:
    """Fit ``zoom``, ``offset_x``, ``offset_y`` (and ``center_shift`` when asked) of ``base`` so that its
    crop square is the frame of the ``size`` px chips with landmarks ``lm`` ``(N, 68, 2)``.

    ``base``'s ``eye_scale``/``mouth_scale`` (and ``center_shift`` unless fitted) are kept. Weighted
    linear least squares on the corner error (see the module docstring) with Huber weights.
    """
    t = RecipeTerms.from_landmarks(lm)
    n = len(t.u)
    if n < 3:
        raise ValueError(f"need landmarks of at least 3 chips to fit a profile, got {n}")
    C, H = frame_target(size)
    h0 = t.h0(base.eye_scale, base.mouth_scale)
    hu, hv = t.u * h0[:, None], t.v * h0[:, None]
    w = np.ones(n)
    for _ in range(iters if robust else 1):
        # scale: min sum w |a h0 u - (H, 0)|^2
        a = float(np.sum(w * hu[:, 0] * H) / np.sum(w * h0 ** 2))
        # centre: min sum w |eye_avg + cs e2m + b h0 u + d h0 v - C|^2
        cols = [hu, hv] + ([t.e2m] if fit_center_shift else [])
        A = np.stack([c.reshape(-1) for c in cols], 1)  # rows: x0, y0, x1, y1, ...
        rhs = (C - t.eye_avg - (0.0 if fit_center_shift else base.center_shift * t.e2m)).reshape(-1)
        sw = np.sqrt(np.repeat(w, 2))
        sol = np.linalg.lstsq(A * sw[:, None], rhs * sw, rcond=None)[0]
        p = replace(base, zoom=a, offset_x=float(sol[0] / a), offset_y=float(sol[1] / a),
                    center_shift=float(sol[2]) if fit_center_shift else base.center_shift)
        err = corner_error(t, p, size)
        if not robust:
            break
        s = 1.4826 * np.median(np.abs(err - np.median(err))) + 1e-9
        k = np.median(err) + HUBER_K * s
        w_new = np.minimum(1.0, k / np.maximum(err, 1e-12))
        if np.allclose(w_new, w, atol=1e-6):
            break
        w = w_new
    return Fit(p, err, w)


def scan_mouth_scale(lm_fit: np.ndarray, lm_val: np.ndarray, size: int, *, base: AlignmentProfile = FFHQ) -> list[dict]:
    """Fit and validation corner error for several eye/mouth scale ratios (``eye_scale`` kept, ``mouth_scale``
    varied; only the ratio matters once ``zoom`` is fitted). 0.01 ~ eyes only, 100 ~ mouth only."""
    t_val = RecipeTerms.from_landmarks(lm_val)
    rows = []
    for ms in (0.01, 1.4, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.5, 3.0, 100.0):
        f = fit_profile(lm_fit, size, base=replace(base, mouth_scale=ms))
        rows.append({"mouth_scale": ms, "zoom": _r(f.profile.zoom, 4), "fit_corner_rms_pct": _r(f.corner_err.mean()),
                     "val_corner_rms_pct": _r(corner_error(t_val, f.profile, size).mean())})
    return rows


#---------------------------------------------------------------------------------------------------
# Validation


def frame_align(img: np.ndarray, landmarks: np.ndarray, size: int, transform_size: int | None = None):
    """The chip "aligned" by the crop that is exactly its own frame, through the same resampling
    steps as :func:`~studio.core.align.align_face`: the floor of every metric (resampling loss,
    detector noise)."""
    from PIL import Image

    from studio.core.align import AlignedFace, AlignTransform, _ffhq_resample

    S = img.shape[0]
    quad = np.array([[0, 0], [0, S], [S, S], [S, 0]], np.float64) - 0.5
    t_size = int(transform_size or size)
    tf = AlignTransform(input_size=(img.shape[1], S), quad=quad.copy(), qsize=float(S), output_size=size,
                        transform_size=t_size, landmarks=np.asarray(landmarks, np.float64).copy())
    out = _ffhq_resample(Image.fromarray(img, "RGB"), quad, np.float64(S), size, t_size, True, tf)
    return AlignedFace(image=np.asarray(out, dtype=np.uint8), transform=tf)


def realign_metrics(paths: list[Path], lm: np.ndarray, profile: AlignmentProfile | None, size: int, *,
                    redetect: bool = True) -> dict:
    """Re-align each chip with ``profile`` at ``size`` px and compare with the chip itself.

    ``profile=None``: the chip's own frame as the crop (:func:`frame_align`), the floor.

    ``pixel_mad``: mean |re-aligned - chip| (0..255, all pixels and channels); ``lm_mapped_pct``:
    mean distance (% of width) between the chip's landmarks and the same landmarks mapped through
    the alignment transform; ``lm_redetect_pct``: the same with landmarks re-detected in the
    re-aligned image (includes detector noise); ``corner_pct``: the crop's corner error.
    """
    mad, mapped, redet, n_redet_fail = [], [], [], 0
    for p, l in zip(paths, lm):
        img = load_rgb(p)
        if profile is None:
            af = frame_align(img, l, size, size * 4)
        else:
            af = align_face(img, l, profile, output_size=size)
        mad.append(np.abs(af.image.astype(np.float64) - img).mean())
        mapped.append(np.hypot(*(af.transform.to_aligned(l) - l).T).mean() / size * 100)
        if redetect:
            l2 = chip_landmarks(af.image)
            if l2 is None:
                n_redet_fail += 1
            else:
                redet.append(np.hypot(*(l2 - l).T).mean() / size * 100)
    corner = corner_error(RecipeTerms.from_landmarks(lm), profile, size) if profile is not None else np.zeros(len(lm))
    out = {"n": len(paths), "pixel_mad": _stat(mad), "lm_mapped_pct": _stat(mapped), "corner_pct": _stat(corner)}
    if redetect:
        out["lm_redetect_pct"] = _stat(redet)
        out["redetect_failed"] = n_redet_fail
    return out


def photo_check(photo_dir: Path, template: np.ndarray, profiles: dict[str, AlignmentProfile]) -> dict:
    """Where the sample photos' landmarks land in each profile's crop, vs the chips' mean template.

    Returns per profile the mean landmark distance to ``template`` (``(68, 2)``, fractions of the
    width) in % of the width, averaged over the photos with a face.
    """
    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image

    lms, names = [], []
    for p in sorted(photo_dir.iterdir()) if photo_dir.is_dir() else []:
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        faces = detect_faces(load_image(p)[0], raise_if_none=False)
        if faces:
            lms.append(faces[0].landmarks.astype(np.float64))
            names.append(p.name)
    if not lms:
        return {"n": 0}
    lm = np.asarray(lms)
    t = RecipeTerms.from_landmarks(lm)
    out = {"n": len(names), "photos": names, "tilt_deg": [_r(a, 2) for a in t.angle_deg]}
    for k, prof in profiles.items():
        d = np.hypot(*(normalized_landmarks(lm, t, prof) - template).transpose(2, 0, 1)).mean(1) * 100
        out[k] = _stat(d)
    return out


def preview(path: Path, chips: list[Path], lm: np.ndarray, profiles: dict[str, AlignmentProfile],
            photo_dir: Path | None, size: int) -> None:
    """A contact sheet: rows of [chip | each profile's re-alignment], then rows of [mean of those chips |
    a sample photo aligned by each profile]."""

    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image

    rows, mean_chip = [], np.zeros((size, size, 3))
    for p, l in zip(chips, lm):
        img = load_rgb(p)
        mean_chip += img / len(chips)
        rows.append([img] + [align_face(img, l, pr, output_size=size).image for pr in profiles.values()])
    if photo_dir is not None and photo_dir.is_dir():
        for p in sorted(photo_dir.iterdir()):
            if p.suffix.lower() not in IMAGE_EXTS:
                continue
            img = load_image(p)[0]
            faces = detect_faces(img, raise_if_none=False)
            if faces:
                rows.append([np.uint8(np.rint(mean_chip))] +
                            [align_face(img, faces[0].landmarks, pr, output_size=size).image for pr in profiles.values()])
    sheet = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    save_image(path, sheet)


#---------------------------------------------------------------------------------------------------


def _r(x, nd: int = 3) -> float:
    return round(float(x), nd)


def _stat(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "median": None, "p90": None}
    return {"mean": _r(v.mean()), "median": _r(np.median(v)), "p90": _r(np.percentile(v, 90))}


def _profile_dict(p: AlignmentProfile) -> dict:
    d = p.to_dict()
    for k in ("zoom", "offset_x", "offset_y", "center_shift", "eye_scale", "mouth_scale"):
        d[k] = _r(d[k], 4)
    return d


def derive(data: Path, n: int = 600, n_val: int = 200, seed: int = 0, *, name: str = "utkface-64",
           output_size: int = 64, transform_size: int | None = 256, photos: Path | None = DEFAULT_PHOTOS,
           redetect: bool = True, preview_path: Path | None = None, progress: bool = True) -> dict:
    """The whole derivation; returns ``{"alignment_profile": ..., "derivation": ...}`` and prints a report."""
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)
    fit_paths, val_paths = sample_chips(data, n, n_val, seed)
    size = load_rgb(fit_paths[0]).shape[0]
    log(f"landmarks on {len(fit_paths)} fit + {len(val_paths)} validation chips ({size} px, {data})")
    fit_ok, lm_fit, fit_failed = detect_all(fit_paths, progress=progress)
    val_ok, lm_val, val_failed = detect_all(val_paths, progress=progress)
    t_fit, t_val = RecipeTerms.from_landmarks(lm_fit), RecipeTerms.from_landmarks(lm_val)

    # The chips' own geometry in the FFHQ recipe.
    ang = t_fit.angle_deg
    e2e_len, e2m_len = np.hypot(*t_fit.e2e.T), np.hypot(*t_fit.e2m.T)
    geometry = {
        "tilt_deg": {"mean": _r(ang.mean(), 2), "median": _r(np.median(ang), 2), "std": _r(ang.std(), 2),
                     "p5": _r(np.percentile(ang, 5), 2), "p95": _r(np.percentile(ang, 95), 2),
                     "abs_mean": _r(np.abs(ang).mean(), 2)},
        "eye_dist_pct": _stat(e2e_len / size * 100),
        "eye_mouth_dist_pct": _stat(e2m_len / size * 100),
        "ffhq_eye_term_dominates": _r(np.mean(e2e_len * 2.0 >= e2m_len * 1.8), 3),
        "ffhq_half_size_over_chip_half": _stat(t_fit.h0() / (size / 2)),
        "eye_centre_pct": [_r(v, 2) for v in ((t_fit.eye_avg + 0.5) / size * 100).mean(0)],
    }

    # Fits: the FFHQ recipe with zoom + offsets (the candidate), then recipe changes, adopted only
    # when they clearly help on the validation chips.
    base = replace(FFHQ, name=name, output_size=output_size, transform_size=transform_size)
    # (Candidates in order of complexity; the mouth scale is picked on the fit chips, then every
    # candidate is judged on the validation chips.)
    scan = scan_mouth_scale(lm_fit, lm_val, size, base=base)
    best_ms = min(scan, key=lambda r: r["fit_corner_rms_pct"])["mouth_scale"]
    variants: dict[str, Fit] = {
        "zoom+offsets": fit_profile(lm_fit, size, base=base),
        "+center_shift": fit_profile(lm_fit, size, base=base, fit_center_shift=True),
        f"+mouth_scale {best_ms:g}": fit_profile(lm_fit, size, base=replace(base, mouth_scale=best_ms)),
        f"+mouth_scale {best_ms:g}+center_shift": fit_profile(lm_fit, size, base=replace(base, mouth_scale=best_ms),
                                                              fit_center_shift=True),
    }
    val_err = {k: float(corner_error(t_val, f.profile, size).mean()) for k, f in variants.items()}
    chosen = "zoom+offsets"
    for k in list(variants)[1:]:
        gain = val_err[chosen] - val_err[k]
        if gain >= ADOPT_ABS and gain >= ADOPT_REL * val_err[chosen]:
            chosen = k
    fit = variants[chosen]
    prof = AlignmentProfile.from_dict(_profile_dict(fit.profile))  # rounded, as written
    ffhq = replace(FFHQ, output_size=output_size, transform_size=transform_size)
    log(f"fitted ({chosen}): zoom {prof.zoom:.4f} offset_x {prof.offset_x:+.4f} offset_y {prof.offset_y:+.4f} "
        f"center_shift {prof.center_shift:.4f} eye_scale {prof.eye_scale} mouth_scale {prof.mouth_scale}")

    # Validation: re-align the validation chips at their own size.
    log(f"re-aligning {len(val_ok)} validation chips with each profile")
    profiles = {"ffhq": ffhq, name: prof}
    if chosen != "zoom+offsets":
        profiles["zoom+offsets only"] = AlignmentProfile.from_dict(_profile_dict(variants["zoom+offsets"].profile))
    validation = {k: realign_metrics(val_ok, lm_val, p, size, redetect=redetect) for k, p in profiles.items()}
    validation["chip frame (floor)"] = realign_metrics(val_ok, lm_val, None, size, redetect=redetect)
    template = (lm_fit + 0.5).mean(0) / size  # the chips' mean landmarks, fractions of the width
    chip_spread = np.hypot(*((lm_val + 0.5) / size - template).transpose(2, 0, 1)).mean(1) * 100
    photo = photo_check(photos, template, profiles) if photos is not None else {"n": 0}
    photo["chips_own_spread_pct"] = _stat(chip_spread)
    if preview_path is not None:
        preview(preview_path, val_ok[:8], lm_val[:8], profiles, photos, size)

    derivation = {
        "method": "trainers/pack/derive_profile.py: dlib 68 landmarks on UTKFace chips, Huber-weighted least "
                  "squares of the FFHQ-recipe crop square onto the chip frame; see the module docstring",
        "data": str(data.resolve().relative_to(SHARED.resolve())) if data.resolve().is_relative_to(SHARED.resolve())
        else str(data),
        "chip_size": size, "seed": seed, "detect_upscale": DETECT_UPSCALE,
        "fit_sample": {"requested": len(fit_paths), "with_face": len(fit_ok), "no_face": len(fit_failed)},
        "validation_sample": {"requested": len(val_paths), "with_face": len(val_ok), "no_face": len(val_failed)},
        "chip_geometry": geometry,
        "fits": {k: {"profile": {kk: _r(getattr(f.profile, kk), 4) for kk in
                                 ("zoom", "offset_x", "offset_y", "center_shift", "eye_scale", "mouth_scale")},
                     "fit": f.summary(), "val_corner_rms_pct": _r(val_err[k])} for k, f in variants.items()},
        "mouth_scale_scan": scan,
        "chosen": chosen,
        "adopt_rule": f"a recipe change must lower the validation corner error by >= {ADOPT_REL:.0%} "
                      f"and >= {ADOPT_ABS} % of the width",
        "validation": validation,
        "photos": photo,
        "notes": "The crop follows each face's eye/mouth line (rotation is not a profile parameter); "
                 "chip_geometry.tilt_deg is the chips' residual rotation in that recipe. Pixel MAD also "
                 "counts the FFHQ padding where the crop leaves the chip.",
    }
    result = {"alignment_profile": prof.to_dict(), "derivation": derivation}
    print(report(result))
    return result


def report(result: dict) -> str:
    d = result["derivation"]
    p = result["alignment_profile"]
    g = d["chip_geometry"]
    lines = [
        (f"chips: fit {d['fit_sample']['with_face']}/{d['fit_sample']['requested']} with a face, "
         f"validation {d['validation_sample']['with_face']}/{d['validation_sample']['requested']} ({d['chip_size']} px)"),
        (f"chip tilt in the FFHQ recipe (deg): mean {g['tilt_deg']['mean']:+.2f}, std {g['tilt_deg']['std']:.2f}, "
         f"p5..p95 {g['tilt_deg']['p5']:+.2f}..{g['tilt_deg']['p95']:+.2f}"),
        (f"FFHQ half-size / chip half-size: median {g['ffhq_half_size_over_chip_half']['median']:.3f}; "
         f"eye term dominates in {g['ffhq_eye_term_dominates']:.0%} of chips"),
        "",
        (f"{'fit variant':34s} {'zoom':>7s} {'off_x':>7s} {'off_y':>7s} {'c_shift':>7s} {'m_scale':>7s} "
         f"{'fit corner%':>11s} {'val corner%':>11s}"),
    ]
    for k, f in d["fits"].items():
        q = f["profile"]
        lines.append(f"{k:34s} {q['zoom']:7.4f} {q['offset_x']:+7.4f} {q['offset_y']:+7.4f} {q['center_shift']:7.4f} "
                     f"{q['mouth_scale']:7.3f} {f['fit']['corner_rms_pct']['mean']:11.3f} {f['val_corner_rms_pct']:11.3f}")
    lines += [f"chosen: {d['chosen']}  ->  " + json.dumps({k: p[k] for k in (
        'name', 'output_size', 'transform_size', 'eye_scale', 'mouth_scale', 'center_shift', 'zoom', 'offset_x', 'offset_y')}),
        "",
        (f"validation: {d['validation_sample']['with_face']} held-out chips re-aligned at {d['chip_size']} px "
         f"(mean; median in brackets)"),
        f"{'profile':22s} {'pixel MAD':>16s} {'landmarks mapped %':>20s} {'landmarks re-det %':>20s} {'corner %':>16s}"]
    for k, v in d["validation"].items():
        def f2(s):
            return "-" if s is None or s["mean"] is None else f"{s['mean']:7.2f} ({s['median']:6.2f})"
        lines.append(f"{k:22s} {f2(v['pixel_mad']):>16s} {f2(v['lm_mapped_pct']):>20s} "
                     f"{f2(v.get('lm_redetect_pct')):>20s} {f2(v['corner_pct']):>16s}")
    ph = d["photos"]
    if ph.get("n"):
        lines += ["", (f"sample photos ({ph['n']}): mean landmark distance to the chips' mean template, % of width "
                       f"(chips' own spread: {ph['chips_own_spread_pct']['mean']:.2f})")]
        for k in d["validation"]:
            if k in ph:
                lines.append(f"{k:22s} {ph[k]['mean']:7.2f} ({ph[k]['median']:6.2f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of UTKFace chips (default: %(default)s)")
    ap.add_argument("--n", type=int, default=600, help="chips to fit on (default 600)")
    ap.add_argument("--n-val", type=int, default=200, help="other chips to validate on (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the choice of chips (default 0)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="profile JSON to write (default: %(default)s)")
    ap.add_argument("--name", default="utkface-64", help="profile name in the JSON (default %(default)s)")
    ap.add_argument("--output-size", type=int, default=64, help="the pack's resolution (default 64)")
    ap.add_argument("--transform-size", type=int, default=256, help="QUAD transform size (default 256)")
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="sample photos to check (default: %(default)s)")
    ap.add_argument("--no-photos", action="store_true", help="skip the check on the sample photos")
    ap.add_argument("--no-redetect", action="store_true", help="skip re-detecting landmarks in re-aligned chips")
    ap.add_argument("--preview", type=Path, default=None, help="also write a contact sheet PNG here")
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"error: {a.data} is not a folder (set --data or STYLESTUDIO_SHARED)", file=sys.stderr)
        return 2
    result = derive(a.data, a.n, a.n_val, a.seed, name=a.name, output_size=a.output_size,
                    transform_size=a.transform_size, photos=None if a.no_photos else a.photos,
                    redetect=not a.no_redetect, preview_path=a.preview)
    atomic_write_text(a.out, json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
