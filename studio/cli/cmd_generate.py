"""``stylestudio generate MODEL --seeds 1-8 --psi 0.7 --out DIR``: sample faces."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from studio.core.fileio import atomic_save_npy, atomic_write_json
from studio.core.formats import load_checkpoint
from studio.core.imageio import save_image
from studio.core.tensors import make_grid, pick_device, to_uint8

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("generate", help="render random faces from a generator",
                       description="Render one PNG per seed plus a grid (NVIDIA's seed convention: "
                                   "z = RandomState(seed).randn).")
    p.add_argument("model", nargs="?", default=None, help="model file (default: the embedded pack)")
    p.add_argument("--seeds", default="0-7", help="seed list, e.g. '1-8' or '1,5,9' (default 0-7)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (1 = none; default 0.7)")
    p.add_argument("--cutoff", type=int, default=None, help="truncate only the first N W+ rows")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const",
                   help="per-pixel noise: const (the model's fixed maps, reproducible; default), random or none")
    p.add_argument("--out", default="out", help="output directory (default ./out)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--save-latents", action="store_true", help="also write each seed's W+ as .npy")
    p.set_defaults(func=run)


MAX_SEED = 2**32 - 1  # numpy's RandomState (NVIDIA's seed convention) takes 0 .. 2**32 - 1


def run(args) -> int:
    from studio.cli.common import check_not_input, check_output, parse_range_list, resolve_model
    from studio.core.errors import StudioError

    try:
        seeds = parse_range_list(args.seeds)
    except ValueError as e:
        raise StudioError(f"--seeds: {e}; use e.g. 1-8 or 1,5,9") from None
    seeds = list(dict.fromkeys(seeds))  # '1,1' or '1-3,2': each seed once (one file per seed)
    if not seeds:
        raise StudioError("--seeds: no seeds given")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise StudioError(f"--seeds: {bad[0]} is out of range; seeds must be in 0-{MAX_SEED}")
    if not math.isfinite(args.psi) or abs(args.psi) > 100:
        raise StudioError(f"--psi must be a finite number within ±100, got {args.psi}")
    if args.batch < 1:
        raise StudioError(f"--batch must be at least 1, got {args.batch}")
    model = resolve_model(args.model)
    out = check_output(args.out, folder=True)
    check_not_input(out, model)
    bundle = load_checkpoint(model)
    G = bundle.generator
    if G is None:
        raise StudioError(f"{model}: this file has no generator")
    if args.cutoff is not None and not 1 <= args.cutoff <= G.num_ws:
        raise StudioError(f"--cutoff must be in 1-{G.num_ws} (this model has {G.num_ws} W+ rows), got {args.cutoff}")
    device = pick_device(args.device)
    G = G.to(device)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with torch.inference_mode():
        for i in range(0, len(seeds), args.batch):
            chunk = seeds[i:i + args.batch]
            z = torch.cat([G.sample_z(1, seed=s, device=device) for s in chunk])
            ws = G.map(z, psi=args.psi, cutoff=args.cutoff)
            gen = torch.Generator(device=device).manual_seed(chunk[0])
            img = to_uint8(G.synthesis(ws, noise_mode=args.noise_mode, generator=gen))
            for s, im, w in zip(chunk, img, ws):
                save_image(out / f"seed{s:04d}.png", im)
                if args.save_latents:
                    atomic_save_npy(out / f"seed{s:04d}.npy", w.cpu().numpy())
            images.append(img)
    grid = make_grid(np.concatenate(images))
    save_image(out / "grid.png", grid)
    atomic_write_json(out / "generate.json", {
        "model": str(bundle.path), "format": bundle.format, "seeds": seeds, "psi": args.psi,
        "cutoff": args.cutoff, "noise_mode": args.noise_mode}, allow_nan=False)
    print(f"wrote {len(seeds)} images and grid.png to {out}")
    return 0
