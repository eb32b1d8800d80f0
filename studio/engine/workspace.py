"""The app's long operations as plain functions (no Qt): load a model, read a photo and find its
faces, align one, invert it, draw a random face, paste an edit back.

Each is meant to run in a :class:`~studio.engine.workers.JobRunner` job; the GUI only calls them
through jobs and shows the results.
"""

from __future__ import annotations

import io

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError
from studio.core.lazy import torch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MODEL_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors", ".json")
PROJECT_SUFFIX = ".stylestudio"
SEFA_FALLBACK_K = 5


def classify_path(path: str | Path) -> str:
    """'project', 'model' or 'image' from the name (content checks happen when reading)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == PROJECT_SUFFIX:
        return "project"
    if p.is_dir() or suffix in MODEL_SUFFIXES:
        return "model"
    return "image"


# ----------------------------------------------------------------------------
# Models


@dataclass
class LoadedModel:
    """A generator ready for editing, with what the window offers for it."""

    bundle: object
    G: torch.nn.Module
    encoders: dict
    directions: list          # list[Direction]
    directions_source: str    # 'pack', 'sefa' or 'none'
    profile: object           # AlignmentProfile
    licence: str
    path: str
    student: str | None = None          # the pack's distilled mixing student (fast mix), if any
    student_problem: str | None = None  # why the pack's student cannot be used (missing / corrupt file)
    student_group: str | None = None    # the layer group the student mixes at ('medium', ...)

    @property
    def num_ws(self) -> int:
        return int(self.G.num_ws)

    @property
    def w_dim(self) -> int:
        return int(self.G.w_dim)

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    @property
    def format(self) -> str:
        return str(getattr(self.bundle, "format", "unknown"))

    def identity(self):
        from studio.engine.session import ModelIdentity

        return ModelIdentity.from_generator(self.G, format=self.format, path=self.path)

    def describe(self) -> str:
        return (f"{Path(self.path).name or 'model'}: {self.format}, {self.resolution} px, "
                f"W+ {self.num_ws}x{self.w_dim}")


def default_model_path() -> Path | None:
    from studio.core.pack import default_pack

    return default_pack()


def bundle_licence(bundle) -> str:
    meta = getattr(bundle, "meta", {}) or {}
    man = meta.get("manifest") or {}
    return str(meta.get("licence") or man.get("licence") or man.get("license")
               or "unknown: the licence of the source weights applies")


def model_directions(bundle, G, *, sefa_k: int = SEFA_FALLBACK_K) -> tuple[list, str]:
    """The model pack's directions, else the top ``sefa_k`` SeFa directions (closed form, fast)."""
    from studio.core import directions as dirs

    loader = getattr(dirs, "load_pack_directions", None)
    if loader is not None:
        try:
            found = loader(bundle)
        except StudioError as e:
            log.warning("the pack's directions could not be loaded: %s", e)
            found = []
        found = [d for d in found if d.w_dim == int(G.w_dim)]
        if found:
            return found, "pack"
    if sefa_k <= 0:
        return [], "none"
    return dirs.sefa(G, k=min(sefa_k, int(G.w_dim))), "sefa"


def load_model(path: str | Path, *, device: str = "cpu", sefa_k: int = SEFA_FALLBACK_K, ctx=None) -> LoadedModel:
    """Read a model file / pack; raises :class:`~studio.core.errors.CheckpointError` for a bad file
    and :class:`StudioError` when it has no generator."""
    from studio.core.align import get_profile
    from studio.core.formats import load_checkpoint
    from studio.core.inversion import bundle_encoders
    from studio.core.tensors import pick_device
    from studio.engine import renderer  # noqa: F401 - imported here, off the GUI thread, which uses it next

    bundle = load_checkpoint(path)
    if ctx is not None:
        ctx.check()
    G = bundle.generator
    if G is None:
        raise StudioError(f"{path}: this file has no generator to edit with (load a StyleGAN2 generator, "
                          "an e4e/pSp checkpoint or a StyleStudio model pack)")
    dev = pick_device(device)
    G = G.to(dev).eval().requires_grad_(False)
    encoders = {k: v.to(dev).eval() for k, v in bundle_encoders(bundle).items()}
    meta = getattr(bundle, "meta", {}) or {}
    profile = get_profile(meta.get("alignment_profile") or (meta.get("manifest") or {}).get("alignment_profile"))
    directions, source = model_directions(bundle, G, sefa_k=sefa_k)
    student, problem = model_student(path)
    model = LoadedModel(bundle, G, encoders, directions, source, profile, bundle_licence(bundle), str(path),
                        student, problem)
    if student is not None:  # load it now (small), off the GUI thread: the fast mix is then one pass
        try:
            model.student_group = fast_mixer(model).group
        except StudioError as e:
            log.warning("the pack's distilled student cannot be used: %s", e)
            model.student, model.student_problem = None, str(e)
    return model


def model_student(path: str | Path) -> tuple[str | None, str | None]:
    """(the student file the model pack lists, or None; why it cannot be used, or None)."""
    from studio.core.distill import find_student

    try:
        found = find_student(path)
    except StudioError as e:
        log.warning("the pack's distilled student cannot be used: %s", e)
        return None, str(e)
    return (str(found) if found is not None else None), None


# ----------------------------------------------------------------------------
# Photos


# A detection is "weak" (a patch, a drawing, a face-like texture, or a real face seen badly) when its
# HOG score is below WEAK_FACE_SCORE and at least WEAK_FACE_GAP under the best face of the photo.
# Measured: real UTKFace faces score 1.38 (median), 0.34 at the 5th percentile; the NASA mission
# patch on the astronaut sample scores 0.12 beside her face's 1.16.
WEAK_FACE_SCORE = 0.3
WEAK_FACE_GAP = 0.8


@dataclass
class PhotoFaces:
    """A photo (H, W, 3) uint8 and its detected faces (best first)."""

    path: str
    image: np.ndarray
    info: object
    faces: list = field(default_factory=list)

    def is_weak(self, index: int) -> bool:
        """Whether face ``index`` is a weak detection next to a clearly better face."""
        if not self.faces:
            return False
        best = max(f.score for f in self.faces)
        score = self.faces[index].score
        return score < WEAK_FACE_SCORE and best - score >= WEAK_FACE_GAP

    def clear_faces(self) -> list[int]:
        """Indices of the faces that are not weak detections (never empty when there are faces)."""
        return [i for i in range(len(self.faces)) if not self.is_weak(i)]

    def default_face(self) -> int | None:
        """The face to edit without asking: the only face, or the only clear one among weak
        detections; None when the user should pick (several clear faces) or there is none."""
        clear = self.clear_faces()
        return clear[0] if len(clear) == 1 else None


def read_photo(path: str | Path, *, ctx=None) -> PhotoFaces:
    """Load a photo and detect its faces; raises ImageError / NoFaceError with a user message."""
    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image

    img, info = load_image(path)
    if ctx is not None:
        ctx.check()
    faces = detect_faces(img, path=path)
    return PhotoFaces(str(path), img, info, faces)


def align(photo: PhotoFaces, index: int, profile):
    """The :class:`~studio.core.align.AlignedFace` of face ``index`` of ``photo``."""
    from studio.core.align import align_face

    return align_face(photo.image, photo.faces[index].landmarks, profile)


def face_thumbnail(photo: PhotoFaces, index: int, size: int = 96) -> np.ndarray:
    """A square crop (size, size, 3) uint8 around face ``index`` (for the face picker)."""
    from PIL import Image

    l, t, r, b = photo.faces[index].box
    h, w = photo.image.shape[:2]
    cx, cy, half = (l + r) / 2, (t + b) / 2, max(r - l, b - t) * 0.75
    box = (int(max(0, cx - half)), int(max(0, cy - half)), int(min(w, cx + half)), int(min(h, cy + half)))
    return np.asarray(Image.fromarray(photo.image).crop(box).resize((size, size), Image.BILINEAR))


# ----------------------------------------------------------------------------
# Latents


def invert(model: LoadedModel, aligned_image: np.ndarray, method: str, *, steps: int | None = None, seed: int = 0,
           progress=None, cancel=None):
    """Invert an aligned face with ``method``; returns :class:`~studio.core.inversion.Inversion`."""
    from studio.core.inversion import make_inverter
    from studio.core.projector import ProjectorConfig

    cfg = None
    if method in ("optimize", "hybrid"):
        cfg = ProjectorConfig(seed=seed)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=int(steps))
        if method == "hybrid" and steps is None:
            cfg = None
    inverter = make_inverter(method, model.G, model.encoders, projector_config=cfg)
    return inverter.invert(aligned_image, progress=progress, cancel=cancel)


def random_latent(G, seed: int) -> np.ndarray:
    """The W+ [num_ws, w_dim] float32 of z ~ N(0, 1) drawn from ``seed`` (no truncation)."""
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, int(G.z_dim), generator=gen)
    dev = next(G.parameters()).device
    with torch.inference_mode():
        ws = G.map(z.to(dev))  # [1, num_ws, w_dim]
    return ws[0].float().cpu().numpy().copy()


def paste(photo: PhotoFaces, edited_aligned: np.ndarray, transform, *, base: np.ndarray | None = None) -> np.ndarray:
    """The photo with the edited aligned face pasted back (H, W, 3) uint8. ``base``: the unedited
    reconstruction: only the change the edit makes is added (the photo keeps its own detail)."""
    from studio.core.paste import paste_back

    return paste_back(photo.image, edited_aligned, transform, base_aligned=base)


def refine(model: LoadedModel, aligned_image: np.ndarray, start, *, steps: int = 60, preview_every: int = 5,
           seed: int = 0, progress=None, cancel=None):
    """Hybrid refinement: optimise W+ from ``start`` (the current latent, [num_ws, w_dim]) towards the
    aligned face for ``steps`` steps, with a preview every ``preview_every`` steps. Returns an
    :class:`~studio.core.inversion.Inversion` (method 'refine')."""
    from studio.core.inversion import OptimizeInverter
    from studio.core.projector import ProjectorConfig

    start_ws = torch.as_tensor(np.asarray(start, dtype=np.float32)).reshape(1, model.num_ws, model.w_dim)

    class _Start:  # the inverter's "encoder": the given latent
        method = "current"

        def encode(self, target):
            return start_ws.to(target.device)

    cfg = ProjectorConfig(seed=seed, steps=max(1, int(steps)), preview_every=max(0, int(preview_every)))
    inverter = OptimizeInverter(model.G, cfg, start=_Start())
    inverter.method = "refine"
    return inverter.invert(aligned_image, progress=progress, cancel=cancel)


def render_latent(G, latent) -> np.ndarray:
    """(R, R, 3) uint8 image of a W+ latent [num_ws, w_dim] (a thumbnail, e.g. the mixing reference,
    or the unedited base of a paste): the pixels a :class:`Renderer` on G's device makes of it."""
    from studio.core.tensors import to_uint8
    from studio.engine.renderer import default_fused

    ws = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(1, int(G.num_ws), int(G.w_dim))
    dev = next(G.parameters()).device
    with torch.inference_mode():
        img = G.synthesis(ws.to(dev), noise_mode="const", fused=default_fused(dev))
    return to_uint8(img)[0]


#: Widest image each strip format holds (pixels); formats not listed hold any width we make.
STRIP_MAX_WIDTH = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500}


def sweep_problem(path: str | Path, frames: int, resolution: int) -> str | None:
    """Why a direction sweep of ``frames`` frames cannot be written to ``path`` (None: it can)."""
    from studio.core.imageio import SAVE_FORMATS, SAVE_SUFFIXES_TEXT

    suffix = Path(path).suffix.lower()
    if suffix != ".gif" and suffix not in SAVE_FORMATS:
        return f"{path}: unknown suffix for a sweep; use .gif (an animation) or {SAVE_SUFFIXES_TEXT} (a strip of the frames)"
    limit = STRIP_MAX_WIDTH.get(suffix)
    if limit is not None and frames * resolution > limit:
        return (f"{path}: a strip of {frames} frames of {resolution} px is {frames * resolution} px wide, more than "
                f"{suffix} allows ({limit}); use at most {limit // resolution} frames, or .png or .gif")
    return None


def save_sweep(path: str | Path, frames: list[np.ndarray], *, frame_ms: int = 120) -> tuple[Path, int]:
    """Write a direction sweep: ``.gif`` an animation there and back (a seamless loop, ``frame_ms`` per
    frame), another image suffix the frames side by side. Returns (path, frames written)."""
    from studio.core.fileio import atomic_write_bytes
    from studio.core.imageio import save_image

    path = Path(path)
    if path.suffix.lower() != ".gif":
        return save_image(path, np.concatenate(frames, axis=1)), len(frames)
    from PIL import Image

    seq = list(frames) + list(frames[-2:0:-1])
    imgs = [Image.fromarray(f, "RGB") for f in seq]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(frame_ms), loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return path, len(seq)


def load_direction_file(model: LoadedModel, path: str | Path) -> list:
    """Directions (list[Direction]) of an InterFaceGAN ``.npy`` / GANSpace ``.npz`` file, checked
    against the loaded generator; a wrong-size file raises a DirectionError that says so."""
    from studio.core.directions import load_directions

    found = load_directions(path, w_dim=model.w_dim, num_ws=model.num_ws)
    for d in found:
        d.meta.setdefault("file", Path(path).name)
        if d.source != "file":
            d.meta.setdefault("label", d.name)
    return found


def available_devices(*, probe: bool = True) -> list[tuple[str, str]]:
    """(device, label) pairs the app can run on: the CPU, and CUDA when PyTorch sees a GPU.
    ``probe=False``: do not import PyTorch to find out (the CPU only until it has been imported,
    e.g. by the first model load), so a window can be built before PyTorch loads."""
    import sys

    out = [("cpu", "CPU")]
    if not probe and "torch" not in sys.modules:
        return out
    try:
        if torch.cuda.is_available():
            out.append(("cuda", f"CUDA ({torch.cuda.get_device_name(0)})"))
    except Exception:  # noqa: BLE001 - a broken driver must not stop the app
        log.warning("CUDA is present but unusable", exc_info=True)
    return out


# ----------------------------------------------------------------------------
# Fast (distilled) style mixing

_FAST_MIXERS: dict[tuple[str, str], object] = {}   # (student file, device) -> FastMixer, loaded once
_FAST_MIXERS_LOCK = threading.Lock()


@dataclass
class FastMixResult:
    """What :func:`fast_mix` made: the content, the aligned style face and the mix, (R, R, 3) uint8."""

    content: np.ndarray
    style: np.ndarray
    mixed: np.ndarray
    group: str | None
    seconds: float
    style_path: str
    face_index: int


def fast_mixer(model: LoadedModel):
    """The model pack's :class:`~studio.core.distill.FastMixer`, loaded once per student and device."""
    from studio.core.distill import MixError, load_student

    if model.student is None:
        raise MixError(model.student_problem or f"{Path(model.path).name or 'this model'} has no distilled "
                       "mixing student; use the reference photo instead, or train one (`stylestudio train distill`)")
    dev = next(model.G.parameters()).device
    key = (str(model.student), str(dev))
    with _FAST_MIXERS_LOCK:
        mixer = _FAST_MIXERS.get(key)
        if mixer is None:
            mixer = _FAST_MIXERS[key] = load_student(model.student, device=dev)
    return mixer


def fast_mix(model: LoadedModel, content_aligned, style, *, face_index: int = 0, ctx=None) -> FastMixResult:
    """Mix the aligned content face with the styles of a face of another photo, in one pass of the
    pack's distilled student. ``content_aligned``: an aligned (R, R, 3) uint8 array (or an
    ``AlignedFace``); ``style``: a photo path or a :class:`PhotoFaces` already read. The style face
    (``face_index``) is aligned with the model's profile. Raises ImageError / NoFaceError /
    :class:`~studio.core.distill.MixError` with a user message."""
    import time

    content = np.asarray(getattr(content_aligned, "image", content_aligned))
    photo = style if isinstance(style, PhotoFaces) else read_photo(style, ctx=ctx)
    if not 0 <= face_index < len(photo.faces):
        from studio.core.distill import MixError

        raise MixError(f"{Path(photo.path).name}: no face number {face_index + 1} in this photo")
    aligned = align(photo, face_index, model.profile).image
    mixer = fast_mixer(model)
    if ctx is not None:
        ctx.check()
    t0 = time.perf_counter()
    mixed = mixer.mix(content, aligned)
    seconds = time.perf_counter() - t0
    return FastMixResult(content, aligned, mixed, mixer.group, seconds, photo.path, face_index)


# ----------------------------------------------------------------------------
# Export with the edit recipe

RECIPE_KEY = "stylestudio:recipe"


def save_with_recipe(path: str | Path, img: np.ndarray, recipe: dict | None = None, *, quality: int = 95) -> Path:
    """Write an RGB image with the edit ``recipe`` (JSON) in its metadata: a PNG ``iTXt`` chunk named
    ``stylestudio:recipe``; for JPEG the JPEG comment and the EXIF ImageDescription. Other formats
    are written without it. Atomic; raises :class:`~studio.core.errors.ImageError`."""
    import io
    import json

    from PIL import Image, PngImagePlugin

    from studio.core.errors import ImageError
    from studio.core.fileio import atomic_write_bytes
    from studio.core.imageio import save_image

    path = Path(path)
    suffix = path.suffix.lower()
    if recipe is None or suffix not in (".png", ".jpg", ".jpeg"):
        return save_image(path, img, quality=quality)
    text = json.dumps(recipe, sort_keys=True, allow_nan=False)
    arr = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(path, f"expected an RGB image (H, W, 3), got shape {list(arr.shape)}")
    im = Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    try:
        if suffix == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt(RECIPE_KEY, text)
            info.add_text("Software", "StyleStudio")
            im.save(buf, format="PNG", pnginfo=info, compress_level=6)
        else:
            exif = Image.Exif()
            exif[0x010E] = text            # ImageDescription
            exif[0x0131] = "StyleStudio"   # Software
            im.save(buf, format="JPEG", quality=int(quality), comment=text.encode("utf-8"), exif=exif.tobytes())
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise ImageError(path, f"cannot write the image ({e.strerror or e}); check the folder exists and is "
                               "writable") from None
    return path


def read_recipe(path: str | Path) -> dict | None:
    """The recipe :func:`save_with_recipe` stored in an image, or None."""
    import json

    from PIL import Image

    with Image.open(path) as im:
        text = im.info.get(RECIPE_KEY) or im.info.get("comment")
        if text is None:
            text = im.getexif().get(0x010E)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
