"""Training data for style-mixing distillation (seed 002, METHODS.md §6): generator triplets.

    python -m trainers.distill_data --out triplets.npz --count 5000 --group medium   # the default pack
    python -m trainers.distill_data --out pairs.npz --pairs-to anime.pkl --count 200  # face-to-X pairs

A triplet is (content, style, mixed) rendered by a frozen generator with constant noise: the mixed
W+ has the content's rows before the crossover and the style's from it on
(:func:`studio.core.distill.mix_at_crossover`). Latents come from integer **seeds** (NVIDIA's
convention, ``np.random.RandomState(seed).randn(z_dim)``), so sets are reproducible and disjoint by
construction:

* training batches (:class:`TripletSource`): step ``t`` renders base seeds ``t*B .. t*B+B-1``; face
  ``i`` is the content and face ``i+1`` (cyclically) the style, so B renders serve as both
  (``2B`` renders per batch, not ``3B``). Training never reaches :data:`VAL_SEED_START`;
* validation (the trainer's fixed set): content/style seeds ``VAL_SEED_START + 2k, + 2k + 1``;
* held-out benchmark triplets: the same from :data:`HELDOUT_SEED_START`.

A data set file (``.npz``, written atomically) holds ``content``, ``style``, ``target`` as
``[N, R, R, 3] uint8``, the latents ``w_content``, ``w_style`` ``[N, w_dim]`` float32, the seeds,
``crossover``, ``psi`` and a JSON ``info`` string. ``--pairs-to G2`` instead makes face-to-X pairs:
each generated face is projected into a second generator (``studio.core.projector``), the pair is
scored with SSIM and kept when SSIM >= 0.5; the median SSIM is printed and stored.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.core.distill import crossover_row, render_triplets, ssim, ssim_filter
from studio.core.errors import StudioError
from trainers.common import UserError, atomic_write_bytes

log = logging.getLogger("trainers.distill_data")

VAL_SEED_START = 1_000_000_000       # the trainer's validation triplets
HELDOUT_SEED_START = 2_000_000_000   # benchmark triplets (bench_distill)
TRAIN_SEED_LIMIT = VAL_SEED_START    # training base seeds stay below this


# ----------------------------------------------------------------------------
# Latents from seeds


def latents_for_seeds(G, seeds, psi: float = 1.0) -> torch.Tensor:
    """W [N, w_dim] float32 of NVIDIA-convention seeds, truncated towards ``w_avg`` by ``psi``."""
    z = np.stack([np.random.RandomState(int(s) % 2 ** 32).randn(G.z_dim) for s in seeds])
    dev = next(G.parameters()).device
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float().to(dev))
        if psi != 1:
            w = G.mapping.w_avg.lerp(w, float(psi))
    return w.float()


def heldout_seeds(n: int, start: int = HELDOUT_SEED_START) -> tuple[np.ndarray, np.ndarray]:
    """(content seeds, style seeds) [n] of the fixed triplets from ``start`` (2k and 2k + 1)."""
    k = np.arange(n, dtype=np.int64)
    return start + 2 * k, start + 2 * k + 1


@dataclass
class Triplets:
    """A batch: content, style, target [N, 3, R, R] in [-1, 1] (and their seeds / latents)."""

    content: torch.Tensor
    style: torch.Tensor
    target: torch.Tensor
    content_seeds: np.ndarray
    style_seeds: np.ndarray
    w_content: torch.Tensor | None = None
    w_style: torch.Tensor | None = None


def render_seed_triplets(G, content_seeds, style_seeds, crossover: int, psi: float = 1.0,
                         chunk: int = 32) -> Triplets:
    """Triplets of explicit content / style seeds (validation, held-out sets, data set files)."""
    wc = latents_for_seeds(G, content_seeds, psi)
    ws = latents_for_seeds(G, style_seeds, psi)
    c, s, t = render_triplets(G, wc, ws, crossover, chunk=chunk)
    return Triplets(c, s, t, np.asarray(content_seeds), np.asarray(style_seeds), wc.cpu(), ws.cpu())


class TripletSource:
    """Training triplets rendered on the fly; batch ``t`` is a pure function of ``t`` (bit-exact resume).

    ``batch(t)`` -> the global batch of step ``t`` (B base seeds ``t*B ..``, style = next face);
    ``sl`` picks this process's share (DDP)."""

    def __init__(self, G, crossover: int, batch: int, psi: float = 1.0, seed_offset: int = 0):
        if batch < 2:
            raise ValueError("a triplet batch needs at least 2 faces (content and style differ)")
        self.G, self.crossover, self.B, self.psi, self.offset = G, int(crossover), int(batch), float(psi), int(seed_offset)

    def batch(self, step: int, sl: slice = slice(None)) -> Triplets:
        base = (self.offset + np.arange(step * self.B, (step + 1) * self.B, dtype=np.int64)) % TRAIN_SEED_LIMIT
        style = np.roll(base, -1)
        base, style = base[sl], style[sl]
        faces = np.unique(np.concatenate([base, style]))  # one process: the B faces, each rendered once
        w_faces = latents_for_seeds(self.G, faces, self.psi)
        with torch.no_grad():
            img = self.G.synthesis(w_faces.unsqueeze(1).repeat(1, self.G.num_ws, 1), noise_mode="const").clamp(-1, 1)
        ci, si = np.searchsorted(faces, base), np.searchsorted(faces, style)
        wc, ws = w_faces[ci], w_faces[si]
        t = _render_mixed(self.G, wc, ws, self.crossover)
        return Triplets(img[ci], img[si], t, base, style, wc.cpu(), ws.cpu())


class NpzTriplets:
    """Training triplets from a data set file; batch ``t`` = a seeded per-epoch permutation's slice."""

    def __init__(self, path: str | Path, batch: int, seed: int = 0):
        try:
            with np.load(path, allow_pickle=False) as d:
                self.content, self.style, self.target = d["content"], d["style"], d["target"]
                self.content_seeds, self.style_seeds = d["content_seeds"], d["style_seeds"]
                self.crossover = int(d["crossover"])
                self.info = json.loads(str(d["info"])) if "info" in d else {}
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"--data: {path} is not a triplet data set ({e})") from None
        if len(self.content) < batch:
            raise UserError(f"--data: {path} has {len(self.content)} triplets, fewer than --batch {batch}")
        self.B, self.seed = int(batch), int(seed)
        self.resolution = int(self.content.shape[1])

    def batch(self, step: int, sl: slice = slice(None)) -> Triplets:
        n = len(self.content)
        per_epoch = n // self.B
        epoch, k = divmod(step, per_epoch)
        perm = np.random.RandomState((self.seed * 1_000_003 + epoch) % 2 ** 32).permutation(n)
        idx = perm[k * self.B:(k + 1) * self.B][sl]

        def t(a):
            return torch.from_numpy(a[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1

        return Triplets(t(self.content), t(self.style), t(self.target), self.content_seeds[idx], self.style_seeds[idx])


# ----------------------------------------------------------------------------
# Data set files


def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    from studio.core.tensors import to_uint8

    return to_uint8(img)


def triplet_seeds(count: int, seed_start: int = 0, styles_per_face: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(content seeds, style seeds) [count] of a data set.

    ``styles_per_face`` 0: independent pairs (content ``seed_start + 2k``, style ``+ 2k + 1``; 3 renders
    per triplet). K > 0: ``ceil(count / K)`` faces with seeds from ``seed_start``, face ``i`` mixed with
    faces ``i+1 .. i+K`` (cyclically): each face is rendered once, ``1 + 1/K`` renders per triplet."""
    if styles_per_face <= 0:
        return heldout_seeds(count, seed_start)
    n = max(-(-count // styles_per_face), styles_per_face + 1)
    faces = np.arange(seed_start, seed_start + n, dtype=np.int64)
    ci = np.repeat(np.arange(n), styles_per_face)[:count]
    si = (ci + np.tile(np.arange(1, styles_per_face + 1), n)[:count]) % n
    return faces[ci], faces[si]


def write_triplets(G, out: str | Path, count: int, crossover: int, *, psi: float = 1.0, seed_start: int = 0,
                   styles_per_face: int = 0, chunk: int = 32, info: dict | None = None, progress=None) -> Path:
    """Render ``count`` triplets (seeds from :func:`triplet_seeds`) into ``out`` (.npz, uint8 images + W latents).

    Each distinct face is rendered once (content and style images are shared), each mix once."""
    cs, ss = triplet_seeds(count, seed_start, styles_per_face)
    faces = np.unique(np.concatenate([cs, ss]))
    w_faces = torch.cat([latents_for_seeds(G, faces[i:i + 256], psi) for i in range(0, len(faces), 256)])
    dev = next(G.parameters()).device
    imgs = []
    with torch.no_grad():
        for i in range(0, len(faces), chunk):
            ws = w_faces[i:i + chunk].unsqueeze(1).repeat(1, G.num_ws, 1).to(dev)
            imgs.append(to_uint8_hwc(G.synthesis(ws, noise_mode="const").clamp(-1, 1)))
            if progress is not None:
                progress(min(i + chunk, len(faces)), len(faces) + count)
    face_imgs = np.concatenate(imgs)
    pos = {int(s): k for k, s in enumerate(faces)}
    ci = np.array([pos[int(s)] for s in cs])
    si = np.array([pos[int(s)] for s in ss])
    targets = []
    for i in range(0, count, chunk):
        wc, wst = w_faces[ci[i:i + chunk]], w_faces[si[i:i + chunk]]
        t = _render_mixed(G, wc, wst, crossover)
        targets.append(to_uint8_hwc(t))
        if progress is not None:
            progress(len(faces) + min(i + chunk, count), len(faces) + count)
    meta = {"crossover": crossover, "psi": psi, "num_ws": int(G.num_ws), "resolution": int(G.img_resolution),
            "styles_per_face": styles_per_face, **(info or {})}
    buf = io.BytesIO()
    np.savez(buf, content=face_imgs[ci], style=face_imgs[si], target=np.concatenate(targets),
             w_content=w_faces[ci].cpu().numpy(), w_style=w_faces[si].cpu().numpy(), content_seeds=cs,
             style_seeds=ss, crossover=np.int64(crossover), psi=np.float64(psi), info=np.array(json.dumps(meta)))
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


@torch.no_grad()
def _render_mixed(G, w_content: torch.Tensor, w_style: torch.Tensor, crossover: int) -> torch.Tensor:
    """Only the mixed image [N, 3, R, R] of W latents (the faces are rendered separately)."""
    from studio.core.distill import mix_at_crossover

    rep = lambda w: w.unsqueeze(1).repeat(1, G.num_ws, 1)
    ws = mix_at_crossover(rep(w_content), rep(w_style), crossover).to(next(G.parameters()).device)
    return G.synthesis(ws, noise_mode="const").clamp(-1, 1)


# ----------------------------------------------------------------------------
# Face-to-X pairs (METHODS.md §6: project generated faces into a second generator, keep SSIM >= 0.5)


def face_to_x_pairs(G_src, G_dst, seeds, *, steps: int = 200, psi: float = 1.0, threshold: float = 0.5,
                    config=None, progress=None) -> dict:
    """Project each of ``G_src``'s faces (one per seed) into ``G_dst`` by optimisation and score it.

    Returns ``{"source": [N, R, R, 3] uint8, "target": ..., "ssim": [N], "keep": [N] bool,
    "median_ssim": float, "kept": int}``; the target is ``G_dst``'s rendering of the projection at
    ``G_src``'s resolution (resized when the generators differ). ``config``: a full
    :class:`~studio.core.projector.ProjectorConfig` (overrides ``steps``)."""
    from studio.core.lpips import LPIPS
    from studio.core.projector import ProjectorConfig, project

    cfg = config if config is not None else ProjectorConfig(steps=steps, preview_every=0)
    lpips = LPIPS(cfg.lpips_net).eval()  # built once for every projection
    R = int(G_dst.img_resolution)
    srcs, dsts, scores = [], [], []
    for k, s in enumerate(seeds):
        w = latents_for_seeds(G_src, [s], psi)
        with torch.no_grad():
            src = G_src.synthesis(w.unsqueeze(1).repeat(1, G_src.num_ws, 1), noise_mode="const").clamp(-1, 1).cpu()
        tgt_in = src if src.shape[-1] == R else torch.nn.functional.interpolate(
            src, size=(R, R), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
        res = project(G_dst, tgt_in, cfg, lpips=lpips)
        with torch.no_grad():
            dst = G_dst.synthesis(res.latent_wplus.reshape(1, G_dst.num_ws, G_dst.w_dim).to(
                next(G_dst.parameters()).device), noise_mode="const").clamp(-1, 1).cpu()
        if dst.shape[-1] != src.shape[-1]:
            dst = torch.nn.functional.interpolate(dst, size=src.shape[-2:], mode="bicubic", align_corners=False,
                                                  antialias=True).clamp(-1, 1)
        scores.append(float(ssim(src, dst)[0]))
        srcs.append(to_uint8_hwc(src)[0])
        dsts.append(to_uint8_hwc(dst)[0])
        if progress is not None:
            progress(k + 1, len(seeds))
    keep, med = ssim_filter(scores, threshold)
    return {"source": np.stack(srcs), "target": np.stack(dsts), "ssim": np.asarray(scores, np.float32),
            "keep": keep, "median_ssim": med, "kept": int(keep.sum())}


# ----------------------------------------------------------------------------
# Command line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and "(default: X)" after each option that has a default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, argparse.SUPPRESS) and "%(default)" not in h and action.option_strings:
            h += " (default: %(default)s)"
        return h


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m trainers.distill_data", description=__doc__,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--generator", help="teacher generator (default: the embedded model pack)")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--count", type=int, default=1000, help="triplets (or face-to-X candidates)")
    ap.add_argument("--group", default="medium", choices=["medium", "fine"],
                    help="crossover group (the style's rows from it on)")
    ap.add_argument("--psi", type=float, default=1.0, help="truncation of the latents")
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (content 2k, style 2k+1 from here)")
    ap.add_argument("--styles-per-face", type=int, default=0,
                    help="K > 0: mix each face with the next K faces (1 + 1/K renders per triplet instead of 3)")
    ap.add_argument("--pairs-to", help="second generator: make face-to-X pairs by projection instead")
    ap.add_argument("--steps", type=int, default=200, help="projection steps per face (--pairs-to)")
    ap.add_argument("--threshold", type=float, default=0.5, help="keep pairs with SSIM >= this (--pairs-to)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    args = ap.parse_args(argv)
    try:
        from studio.core.formats import load_checkpoint
        from trainers.crg import default_model

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.count < 1:
            raise UserError("--count must be at least 1")
        if Path(args.out).is_dir():
            raise UserError(f"--out {args.out} is a folder; give a file name such as triplets.npz")
        if not 0 < args.psi <= 1:  # NaN too
            raise UserError(f"--psi must be in (0, 1], got {args.psi}")
        G = load_checkpoint(args.generator or default_model()).generator
        if G is None:
            raise UserError(f"--generator: {args.generator} has no generator")
        G = G.eval()

        def prog(i, n):
            print(f"  {i}/{n} renders", file=sys.stderr)

        if args.pairs_to:
            G2 = load_checkpoint(args.pairs_to).generator
            if G2 is None:
                raise UserError(f"--pairs-to: {args.pairs_to} has no generator")
            seeds = np.arange(args.seed_start, args.seed_start + args.count)
            r = face_to_x_pairs(G, G2.eval(), seeds, steps=args.steps, psi=args.psi, threshold=args.threshold,
                                progress=prog)
            k = r["keep"]
            buf = io.BytesIO()
            np.savez(buf, source=r["source"][k], target=r["target"][k], ssim=r["ssim"][k], seeds=seeds[k],
                     info=np.array(json.dumps({"median_ssim": r["median_ssim"], "candidates": len(seeds),
                                               "kept": r["kept"], "threshold": args.threshold})))
            atomic_write_bytes(args.out, buf.getvalue())
            print(f"{r['kept']} of {len(seeds)} pairs kept (SSIM >= {args.threshold}); median SSIM "
                  f"{r['median_ssim']:.3f} -> {args.out}")
            return 0
        try:
            cross = crossover_row(G.num_ws, args.group)
        except ValueError as e:
            raise UserError(f"--group: {e}") from None
        write_triplets(G, args.out, args.count, cross, psi=args.psi, seed_start=args.seed_start,
                       styles_per_face=args.styles_per_face, progress=prog,
                       info={"group": args.group, "generator": args.generator or "default pack"})
        print(f"{args.count} triplets (crossover row {cross}, group {args.group}) -> {args.out}")
    except (StudioError, OSError) as e:  # UserError, a bad --generator, an --out that cannot be written
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        print(f"error: {where}{(e.strerror if isinstance(e, OSError) else None) or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
