"""Renderer: per-layer cache equals the plain synthesis, progressive previews, latest-wins worker."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from studio.core.latent import apply_direction, layer_groups
from studio.core.nets.stylegan2 import Generator
from studio.engine import Cancelled, CancelToken, Renderer, RenderWorker


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=64, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.2)   # make the const noise matter
    return G


def _ws(G, seed):
    with torch.no_grad():
        return G.map(G.sample_z(1, seed=seed))


def _edit(ws, group, alpha, seed=0):
    n = torch.randn(ws.shape[-1], generator=torch.Generator().manual_seed(seed))
    return apply_direction(ws, n / n.norm(), alpha, layer_groups(ws.shape[1])[group])


def _plain(G, ws, noise_mode="const"):
    with torch.no_grad():
        return G.synthesis(ws, noise_mode=noise_mode)


def _count_calls(R):
    calls = []
    hooks = [s.layer.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, s in enumerate(R.steps)]
    return calls, hooks


def test_nonfused_default_on_cpu_equals_nonfused_synthesis(G):
    R = Renderer(G, device="cpu")
    assert not R.fused
    ws = _ws(G, 1)
    for w in (ws, _edit(ws, "fine", 1.0), _edit(ws, "medium", -1.0)):
        with torch.no_grad():
            ref = G.synthesis(w, fused=False)
        torch.testing.assert_close(R.render(w), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(R.render(w), _plain(G, w), atol=1e-4, rtol=0)   # ~ the fused result


def test_steps_follow_block_ws(G):
    R = Renderer(G, device="cpu", fused=True)
    assert [s.row for s in R.steps] == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9]
    assert [s.kind for s in R.steps].count("rgb") == len(G.synthesis.blocks())


def test_cached_render_equals_uncached(G):
    R = Renderer(G, device="cpu", fused=True)
    ws = _ws(G, 1)
    seq = [ws, _edit(ws, "fine", 2.0), _edit(ws, "fine", -1.0), _edit(ws, "medium", 1.5),
           _edit(_edit(ws, "medium", 1.5), "fine", 0.7), _edit(ws, "coarse", 3.0), ws, _ws(G, 2)]
    for w in seq:
        torch.testing.assert_close(R.render(w), _plain(G, w), atol=1e-5, rtol=0)


@pytest.mark.parametrize("group,first_step", [("coarse", 0), ("medium", 6), ("fine", 12)])
def test_edit_recomputes_only_from_first_changed_layer(G, group, first_step):
    R = Renderer(G, device="cpu", fused=True)
    ws = _ws(G, 1)
    R.render(ws)
    calls, hooks = _count_calls(R)
    try:
        for alpha in (1.0, -2.0):
            del calls[:]
            w = _edit(ws, group, alpha)
            img = R.render(w)
            first = min(i for i, s in enumerate(R.steps) if s.row >= layer_groups(G.num_ws)[group][0])
            assert first == first_step and R.last_start_step == first
            assert calls == list(range(first, len(R.steps)))
            torch.testing.assert_close(img, _plain(G, w), atol=1e-5, rtol=0)
        del calls[:]
        again = R.render(w)              # nothing changed: no layer runs
        assert calls == [] and torch.equal(again, img)
    finally:
        for h in hooks:
            h.remove()


def test_noise_modes_and_uncached_renderer(G):
    ws, w2 = _ws(G, 3), _edit(_ws(G, 3), "fine", 1.0)
    R = Renderer(G, device="cpu", fused=True, noise_mode="none")
    R.render(ws)
    torch.testing.assert_close(R.render(w2), _plain(G, w2, "none"), atol=1e-5, rtol=0)
    assert R.last_start_step == 12
    R.set_noise_mode("const")
    torch.testing.assert_close(R.render(w2), _plain(G, w2), atol=1e-5, rtol=0)
    assert R.last_start_step == 0      # a new noise mode invalidates the cache
    Rr = Renderer(G, device="cpu", fused=True, noise_mode="random")
    Rr.render(ws)
    Rr.render(w2)
    assert Rr.last_start_step == 0 and not Rr.cache_enabled
    Ru = Renderer(G, device="cpu", fused=True, cache=False)
    Ru.render(ws)
    torch.testing.assert_close(Ru.render(w2), _plain(G, w2), atol=1e-5, rtol=0)
    assert Ru.last_start_step == 0


def test_channels_last_and_batches(G):
    R = Renderer(G, device="cpu", fused=True, channels_last=True)
    ws = torch.cat([_ws(G, 4), _ws(G, 5)])
    torch.testing.assert_close(R.render(ws), _plain(G, ws), atol=1e-5, rtol=0)
    w2 = _edit(ws, "medium", 1.0)
    torch.testing.assert_close(R.render(w2), _plain(G, w2), atol=1e-5, rtol=0)
    torch.testing.assert_close(R.render(w2[:1]), _plain(G, w2[:1]), atol=1e-5, rtol=0)  # batch size change
    with pytest.raises(ValueError, match="ws must be"):
        R.render(torch.zeros(1, 9, 32))


def _skip_image(G, ws, res):
    x = img = None
    with torch.no_grad():
        for block, bws in zip(G.synthesis.blocks(), G.synthesis.block_ws(ws)):
            x, img = block(x, img, bws)
            if block.resolution == res:
                return img


def test_progressive_preview_then_full(G):
    R = Renderer(G, device="cpu", fused=True, preview_resolution=16)
    ws = _ws(G, 6)
    frames = list(R.frames(ws, progressive=True))
    assert [(f.resolution, f.final) for f in frames] == [(16, False), (64, True)]
    assert frames[0].image.shape == (1, 3, 64, 64)
    up = F.interpolate(_skip_image(G, ws, 16), size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(frames[0].image, up, atol=1e-5, rtol=0)
    torch.testing.assert_close(frames[1].image, _plain(G, ws), atol=1e-5, rtol=0)
    # a medium edit starts in the 16 px block: its preview is at 16 px and shows the change
    w2 = _edit(ws, "medium", 2.0)
    frames = list(R.frames(w2, progressive=True))
    assert [(f.resolution, f.final) for f in frames] == [(16, False), (64, True)] and frames[0].start_row == 4
    torch.testing.assert_close(frames[0].image, F.interpolate(_skip_image(G, w2, 16), size=(64, 64), mode="bilinear",
                                                              align_corners=False), atol=1e-5, rtol=0)
    # a fine edit starts in the last block: no preview
    w3 = _edit(w2, "fine", 1.0)
    frames = list(R.frames(w3, progressive=True))
    assert [(f.resolution, f.final) for f in frames] == [(64, True)]
    torch.testing.assert_close(frames[0].image, _plain(G, w3), atol=1e-5, rtol=0)
    assert [f.final for f in R.frames(w3, progressive=True)] == [True]   # all cached


def test_cancel_keeps_cache_consistent(G):
    R = Renderer(G, device="cpu", fused=True)
    ws = _ws(G, 7)
    R.render(ws)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        R.render(_edit(ws, "coarse", 1.0), cancel=token)
    token = CancelToken()
    hook = R.steps[8].layer.register_forward_hook(lambda *a: token.cancel())
    try:
        with pytest.raises(Cancelled):
            R.render(_edit(ws, "coarse", 2.0), cancel=token)
    finally:
        hook.remove()
    for w in (_edit(ws, "coarse", 2.0), _edit(ws, "fine", 1.0), ws):
        torch.testing.assert_close(R.render(w), _plain(G, w), atol=1e-5, rtol=0)


# --- worker -------------------------------------------------------------------------------------


class _Gate:
    """Blocks the first layer of the first render until released."""

    def __init__(self, R):
        self.entered, self.release, self.n = threading.Event(), threading.Event(), 0
        self.hook = R.steps[0].layer.register_forward_hook(self)

    def __call__(self, *args):
        self.n += 1
        if self.n == 1:
            self.entered.set()
            assert self.release.wait(10)


@pytest.mark.parametrize("show_superseded", [False, True])
def test_worker_latest_wins_and_drops_stale(G, show_superseded):
    R = Renderer(G, device="cpu", fused=True)
    gate = _Gate(R)
    got = []
    try:
        with RenderWorker(R, got.append, show_superseded=show_superseded) as worker:
            ws1, ws2, ws3 = _ws(G, 1), _ws(G, 2), _ws(G, 3)
            assert worker.submit(ws1) == 1
            assert gate.entered.wait(10)
            assert worker.submit(ws2) == 2
            assert worker.submit(ws3) == 3        # replaces 2 before it started
            gate.release.set()
            assert worker.wait_idle(30)
    finally:
        gate.hook.remove()
    assert not worker._thread.is_alive()
    gens = [f.generation for f in got]
    assert gens == ([1, 3] if show_superseded else [3])
    assert all(f.final for f in got)
    torch.testing.assert_close(got[-1].image, _plain(G, ws3), atol=1e-5, rtol=0)
    assert gate.n == 2                       # generation 2 never rendered


def test_worker_progressive_and_errors(G):
    R = Renderer(G, device="cpu", fused=True, preview_resolution=16)
    got, errors = [], []
    with RenderWorker(R, got.append, on_error=lambda e, g: errors.append((type(e), g)), progressive=True) as worker:
        worker.submit(_ws(G, 1))
        assert worker.wait_idle(30)
        assert [(f.generation, f.resolution, f.final) for f in got] == [(1, 16, False), (1, 64, True)]
        g = worker.submit(torch.zeros(1, 3, 32))
        assert worker.wait_idle(30)
        assert errors == [(ValueError, g)]
        worker.submit(_ws(G, 2), progressive=False)   # the worker survives errors
        assert worker.wait_idle(30)
    assert [f.final for f in got] == [False, True, True] and got[-1].generation == 3
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(_ws(G, 1))
