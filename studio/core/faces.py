"""Face detection and 68-point landmarks with dlib (HOG detector + ``shape_predictor_68``).

The model files come from the PyPI package ``face-recognition-models`` (0.3.0). Its own
``import face_recognition_models`` fails on modern Python (it needs ``pkg_resources``), so the
``.dat`` files are located through ``importlib.util.find_spec`` without importing it.

Models are loaded lazily, once per process, and every call into dlib holds a lock, so the functions
here may be called from worker threads.

Coordinates are image pixels, ``x`` to the right, ``y`` down, pixel centres at integers (dlib's
convention). Boxes are ``(left, top, right, bottom)`` as dlib reports them (right/bottom inclusive).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.core.errors import NoFaceError, StudioError
from studio.core.imageio import as_rgb_array

log = logging.getLogger(__name__)

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"

#: Default work budget of the HOG detector, in pixels it scans (image pixels x 4**upsample).
#: 2.2 MP keeps the official ``detector(img, 1)`` for images up to ~0.55 MP (every FFHQ fixture),
#: scans a 1 MP photo once at full size (upsample 0) and a 12 MP photo at ~2.2 MP.
DEFAULT_DETECT_BUDGET = 2_200_000

#: When the first pass finds no face in a large photo, one more pass at this budget (4x; ~1 s for a
#: 12 MP photo) looks for the smaller faces the first one scanned too coarsely to see.
RETRY_DETECT_BUDGET = 4 * DEFAULT_DETECT_BUDGET

NO_FACE_HINT = ("the detector needs a roughly frontal, upright face at least ~80 px wide "
                "(~40 px in small images). Try a sharper or larger photo, crop closer to the face, "
                "or rotate the photo upright")


class FaceModelError(StudioError):
    """The dlib model files or the dlib package are missing or unreadable (an installation problem)."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box``: ``(left, top, right, bottom)`` in pixels of the image given to :func:`detect_faces`.
    ``score``: the HOG detector's confidence (about -0.5..3; the official threshold is 0).
    ``landmarks``: ``(68, 2)`` ``int64`` ``(x, y)`` pixels, iBUG-300W order (0-16 jaw, 17-26 brows,
    27-35 nose, 36-47 eyes, 48-67 mouth).
    ``index``: position in dlib's own detection order; the official pSp/e4e ``get_landmark`` keeps
    the detection with the largest index ("last detection").
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray = field(repr=False, compare=False)
    index: int = 0

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1

    @property
    def area(self) -> int:
        return self.width * self.height


#---------------------------------------------------------------------------------------------------
# Model files and lazily loaded, shared dlib objects.

_lock = threading.RLock()
_cache: dict[str, object] = {}


def models_dir() -> Path:
    """The folder holding the dlib ``.dat`` files of ``face-recognition-models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        d = Path(loc) / "models"
        if d.is_dir():
            return d
    raise FaceModelError("the face models are not installed; run "
                         "`pip install face-recognition-models==0.3.0` (about 100 MB)")


def model_path(name: str) -> Path:
    """Path of one ``.dat`` model file (e.g. :data:`PREDICTOR_68`)."""
    p = models_dir() / name
    if not p.is_file():
        raise FaceModelError(f"model file {p} is missing; reinstall with "
                             f"`pip install --force-reinstall face-recognition-models==0.3.0`")
    return p


def _dlib():
    try:
        import dlib  # noqa: WPS433 (heavy, optional until faces are needed)
    except ImportError:
        raise FaceModelError("dlib is not installed; run `pip install dlib-bin`") from None
    return dlib


def _get(key: str):
    with _lock:
        obj = _cache.get(key)
        if obj is None:
            dlib = _dlib()
            try:
                if key == "detector":
                    obj = dlib.get_frontal_face_detector()
                elif key == "predictor68":
                    obj = dlib.shape_predictor(str(model_path(PREDICTOR_68)))
                elif key == "recognizer":
                    obj = dlib.face_recognition_model_v1(str(model_path(RECOGNITION_MODEL)))
                else:  # pragma: no cover - programming error
                    raise KeyError(key)
            except RuntimeError as e:  # dlib's error for an unreadable/corrupt .dat file
                raise FaceModelError(f"cannot load dlib model {key!r} ({e}); reinstall "
                                     f"face-recognition-models==0.3.0") from None
            _cache[key] = obj
            log.debug("loaded dlib %s", key)
        return obj


def model_lock() -> threading.RLock:
    """The lock held around every dlib call (for :mod:`studio.core.identity`)."""
    return _lock


#---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectPlan:
    """How the detector scans an image: integer downscale factor ``reduce`` (1 = none) and dlib upsample count."""

    reduce: int
    upsample: int

    @property
    def scale(self) -> float:
        return 1.0 / self.reduce

    def scanned(self, height: int, width: int) -> int:
        """Pixels the detector scans for an image of ``height x width`` under this plan."""
        return math.ceil(height / self.reduce) * math.ceil(width / self.reduce) * 4 ** self.upsample


def plan_detection(height: int, width: int, *, upsample: int = 1,
                   budget: int | None = DEFAULT_DETECT_BUDGET) -> DetectPlan:
    """Choose the detector's working scale for an image of ``height x width`` pixels.

    The official code runs ``detector(img, 1)`` (image upsampled 2x). That is kept while the
    scanned area ``H * W * 4**upsample`` fits ``budget``; otherwise the upsampling is reduced first
    (same result for large faces, 4x cheaper), then the image is shrunk by the smallest integer
    factor that fits (a box filter: fast, and boxes map back exactly). ``budget=None`` always gives
    the official behaviour; any other budget must be a finite number of pixels >= 1 (ValueError).
    """
    up = max(int(upsample), 0)
    if budget is None:
        return DetectPlan(1, up)
    try:
        ok = not isinstance(budget, (bool, str)) and math.isfinite(float(budget)) and float(budget) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:  # 0, negative, NaN or inf would never fit (the shrink loop below would not end)
        raise ValueError(f"detection budget must be a finite number of pixels >= 1 (or None), got {budget!r}")
    pixels = float(height) * float(width)
    while up > 0 and pixels * 4 ** up > budget:
        up -= 1
    if pixels * 4 ** up <= budget:
        return DetectPlan(1, up)
    k = max(2, math.ceil(math.sqrt(pixels / max(budget, 1))))
    while math.ceil(height / k) * math.ceil(width / k) > budget:
        k += 1
    return DetectPlan(k, 0)


def detect_faces(
    img,
    *,
    upsample: int = 1,
    budget: int | None = DEFAULT_DETECT_BUDGET,
    order: str = "best",
    min_score: float | None = None,
    raise_if_none: bool = True,
    path=None,
    retry_budget: int | None = RETRY_DETECT_BUDGET,
) -> list[Face]:
    """All faces in an RGB image ``(H, W, 3) uint8``, each with box, score and 68 landmarks.

    ``order='best'`` (default) sorts by detector score, highest first (ties: larger box first);
    ``order='dlib'`` keeps dlib's order (what the official alignment script iterates over).
    ``upsample``/``budget``: see :func:`plan_detection`; landmarks are always computed on the
    full-resolution image. ``min_score`` drops weaker detections (dlib's default threshold is 0).
    ``retry_budget``: with no face found, one more pass at this budget where it scans more pixels
    than the first (large photos only; ``None``: no second pass).
    With no face, raises :class:`NoFaceError` (``path`` names the file in the message), or returns
    ``[]`` when ``raise_if_none`` is false.
    """
    if order not in ("best", "dlib"):
        raise ValueError(f"order must be 'best' or 'dlib', not {order!r}")
    arr = as_rgb_array(img, name=None if path is None else str(path))
    h, w = arr.shape[:2]
    plan = plan_detection(h, w, upsample=upsample, budget=budget)
    faces = _detect(arr, plan)
    if not faces and retry_budget is not None and budget is not None and retry_budget > budget:
        retry = plan_detection(h, w, upsample=upsample, budget=retry_budget)
        if retry.scanned(h, w) > plan.scanned(h, w):
            log.info("no face at %.1f MP: looking again at %.1f MP", plan.scanned(h, w) / 1e6,
                     retry.scanned(h, w) / 1e6)
            faces = _detect(arr, retry)
    if min_score is not None:
        faces = [f for f in faces if f.score >= min_score]
    if order == "best":
        faces.sort(key=lambda f: (-f.score, -f.area, f.index))
    if not faces and raise_if_none:
        raise NoFaceError(path, f"no face found in this {w}x{h} image: {NO_FACE_HINT}")
    return faces


def _detect(arr: np.ndarray, plan: DetectPlan) -> list[Face]:
    """One detector pass over ``arr`` as ``plan`` says; faces in dlib's order, full-resolution pixels."""
    h, w = arr.shape[:2]
    work = arr
    k = plan.reduce
    if k > 1:
        from PIL import Image

        work = np.asarray(Image.fromarray(arr).reduce(k))  # box filter, ceil(W / k) x ceil(H / k)
    dlib = _dlib()
    detector = _get("detector")
    predictor = _get("predictor68")
    with _lock:
        rects, scores, _kinds = detector.run(work, plan.upsample, 0.0)
        faces: list[Face] = []
        for i, (r, s) in enumerate(zip(rects, scores)):
            if k > 1:  # work pixel j covers full-resolution pixels [j*k, (j+1)*k)
                r = dlib.rectangle(r.left() * k, r.top() * k, (r.right() + 1) * k - 1, (r.bottom() + 1) * k - 1)
            shape = predictor(arr, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)
            faces.append(Face(box=(r.left(), r.top(), r.right(), r.bottom()), score=float(s),
                              landmarks=lm, index=i))
    log.info("detected %d face(s) in %dx%d image (reduce %d, upsample %d)", len(faces), w, h,
             plan.reduce, plan.upsample)
    return faces


def best_face(img, **kwargs) -> Face:
    """The most confident face (see :func:`detect_faces`); raises :class:`NoFaceError` if none."""
    kwargs["order"] = "best"
    kwargs["raise_if_none"] = True
    return detect_faces(img, **kwargs)[0]


def last_detection(img, *, path=None) -> Face:
    """The face the official pSp/e4e ``get_landmark`` uses: ``detector(img, 1)``, last detection.

    Compatibility only: with several detections this is often *not* the real face.
    """
    faces = detect_faces(img, upsample=1, budget=None, order="dlib", path=path)
    return faces[-1]


def landmarks_for_box(img, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 landmarks ``(68, 2) int64`` for a given face box ``(left, top, right, bottom)``."""
    arr = as_rgb_array(img)
    dlib = _dlib()
    predictor = _get("predictor68")
    with _lock:
        shape = predictor(arr, dlib.rectangle(*[int(v) for v in box]))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)
