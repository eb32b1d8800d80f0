"""Latency of one slider step (a direction amount changes, the image is re-rendered), ms.

For each model size, a direction on the coarse / medium / fine W+ rows (METHODS.md §1) moves
through a sequence of amounts; each step renders through :class:`studio.engine.Renderer` with the
per-layer cache ("cache") and without it ("none": every layer runs). "first frame" is the time to
the progressive preview (skip-RGB image of a lower block) when one is shown. "MAC ratio" is the
convolution multiply-accumulates of a full render over those of the layers an edit recomputes. It
is a guide, not a bound: skipped layers also save costs that do not grow with their MACs (style
modulation, per-layer dispatch), so small models gain more than it (pack64 medium ~2.2x against
1.6x). Each renderer is warmed with the edit's two end frames before it is timed. Random weights
(only timing matters); batch 1, CPU unless --device cuda.

Configs: pack64 / pack128 = the trainer's cpu64 / cpu128 presets (the default pack's size),
official256 = NVIDIA paper256 (channel_base 16384), official1024 = NVIDIA FFHQ 1024.

    python benchmarks/bench_edit.py                      # all configs
    python benchmarks/bench_edit.py --configs pack64,pack128 --steps 40
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import torch

from studio.core.latent import apply_direction, layer_groups
from studio.core.nets.stylegan2 import Generator
from studio.engine.renderer import Renderer

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

CONFIGS = {
    # name: (Generator kwargs, default steps per cell)
    "pack64": (dict(z_dim=256, w_dim=256, img_resolution=64, mapping_layers=4, channel_base=2048, channel_max=256), 40),
    "pack128": (dict(z_dim=256, w_dim=256, img_resolution=128, mapping_layers=4, channel_base=4096, channel_max=256), 30),
    "official256": (dict(z_dim=512, w_dim=512, img_resolution=256, channel_base=16384, channel_max=512), 12),
    "official1024": (dict(z_dim=512, w_dim=512, img_resolution=1024, channel_base=32768, channel_max=512), 3),
}


def step_macs(R: Renderer) -> list[float]:
    """Multiply-accumulates of each renderer step (conv k x k over res^2, toRGB 1x1)."""
    out = []
    for s in R.steps:
        w = s.layer.weight
        out.append(float(s.res ** 2 * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]))
    return out


def time_steps(R: Renderer, base: torch.Tensor, n: torch.Tensor, span, steps: int, budget_s: float,
               progressive: bool) -> tuple[list[float], list[float]]:
    """Per-step (total ms, first-frame ms) for ``steps`` slider values on rows ``span``."""
    R.render(base)  # warm the cache (and the allocator)
    alphas = np.linspace(-3, 3, max(steps, 2))
    for a in (alphas[-1], alphas[0]):  # and the kernels of the edit's own path: the first edited frames
        for _ in R.frames(apply_direction(base, n, float(a), span), progressive=progressive):  # are slower
            pass
    totals, firsts = [], []
    start = time.perf_counter()
    for i in range(steps):
        ws = apply_direction(base, n, float(alphas[i]), span)
        t0 = time.perf_counter()
        first = None
        for frame in R.frames(ws, progressive=progressive):
            if first is None:
                first = time.perf_counter() - t0
        totals.append(1000 * (time.perf_counter() - t0))
        firsts.append(1000 * first)
        if i >= 2 and time.perf_counter() - start > budget_s:
            break
    return totals, firsts


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--configs", type=_cli.name_list(CONFIGS, "config"), default=",".join(CONFIGS),
                    help=f"comma list of generator sizes: {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=_cli.int_at_least(1), default=None,
                    help="slider steps per cell (default: per config, "
                         + ", ".join(f"{k} {v[1]}" for k, v in CONFIGS.items()) + ")")
    ap.add_argument("--budget", type=_cli.float_at_least(0, strict=True), default=60.0,
                    help="max seconds per cell (at least 3 steps run)")
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--device", default="cpu", help="torch device to render on: cpu, cuda, cuda:N")
    ap.add_argument("--fused", action="store_true", help="grouped-conv modulation (default: the renderer's choice, "
                                                         "non-fused on the CPU)")
    ap.add_argument("--channels-last", action="store_true", help="render with channels_last tensors")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _cli.check_device(ap, args.device)
    torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# bench_edit: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads={torch.get_num_threads()}, device={args.device}, load average {load[0]:.2f}, "
          f"fused={args.fused or 'auto'}, channels_last={args.channels_last}")
    header = (f"| {'config':<12} | {'res':>4} | {'edit':<6} | {'rows':>5} | {'cache':<5} | {'steps':>5} | "
              f"{'p50 ms':>8} | {'p95 ms':>8} | {'first frame p50':>15} | {'speedup p50':>11} | {'MAC ratio':>9} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for name in args.configs:
        kw, default_steps = CONFIGS[name]
        steps = args.steps or default_steps
        torch.manual_seed(0)
        G = Generator(**kw).eval().requires_grad_(False)
        res = kw["img_resolution"]
        progressive = res >= 256
        with torch.no_grad():
            base = G.map(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))).to(args.device)
        n = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(2))
        n = (n / n.norm()).to(args.device)
        groups = layer_groups(G.num_ws)
        opts = dict(device=args.device, fused=True if args.fused else None, channels_last=args.channels_last)
        R0 = Renderer(G, cache=False, **opts)
        macs = step_macs(R0)
        total_macs = sum(macs)
        # Without the cache every step renders everything, whatever the rows: one measurement.
        t_none, _ = time_steps(R0, base, n, groups["fine"], steps, args.budget, progressive=False)
        p50_none = float(np.percentile(t_none, 50))
        print(f"| {name:<12} | {res:>4} | {'any':<6} | {'all':>5} | {'none':<5} | {len(t_none):>5} | "
              f"{p50_none:>8.1f} | {np.percentile(t_none, 95):>8.1f} | {'-':>15} | {1.0:>10.2f}x | {1.0:>8.2f}x |",
              flush=True)
        for group in ("coarse", "medium", "fine"):
            a, b = groups[group]
            if a == b:
                continue
            R = Renderer(G, cache=True, **opts)
            t, first = time_steps(R, base, n, (a, b), steps, args.budget, progressive)
            k = min(i for i, s in enumerate(R.steps) if s.row >= a)
            ratio = total_macs / sum(macs[k:])
            ff = f"{np.percentile(first, 50):.1f}" if progressive else "-"
            print(f"| {name:<12} | {res:>4} | {group:<6} | {f'{a}-{b - 1}':>5} | {'cache':<5} | {len(t):>5} | "
                  f"{np.percentile(t, 50):>8.1f} | {np.percentile(t, 95):>8.1f} | {ff:>15} | "
                  f"{p50_none / np.percentile(t, 50):>10.2f}x | {ratio:>8.2f}x |", flush=True)
            del R
    return 0


if __name__ == "__main__":
    sys.exit(main())
