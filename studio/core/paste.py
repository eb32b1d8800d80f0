"""Paste an edited aligned face back into the original photo, at the photo's full resolution.

The edited face (any square size, e.g. the generator's 256 or 1024) is warped with the inverse of
the alignment (:class:`~studio.core.align.AlignTransform`) and blended through a feathered mask
built in aligned space: the convex hull of the 68 landmarks plus a forehead band (``'hull'``), or
an ellipse around them (``'ellipse'``). Outside the mask's support every photo pixel is returned
bit-for-bit unchanged; only the bounding box of the face is resampled, so a 12 MP photo costs
about as much as a small one.

Two modes: the edited face *replaces* the photo's face (inside the mask), or, given the unedited
reconstruction (``base_aligned``: the inverted latent rendered without edits), only the *change* the
edit makes is added to the photo, which keeps the photo's own detail and identity where the edit does
not touch it (a 64-px generator's face pasted into a 1000-px photo is otherwise a blur). Adding a
change suits edits of shading, colour and moderate shape; a large change of shape leaves faint edges
of the old face, where replacing is the better choice.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from PIL import Image

from studio.core.align import AlignTransform, gaussian_filter_hw
from studio.core.errors import ImageError
from studio.core.imageio import as_rgb_array

log = logging.getLogger(__name__)

#: Mask values below this are set to 0: these pixels are left exactly as in the photo.
MASK_EPS = 1.0 / 512.0
#: How far the hull is extended above the brows, as a fraction of the eye-to-mouth distance.
FOREHEAD = 0.8
#: Ellipse semi-axes relative to the half extent of the landmark hull (incl. forehead).
ELLIPSE_MARGIN = 1.12
#: Side (px) at which masks are computed before being upscaled to the aligned size.
MASK_WORK_SIZE = 256
#: At the aligned image's border the mask fades to 0 over up to this fraction of the side: tight-crop
#: profiles (the UTKFace pack) put the forehead and cheeks on the border, and a narrow fade leaves a
#: visible seam in the photo there. Per side the fade is limited to 3/4 of the gap between the
#: border and the nearest landmark (so FFHQ's chin stays fully pasted), but is at least
#: :data:`BORDER_FADE_MIN` of the side.
BORDER_FADE = 0.15
BORDER_FADE_MIN = 0.06


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of ``(N, 2)`` points, counter-clockwise, ``(M, 2)``."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) <= 2:
        return np.asarray(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1])


def face_outline(transform: AlignTransform, size: int) -> np.ndarray:
    """Landmarks plus forehead points in aligned pixels (image side ``size``), ``(N, 2)`` float64.

    Without stored landmarks, the FFHQ-typical face region is used (a fixed template).
    """
    if transform.landmarks is None:
        t = np.array([[0.27, 0.38], [0.73, 0.38], [0.77, 0.62], [0.62, 0.83], [0.5, 0.86],
                      [0.38, 0.83], [0.23, 0.62], [0.3, 0.2], [0.7, 0.2], [0.5, 0.16]])
        return t * size
    lm = transform.to_aligned(transform.landmarks, size)
    eye_avg = (lm[36:42].mean(0) + lm[42:48].mean(0)) * 0.5
    mouth_avg = (lm[48] + lm[54]) * 0.5
    up = eye_avg - mouth_avg  # points from the mouth to the eyes, length = eye-to-mouth distance
    forehead = lm[17:27] + up * FOREHEAD
    return np.concatenate([lm, forehead], axis=0)


def face_mask(transform: AlignTransform, size: int, kind: str = "hull", feather: float = 0.04) -> np.ndarray:
    """Soft face mask in aligned space, ``(size, size) float32`` in [0, 1].

    ``kind``: ``'hull'`` (convex hull of landmarks + forehead) or ``'ellipse'``. ``feather``: softness
    as a fraction of ``size``; the mask is 1 inside the shape and falls to 0 within about
    ``1.6 * feather * size`` pixels outside it. Values below :data:`MASK_EPS` are exactly 0, and the
    mask is 0 on the image border.
    """
    if kind not in ("hull", "ellipse"):
        raise ValueError(f"mask must be 'hull' or 'ellipse', not {kind!r}")
    size = int(size)
    # The mask is smooth: build it at <= 256 px and upscale (a 1024 blur costs ~0.3 s, this ~10 ms).
    work = min(size, MASK_WORK_SIZE)
    pts = face_outline(transform, work)
    if kind == "hull":
        from PIL import ImageDraw

        ss = 4  # supersample the polygon for a smooth edge
        poly = Image.new("L", (work * ss, work * ss), 0)
        h = _hull(pts)
        ImageDraw.Draw(poly).polygon([(float(x + 0.5) * ss - 0.5, float(y + 0.5) * ss - 0.5) for x, y in h], fill=255)
        hard = np.asarray(poly.reduce(ss), dtype=np.float32) / 255.0
    else:
        lo, hi = pts.min(0), pts.max(0)
        c, r = (lo + hi) / 2, np.maximum((hi - lo) / 2 * ELLIPSE_MARGIN, 1.0)
        yy, xx = np.mgrid[0:work, 0:work].astype(np.float64)
        d = np.sqrt(((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2)
        # 1 px anti-aliased edge
        hard = np.clip((1.0 - d) * min(r) + 0.5, 0.0, 1.0).astype(np.float32)
    sigma = max(float(feather), 0.0) * work / 2.0
    if sigma > 0.3:
        soft = gaussian_filter_hw(hard[:, :, None], sigma)[:, :, 0]
        m = np.maximum(np.clip(3.0 * soft, 0.0, 1.0), hard)
    else:
        m = hard
    if work != size:
        m = np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((size, size), Image.Resampling.BILINEAR))
    sigma = sigma * size / work
    # taper to exactly 0 at the aligned image border (nothing outside the aligned square is touched)
    pts = face_outline(transform, size)
    if transform.landmarks is not None:
        pts = pts[:68]                      # the landmarks without the forehead band
    m = m * _border_ramp(pts, size, sigma)
    m[m < MASK_EPS] = 0.0
    return m.astype(np.float32)


def _border_ramp(points: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """(size, size) weights rising from 0 at each border of the aligned square to 1 over that side's
    fade width (:data:`BORDER_FADE`, limited by the gap to the nearest of ``points``)."""
    lo = points.min(0)                      # (x, y) nearest the left / top borders
    hi = (size - 1) - points.max(0)         # gaps to the right / bottom borders
    gaps = {"left": lo[0], "top": lo[1], "right": hi[0], "bottom": hi[1]}
    edge = {k: max(2.0, sigma, min(BORDER_FADE * size, max(0.75 * g, BORDER_FADE_MIN * size)))
            for k, g in gaps.items()}
    i = np.arange(size, dtype=np.float64)
    ramp = lambda d, e: np.clip((d - 1.0) / e, 0.0, 1.0)  # noqa: E731
    x = np.minimum(ramp(i, edge["left"]), ramp(i[::-1], edge["right"]))
    y = np.minimum(ramp(i, edge["top"]), ramp(i[::-1], edge["bottom"]))
    return np.minimum(y[:, None], x[None, :]).astype(np.float32)


def _bbox_of_support(mask: np.ndarray, A: np.ndarray, W: int, H: int) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # edge coords in aligned space
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
    pc = corners @ A[:2, :2].T + A[:2, 2]
    l, t = np.floor(pc.min(0)) - 2
    r, b = np.ceil(pc.max(0)) + 2
    l, t, r, b = max(int(l), 0), max(int(t), 0), min(int(r), W), min(int(b), H)
    if r <= l or b <= t:
        return None
    return l, t, r, b


def _warp(src: Image.Image, A: np.ndarray, box: tuple[int, int, int, int], k: int, resample) -> np.ndarray:
    """Render ``src`` (aligned space) into photo box ``(l, t, r, b)``; ``k``x supersampled then box-averaged."""
    l, t, r, b = box
    # output pixel (edge coords, k x grid) -> photo edge: p = (l, t) + o / k ; -> aligned edge: inv(A) p
    S = np.array([[1.0 / k, 0, l], [0, 1.0 / k, t], [0, 0, 1]])
    M = np.linalg.inv(A) @ S
    data = (M[0, 0], M[0, 1], M[0, 2], M[1, 0], M[1, 1], M[1, 2])
    out = src.transform(((r - l) * k, (b - t) * k), Image.Transform.AFFINE, data, resample)
    if k > 1:
        out = out.reduce(k)
    return np.asarray(out)


def paste_back(
    original,
    edited_aligned,
    transform: AlignTransform,
    mask: str = "hull",
    feather: float = 0.04,
    color_match: bool = False,
    *,
    antialias: bool = True,
    return_mask: bool = False,
    base_aligned=None,
):
    """Put an edited aligned face back into the photo it was aligned from.

    ``original``: the photo ``(H, W, 3) uint8`` (same size as at alignment). ``edited_aligned``:
    square ``(S, S, 3) uint8`` image in the aligned frame (any ``S``; rescaled to the transform).
    ``mask``/``feather``: see :func:`face_mask`. ``color_match``: shift the edited face's per-channel
    mean/std (inside the mask) to the photo's, for edits that drift in colour. ``antialias``:
    average several samples per photo pixel when the face is smaller in the photo than in the
    aligned image. ``base_aligned``: the unedited reconstruction, same size as ``edited_aligned``:
    only the difference edit - base is added to the photo (``color_match`` does not apply; where the
    two are equal the photo is returned unchanged). Returns the new photo ``(H, W, 3) uint8`` (and
    the photo-space mask ``(H, W) float32`` if ``return_mask``). Pixels where the mask is 0 are unchanged.
    """
    photo = as_rgb_array(original, name="original photo")
    edit = as_rgb_array(edited_aligned, name="edited face")
    base = None if base_aligned is None else as_rgb_array(base_aligned, name="unedited face")
    if base is not None and base.shape != edit.shape:
        raise ImageError(None, f"the unedited face is {base.shape[1]}x{base.shape[0]} but the edited one is "
                               f"{edit.shape[1]}x{edit.shape[0]}; render both at the same size")
    H, W = photo.shape[:2]
    if edit.shape[0] != edit.shape[1]:
        raise ImageError(None, f"the edited face must be square (an aligned image), got {edit.shape[1]}x{edit.shape[0]}")
    if tuple(transform.input_size) != (W, H):
        raise ImageError(None, f"the photo is {W}x{H} but the face was aligned from a "
                               f"{transform.input_size[0]}x{transform.input_size[1]} image; paste into the same photo")
    S = edit.shape[0]
    A = transform.aligned_to_photo_matrix(S)
    m_al = face_mask(transform, S, mask, feather)
    out = photo.copy()
    full_mask = np.zeros((H, W), np.float32) if return_mask else None
    box = _bbox_of_support(m_al, A, W, H)
    if box is None:
        log.warning("the face mask does not overlap the photo; nothing pasted")
        return (out, full_mask) if return_mask else out
    scale = transform.scale(S)  # photo px per aligned px
    k = 1
    if antialias and scale < 1.0:
        k = min(8, int(math.ceil(1.0 / scale - 1e-6)))
    warped = _warp(Image.fromarray(edit, "RGB"), A, box, k, Image.Resampling.BICUBIC).astype(np.float32)
    mk = _warp(Image.fromarray(m_al, "F"), A, box, k, Image.Resampling.BILINEAR).astype(np.float32)
    mk[mk < MASK_EPS] = 0.0
    mk = np.minimum(mk, 1.0)
    l, t, r, b = box
    region = photo[t:b, l:r].astype(np.float32)
    if base is not None:  # the change only: photo + (edit - unedited), both warped alike
        if np.array_equal(base, edit):
            change = np.zeros_like(warped)
        else:
            change = warped - _warp(Image.fromarray(base, "RGB"), A, box, k, Image.Resampling.BICUBIC).astype(np.float32)
        blended = region + change * mk[:, :, None]
    else:
        if color_match:
            warped = _match_colour(warped, region, mk)
        blended = region + (warped - region) * mk[:, :, None]
    out[t:b, l:r] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if return_mask:
        full_mask[t:b, l:r] = mk
        return out, full_mask
    return out


def _match_colour(src: np.ndarray, ref: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-channel mean/std transfer of ``src`` towards ``ref``, statistics weighted by ``w``."""
    wsum = float(w.sum())
    if wsum < 1.0:
        return src
    ww = w[:, :, None].astype(np.float64)
    mu_s = (src * ww).sum((0, 1)) / wsum
    mu_r = (ref * ww).sum((0, 1)) / wsum
    sd_s = np.sqrt(((src - mu_s) ** 2 * ww).sum((0, 1)) / wsum) + 1e-6
    sd_r = np.sqrt(((ref - mu_r) ** 2 * ww).sum((0, 1)) / wsum) + 1e-6
    gain = np.clip(sd_r / sd_s, 0.5, 2.0)
    return np.clip((src - mu_s) * gain + mu_r, 0, 255).astype(np.float32)
