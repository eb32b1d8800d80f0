"""Optimisation-based StyleGAN2 inversion and its hybrid variant (METHODS.md §3).

:func:`project` finds a W+ latent whose image matches a target: Adam on w (one vector repeated over
all layers) or on W+ (one vector per layer), optionally also on the per-layer noise maps, minimising
``LPIPS(VGG) + lambda_mse * MSE`` plus NVIDIA's multi-scale noise-autocorrelation penalty, with the
official projector's learning-rate ramp and decaying latent noise. It starts from ``w_avg``
(optimisation) or from a given latent, e.g. an encoder's output (hybrid inversion). It returns the
latent with the lowest loss seen, also when cancelled.

Where StyleStudio settles choices the official projector (stylegan2-ada-pytorch ``projector.py``)
leaves to its setting:

* Noise maps start from the generator's own constant noise (``noise_const``), not fresh random
  maps, so a projection with noise optimisation off renders identically in the editor (which
  uses ``noise_mode='const'``), and one with it on starts from that same image.
* LPIPS sees images of at most 256 px (larger ones are area-downsampled, as in the official code)
  and at least 64 px (smaller ones are bilinearly upsampled, so VGG's deepest taps are not 1 px).
* The loss compares the image as it is shown, clamped to [-1, 1], with the target (also
  clamped), so the reported LPIPS / MSE are those of the displayed reconstruction; the official
  code compares the unclamped image.
* The best latent is the one fed to the generator at the step with the lowest loss (latent noise
  included), so its loss, image and LPIPS are the measured ones, not a re-evaluation.

Budget (``ProjectorConfig.steps``, default 200), measured on the 64-px default pack generator
(W+ space, images of known W+, psi 0.7 and 1): a 40-step budget already ends below LPIPS 0.05
(0.010 - 0.035), 200 steps end near 0.003, leaving room for real photos. One step costs about
0.36 s on one busy CPU core (VGG16 LPIPS dominates), about 26 ms on one H200. Results are
bit-identical for a seed on the CPU; CUDA kernels are not deterministic, so GPU runs differ slightly.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from studio.core.errors import StudioError
from studio.core.latent import as_wplus
from studio.core.lpips import LPIPS

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# Config, result, errors


class ProjectionError(StudioError, ValueError):
    """A projection cannot run: the target does not fit the generator, a bad start latent, or a
    setting out of range. The message says which and what is expected."""


@dataclass
class ProjectorConfig:
    steps: int = 200                  # optimisation steps (see the module docstring for what they reach)
    space: str = "wplus"              # 'w': one w repeated over all layers; 'wplus': one w per layer
    lr: float = 0.1                   # peak Adam learning rate
    lambda_mse: float = 1.0           # weight of the pixel MSE (images in [-1, 1]) next to LPIPS
    noise_reg: float = 1e5            # weight of the noise-autocorrelation penalty (optimise_noise only)
    optimise_noise: bool = False      # also optimise the per-layer noise maps
    seed: int = 0                     # seeds every random draw (latent noise, w statistics)
    preview_every: int = 10           # pass the current image to ``progress`` every k steps (0: never)
    lr_rampup: float = 0.05           # fraction of the steps over which lr rises from 0 (linear)
    lr_rampdown: float = 0.25         # fraction of the steps at the end over which lr falls to 0 (cosine)
    latent_noise: float = 0.05        # initial latent noise, as a multiple of the std of w
    latent_noise_ramp: float = 0.75   # fraction of the steps over which the latent noise decays to 0
    w_avg_samples: int = 10000        # z samples mapped to estimate the std of w (and w_avg if unset)
    lpips_net: str = "vgg"            # 'vgg' (as the official projector) or 'alex'
    lpips_dir: str | None = None      # folder with the LPIPS weights (None: the default places)
    lpips_min_size: int = 64          # smaller images are upsampled to this before LPIPS
    lpips_max_size: int = 256         # larger images are area-downsampled to this before LPIPS

    def validate(self) -> None:
        """Raise :class:`ProjectionError` naming the first setting out of range."""
        if int(self.steps) < 1:
            raise ProjectionError(f"steps must be at least 1, got {self.steps}")
        if self.space not in ("w", "wplus"):
            raise ProjectionError(f"space must be 'w' or 'wplus', got {self.space!r}")
        if not self.lr > 0:
            raise ProjectionError(f"lr must be positive, got {self.lr}")
        for name in ("lambda_mse", "noise_reg", "latent_noise"):
            if not getattr(self, name) >= 0:
                raise ProjectionError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr_rampup", "lr_rampdown", "latent_noise_ramp"):
            if not 0 < getattr(self, name) <= 1:
                raise ProjectionError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.preview_every < 0:
            raise ProjectionError(f"preview_every must be >= 0, got {self.preview_every}")
        if self.w_avg_samples < 2:
            raise ProjectionError(f"w_avg_samples must be at least 2, got {self.w_avg_samples}")
        if self.lpips_net not in ("vgg", "alex"):
            raise ProjectionError(f"lpips_net must be 'vgg' or 'alex', got {self.lpips_net!r}")
        if not 32 <= self.lpips_min_size <= self.lpips_max_size:
            raise ProjectionError(f"need 32 <= lpips_min_size <= lpips_max_size, got "
                                  f"{self.lpips_min_size} and {self.lpips_max_size}")


@dataclass
class ProjectionResult:
    """The best latent found and how well it reconstructs the target.

    All tensors are float32 on the CPU. ``latent_wplus``: [1, num_ws, w_dim]. ``image``: its
    rendering [1, 3, H, W] in [-1, 1] (with ``noises`` when they were optimised, else the
    generator's constant noise). ``lpips`` / ``mse``: its distances to the target (LPIPS at the
    size LPIPS saw, MSE at the generator's resolution). ``history``: the total loss per step,
    ``history_lpips``: the LPIPS per step. ``noises``: the optimised noise maps at the best step,
    one [1, 1, r, r] per noise layer in W+ order (pass as ``G.synthesis(ws, noises=...)``), or None.
    """

    latent_wplus: torch.Tensor
    image: torch.Tensor
    lpips: float
    mse: float
    steps_done: int
    cancelled: bool
    history: list[float] = field(default_factory=list)
    history_lpips: list[float] = field(default_factory=list)
    best_step: int = 0                # 1-based step whose latent is returned (0: none ran)
    noises: list[torch.Tensor] | None = None
    seconds: float = 0.0


ProgressFn = Callable[[int, int, float, "torch.Tensor | None"], None]

# ----------------------------------------------------------------------------
# Schedules and losses (pure functions)


def learning_rate(step: int, steps: int, lr: float, *, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The official projector's lr at ``step`` (0-based) of ``steps``: linear rise over the first
    ``rampup`` fraction, cosine fall to 0 over the last ``rampdown`` fraction."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return lr * ramp


def latent_noise_scale(step: int, steps: int, w_std: float, *, factor: float = 0.05, ramp: float = 0.75) -> float:
    """Std of the Gaussian noise added to w at ``step``: ``w_std * factor``, decaying quadratically
    to 0 at the ``ramp`` fraction of the steps (official projector)."""
    t = step / steps
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """NVIDIA's noise penalty: squared autocorrelation at a one-pixel shift (both axes, wrapping)
    of each map [1, 1, r, r], repeated on 2x average-pooled copies down to 8 px."""
    reg = noises[0].new_zeros([])
    for noise in noises:
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean().square()
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean().square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def lpips_input(img: torch.Tensor, *, min_size: int = 64, max_size: int = 256) -> torch.Tensor:
    """Resize [N, C, H, W] for LPIPS: area-downsample to ``max_size`` when larger, bilinearly
    upsample to ``min_size`` when smaller, else unchanged."""
    h = img.shape[2]
    if h > max_size:
        return F.interpolate(img, size=(max_size, max_size), mode="area")
    if h < min_size:
        return F.interpolate(img, size=(min_size, min_size), mode="bilinear", align_corners=False)
    return img


def lpips_features(lpips: LPIPS, img: torch.Tensor) -> list[torch.Tensor]:
    """The unit-normalised feature taps LPIPS compares (computed once for a fixed target)."""
    return [x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for x in lpips.features.taps(img)]


def lpips_from_features(lpips: LPIPS, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS [N] from :func:`lpips_features` of both images (equals ``lpips(a, b)``)."""
    total = 0
    for x, y, w in zip(fa, fb, lpips.lins):
        total = total + F.conv2d((x - y).square(), w).mean(dim=[2, 3])
    return total.flatten()


_CACHE_LOCK = threading.Lock()
_SHARED_LPIPS: dict[tuple[str, str | None, str], LPIPS] = {}
_W_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # G -> {key: (w_avg, std)}


def shared_lpips(net: str = "vgg", weights_dir: str | None = None, device="cpu") -> LPIPS:
    """One frozen :class:`LPIPS` per (net, weights folder, device), built on first use and then
    shared (building the VGG16 one takes ~0.35 s on the CPU, as much as ten 64-px steps). It is
    never changed after it is built, so concurrent forward passes from worker threads are safe."""
    key = (str(net), None if weights_dir is None else str(weights_dir), str(torch.device(device)))
    with _CACHE_LOCK:
        lp = _SHARED_LPIPS.get(key)
        if lp is None:
            lp = LPIPS(net, weights_dir).to(device).eval()
            _SHARED_LPIPS[key] = lp
        return lp


def _weights_fingerprint(G) -> tuple:
    """Changes whenever a parameter or buffer of G is replaced or changed in place."""
    return tuple((t.data_ptr(), t._version) for t in (*G.parameters(), *G.buffers()))


def w_stats(G, *, samples: int = 10000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], std of w) from the mapping of ``samples`` standard-normal z.

    The average is the generator's tracked ``w_avg`` when it has one (finite, not all zeros), else
    the sample mean; the std (root mean squared distance to the sample mean) is always sampled.
    Remembered per generator, sample count, seed and device until G's weights change (mapping
    10,000 z takes ~0.7 s on the CPU, which every Refine paid before).
    """
    key = (int(samples), int(seed), str(_device_of(G)), _weights_fingerprint(G))
    with _CACHE_LOCK:
        hit = _W_STATS.get(G, {}).get(key)
    if hit is None:
        hit = _w_stats(G, samples=samples, seed=seed)
        with _CACHE_LOCK:
            _W_STATS[G] = {key: hit}  # only the newest entry: the weights rarely go back
    return hit[0].clone(), hit[1]


@torch.no_grad()
def _w_stats(G, *, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    device = _device_of(G)
    gen = torch.Generator().manual_seed(int(seed))
    ws = []
    for i in range(0, samples, 2048):  # chunks keep the memory small on big mappings
        z = torch.randn([min(2048, samples - i), G.z_dim], generator=gen)
        ws.append(G.mapping(z.to(device)).float())
    w = torch.cat(ws)  # [samples, w_dim]
    mean = w.mean(dim=0)
    w_std = float((w - mean).square().sum(dim=1).mean().sqrt())
    w_avg = G.w_avg.detach().float()
    if not bool(torch.isfinite(w_avg).all()) or not bool(w_avg.abs().sum() > 0):
        log.info("generator has no tracked w_avg; using the mean of %d mapped z", samples)
        w_avg = mean
    return w_avg.to(device), w_std


# ----------------------------------------------------------------------------
# Projection


def project(G, target: torch.Tensor, config: ProjectorConfig | None = None, *,
            start: torch.Tensor | None = None, progress: ProgressFn | None = None,
            cancel=None, lpips: LPIPS | None = None) -> ProjectionResult:
    """Invert ``target`` into ``G``'s W+ by optimisation (METHODS.md §3).

    G: a StyleGAN2 :class:`~studio.core.nets.stylegan2.Generator`; runs on its device, its weights
    are not changed. target: [1, 3, R, R] float in [-1, 1], R = ``G.img_resolution``.
    start: W [w_dim] / W+ [num_ws, w_dim] / [1, num_ws, w_dim] to start from (hybrid inversion,
    e.g. an encoder's output); None starts from ``w_avg``. In 'w' space a W+ start is averaged
    over its rows. progress: called after every step as ``progress(step, steps, loss, preview)``
    with ``step`` counting from 1 and ``preview`` the current image [1, 3, R, R] on the CPU every
    ``config.preview_every`` steps and at the last step, else None. cancel: an object with
    ``is_set()`` (``threading.Event``), or a callable returning True to stop (the engine's
    ``CancelToken``); checked before every step, so a cancel returns within one step with the
    best latent so far. lpips: an :class:`LPIPS` to reuse (moved to G's device; its net should
    match ``config.lpips_net``); built from ``config`` when None.
    """
    cfg = config if config is not None else ProjectorConfig()
    cfg.validate()
    t0 = time.perf_counter()
    device = _device_of(G)
    res, num_ws, w_dim = G.img_resolution, G.num_ws, G.w_dim
    target = _check_target(target, res).to(device)
    should_stop = _cancel_fn(cancel)
    steps = int(cfg.steps)

    # Starting point and w statistics (the std sets the latent-noise scale).
    w_avg, w_std = w_stats(G, samples=cfg.w_avg_samples, seed=cfg.seed)
    if start is None:
        ws0 = w_avg.reshape(1, 1, w_dim).repeat(1, num_ws, 1)
    else:
        try:
            ws0 = as_wplus(start, num_ws, w_dim).unsqueeze(0).to(device)
        except ValueError as e:
            raise ProjectionError(f"start latent: {e}") from None
        if not bool(torch.isfinite(ws0).all()):
            raise ProjectionError("start latent contains NaN or infinite values")
    if cfg.space == "w":
        w_opt = ws0.mean(dim=1, keepdim=True).clone().requires_grad_(True)  # [1, 1, w_dim]
    else:
        w_opt = ws0.clone().requires_grad_(True)  # [1, num_ws, w_dim]
    params = [w_opt]
    noises = None
    if cfg.optimise_noise:
        noises = [layer.noise_const.detach().float().reshape(1, 1, *layer.noise_const.shape).clone()
                  for layer in G.synthesis.noise_layers()]
        for n in noises:
            _normalise_(n)
            n.requires_grad_(True)
        params += noises
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=cfg.lr)

    # Target features are computed once.
    if lpips is None:
        lpips = shared_lpips(cfg.lpips_net, cfg.lpips_dir, device)
    lpips = lpips.to(device)
    with torch.no_grad():
        target_feats = lpips_features(lpips, lpips_input(target, min_size=cfg.lpips_min_size,
                                                          max_size=cfg.lpips_max_size))

    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)  # CPU: the same draws on every device
    history: list[float] = []
    history_lpips: list[float] = []
    best = {"loss": math.inf, "step": 0, "ws": w_opt.detach().expand(1, num_ws, w_dim).clone(), "image": None,
            "lpips": math.nan, "mse": math.nan, "noises": None}
    cancelled = False
    for step in range(steps):
        if should_stop():
            cancelled = True
            break
        lr = learning_rate(step, steps, cfg.lr, rampup=cfg.lr_rampup, rampdown=cfg.lr_rampdown)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sigma = latent_noise_scale(step, steps, w_std, factor=cfg.latent_noise, ramp=cfg.latent_noise_ramp)
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * sigma

        ws = (w_opt + w_noise).expand(1, num_ws, w_dim)  # [1, num_ws, w_dim]
        # fused=False: one shared conv with modulated activations; for one image it equals the
        # grouped-conv path and is several times faster to differentiate on the CPU.
        img = G.synthesis(ws, noise_mode="const", noises=noises, fused=False)  # [1, 3, R, R]
        # The loss sees the image as shown, clamped to [-1, 1]. (A straight-through clamp converged
        # worse: it sends gradients to pixels whose change cannot show.)
        img = img.clamp(-1, 1)
        dist = lpips_from_features(lpips, lpips_features(lpips, lpips_input(
            img, min_size=cfg.lpips_min_size, max_size=cfg.lpips_max_size)), target_feats).sum()
        mse = (img - target).square().mean()
        loss = dist + cfg.lambda_mse * mse
        if noises is not None and cfg.noise_reg > 0:
            loss = loss + cfg.noise_reg * noise_regularization(noises)

        value = float(loss.detach())
        if not math.isfinite(value):
            raise ProjectionError(f"the loss became {value} at step {step + 1}; lower the learning rate")
        history.append(value)
        history_lpips.append(float(dist.detach()))
        if value < best["loss"]:
            best.update(loss=value, step=step + 1, ws=ws.detach().contiguous().clone(), image=img.detach().clone(),
                        lpips=float(dist.detach()), mse=float(mse.detach()),
                        noises=None if noises is None else [n.detach().clone() for n in noises])

        # Gradients for the latent (and noise) only: G's parameters get no .grad.
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        if noises is not None:
            with torch.no_grad():
                for n in noises:
                    _normalise_(n)

        if progress is not None:
            done = step + 1
            show = done == steps or (cfg.preview_every > 0 and done % cfg.preview_every == 0)
            progress(done, steps, value, img.detach().clamp(-1, 1).float().cpu() if show else None)

    if best["image"] is None:  # cancelled before the first step: report the start
        with torch.no_grad():
            img = G.synthesis(best["ws"], noise_mode="const", fused=False).clamp(-1, 1)
            d = lpips_from_features(lpips, lpips_features(lpips, lpips_input(
                img, min_size=cfg.lpips_min_size, max_size=cfg.lpips_max_size)), target_feats).sum()
        best.update(image=img, lpips=float(d), mse=float((img - target).square().mean()))
    seconds = time.perf_counter() - t0
    log.info("projection: %d/%d steps in %.1f s, best LPIPS %.4f at step %d%s", len(history), steps, seconds,
             best["lpips"], best["step"], " (cancelled)" if cancelled else "")
    return ProjectionResult(
        latent_wplus=best["ws"].float().cpu(),
        image=best["image"].float().cpu(),
        lpips=best["lpips"], mse=best["mse"], steps_done=len(history), cancelled=cancelled,
        history=history, history_lpips=history_lpips, best_step=best["step"],
        noises=None if best["noises"] is None else [n.float().cpu() for n in best["noises"]],
        seconds=seconds)


# ----------------------------------------------------------------------------
# Helpers


def _device_of(G) -> torch.device:
    p = next(G.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_target(target, res: int) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise ProjectionError(f"target must be a float tensor [1, 3, {res}, {res}], got {type(target).__name__}")
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        raise ProjectionError(f"target must be one RGB image [1, 3, {res}, {res}], got shape {list(target.shape)}")
    if tuple(target.shape[2:]) != (res, res):
        raise ProjectionError(f"target is {target.shape[3]}x{target.shape[2]} px but the generator makes "
                              f"{res}x{res} px images; resize or align the face to {res} px first")
    if not target.is_floating_point():
        raise ProjectionError(f"target must be a float tensor in [-1, 1], got {target.dtype}")
    target = target.detach().float()
    if not bool(torch.isfinite(target).all()):
        raise ProjectionError("target contains NaN or infinite values")
    if float(target.abs().max()) > 2:
        raise ProjectionError(f"target values reach {float(target.abs().max()):.4g}; expected an image in "
                              f"[-1, 1] (convert 0-255 pixels with x / 127.5 - 1)")
    return target.clamp(-1, 1)


def _cancel_fn(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return lambda: bool(cancel.is_set())
    if callable(cancel):
        return lambda: bool(cancel())
    if hasattr(cancel, "cancelled"):
        return lambda: bool(cancel.cancelled)
    raise ProjectionError(f"cancel must have is_set() or be callable, got {type(cancel).__name__}")


def _normalise_(noise: torch.Tensor) -> None:
    """Zero mean, unit variance in place (the official projector does this after every step)."""
    with torch.no_grad():
        noise -= noise.mean()
        noise *= noise.square().mean().rsqrt()
