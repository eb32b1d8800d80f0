"""Interactive rendering of W+ latents: a per-layer activation cache, progressive previews, and a
latest-wins background worker.

Plain Python (no Qt). :class:`Renderer` runs the synthesis network layer by layer and keeps each
layer's output, keyed on the W+ rows it read (plus the noise mode), so an edit that changes only
rows >= k recomputes from the first layer that reads a changed row (METHODS.md §1: each conv reads
one row; a toRGB reads the next conv's row). Results equal ``G.synthesis(ws, noise_mode, fused)``
(same ops in the same order); on the CPU the default is the non-fused modulation (activations
scaled instead of per-sample weights: about 1.4x faster at batch 1, within ~1e-5 of the fused
result), on CUDA the fused one. :meth:`Renderer.frames` first yields the skip-RGB image of a lower
resolution block (free in the skip architecture, upsampled for display), then the full image.

:class:`RenderWorker` renders on one thread from a single-slot request box: each request gets a
generation number, a newer request replaces a pending one, and frames of superseded generations
are dropped (never delivered). :class:`CancelToken` is the cancel flag that long jobs check between
steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.latent import changed_rows
from studio.core.nets import ops
from studio.core.tensors import pick_device, to_uint8  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# Cancellation


from studio.engine.cancel import Cancelled, CancelToken  # noqa: E402,F401 (re-exported)

# ----------------------------------------------------------------------------
# Frames


@dataclass
class Frame:
    """One rendered image.

    image: [N, C, R, R] float (values around [-1, 1]) at the model's full resolution R; a preview is
        the skip-RGB image of a lower block, bilinearly upsampled. Lives on the renderer's device.
    resolution: the resolution actually synthesised (< R for a preview).
    final: False for a preview. generation: the worker's request number (0 outside a worker).
    seconds: time from the start of the request to this frame. start_row: first W+ row recomputed
    (num_ws when everything came from the cache).
    """

    image: torch.Tensor
    resolution: int
    final: bool
    generation: int = 0
    seconds: float = 0.0
    start_row: int = 0

    def to_uint8(self) -> np.ndarray:
        """[N, H, W, C] uint8."""
        return to_uint8(self.image)


# ----------------------------------------------------------------------------
# Renderer


@dataclass
class _Step:
    kind: str             # 'conv' or 'rgb'
    block: torch.nn.Module
    layer: torch.nn.Module
    row: int              # the W+ row it reads
    res: int
    first: bool = False   # the 4x4 block's conv (input = the learned constant)


def synthesis_steps(synthesis) -> list[_Step]:
    """The synthesis network as layers in execution order, with the W+ row each reads
    (the same order and rows as ``SynthesisBlock.forward`` / ``block_ws``)."""
    steps, row = [], 0
    for block in synthesis.blocks():
        if block.in_channels == 0:
            steps.append(_Step("conv", block, block.conv1, row, block.resolution, first=True))
        else:
            steps.append(_Step("conv", block, block.conv0, row, block.resolution))
            steps.append(_Step("conv", block, block.conv1, row + 1, block.resolution))
        steps.append(_Step("rgb", block, block.torgb, row + block.num_conv, block.resolution))
        row += block.num_conv
    return steps


def default_fused(device) -> bool:
    """The modulation a render on ``device`` uses unless told: grouped-conv (fused) on CUDA, the
    non-fused one (faster) on the CPU. Renders to be compared pixel for pixel use the same."""
    return torch.device(device).type == "cuda"


class Renderer:
    """Render W+ [N, num_ws, w_dim] (or [num_ws, w_dim]) with a per-layer activation cache.

    G: the generator (moved to ``device``; 'auto' = CUDA when present). noise_mode: 'const' or
    'none' (cached); 'random' disables the cache. fused: grouped-conv modulation (None = on CUDA only;
    the non-fused path is faster on the CPU and differs from it by float rounding, ~1e-5). cache: keep per-layer outputs (memory: every
    activation of one image; about 0.5 GB at 1024 px). channels_last: None = on CUDA only.
    compile: wrap each layer in ``torch.compile`` (falls back to eager with a warning if that fails).
    preview_resolution: the skip image shown first by :meth:`frames` (default R/4).

    Not thread-safe: one thread (e.g. a :class:`RenderWorker`) uses a renderer at a time.
    """

    def __init__(self, G, *, device="auto", noise_mode: str = "const", fused: bool | None = None, cache: bool = True,
                 channels_last: bool | None = None, compile: bool = False, preview_resolution: int | None = None):
        if noise_mode not in ("const", "none", "random"):
            raise ValueError(f"noise_mode must be 'const', 'none' or 'random', got {noise_mode!r}")
        self.device = pick_device(device)
        self.G = G.to(self.device)
        self.synthesis = self.G.synthesis
        self.num_ws, self.w_dim = int(self.G.num_ws), int(self.G.w_dim)
        self.img_resolution = int(self.G.img_resolution)
        self.noise_mode = noise_mode
        self.fused = default_fused(self.device) if fused is None else fused
        self.cache_enabled = cache and noise_mode != "random"
        self.channels_last = (self.device.type == "cuda") if channels_last is None else channels_last
        pres = preview_resolution or max(4, self.img_resolution // 4)
        self.preview_resolution = 2 ** max(2, round(float(np.log2(pres))))  # a block resolution
        self.steps = synthesis_steps(self.synthesis)
        self._rows = np.array([s.row for s in self.steps])
        self._fns: list[Callable] = [s.layer for s in self.steps]
        if compile:
            self._fns = [torch.compile(s.layer, dynamic=False) for s in self.steps]
        self._compiled = compile
        self._ws: torch.Tensor | None = None   # the W+ the cached outputs belong to
        self._outs: list[torch.Tensor | None] = [None] * len(self.steps)
        self._valid = 0                        # steps [0, _valid) hold outputs for _ws
        self._epoch = 0
        self.last_start_step = 0

    # -- cache ------------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget every cached activation."""
        self._ws, self._outs, self._valid = None, [None] * len(self.steps), 0

    def set_noise_mode(self, noise_mode: str) -> None:
        if noise_mode not in ("const", "none", "random"):
            raise ValueError(f"noise_mode must be 'const', 'none' or 'random', got {noise_mode!r}")
        self.noise_mode = noise_mode
        self.cache_enabled = noise_mode != "random" and self.cache_enabled
        self.invalidate()

    def _prepare(self, ws) -> torch.Tensor:
        ws = torch.as_tensor(ws)
        if ws.ndim == 2:
            ws = ws.unsqueeze(0)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        return ws.detach().to(self.device, torch.float32)

    def start_step(self, ws: torch.Tensor) -> int:
        """Index of the first layer that must run for ``ws`` (len(steps) = all cached)."""
        if not self.cache_enabled or self._ws is None or self._ws.shape != ws.shape:
            return 0
        changed = changed_rows(ws, self._ws).cpu().numpy()
        hit = np.flatnonzero(changed[self._rows])
        first = int(hit[0]) if hit.size else len(self.steps)
        return min(first, self._valid)

    # -- rendering ----------------------------------------------------------------------------------

    def render(self, ws, *, cancel: CancelToken | None = None) -> torch.Tensor:
        """The full image [N, C, R, R] for ``ws`` (a new tensor)."""
        frame = None
        for frame in self.frames(ws, progressive=False, cancel=cancel):
            pass
        return frame.image

    def frames(self, ws, *, progressive: bool | None = None, cancel: CancelToken | None = None) -> Iterator[Frame]:
        """Yield a preview Frame (when ``progressive`` and the first recomputed layer lies below the
        preview resolution) and then the final Frame. ``progressive=None``: on for models of 256 px and
        up. Raises :class:`Cancelled` between layers once ``cancel`` is set."""
        t0 = time.perf_counter()
        ws = self._prepare(ws)
        self._epoch += 1
        epoch = self._epoch
        n = len(self.steps)
        start = self.start_step(ws)
        self.last_start_step = start
        start_row = int(self.steps[start].row) if start < n else self.num_ws
        if self.cache_enabled:
            self._ws, self._valid = ws.clone(), start
        if progressive is None:
            progressive = self.img_resolution >= 256
        stops = [n]
        if progressive and start < n:
            pres = max(self.preview_resolution, self.steps[start].res)
            if pres < self.img_resolution:
                stops.insert(0, next(i for i, s in enumerate(self.steps) if s.kind == "rgb" and s.res == pres) + 1)
        x, img = self._state_before(start)
        i = start
        for stop in stops:
            with torch.inference_mode():
                x, img = self._run(ws, i, stop, x, img, cancel)
            if self._epoch != epoch:
                raise RuntimeError("Renderer used by two callers at once; give each thread its own renderer")
            i = stop
            final = stop == n
            with torch.inference_mode():
                if final:
                    out = img.clone()
                else:
                    out = F.interpolate(img, size=(self.img_resolution,) * 2, mode="bilinear", align_corners=False)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            yield Frame(out, self.img_resolution if final else int(img.shape[-1]), final,
                        seconds=time.perf_counter() - t0, start_row=start_row)

    def _state_before(self, start: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(x, img) entering step ``start``, from the cache."""
        x = img = None
        for j in range(start - 1, -1, -1):
            s = self.steps[j]
            if x is None and s.kind == "conv":
                x = self._outs[j]
            if img is None and s.kind == "rgb":
                img = self._outs[j]
            if x is not None and img is not None:
                break
        if start == len(self.steps):
            img = self._outs[-1]
        return x, img

    def _run(self, ws, i: int, stop: int, x, img, cancel):
        """Run steps [i, stop) from state (x, img); store outputs when caching."""
        while i < stop:
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            s = self.steps[i]
            w = ws[:, s.row]
            if s.kind == "conv":
                if s.first:
                    x = s.block.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
                    if self.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                x = self._call(i, x, w, noise_mode=self.noise_mode, fused=self.fused)
                out = x
            else:
                if img is not None:
                    img = ops.upsample2d(img, s.block.resample_filter)
                y = self._call(i, x, w, fused=self.fused)
                img = y if img is None else img + y
                out = img
            if self.cache_enabled:
                self._outs[i] = out
                self._valid = i + 1
            i += 1
        return x, img

    def _call(self, i: int, x, w, **kw):
        if not self._compiled:
            return self._fns[i](x, w, **kw)
        try:
            return self._fns[i](x, w, **kw)
        except Exception as e:  # no C++ compiler, unsupported backend, ...
            log.warning("torch.compile failed (%s); rendering eagerly", str(e).splitlines()[0] if str(e) else e)
            self._compiled = False
            self._fns = [s.layer for s in self.steps]
            return self._fns[i](x, w, **kw)


# ----------------------------------------------------------------------------
# Latest-wins worker


class RenderWorker:
    """Renders on a background thread; the newest request wins.

    ``submit(ws)`` returns a generation number and replaces any request not started yet. Frames are
    passed to ``on_frame(frame)`` (on the worker thread: hand them to your UI thread, never block)
    only while their generation is the newest submitted; superseded frames are dropped, and a
    superseded render stops at its next layer (its finished layers stay in the cache).
    ``show_superseded=True`` instead finishes a render that a newer request overtook and delivers it
    if nothing newer was delivered (frames keep flowing during a fast drag on a slow model).
    ``on_error(exc, generation)`` gets exceptions of the newest request (logged otherwise).
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, renderer: Renderer, on_frame: Callable[[Frame], None], *,
                 on_error: Callable[[BaseException, int], None] | None = None, progressive: bool | None = None,
                 show_superseded: bool = False, name: str = "stylestudio-render"):
        self.renderer, self.on_frame, self.on_error = renderer, on_frame, on_error
        self.progressive, self.show_superseded = progressive, show_superseded
        self._cv = threading.Condition(threading.RLock())
        self._request: tuple[int, torch.Tensor, bool | None] | None = None
        self._latest = 0
        self._delivered = 0
        self._token: CancelToken | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def latest_generation(self) -> int:
        return self._latest

    def submit(self, ws, *, progressive: bool | None = None) -> int:
        """Queue a render of ``ws``; returns its generation number."""
        ws = torch.as_tensor(ws).detach().clone()
        with self._cv:
            if self._closed:
                raise RuntimeError("the render worker is closed")
            self._latest += 1
            self._request = (self._latest, ws, self.progressive if progressive is None else progressive)
            if self._token is not None and not self.show_superseded:
                self._token.cancel()
            self._cv.notify_all()
            return self._latest

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running (True) or ``timeout`` seconds pass (False)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._request is None and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (cancels the running render)."""
        with self._cv:
            self._closed = True
            self._request = None
            if self._token is not None:
                self._token.cancel()
            self._cv.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._closed)
                if self._closed:
                    return
                gen, ws, progressive = self._request
                self._request = None
                self._token = token = CancelToken()
                self._busy = True
            try:
                for frame in self.renderer.frames(ws, progressive=progressive, cancel=token):
                    frame.generation = gen
                    with self._cv:
                        newest = gen == self._latest
                        if newest or (self.show_superseded and gen > self._delivered and frame.final):
                            self._delivered = gen
                            self.on_frame(frame)
                        elif not self.show_superseded:
                            break  # superseded: the rest would be dropped anyway
            except Cancelled:
                pass
            except Exception as e:  # reported, never kills the worker
                with self._cv:
                    newest = gen == self._latest
                if newest and self.on_error is not None:
                    self.on_error(e, gen)
                else:
                    log.exception("render of generation %d failed", gen)
            finally:
                with self._cv:
                    self._token = None
                    self._busy = False
                    self._cv.notify_all()
