"""One interface for every way an aligned face becomes a W+ latent.

``Inverter.invert(aligned_image, progress=..., cancel=...) -> Inversion`` for all methods:

* learning-based encoders (pSp, e4e, E2Style, SAE, CRG; :class:`EncoderInverter`): one forward
  pass, fast, less faithful;
* optimisation (:class:`OptimizeInverter`, METHODS.md §3): W+ from ``w_avg``, slow, most faithful;
* hybrid: an encoder's latent as the optimisation's start, with a shorter step budget.

:func:`available_methods` says which methods a generator + its encoders offer (the GUI lists them,
greyed out with the reason when unavailable); :func:`make_inverter` builds one by name.

Images in: ``(H, W, 3) uint8`` arrays (e.g. :class:`studio.core.align.AlignedFace`'s ``image``) or
PIL images, any square size (resized to what each network needs). Out: the W+ latent on the CPU and
the reconstruction at the generator's resolution, with MSE / LPIPS (VGG) against the input.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import StudioError

__all__ = ["Inversion", "InversionProgress", "InversionError", "Inverter", "EncoderInverter", "OptimizeInverter",
           "MethodInfo", "METHODS", "ENCODER_METHODS", "available_methods", "make_inverter", "bundle_encoders", "image_to_tensor",
           "reconstruction_metrics"]

#: Every method, in the order the GUI lists them, with a label.
METHODS: dict[str, str] = {
    "psp": "pSp encoder (fast)",
    "e4e": "e4e encoder (fast, most editable)",
    "e2style": "E2Style encoder (fast, multi-stage)",
    "sae": "SAE encoder (fast, attention)",
    "crg": "CRG encoder (fast, simplest)",
    "optimize": "Optimisation (slow, most faithful)",
    "hybrid": "Hybrid: encoder, then optimisation",
}
ENCODER_METHODS = ("psp", "e4e", "e2style", "sae", "crg")
#: Encoder preferred as the hybrid method's starting point (most faithful first).
HYBRID_START_ORDER = ("psp", "e2style", "sae", "e4e", "crg")
HYBRID_STEPS_FRACTION = 0.3  # hybrid starts close: a third of the projector's steps


class InversionError(StudioError):
    """The method cannot run on this model / input (says which and what to do)."""


@dataclass
class InversionProgress:
    """Passed to ``progress``: ``step`` of ``total`` (1-based), current loss, optional preview
    ``(R, R, 3) uint8``."""

    step: int
    total: int
    loss: float | None = None
    preview: np.ndarray | None = None


ProgressFn = Callable[[InversionProgress], None]


@dataclass
class Inversion:
    latent_wplus: torch.Tensor  # [num_ws, w_dim] float32 on the CPU
    reconstruction: np.ndarray  # (R, R, 3) uint8 at the generator's resolution
    metrics: dict[str, float]  # 'mse' (images in [-1, 1]), 'lpips' (VGG); optimisation adds 'steps'
    method: str
    seconds: float
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------
# Image helpers


def image_to_tensor(img, size: int, device=None) -> torch.Tensor:
    """(H, W, 3) uint8 array / PIL image -> [1, 3, size, size] float in [-1, 1] (area/bicubic resize)."""
    from studio.core.imageio import as_rgb_array

    try:
        arr = as_rgb_array(img)
    except StudioError:
        raise
    except Exception as e:  # noqa: BLE001 - anything that is not an image
        raise InversionError(f"not an image: {e}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InversionError(f"expected an RGB image of at least 8x8 pixels, got shape {arr.shape}")
    if arr.shape[0] != arr.shape[1]:
        raise InversionError(f"expected a square aligned face, got {arr.shape[1]}x{arr.shape[0]} pixels; "
                             "align the photo first (stylestudio align)")
    x = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    return x.to(device) if device is not None else x


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    from studio.core.tensors import to_uint8

    return to_uint8(img)[0]


def _lpips(device) -> torch.nn.Module:
    from studio.core.projector import shared_lpips

    return shared_lpips("vgg", None, device)


@torch.no_grad()
def reconstruction_metrics(recon: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """MSE and LPIPS (VGG) of [1, 3, R, R] images in [-1, 1]; LPIPS at <= 256 px (as the projector)."""
    from studio.core.projector import lpips_input

    recon = recon.clamp(-1, 1)
    mse = float(F.mse_loss(recon, target))
    lp = _lpips(target.device)
    d = float(lp(lpips_input(recon), lpips_input(target)).mean())
    return {"mse": mse, "lpips": d}


# ----------------------------------------------------------------------------
# Inverters


class Inverter:
    """Base class: ``invert(aligned_image, progress=None, cancel=None) -> Inversion``."""

    method: str = ""

    def __init__(self, generator):
        if generator is None:
            raise InversionError("inversion needs a generator: load a model with a StyleGAN2 generator")
        self.G = generator

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    def target(self, aligned_image) -> torch.Tensor:
        return image_to_tensor(aligned_image, self.resolution, self.device)

    def invert(self, aligned_image, *, progress: ProgressFn | None = None, cancel=None) -> Inversion:
        raise NotImplementedError

    @torch.no_grad()
    def _finish(self, ws: torch.Tensor, target: torch.Tensor, t0: float, **extra) -> Inversion:
        img = self.G.synthesis(ws.reshape(1, *ws.shape[-2:]).to(self.device), noise_mode="const")
        metrics = reconstruction_metrics(img, target)
        metrics.update({k: v for k, v in extra.pop("metrics", {}).items()})
        return Inversion(latent_wplus=ws.reshape(ws.shape[-2:]).detach().float().cpu(), reconstruction=_to_uint8(img),
                         metrics=metrics, method=self.method, seconds=time.perf_counter() - t0, **extra)


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class EncoderInverter(Inverter):
    """A learning-based encoder (an :class:`~studio.core.nets.encoding.EncoderPipeline`)."""

    def __init__(self, pipeline, generator=None, *, method: str | None = None):
        super().__init__(generator if generator is not None else getattr(pipeline, "decoder", None))
        self.pipeline = pipeline.eval()
        self.method = method or pipeline.config.kind
        cfg = getattr(pipeline.encoder, "config", None)
        self.input_size = int(getattr(cfg, "input_size", 256))
        self._check_shapes()

    def _check_shapes(self) -> None:
        """The encoder's W+ must fit the generator (a pSp for FFHQ-1024 gives 18 x 512 rows)."""
        G, enc = self.G, self.pipeline.encoder
        cfg = getattr(enc, "config", None)
        rows = getattr(cfg, "n_styles", None) or getattr(cfg, "num_ws", None)
        if self.pipeline.config.kind == "crg" and getattr(cfg, "space", "w") == "z":
            rows = None  # z goes through G's mapping network: any number of rows
        la = self.pipeline.latent_avg
        problems = []
        if rows and rows > 1 and int(rows) != G.num_ws:
            problems.append(f"{rows} W+ rows, the generator needs {G.num_ws}")
        if la is not None and la.shape[-1] != G.w_dim:
            problems.append(f"w_dim {la.shape[-1]}, the generator has {G.w_dim}")
        if problems:
            raise InversionError(
                f"the {self.method} encoder does not fit this generator ({'; '.join(problems)}): it was trained "
                f"for a {2 ** ((int(rows or 2) + 2) // 2)}-px generator. Use the encoder that came with this "
                "model, or the optimisation method")

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        """W+ [1, num_ws, w_dim] of a [1, 3, R, R] target (R = generator resolution)."""
        x = target if target.shape[-1] == self.input_size else F.interpolate(
            target, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False,
            antialias=True).clamp(-1, 1)
        with torch.no_grad():
            ws = self.pipeline.encode(x.to(self.device))
        if ws.shape[1:] != (self.G.num_ws, self.G.w_dim):
            raise InversionError(f"the {self.method} encoder gave latents of shape {tuple(ws.shape[1:])}, the "
                                 f"generator needs ({self.G.num_ws}, {self.G.w_dim})")
        return ws

    def invert(self, aligned_image, *, progress: ProgressFn | None = None, cancel=None) -> Inversion:
        t0 = time.perf_counter()
        target = self.target(aligned_image)
        ws = self.encode(target)
        out = self._finish(ws, target, t0)
        if progress is not None:
            progress(InversionProgress(1, 1, out.metrics["lpips"], out.reconstruction))
        return out


class OptimizeInverter(Inverter):
    """Optimisation-based inversion (from ``w_avg``), or hybrid when given a ``start`` inverter."""

    def __init__(self, generator, config=None, *, start: EncoderInverter | None = None):
        from studio.core.projector import ProjectorConfig

        super().__init__(generator)
        self.start = start
        self.method = "hybrid" if start is not None else "optimize"
        if config is None:
            config = ProjectorConfig()
            if start is not None:
                config = dataclasses.replace(config, steps=max(1, int(config.steps * HYBRID_STEPS_FRACTION)))
        config.validate()
        self.config = config

    def invert(self, aligned_image, *, progress: ProgressFn | None = None, cancel=None) -> Inversion:
        from studio.core.projector import project

        t0 = time.perf_counter()
        target = self.target(aligned_image)
        start = self.start.encode(target)[0] if self.start is not None else None

        def on_step(step, total, loss, preview):
            if progress is not None:
                progress(InversionProgress(step, total, float(loss), None if preview is None else _to_uint8(preview)))

        res = project(self.G, target, self.config, start=start, progress=on_step, cancel=cancel)
        notes = [f"stopped after {res.steps_done} of {self.config.steps} steps"] if res.cancelled else []
        return self._finish(res.latent_wplus, target, t0, cancelled=bool(res.cancelled), notes=notes,
                            metrics={"steps": float(res.steps_done)})


# ----------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str
    available: bool
    reason: str = ""  # why not, when unavailable


def available_methods(generator, encoders: Mapping[str, object] | None = None) -> list[MethodInfo]:
    """Every method of :data:`METHODS`, saying which this generator + encoders can run."""
    encoders = dict(encoders or {})
    out = []
    for name, label in METHODS.items():
        if generator is None:
            out.append(MethodInfo(name, label, False, "the model has no generator"))
        elif name in ENCODER_METHODS:
            ok = name in encoders
            out.append(MethodInfo(name, label, ok, "" if ok else f"no {name} encoder for this model"))
        elif name == "hybrid":
            ok = any(k in encoders for k in HYBRID_START_ORDER)
            out.append(MethodInfo(name, label, ok, "" if ok else "needs an encoder for this model"))
        else:
            out.append(MethodInfo(name, label, True))
    return out


def make_inverter(method: str, generator, encoders: Mapping[str, object] | None = None, *,
                  projector_config=None, hybrid_encoder: str | None = None) -> Inverter:
    """Build the inverter for ``method`` (a key of :data:`METHODS`); clear errors when it can't run."""
    encoders = dict(encoders or {})
    if method not in METHODS:
        raise InversionError(f"unknown inversion method {method!r}; choose one of {', '.join(METHODS)}")
    info = {m.name: m for m in available_methods(generator, encoders)}[method]
    if not info.available:
        have = [m.name for m in available_methods(generator, encoders) if m.available]
        raise InversionError(f"cannot use {method}: {info.reason}. Available here: {', '.join(have) or 'none'}")
    if method in ENCODER_METHODS:
        return EncoderInverter(encoders[method], generator, method=method)
    if method == "optimize":
        return OptimizeInverter(generator, projector_config)
    name = hybrid_encoder or next(k for k in HYBRID_START_ORDER if k in encoders)
    if name not in encoders:
        raise InversionError(f"hybrid: no {name} encoder for this model; available: {', '.join(sorted(encoders))}")
    return OptimizeInverter(generator, projector_config, start=EncoderInverter(encoders[name], generator, method=name))


def bundle_encoders(bundle) -> dict[str, object]:
    """The encoders a loaded model offers, by method name: a pSp / e4e / E2Style checkpoint's own
    (``bundle.encoder``) plus any a model pack lists (``bundle.meta['encoders']``)."""
    out: dict[str, object] = {}
    enc = getattr(bundle, "encoder", None)
    if enc is not None and hasattr(enc, "config") and getattr(enc.config, "kind", None) in ENCODER_METHODS:
        out[enc.config.kind] = enc
    for name, pipe in (getattr(bundle, "meta", {}) or {}).get("encoders", {}).items():
        if name in ENCODER_METHODS:
            out.setdefault(name, pipe)
    return out
