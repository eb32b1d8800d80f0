"""Synthesis speed of our pure-PyTorch StyleGAN2 generator: ms per image.

Configs: the fixture models (NVIDIA small 64 px, rosinality 256 px channel_multiplier 2) and
official-size 256 / 1024 px generators (random weights: only timing matters). Variants: eager with
grouped-conv modulation ("fused"), eager with activation modulation ("nonfused"), channels_last,
and torch.compile. Batch 1 and 8; threads = cores.

    python benchmarks/bench_generator.py            # the default matrix (skips the slowest cells)
    python benchmarks/bench_generator.py --full     # every cell, incl. 1024 px batch 8 and compile
    python benchmarks/bench_generator.py --configs nvidia64 --batches 1 --variants fused,compile
"""

from __future__ import annotations

import os
import platform
import sys
import time

import torch

from studio.core.nets.stylegan2 import Generator

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

CONFIGS = {
    # name: Generator kwargs
    "nvidia64": dict(z_dim=128, w_dim=128, img_resolution=64, channel_base=1024, channel_max=64, conv_clamp=256),
    "rosinality256": dict(z_dim=512, w_dim=512, img_resolution=256, channel_base=32768, channel_max=512),
    "official256": dict(z_dim=512, w_dim=512, img_resolution=256, channel_base=16384, channel_max=512),
    "official1024": dict(z_dim=512, w_dim=512, img_resolution=1024, channel_base=32768, channel_max=512),
}
VARIANTS = ["fused", "nonfused", "channels_last", "compile"]


def _skip_by_default(cfg: str, batch: int, variant: str) -> bool:
    """The slowest cells (minutes each on 2 cores) run only with --full."""
    if cfg == "official1024":
        return batch > 1 or variant in ("compile", "nonfused")
    return variant == "compile" and cfg != "nvidia64"


def time_cell(G: Generator, batch: int, variant: str, *, min_runs: int = 3, budget_s: float = 20.0) -> tuple[float, float]:
    """(ms per image median, first-call seconds incl. compile)."""
    ws = G.map(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0)))
    fused = variant != "nonfused"
    fn = lambda w: G.synthesis(w, noise_mode="const", fused=fused)  # noqa: E731
    if variant == "channels_last":
        G = G.to(memory_format=torch.channels_last)
    if variant == "compile":
        fn = torch.compile(fn, dynamic=False)
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        fn(ws)
        first = time.perf_counter() - t0
        start = time.perf_counter()
        while len(times) < min_runs or (time.perf_counter() - start < budget_s / 4 and len(times) < 20):
            t = time.perf_counter()
            fn(ws)
            times.append(time.perf_counter() - t)
            if time.perf_counter() - start > budget_s:
                break
    times.sort()
    return 1000 * times[len(times) // 2] / batch, first


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--configs", type=_cli.name_list(CONFIGS, "config"), default=",".join(CONFIGS),
                    help=f"comma list of generator sizes: {', '.join(CONFIGS)}")
    ap.add_argument("--batches", type=_cli.int_list(1), default="1,8", help="comma list of batch sizes")
    ap.add_argument("--variants", type=_cli.name_list(VARIANTS, "variant"), default=",".join(VARIANTS),
                    help="comma list of variants: fused (grouped-conv modulation), nonfused (activation "
                         "modulation), channels_last, compile (torch.compile)")
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--full", action="store_true", help="run every cell (1024 px batch 8 and compile are slow)")
    ap.add_argument("--budget", type=_cli.float_at_least(0, strict=True), default=20.0,
                    help="seconds per cell: timing stops once this is spent (at least one timed run)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# bench_generator: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads={torch.get_num_threads()}, device=cpu")
    header = f"| {'config':<14} | {'res':>4} | {'params':>7} | {'batch':>5} | {'variant':<13} | {'ms/img':>9} | {'first call s':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name in args.configs:
        kw = CONFIGS[name]
        torch.manual_seed(0)
        G = Generator(**kw).eval().requires_grad_(False)
        params = sum(p.numel() for p in G.parameters()) / 1e6
        for batch in args.batches:
            for variant in args.variants:
                if not args.full and _skip_by_default(name, batch, variant):
                    print(f"| {name:<14} | {kw['img_resolution']:>4} | {params:>6.1f}M | {batch:>5} | {variant:<13} | {'skipped':>9} | {'(--full)':>12} |")
                    continue
                Gv = Generator(**kw).eval().requires_grad_(False)
                Gv.load_state_dict(G.state_dict())
                ms, first = time_cell(Gv, batch, variant, budget_s=args.budget)
                print(f"| {name:<14} | {kw['img_resolution']:>4} | {params:>6.1f}M | {batch:>5} | {variant:<13} | {ms:>9.1f} | {first:>12.2f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
