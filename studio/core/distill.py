"""StyleGAN2 distillation (seed 002, METHODS.md §6): crossover triplets, SSIM, and one-pass mixing.

Pure functions and small classes, no Qt, no engine:

* :func:`crossover_row` / :func:`crossover_strengths` / :func:`mix_at_crossover`: the triplet's
  mixed W+ takes the **content rows before the crossover and the style rows from it on**. The
  crossover is the first row of a layer group of :func:`studio.core.latent.layer_groups`
  ('medium' = row 4: content's coarse rows, style's medium and fine rows; 'fine' = row 8).
* :func:`render_triplets`: content, style and mixed images rendered by a generator (constant noise).
* :func:`ssim` and :func:`ssim_filter`: structural similarity (Wang et al. 2004) and the seed's
  keep-if-SSIM >= 0.5 rule for face-to-X pairs, with the median.
* :class:`FastMixer`: a trained student (``DistillStudent``): two aligned faces in, the mixed face
  out, one forward pass. :class:`InversionMixer`: the same interface by inverting both faces with
  an encoder and mixing through the generator (the slow reference, and the fallback).
* :func:`load_student` / :func:`find_student`: student files, and the one a model pack lists.

Images: ``img`` tensors are NCHW in [-1, 1]; "faces" given to ``mix`` are aligned square
``(H, W, 3) uint8`` arrays or PIL images (resized to the model's resolution).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import CheckpointError, StudioError
from studio.core.latent import GROUPS, layer_groups, mix_rows

__all__ = [
    "DEFAULT_GROUP",
    "GROUPS",
    "FastMixer",
    "InversionMixer",
    "MixError",
    "crossover_row",
    "crossover_strengths",
    "fastest_encoder",
    "find_student",
    "load_student",
    "make_mixer",
    "mix_at_crossover",
    "render_triplets",
    "ssim",
    "ssim_filter",
]

log = logging.getLogger(__name__)

DEFAULT_GROUP = "medium"
SSIM_KEEP = 0.5  # METHODS.md §6: face-to-drawing pairs with SSIM >= 0.5 are kept


class MixError(StudioError):
    """Mixing cannot run as asked (wrong group for the student, images of the wrong kind, ...)."""


# ----------------------------------------------------------------------------
# Crossover math (METHODS.md §6)


def crossover_row(num_ws: int, group: str) -> int:
    """First W+ row taken from the style face when mixing at ``group`` ('medium' -> 4, 'fine' -> 8).

    Raises ValueError for an unknown group, or one whose crossover would leave one side without rows
    ('coarse' starts at row 0: every row would come from the style face; a model too small to have
    the group leaves it empty)."""
    groups = layer_groups(num_ws)
    if group not in groups:
        raise ValueError(f"unknown layer group {group!r}; use one of {', '.join(GROUPS)}")
    start, stop = groups[group]
    if start == 0:
        raise ValueError(f"a crossover at the {group} group (row 0) takes every row from the style face; "
                         f"use {' or '.join(g for g in GROUPS if layer_groups(num_ws)[g][0] > 0)}")
    if start >= stop or start >= num_ws:
        raise ValueError(f"this model ({num_ws} W+ rows) has no {group} rows to take from the style face")
    return start


def crossover_strengths(num_ws: int, crossover: int) -> np.ndarray:
    """Per-row style strengths [num_ws]: 0 (content) before ``crossover``, 1 (style) from it on."""
    if not 0 < crossover < num_ws:
        raise ValueError(f"crossover row {crossover} must lie in 1..{num_ws - 1}")
    t = np.zeros(num_ws, dtype=np.float64)
    t[crossover:] = 1.0
    return t


def mix_at_crossover(ws_content: torch.Tensor, ws_style: torch.Tensor, crossover: int) -> torch.Tensor:
    """W+ [..., num_ws, w_dim]: rows ``[:crossover]`` of the content, ``[crossover:]`` of the style (exact copies)."""
    return mix_rows(ws_content, ws_style, crossover_strengths(ws_content.shape[-2], crossover))


def _as_ws(G, w: torch.Tensor) -> torch.Tensor:
    """W [N, w_dim] -> W+ [N, num_ws, w_dim]; W+ passes through."""
    if w.ndim == 2:
        return w.unsqueeze(1).repeat(1, G.num_ws, 1)
    if w.ndim == 3 and w.shape[1] == G.num_ws:
        return w
    raise ValueError(f"expected W [N, {G.w_dim}] or W+ [N, {G.num_ws}, {G.w_dim}], got {list(w.shape)}")


@torch.no_grad()
def render_triplets(G, w_content: torch.Tensor, w_style: torch.Tensor, crossover: int, *,
                    chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(content, style, mixed) images [N, 3, R, R] in [-1, 1] (constant noise, clamped) of W or W+ latents.

    The mixed image is ``G.synthesis(mix_at_crossover(ws_content, ws_style, crossover))``."""
    wc, wst = _as_ws(G, w_content), _as_ws(G, w_style)
    wm = mix_at_crossover(wc, wst, crossover)
    allws = torch.cat([wc, wst, wm])
    dev = next(G.parameters()).device
    outs = [G.synthesis(allws[i:i + chunk].to(dev), noise_mode="const").clamp(-1, 1)
            for i in range(0, len(allws), chunk)]
    img = torch.cat(outs)
    n = len(wc)
    return img[:n], img[n:2 * n], img[2 * n:]


# ----------------------------------------------------------------------------
# SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03)


def _gauss_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # [size, size]


def ssim(a: torch.Tensor, b: torch.Tensor, *, value_range: tuple[float, float] = (-1.0, 1.0), window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image [N] of a, b [N, C, H, W] with values in ``value_range`` (default: our [-1, 1]).

    Intensities are mapped to [0, 1] first (SSIM's luminance term assumes non-negative intensities),
    so the constants are (0.01)^2 and (0.03)^2. Channels are scored separately and averaged; only
    windows fully inside the image count ("valid" filtering, as scikit-image). Images smaller than
    the window use a window of their size."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two [N, C, H, W] tensors of one shape, got {list(a.shape)} and {list(b.shape)}")
    lo, hi = float(value_range[0]), float(value_range[1])
    a, b = (a.double() - lo) / (hi - lo), (b.double() - lo) / (hi - lo)
    size = min(window, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2  # odd
    C = a.shape[1]
    k = _gauss_window(size, sigma).double().to(a.device).expand(C, 1, size, size)

    def filt(x):
        return F.conv2d(x, k, groups=C)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return m.mean(dim=(1, 2, 3)).float()


def ssim_filter(scores, threshold: float = SSIM_KEEP) -> tuple[np.ndarray, float]:
    """``(keep mask [N] bool, median SSIM)``: pairs with SSIM >= ``threshold`` are kept (METHODS.md §6).

    The median is over all pairs, before filtering (the seed reports 0.6); NaN for no pairs."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = s >= threshold  # NaN is never kept
    return keep, float(np.median(s)) if len(s) else float("nan")


# ----------------------------------------------------------------------------
# One-pass mixing


def _face_tensor(img, size: int, device) -> torch.Tensor:
    from studio.core.inversion import InversionError, image_to_tensor

    try:
        return image_to_tensor(img, size, device)
    except InversionError as e:
        raise MixError(str(e)) from None


class FastMixer:
    """A distilled student: ``mix(content_face, style_face) -> (R, R, 3) uint8`` in one forward pass.

    student: a :class:`~studio.core.nets.distill.DistillStudent`. resolution: the side it runs at
    (the generator's; default the student's). info: the student file's ``distill`` manifest section
    (``group``, ``crossover``, ``num_ws``, ...), kept for callers."""

    kind = "student"

    def __init__(self, student: torch.nn.Module, resolution: int | None = None, *, info: Mapping | None = None,
                 device: str | torch.device = "cpu"):
        self.student = student.eval().requires_grad_(False).to(device)
        self.resolution = int(resolution or student.config.resolution)
        self.info = dict(info or {})
        self.device = torch.device(device)

    @property
    def group(self) -> str | None:
        return self.info.get("group")

    @property
    def alignment_profile(self):
        """The alignment profile (name or dict) the teacher's faces follow; align photos with it."""
        return self.info.get("alignment_profile")

    @torch.no_grad()
    def mix_tensor(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """content, style [N, 3, R, R] in [-1, 1] -> mixed [N, 3, R, R] in [-1, 1]."""
        from studio.core.nets.distill import stack_inputs

        return self.student(stack_inputs(content, style).to(self.device)).clamp(-1, 1)

    def mix(self, content_img, style_img) -> np.ndarray:
        """Two aligned square faces (uint8 arrays / PIL) -> the mixed face (R, R, 3) uint8."""
        from studio.core.tensors import to_uint8

        c = _face_tensor(content_img, self.resolution, self.device)
        s = _face_tensor(style_img, self.resolution, self.device)
        return to_uint8(self.mix_tensor(c, s))[0]


class InversionMixer:
    """The reference path: invert both faces with an encoder, mix W+ at ``crossover``, render with G.

    ``mix(content_face, style_face) -> (R, R, 3) uint8``, like :class:`FastMixer`."""

    kind = "inversion"

    def __init__(self, G, encoder_pipeline, crossover: int, *, method: str | None = None, alignment_profile=None):
        from studio.core.inversion import EncoderInverter

        self.G = G.eval()
        self.inverter = EncoderInverter(encoder_pipeline, G, method=method)
        self.crossover = int(crossover)
        crossover_strengths(G.num_ws, self.crossover)  # validates
        self.resolution = int(G.img_resolution)
        self.method = self.inverter.method
        self.alignment_profile = alignment_profile
        self.group = next((g for g, (a, _) in layer_groups(G.num_ws).items() if a == self.crossover), None)

    @torch.no_grad()
    def mix_tensor(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """content, style [N, 3, R, R] in [-1, 1] -> mixed [N, 3, R, R] (encode both, mix, synthesise)."""
        ws = self.inverter.encode(torch.cat([content, style]))  # [2N, num_ws, w_dim]
        n = len(content)
        return self.G.synthesis(mix_at_crossover(ws[:n], ws[n:], self.crossover), noise_mode="const").clamp(-1, 1)

    def mix(self, content_img, style_img) -> np.ndarray:
        from studio.core.tensors import to_uint8

        dev = next(self.G.parameters()).device
        c = _face_tensor(content_img, self.resolution, dev)
        s = _face_tensor(style_img, self.resolution, dev)
        return to_uint8(self.mix_tensor(c, s))[0]


def fastest_encoder(encoders: Mapping[str, torch.nn.Module]) -> str | None:
    """The encoder with the fewest parameters (a proxy for the fewest multiply-adds), or None."""
    if not encoders:
        return None

    def size(name: str) -> int:
        net = getattr(encoders[name], "encoder", encoders[name])
        return sum(p.numel() for p in net.parameters())

    return min(sorted(encoders), key=size)


def load_student(path: str | Path, *, device: str | torch.device = "cpu") -> FastMixer:
    """A :class:`FastMixer` from a student file (``trainers.distill``'s ``best.safetensors``)."""
    from studio.core.formats.stylestudio_fmt import load_student as _load

    student, man = _load(path)
    info = dict(man["distill"])
    info["path"] = str(path)
    info["alignment_profile"] = man.get("alignment_profile")
    return FastMixer(student, int(info.get("resolution") or student.config.resolution), info=info, device=device)


def find_student(model_path: str | Path | None, group: str | None = None) -> Path | None:
    """The student a model pack lists for ``group`` (``manifest['students'][group]``; any group if
    None), checked against its sha256; None when the model has none."""
    if model_path is None:
        return None
    root = Path(model_path)
    man_path = root / "manifest.json" if root.is_dir() else None
    if man_path is None or not man_path.is_file():
        return None
    try:
        man = json.loads(man_path.read_text())
    except (OSError, ValueError):
        return None
    students = man.get("students") if isinstance(man, dict) else None
    if not isinstance(students, dict) or not students:
        return None
    key = group if group is not None else next(iter(students))
    entry = students.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
        return None
    path = root / entry["file"]
    if not path.is_file():
        raise CheckpointError(path, "the pack lists this student but the file is missing; reinstall the pack")
    if entry.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise CheckpointError(path, "sha256 does not match the manifest (file corrupt, truncated or replaced)")
    return path


def time_per_image(fn, *args, repeats: int = 5) -> float:
    """Median seconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call."""
    fn(*args)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def make_mixer(model_path: str | Path | None = None, bundle=None, *, student: str | Path | None = None,
               group: str | None = None, method: str | None = None, device: str | torch.device = "cpu"):
    """The fastest mixer available: a student (``student``, else the one the model pack lists for
    ``group``), else :class:`InversionMixer` with ``method`` (default: the model's fastest encoder).

    ``bundle``: the loaded model (loaded from ``model_path`` only when the fallback needs it).
    Raises :class:`MixError` when nothing can mix as asked."""
    if group is not None and group not in GROUPS:
        raise MixError(f"unknown layer group {group!r}; use one of {', '.join(GROUPS)}")
    explicit = student is not None
    if student is None and method is None:
        student = find_student(model_path, group)
    if student is not None:
        mixer = load_student(student, device=device)
        if group is None or mixer.group == group:
            return mixer
        if explicit:
            raise MixError(f"{student} was trained to mix at the {mixer.group} group, not {group}; drop --group, "
                           f"or pass a student trained with --group {group}")
        log.info("the pack's student mixes at %s, not %s: inverting instead", mixer.group, group)
    if bundle is None:
        if model_path is None:
            raise MixError("no student given and no model to invert with")
        from studio.core.formats import load_checkpoint

        bundle = load_checkpoint(model_path)
    G = bundle.generator
    if G is None:
        raise MixError(f"{bundle.path}: this model has no generator to mix with")
    from studio.core.inversion import bundle_encoders

    encoders = bundle_encoders(bundle)
    name = method or fastest_encoder(encoders)
    if name is None:
        raise MixError("this model has neither a distilled student nor an encoder: train a student "
                       "(`stylestudio train distill`) or an encoder (`stylestudio train encoder`), or pass --student")
    if name not in encoders:
        raise MixError(f"no {name} encoder for this model; available: {', '.join(sorted(encoders)) or 'none'}")
    try:
        cross = crossover_row(G.num_ws, group or DEFAULT_GROUP)
    except ValueError as e:
        raise MixError(str(e)) from None
    return InversionMixer(G.to(device), encoders[name].to(device), cross, method=name,
                          alignment_profile=bundle.meta.get("alignment_profile"))
