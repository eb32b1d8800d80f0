"""FFHQ face alignment (METHODS.md §7) with a transform that maps back into the photo.

:func:`align_face` is a step-for-step port of the official FFHQ / pSp ``align_face`` (NVlabs
``ffhq-dataset``, pSp ``scripts/align_all_parallel.py``): the oriented crop square from the eye and
mouth landmarks, then *shrink* (LANCZOS, when the face is more than twice the output size), *crop*
with a border, *pad* (reflect, blur, median fill) where the square leaves the photo, a PIL ``QUAD``
transform (BILINEAR) to ``transform_size`` and a LANCZOS resize to ``output_size``. The same PIL calls
and the same float64/float32 numpy steps are used, so with the :data:`FFHQ` profile the output is
identical to the official script's (checked against ``fixtures/ffhq_align``). The one replaced
dependency, ``scipy.ndimage.gaussian_filter``, is reimplemented in float64 like scipy's.

The crop is parameterised by an :class:`AlignmentProfile` so a model pack can declare the crop its
generator was trained on. Every step is recorded in an :class:`AlignTransform` (JSON-serialisable),
which maps aligned pixels to photo pixels and back (used by :mod:`studio.core.paste`).

Coordinates: ``(x, y)`` pixels, pixel centres at integers (dlib's landmarks); "edge" coordinates
(pixel ``k`` covers ``[k, k+1)``) are centre coordinates + 0.5, the convention of PIL's transforms.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image

from studio.core.errors import NoFaceError, StudioError
from studio.core.imageio import as_rgb_array

log = logging.getLogger(__name__)

TRANSFORM_VERSION = 1
#: Photos larger than this (pixels) shrink only the face region (see ``align_face(exact=...)``).
REGION_RESIZE_MIN_PIXELS = 4_000_000


class AlignmentProfileError(StudioError):
    """An alignment profile (from a model pack or ``--profile``) is malformed."""


#---------------------------------------------------------------------------------------------------


#: Largest aligned image and QUAD transform (NVlabs' FFHQ: 1024 out of 4096). Beyond these a profile
#: or flag is refused: PIL would allocate gigabytes (a 60000-px transform is ~10 GB).
MAX_OUTPUT_SIZE = 8192
MAX_TRANSFORM_SIZE = 16384
#: Largest eye_scale / mouth_scale / zoom of a profile (FFHQ: 2.0 / 1.8 / 1.0).
MAX_PROFILE_SCALE = 100.0


@dataclass(frozen=True)
class AlignmentProfile:
    """The crop a generator was trained on, as parameters of the FFHQ recipe.

    With ``e2e`` = eye-to-eye and ``e2m`` = eye-centre-to-mouth-centre vectors (pixels):
    half-size ``s = max(|e2e| * eye_scale, |e2m| * mouth_scale) * zoom``, centre
    ``c = eye_avg + e2m * center_shift + offset_x * X + offset_y * Y`` where ``X``/``Y`` are the
    crop's half-size vectors (right/down in the aligned image). So offsets are fractions of the
    half-size (0.1 moves the crop a twentieth of its width). ``output_size``: side of the aligned
    image in pixels; ``transform_size``: side of the intermediate QUAD transform (``None`` = the
    output size, pSp's convention; NVlabs' FFHQ used 4096 for 1024). ``enable_padding``: the
    reflect/blur/median padding where the crop leaves the photo (else black).
    """

    name: str = "ffhq"
    output_size: int = 256
    transform_size: int | None = None
    eye_scale: float = 2.0
    mouth_scale: float = 1.8
    center_shift: float = 0.1
    zoom: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0
    enable_padding: bool = True

    def __post_init__(self):
        if not 8 <= int(self.output_size) <= MAX_OUTPUT_SIZE:
            raise AlignmentProfileError(f"profile {self.name!r}: output_size must be 8 to {MAX_OUTPUT_SIZE} px, "
                                        f"got {self.output_size}")
        if self.transform_size is not None and int(self.transform_size) < int(self.output_size):
            raise AlignmentProfileError(f"profile {self.name!r}: transform_size ({self.transform_size}) must be "
                                        f">= output_size ({self.output_size})")
        if self.transform_size is not None and int(self.transform_size) > MAX_TRANSFORM_SIZE:
            raise AlignmentProfileError(f"profile {self.name!r}: transform_size must be at most {MAX_TRANSFORM_SIZE} "
                                        f"px, got {self.transform_size}")
        for k in ("eye_scale", "mouth_scale", "zoom"):
            v = getattr(self, k)
            if not (np.isfinite(v) and 0 < v <= MAX_PROFILE_SCALE):
                raise AlignmentProfileError(f"profile {self.name!r}: {k} must be a number in (0, {MAX_PROFILE_SCALE:g}], "
                                            f"got {v}")
        for k in ("center_shift", "offset_x", "offset_y"):
            if not np.isfinite(getattr(self, k)):
                raise AlignmentProfileError(f"profile {self.name!r}: {k} must be finite")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AlignmentProfile":
        """Build from a JSON dict; unknown keys and wrong types raise :class:`AlignmentProfileError`."""
        if not isinstance(d, dict):
            raise AlignmentProfileError(f"an alignment profile must be a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise AlignmentProfileError(f"unknown alignment profile key(s) {unknown}; known: {sorted(known)}")
        kw: dict = {}
        for k, v in d.items():
            try:
                if k == "name":
                    kw[k] = str(v)
                elif k in ("output_size",):
                    kw[k] = _as_int(v)
                elif k == "transform_size":
                    kw[k] = None if v is None else _as_int(v)
                elif k == "enable_padding":
                    if not isinstance(v, bool):
                        raise TypeError("expected true/false")
                    kw[k] = v
                else:
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise TypeError("expected a number")
                    kw[k] = float(v)
            except (TypeError, ValueError) as e:
                raise AlignmentProfileError(f"alignment profile key {k!r}: {e} (got {v!r})") from None
        return cls(**kw)

    @property
    def is_ffhq_recipe(self) -> bool:
        """True when the crop geometry is exactly the official FFHQ one (any sizes)."""
        return (self.eye_scale, self.mouth_scale, self.center_shift, self.zoom, self.offset_x, self.offset_y) == \
            (2.0, 1.8, 0.1, 1.0, 0.0, 0.0)


def _as_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise TypeError("expected an integer")
    return int(v)


#: The official FFHQ crop at pSp/e4e/E2Style's settings (``align_face``: 256 px, transform 256).
FFHQ = AlignmentProfile()
#: The same crop at NVlabs' ffhq-dataset settings (1024 px from a 4096 px QUAD transform).
FFHQ_1024 = AlignmentProfile(name="ffhq-1024", output_size=1024, transform_size=4096)

PROFILES: dict[str, AlignmentProfile] = {"ffhq": FFHQ, "ffhq-1024": FFHQ_1024}


def get_profile(spec: "str | dict | AlignmentProfile | Path | None" = None) -> AlignmentProfile:
    """A profile from a name in :data:`PROFILES`, a dict (model-pack manifest), or a JSON file path."""
    if spec is None:
        return FFHQ
    if isinstance(spec, AlignmentProfile):
        return spec
    if isinstance(spec, dict):
        return AlignmentProfile.from_dict(spec)
    s = str(spec)
    if s.lower() in PROFILES:
        return PROFILES[s.lower()]
    p = Path(s)
    if p.suffix.lower() == ".json" or p.is_file():
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AlignmentProfileError(f"alignment profile file {p} not found") from None
        except (OSError, ValueError) as e:
            raise AlignmentProfileError(f"cannot read alignment profile {p}: {e}") from None
        if isinstance(d, dict) and isinstance(d.get("alignment_profile"), (dict, str)):
            return get_profile(d["alignment_profile"])
        return AlignmentProfile.from_dict(d)
    raise AlignmentProfileError(f"unknown alignment profile {s!r}; use one of {sorted(PROFILES)} "
                                f"or a JSON file with the profile's keys")


#---------------------------------------------------------------------------------------------------


@dataclass
class AlignTransform:
    """Everything :func:`align_face` did, enough to map aligned pixels back into the photo.

    ``quad``: ``(4, 2)`` corners of the crop square in photo pixels (centre convention), order
    top-left, bottom-left, bottom-right, top-right of the aligned image (PIL's NW, SW, SE, NE).
    ``shrink``: integer downscale applied first (1 = none), giving ``shrunk_size``;
    ``crop_offset``/``pad``: the crop origin in the shrunk photo and the padding ``(l, t, r, b)``
    added around the crop; ``source_quad``: the quad as given to PIL's QUAD transform
    (in padded-crop pixels, minus the official +0.5); ``transform_size``/``output_size`` in pixels.
    ``landmarks``: ``(68, 2)`` photo pixels of the face (for paste-back masks), or ``None``.
    """

    input_size: tuple[int, int]
    quad: np.ndarray
    qsize: float
    output_size: int
    transform_size: int
    shrink: int = 1
    shrunk_size: tuple[int, int] | None = None
    crop_offset: tuple[int, int] = (0, 0)
    crop: tuple[int, int, int, int] | None = None
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    source_quad: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    profile: dict = field(default_factory=dict)
    version: int = TRANSFORM_VERSION

    # -- the mapping ---------------------------------------------------------------------------

    def aligned_to_photo_matrix(self, size: int | None = None) -> np.ndarray:
        """``(3, 3)`` affine: aligned *edge* coords (image of side ``size``, default ``output_size``) -> photo edge coords."""
        size = self.output_size if size is None else int(size)
        T = float(self.transform_size)
        q = np.asarray(self.source_quad if self.source_quad is not None else self.quad, dtype=np.float64) + 0.5
        nw, sw, _se, ne = q
        # PIL QUAD: src = nw + (ne - nw) * u / T + (sw - nw) * v / T  (u, v: transform edge coords;
        # the bilinear term vanishes for a square).
        m = np.eye(3)
        m[:2, 0] = (ne - nw) / T
        m[:2, 1] = (sw - nw) / T
        m[:2, 2] = nw
        # aligned (side `size`) -> transform (side T): the LANCZOS resize is a pure scale of edge coords.
        s = np.diag([T / size, T / size, 1.0])
        # padded crop -> shrunk photo -> photo.
        off = np.eye(3)
        off[:2, 2] = (self.crop_offset[0] - self.pad[0], self.crop_offset[1] - self.pad[1])
        W, H = self.input_size
        sw_, sh_ = self.shrunk_size if self.shrunk_size is not None else (W, H)
        unshrink = np.diag([W / sw_, H / sh_, 1.0])
        return unshrink @ off @ m @ s

    def photo_to_aligned_matrix(self, size: int | None = None) -> np.ndarray:
        """Inverse of :meth:`aligned_to_photo_matrix`: photo edge coords -> aligned edge coords."""
        return np.linalg.inv(self.aligned_to_photo_matrix(size))

    def to_photo(self, points, size: int | None = None) -> np.ndarray:
        """Aligned pixel coords ``(N, 2)`` (centre convention) -> photo pixel coords."""
        return _apply(self.aligned_to_photo_matrix(size), points)

    def to_aligned(self, points, size: int | None = None) -> np.ndarray:
        """Photo pixel coords ``(N, 2)`` (centre convention) -> aligned pixel coords."""
        return _apply(self.photo_to_aligned_matrix(size), points)

    def scale(self, size: int | None = None) -> float:
        """Photo pixels per aligned pixel (linear), for an aligned image of side ``size``."""
        m = self.aligned_to_photo_matrix(size)
        return float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {
            "version": self.version,
            "input_size": list(self.input_size),
            "quad": np.asarray(self.quad, dtype=np.float64).tolist(),
            "qsize": float(self.qsize),
            "output_size": int(self.output_size),
            "transform_size": int(self.transform_size),
            "shrink": int(self.shrink),
            "shrunk_size": None if self.shrunk_size is None else list(self.shrunk_size),
            "crop_offset": list(self.crop_offset),
            "crop": None if self.crop is None else list(self.crop),
            "pad": list(self.pad),
            "source_quad": None if self.source_quad is None else np.asarray(self.source_quad, np.float64).tolist(),
            "landmarks": None if self.landmarks is None else np.asarray(self.landmarks).tolist(),
            "profile": dict(self.profile),
        }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AlignTransform":
        """Inverse of :meth:`to_dict`; raises :class:`AlignmentProfileError` on malformed input."""
        try:
            if int(d.get("version", 1)) > TRANSFORM_VERSION:
                raise ValueError(f"transform version {d['version']} is newer than this program "
                                 f"({TRANSFORM_VERSION}); update StyleStudio")
            quad = np.asarray(d["quad"], dtype=np.float64)
            if quad.shape != (4, 2) or not np.isfinite(quad).all():
                raise ValueError("quad must be 4 finite (x, y) points")
            sq = d.get("source_quad")
            lm = d.get("landmarks")
            t = cls(
                input_size=tuple(int(v) for v in d["input_size"]),
                quad=quad,
                qsize=float(d["qsize"]),
                output_size=int(d["output_size"]),
                transform_size=int(d["transform_size"]),
                shrink=int(d.get("shrink", 1)),
                shrunk_size=None if d.get("shrunk_size") is None else tuple(int(v) for v in d["shrunk_size"]),
                crop_offset=tuple(int(v) for v in d.get("crop_offset", (0, 0))),
                crop=None if d.get("crop") is None else tuple(int(v) for v in d["crop"]),
                pad=tuple(int(v) for v in d.get("pad", (0, 0, 0, 0))),
                source_quad=None if sq is None else np.asarray(sq, dtype=np.float64).reshape(4, 2),
                landmarks=None if lm is None else np.asarray(lm, dtype=np.float64).reshape(-1, 2),
                profile=dict(d.get("profile") or {}),
            )
            if len(t.input_size) != 2 or min(t.input_size) < 1 or t.output_size < 1 or t.transform_size < 1:
                raise ValueError("sizes must be positive")
            return t
        except (KeyError, TypeError, ValueError) as e:
            raise AlignmentProfileError(f"malformed alignment transform: {e}") from None


def _apply(m: np.ndarray, points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5
    out = p @ m[:2, :2].T + m[:2, 2]
    return out - 0.5


@dataclass
class AlignedFace:
    """An aligned face: ``image`` ``(S, S, 3) uint8`` and the :class:`AlignTransform` that made it."""

    image: np.ndarray
    transform: AlignTransform


#---------------------------------------------------------------------------------------------------


def crop_quad(landmarks: np.ndarray, profile: AlignmentProfile = FFHQ) -> tuple[np.ndarray, float]:
    """The oriented crop square ``(4, 2)`` (float64, photo pixels) and its side ``qsize``.

    Same float64 operations, in the same order, as the official FFHQ code (METHODS.md §7).
    """
    lm = np.asarray(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate landmarks: NaN, caught by the caller
        return _crop_quad(lm, profile)


def _crop_quad(lm: np.ndarray, profile: AlignmentProfile) -> tuple[np.ndarray, float]:
    lm_eye_left = lm[36:42]
    lm_eye_right = lm[42:48]
    lm_mouth_outer = lm[48:60]

    eye_left = np.mean(lm_eye_left, axis=0)
    eye_right = np.mean(lm_eye_right, axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_left = lm_mouth_outer[0]
    mouth_right = lm_mouth_outer[6]
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * profile.eye_scale, np.hypot(*eye_to_mouth) * profile.mouth_scale)
    if profile.zoom != 1.0:
        x *= profile.zoom
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * profile.center_shift
    if profile.offset_x != 0.0 or profile.offset_y != 0.0:
        c = c + x * profile.offset_x + y * profile.offset_y
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    return quad, float(qsize)


def align_face(
    img,
    landmarks: np.ndarray,
    profile: AlignmentProfile = FFHQ,
    output_size: int | None = None,
    transform_size: int | None = None,
    *,
    exact: bool | None = None,
) -> AlignedFace:
    """Align one face: photo ``(H, W, 3) uint8`` + its ``(68, 2)`` landmarks -> :class:`AlignedFace`.

    ``output_size``/``transform_size`` override the profile's (pixels; ``transform_size`` defaults to
    the profile's, else to the output size). Output is ``(output_size, output_size, 3) uint8``.
    ``exact``: when the official recipe first shrinks the photo (faces over twice the output
    size), shrink only the region around the face instead of the whole photo. That is ~3x faster
    on a 12 MP photo but, through floating-point rounding in PIL's kernel weights, differs from
    the official output by 1 grey level in a few pixels. ``None`` (default) does so only for photos
    over :data:`REGION_RESIZE_MIN_PIXELS`; ``True`` always reproduces the official pixels.
    """
    arr = as_rgb_array(img)
    out_size = int(output_size if output_size is not None else profile.output_size)
    if transform_size is not None:
        t_size = int(transform_size)
    elif output_size is None and profile.transform_size is not None:
        t_size = int(profile.transform_size)
    elif profile.transform_size is not None and profile.transform_size != profile.output_size:
        # keep the profile's supersampling ratio (e.g. FFHQ 4096/1024) at another output size
        t_size = int(round(out_size * profile.transform_size / profile.output_size))
    else:
        t_size = out_size
    if out_size < 8 or t_size < out_size:
        raise ValueError(f"need output_size >= 8 and transform_size >= output_size, got {out_size}, {t_size}")
    if out_size > MAX_OUTPUT_SIZE or t_size > MAX_TRANSFORM_SIZE:
        raise ValueError(f"output_size ({out_size}) and transform_size ({t_size}) must be at most "
                         f"{MAX_OUTPUT_SIZE} and {MAX_TRANSFORM_SIZE} px")

    lm = np.asarray(landmarks)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise NoFaceError(None, f"need 68 finite (x, y) landmarks to align a face, got an array of shape {lm.shape}")
    quad, qsize = crop_quad(lm, profile)
    if not np.isfinite(quad).all() or qsize < 4.0:
        raise NoFaceError(None, f"the face landmarks are degenerate (crop {qsize:.1f} px); "
                                f"detect the face again on a larger or sharper photo")
    tf = AlignTransform(input_size=(arr.shape[1], arr.shape[0]), quad=quad.copy(), qsize=qsize,
                        output_size=out_size, transform_size=t_size, landmarks=lm.copy(),
                        profile=profile.to_dict())
    if exact is None:
        exact = arr.shape[0] * arr.shape[1] <= REGION_RESIZE_MIN_PIXELS
    image = _ffhq_resample(Image.fromarray(arr, "RGB"), quad, np.float64(qsize), out_size, t_size,
                           profile.enable_padding, tf, region_resize=not exact)
    return AlignedFace(image=np.ascontiguousarray(np.asarray(image, dtype=np.uint8)), transform=tf)


def _ffhq_resample(img: Image.Image, quad: np.ndarray, qsize, output_size: int, transform_size: int,
                   enable_padding: bool, tf: AlignTransform, *, region_resize: bool = False) -> Image.Image:
    """The official shrink / crop / pad / transform steps; records them in ``tf``.

    Mirrors the official code statement by statement (float64 quad, Python ints for boxes,
    ``np.rint`` where it rounds) so the uint8 output is identical.
    """
    quad = np.array(quad, dtype=np.float64)
    # Shrink. (The resize is deferred to the crop: with `region_resize`, only the cropped region of
    # the shrunk image is computed, with PIL's `box` argument: same kernel positions, weights equal
    # up to float rounding, a fraction of the cost on a 12 MP photo.)
    shrink = int(np.floor(qsize / output_size * 0.5))
    rsize = None
    if shrink > 1:
        # (at least 1 px: a crop many times the photo, e.g. a profile's large zoom, shrinks it to nothing)
        rsize = (max(int(np.rint(float(img.size[0]) / shrink)), 1), max(int(np.rint(float(img.size[1]) / shrink)), 1))
        quad /= shrink
        qsize /= shrink
        tf.shrink = shrink
    size = rsize if rsize is not None else img.size
    tf.shrunk_size = tuple(size)

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, size[0]),
            min(crop[3] + border, size[1]))
    if crop[2] - crop[0] < size[0] or crop[3] - crop[1] < size[1]:
        if rsize is not None and region_resize:
            img = _resize_region(img, rsize, crop)  # ~= img.resize(rsize, LANCZOS).crop(crop)
        elif rsize is not None:
            img = img.resize(rsize, Image.Resampling.LANCZOS).crop(crop)
        else:
            img = img.crop(crop)
        quad -= crop[0:2]
        tf.crop = tuple(int(v) for v in crop)
        tf.crop_offset = (int(crop[0]), int(crop[1]))
    elif rsize is not None:
        img = img.resize(rsize, Image.Resampling.LANCZOS)

    # Pad.
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
           int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = a.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        a += (gaussian_filter_hw(a, blur) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
        quad += pad[:2]
        tf.pad = tuple(int(v) for v in pad)

    # Transform.
    tf.source_quad = quad.copy()
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img


def _resize_region(img: Image.Image, rsize: tuple[int, int], crop: tuple[int, int, int, int]) -> Image.Image:
    """``img.resize(rsize, LANCZOS).crop(crop)`` without resizing the rest of the image.

    PIL places output pixel ``k`` of a resize at ``box0 + (k + 0.5) * scale`` and clips kernels at
    the *image* border (not the box), so resizing the box that maps onto ``crop`` uses the same
    kernels as the full resize; only the last bits of the weights differ (max 1 grey level).
    """
    W, H = img.size
    box = (crop[0] * W / rsize[0], crop[1] * H / rsize[1], crop[2] * W / rsize[0], crop[3] * H / rsize[1])
    return img.resize((crop[2] - crop[0], crop[3] - crop[1]), Image.Resampling.LANCZOS, box=box)


#---------------------------------------------------------------------------------------------------
# scipy.ndimage.gaussian_filter(a, [sigma, sigma, 0]) for float32 (H, W, C), mode 'reflect'
# (half-sample symmetric), truncate 4.0: one float64 pass per axis, rounded to float32 in between,
# exactly as scipy does. Small kernels are summed directly (symmetric pairs, like scipy); large ones
# use a float64 FFT, whose ~1e-13 error disappears in the float32 rounding.


def _gaussian_kernel(sigma: float) -> tuple[np.ndarray, int]:
    radius = int(4.0 * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return phi / phi.sum(), radius


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _filter_last(a: np.ndarray, w: np.ndarray, r: int) -> np.ndarray:
    """Correlate float32 ``a`` with ``w`` along its last axis in float64; returns float32."""
    n = a.shape[-1]
    p = np.pad(a.astype(np.float64), [(0, 0)] * (a.ndim - 1) + [(r, r)], mode="symmetric")
    if r <= 12:
        out = p[..., r:r + n] * w[r]
        for j in range(1, r + 1):
            out += (p[..., r + j:r + j + n] + p[..., r - j:r - j + n]) * w[r + j]
    else:
        nfft = _fast_len(n + 4 * r)
        k = np.zeros(nfft)
        k[:2 * r + 1] = w[::-1]
        spec = np.fft.rfft(p, nfft, axis=-1)
        spec *= np.fft.rfft(k)
        out = np.fft.irfft(spec, nfft, axis=-1)[..., 2 * r:2 * r + n]
    return out.astype(np.float32)


def gaussian_filter_hw(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 ``(H, W, C)`` array over H and W (scipy ``gaussian_filter(a, [s, s, 0])``)."""
    a = np.asarray(a, dtype=np.float32)
    if not sigma > 1e-15:
        return a.copy()
    w, r = _gaussian_kernel(float(sigma))
    v = _filter_last(np.ascontiguousarray(a.transpose(2, 1, 0)), w, r)     # [C, W, H]: along H first
    hh = _filter_last(np.ascontiguousarray(v.transpose(0, 2, 1)), w, r)    # [C, H, W]: then along W
    return np.ascontiguousarray(hh.transpose(1, 2, 0))


#---------------------------------------------------------------------------------------------------


def align_face_official(img, output_size: int = 256, transform_size: int | None = None, *, path=None) -> AlignedFace:
    """Compatibility mode: exactly what pSp/e4e/E2Style ``align_face`` produce.

    Detection is ``detector(img, 1)`` on the full image and, as in the official ``get_landmark``,
    the **last** detection is used (with several detections that may not be the real face: use
    :func:`align_photo` for the best face). ``transform_size`` defaults to ``output_size``.
    """
    from studio.core.faces import last_detection

    arr = as_rgb_array(img)
    face = last_detection(arr, path=path)
    return align_face(arr, face.landmarks, FFHQ, output_size=output_size,
                      transform_size=output_size if transform_size is None else transform_size, exact=True)


def align_photo(img, profile: AlignmentProfile = FFHQ, output_size: int | None = None, *,
                all_faces: bool = False, path=None, **detect_kwargs) -> list[AlignedFace]:
    """Detect faces and align them: the best one (default) or all of them, best first.

    ``detect_kwargs`` go to :func:`studio.core.faces.detect_faces`. Raises :class:`NoFaceError`.
    """
    from studio.core.faces import detect_faces

    arr = as_rgb_array(img)
    faces = detect_faces(arr, path=path, **detect_kwargs)
    if not all_faces:
        faces = faces[:1]
    return [align_face(arr, f.landmarks, profile, output_size=output_size) for f in faces]
