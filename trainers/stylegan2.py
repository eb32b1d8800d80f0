"""Train a StyleGAN2 generator (seed 004, METHODS.md §1) on a folder of faces, on CPU or GPU.

    python -m trainers.stylegan2 --data ../shared/data/utkface/images --cfg cpu64 --kimg 200
    torchrun --nproc_per_node=2 -m trainers.stylegan2 --data ... --cfg cpu64
    python -m trainers.stylegan2 --resume runs/00003-utkface-cpu64      # continue exactly

Losses: non-saturating logistic + lazy R1 (every 16) + lazy path-length regularisation (every 4)
with style mixing (0.9) and G EMA, Adam (0, 0.99) with the lazy-regularisation correction; or, with
``--d projected``, a discriminator on frozen ImageNet features with the hinge loss and no R1.
A run directory holds config.json, log.txt, metrics.jsonl, TensorBoard events, sample grids,
network snapshots in StyleStudio's format and one resume snapshot (resume.pt), all written
atomically; best.safetensors is the G_ema with the lowest in-run FD-VGG16 so far (and
best-ema<K>.safetensors that of each --ema-extra-kimg average). SIGINT/SIGTERM write a snapshot before exiting.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from studio.core.formats import stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.stylegan2 import Discriminator, Generator
from trainers import losses
from trainers.augment import AdaptiveP, augment
from trainers.common import (
    require_loop_fields,
    field_help,
    require_positive,
    MetricsLog,
    StopFlag,
    TensorBoard,
    UserError,
    all_reduce_mean,
    atomic_torch_save,
    atomic_write_bytes,
    barrier,
    config_from_run,
    field_converter,
    init_trainer,
    is_distributed,
    is_main,
    peak_rss_mb,
    stop_reason,
    trainer_main,
    world_size,
)
from trainers.data import BatchStream, load_images

log = logging.getLogger("trainers.stylegan2")

# ----------------------------------------------------------------------------
# Configuration

PRESETS: dict[str, dict] = {
    # Sized for a 2-core CPU (README "Training"): 256 channels at 4-8 px, halving per resolution
    # after that, so the expensive high-resolution layers stay thin (G 3.2M parameters at 64 px).
    "cpu64": dict(resolution=64, z_dim=256, w_dim=256, mapping_layers=4, g_channel_base=2048, g_channel_max=256,
                  d_channel_base=2048, d_channel_max=256, batch=32),
    # Twice the channels from 16 px up (about 3x the compute per image).
    "cpu64-wide": dict(resolution=64, z_dim=256, w_dim=256, mapping_layers=4, g_channel_base=4096,
                       g_channel_max=256, d_channel_base=4096, d_channel_max=256, batch=32),
    "cpu128": dict(resolution=128, z_dim=256, w_dim=256, mapping_layers=4, g_channel_base=4096,
                   g_channel_max=256, d_channel_base=4096, d_channel_max=256, batch=32),
    "gpu128": dict(resolution=128, z_dim=512, w_dim=512, mapping_layers=8, g_channel_base=16384,
                   g_channel_max=512, d_channel_base=16384, d_channel_max=512, batch=64),
    # For tests: runs in seconds.
    "tiny": dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, g_channel_base=256, g_channel_max=32,
                 d_channel_base=256, d_channel_max=32, batch=8),
}


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs"
    desc: str = ""
    cfg: str = "cpu64"
    resolution: int = 64
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 4
    g_channel_base: int = 2048
    g_channel_max: int = 256
    d_channel_base: int = 2048
    d_channel_max: int = 256
    d: str = "projected"            # "projected" (frozen ImageNet features; faster to faces) | "residual" (paper)
    d_backbone: str = "alex"        # projected D backbone
    batch: int = 32                 # global batch (all processes)
    kimg: float = 100.0             # stop after this many thousand real images shown
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    # > 0: both learning rates fall linearly to lr_decay_to x their value over this many kimg, counted
    # from where this run began (a --resume-compact's kimg; kept across --resume), for a run that
    # continues a plateaued generator and anneals it rather than training on at full rate
    lr_decay_kimg: float = 0.0
    lr_decay_to: float = 0.0
    r1_gamma: float | None = None   # None: 0.0002 * res^2 / batch (NVIDIA's heuristic)
    r1_every: int = 16
    pl_weight: float = 2.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    # more G_ema copies with these half-lives in kimg ("40,80"; fixed, no ramp-up), snapshotted
    # beside the main one (snapshots/ema<K>/, float16), so the averaging can be chosen by FD after
    # the run: at batch 256 the main one's 10 kimg averages only ~40 steps
    ema_extra_kimg: str = ""
    # which of G's weights train: 'all', 'mapping' (the synthesis frozen: fine-tuning the latent
    # distribution of a converged generator) or 'mapping+styles' (and the synthesis' style affines)
    g_train: str = "all"
    # a new run continuing a snapshot (--resume-compact) starts its trained G from the snapshot's
    # G_ema instead of its raw G (the average is the better generator; for fine-tuning it)
    g_from_ema: bool = False
    augment: str = "ada"            # 'ada' (adaptive p) | 'diffaugment' (p = 1) | 'none'
    ada_target: float = 0.6
    ada_kimg: float = 20.0
    mirror: bool = True
    heldout_fraction: float = 0.05
    max_images: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int = 0                # 0 = all cores (per process)
    log_every: int = 10             # steps
    sample_every_kimg: float = 2.0
    snapshot_every_kimg: float = 4.0
    metrics_every_kimg: float = 10.0
    fd_samples: int = 500           # 0 disables FD-VGG16
    ppl_samples: int = 0            # 0 disables PPL-W
    keep_snapshots: int = 3         # network snapshots kept besides the best by FD
    data_cache: str | None = None
    max_steps: int | None = None    # for tests
    lpips_dir: str | None = None


# The --help text of each TrainConfig field (its flag is --field-name); "(default ...)" is added.
HELP: dict[str, str] = {
    "out": "folder the run directory is created in",
    "desc": "run name suffix (run directories are NNNNN-<desc>)",
    "resolution": "output side in pixels, a power of two",
    "z_dim": "latent z size",
    "w_dim": "intermediate latent w size",
    "mapping_layers": "layers of the mapping network",
    "g_channel_base": "G channels = min(base / resolution, max) per block",
    "g_channel_max": "G channels at most",
    "d_channel_base": "D channels = min(base / resolution, max) per block (residual D)",
    "d_channel_max": "D channels at most (residual D)",
    "d": "discriminator: 'projected' (frozen ImageNet features, hinge loss; faces soonest) or "
         "'residual' (the paper's, logistic loss + R1)",
    "d_backbone": "backbone of the projected D ('alex': the LPIPS AlexNet weights)",
    "batch": "global batch, over all processes",
    "kimg": "stop after this many thousand real images shown",
    "lr_g": "G learning rate (Adam)",
    "lr_d": "D learning rate (Adam)",
    "lr_decay_kimg": "> 0: both learning rates fall linearly over this many kimg from where the run began",
    "lr_decay_to": "the fraction of the learning rates left at the end of --lr-decay-kimg",
    "r1_gamma": "R1 weight (residual D; default 0.0002 x resolution^2 / batch)",
    "r1_every": "steps between lazy R1 passes",
    "pl_weight": "path-length regularisation weight (0: off)",
    "pl_every": "steps between lazy path-length passes",
    "pl_decay": "decay of the path-length running mean",
    "pl_batch_shrink": "the path-length pass uses batch / this",
    "style_mixing": "probability of mixing two latents in a training sample",
    "ema_kimg": "half-life of G_ema in kimg",
    "ema_rampup": "G_ema half-life ramp-up, as a fraction of the images shown (0: none)",
    "ema_extra_kimg": "more G_ema half-lives to keep and snapshot, e.g. 40,80",
    "g_train": "G weights that train: 'all', 'mapping' (synthesis frozen; no path-length pass) or "
               "'mapping+styles' (and the style affines)",
    "g_from_ema": "continuing a --resume-compact snapshot: the trained G starts as its G_ema",
    "augment": "'ada' (probability adapted to D's overfitting), 'diffaugment' (always) or 'none'",
    "ada_target": "ADA: the E[sign D(real)] the augment probability steers to",
    "ada_kimg": "ADA: kimg for the probability to move from 0 to 1",
    "mirror": "random horizontal flips of the real images, true or false",
    "heldout_fraction": "share of the images held out for FD",
    "max_images": "use at most this many training images",
    "seed": "seed of every random draw",
    "device": "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'",
    "threads": "CPU threads per process (0: all cores)",
    "log_every": "steps between log lines",
    "sample_every_kimg": "kimg between sample grids (0: never)",
    "snapshot_every_kimg": "kimg between network and resume snapshots",
    "metrics_every_kimg": "kimg between FD-VGG16 evaluations (0: never)",
    "fd_samples": "images per side of the FD-VGG16 evaluation (0: off)",
    "ppl_samples": "samples of the PPL-W evaluation (0: off)",
    "keep_snapshots": "network snapshots kept besides the best by FD",
    "data_cache": "folder for the decoded-image cache (default: beside the runs)",
    "max_steps": "stop this invocation at this optimiser step (resumable)",
    "lpips_dir": "folder with the LPIPS / backbone weights (default: the app's resources)",
}
# Preset fields: their default comes from --cfg.
PRESET_FIELDS = frozenset(k for v in PRESETS.values() for k in v)


# Settings of the machine a run was made on, not of the recipe: a compact snapshot does not carry them.
MACHINE_FIELDS = ("data", "out", "device", "threads", "data_cache", "lpips_dir")


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m trainers.stylegan2", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of face images (e.g. ../shared/data/utkface/images)")
    ap.add_argument("--cfg", default="cpu64", choices=sorted(PRESETS), help="architecture preset")
    ap.add_argument("--resume", help="run directory to continue (its config is used)")
    ap.add_argument("--resume-compact", metavar="FILE",
                    help="start a new run from a compact snapshot (e.g. trainers/pack/generator-resume.safetensors)")
    ap.add_argument("--export-compact", nargs=2, metavar=("RUN_DIR", "OUT"),
                    help="write RUN_DIR's latest snapshot as a compact file and exit")
    ap.add_argument("--g-ema-from", default=None, metavar="SNAPSHOT",
                    help="with --export-compact: G_ema from this network snapshot of the run (e.g. its best)")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--no-tqdm", action="store_true", help="plain log lines instead of a progress bar")
    skip = {"data", "cfg"}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        # "--discriminator" spells "--d" out: torchrun's own parser rejects "--d" as ambiguous.
        flags = [flag, "--discriminator"] if f.name == "d" else [flag]
        ap.add_argument(*flags, dest=f.name, type=field_converter(str(f.type)), default=None,
                        metavar="BOOL" if str(f.type) == "bool" else None, help=field_help(f, HELP, PRESET_FIELDS))
    args = ap.parse_args(argv)
    if args.export_compact or args.resume_compact:
        if args.export_compact:
            return TrainConfig(), args
        meta, _ = read_compact(args.resume_compact)
        cfg = TrainConfig(**meta["config"])
        # A compact snapshot travels between machines: what describes the machine it was made on
        # (device, threads, where the data / runs / caches were) is not carried over.
        machine = TrainConfig()
        for name in MACHINE_FIELDS:
            setattr(cfg, name, getattr(machine, name))
        if not args.data and meta["config"].get("data") and Path(meta["config"]["data"]).is_dir():
            cfg.data = meta["config"]["data"]
        for f in dataclasses.fields(TrainConfig):
            v = getattr(args, f.name, None)
            if f.name not in skip and v is not None:
                setattr(cfg, f.name, v)
        if args.data:
            cfg.data = args.data
        validate(cfg)
        return cfg, args
    if args.resume:
        return config_from_run(args, TrainConfig, "generator", (
            "kimg", "max_steps", "threads", "device", "metrics_every_kimg", "snapshot_every_kimg", "log_every",
            "sample_every_kimg")), args
    cfg = TrainConfig(cfg=args.cfg, **PRESETS[args.cfg])
    if args.data:
        cfg.data = args.data
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if f.name not in skip and v is not None:
            setattr(cfg, f.name, v)
    validate(cfg)
    return cfg, args


def extra_ema_kimgs(cfg: TrainConfig) -> list[float]:
    """``--ema-extra-kimg "40,80"`` as [40.0, 80.0] (a clear error for anything else)."""
    out = []
    for part in str(cfg.ema_extra_kimg or "").replace(" ", "").split(","):
        if not part:
            continue
        try:
            k = float(part)
        except ValueError:
            k = -1.0
        if not (k > 0 and math.isfinite(k)):
            raise UserError(f"--ema-extra-kimg {cfg.ema_extra_kimg!r}: give half-lives in kimg, e.g. \"40,80\"")
        if k not in out:
            out.append(k)
    return out


G_TRAIN = ("all", "mapping", "mapping+styles")


def g_trainable(G: Generator, which: str) -> list[nn.Parameter]:
    """Set ``requires_grad`` on G for ``--g-train`` and return the trainable parameters."""
    if which == "all":
        G.requires_grad_(True)
        return list(G.parameters())
    G.requires_grad_(False)
    G.mapping.requires_grad_(True)
    if which == "mapping+styles":
        for name, p in G.synthesis.named_parameters():
            if ".affine." in f".{name}":
                p.requires_grad_(True)
    return [p for p in G.parameters() if p.requires_grad]


def validate(cfg: TrainConfig) -> None:
    require_loop_fields(cfg)
    if not cfg.data:
        raise UserError("--data: give a folder of face images (e.g. ../shared/data/utkface/images)")
    if cfg.d not in ("residual", "projected"):
        raise UserError("--d must be 'residual' or 'projected'")
    if cfg.g_train not in G_TRAIN:
        raise UserError(f"--g-train must be one of {', '.join(G_TRAIN)}, got {cfg.g_train!r}")
    if cfg.augment not in ("ada", "diffaugment", "none"):
        raise UserError("--augment must be 'ada', 'diffaugment' or 'none'")
    if cfg.resolution < 8 or cfg.resolution & (cfg.resolution - 1):
        raise UserError(f"--resolution must be a power of two >= 8, got {cfg.resolution}")
    if cfg.batch < 2:
        raise UserError("--batch must be at least 2")
    require_positive(cfg, "kimg", "lr_g", "lr_d")
    extra_ema_kimgs(cfg)
    if not (0 <= cfg.lr_decay_kimg < math.inf and 0 <= cfg.lr_decay_to <= 1):
        raise UserError(f"--lr-decay-kimg {cfg.lr_decay_kimg} / --lr-decay-to {cfg.lr_decay_to}: give a length "
                        f"in kimg >= 0 and a final fraction of the learning rate between 0 and 1")
    if cfg.d == "residual" and cfg.batch > 4 and cfg.batch % 4:
        raise UserError(f"--batch {cfg.batch}: the residual discriminator compares images in groups of 4 "
                        f"(minibatch stddev); give a multiple of 4, e.g. --batch {cfg.batch // 4 * 4 or 4}")


# ----------------------------------------------------------------------------
# Networks


def build_networks(cfg: TrainConfig) -> tuple[Generator, nn.Module]:
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution, mapping_layers=cfg.mapping_layers,
                  channel_base=cfg.g_channel_base, channel_max=cfg.g_channel_max)
    if cfg.d == "projected":
        from trainers.projected import ProjectedDiscriminator

        D = ProjectedDiscriminator(img_resolution=cfg.resolution, backbone=cfg.d_backbone, weights_dir=cfg.lpips_dir)
    else:
        D = Discriminator(img_resolution=cfg.resolution, channel_base=cfg.d_channel_base,
                          channel_max=cfg.d_channel_max, mbstd_group_size=min(4, cfg.batch // world_size()))
    return G, D


class TrainG(nn.Module):
    """G's training forward as one module (so DDP sees every parameter each call):
    z (+ mixing z and cutoff) and per-layer noise -> (image, W+)."""

    def __init__(self, G: Generator):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, z2: torch.Tensor | None, cutoff: int, noises: list[torch.Tensor]):
        G = self.G
        w = G.mapping(z)
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
        if z2 is not None and cutoff < G.num_ws:
            w2 = G.mapping(z2)
            ws = torch.cat([ws[:, :cutoff], w2.unsqueeze(1).repeat(1, G.num_ws - cutoff, 1)], dim=1)
        return self._synth(ws, noises), ws, w

    def _synth(self, ws, noises):
        return self.G.synthesis(ws, noises=noises, fused=False)


# ----------------------------------------------------------------------------
# The loop


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path | None, *, resume_from: Path | None = None,
                 tqdm_bar: bool = True, should_stop=None, on_progress=None):
        """``run_dir``: where this process writes (None on ranks > 0); ``resume_from``: a resume.pt."""
        self.cfg = cfg
        init_trainer(self, cfg, run_dir, tqdm_bar=tqdm_bar, should_stop=should_stop, on_progress=on_progress)
        torch.manual_seed(cfg.seed)  # initial weights: identical on every rank
        self.G, self.D = build_networks(cfg)
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.G_ema_extra = {k: copy.deepcopy(self.G_ema) for k in extra_ema_kimgs(cfg)}
        self.r1_gamma = cfg.r1_gamma if cfg.r1_gamma is not None else 0.0002 * cfg.resolution**2 / cfg.batch
        g_ratio = losses.lazy_ratio(cfg.pl_every if self._pl_on() else 0)
        d_ratio = losses.lazy_ratio(cfg.r1_every if (cfg.d == "residual" and self.r1_gamma > 0) else 0)
        d_params = self.D.trainable_parameters() if hasattr(self.D, "trainable_parameters") else self.D.parameters()
        self.opt_G = torch.optim.Adam(g_trainable(self.G, cfg.g_train), lr=cfg.lr_g * g_ratio, betas=(0.0, 0.99 ** g_ratio), eps=1e-8)
        self.opt_D = torch.optim.Adam(d_params, lr=cfg.lr_d * d_ratio, betas=(0.0, 0.99 ** d_ratio), eps=1e-8)
        self._base_lr = {"G": cfg.lr_g * g_ratio, "D": cfg.lr_d * d_ratio}
        self.lr_decay_start_nimg: int | None = None  # set when training begins (kept in resume.pt)
        self.ada = AdaptiveP(p=1.0 if cfg.augment == "diffaugment" else 0.0, target=cfg.ada_target,
                             speed_kimg=cfg.ada_kimg, fixed=cfg.augment != "ada")
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # all training randomness (same on every rank)
        self.pl_mean = torch.zeros([], device=self.device)
        self.step = 0
        self.cur_nimg = 0
        self.best_fd = math.inf
        self.best_fd_extra: dict[str, float] = {}  # best FD of each longer average (best-ema<K>.safetensors)
        self.fd_history: list[dict] = []
        self.data = load_images(cfg.data, cfg.resolution, split="train", heldout_fraction=cfg.heldout_fraction,
                                cache_dir=cfg.data_cache, max_images=cfg.max_images)
        self.stream = BatchStream(len(self.data), cfg.batch, rank=self.rank, world=self.world, seed=cfg.seed)
        self.G_ddp, self.D_ddp = TrainG(self.G), self.D
        if is_distributed():
            import warnings

            from torch.nn.parallel import DistributedDataParallel as DDP

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # broadcast_buffers naming
                self.G_ddp = DDP(self.G_ddp, broadcast_buffers=False)
                self.D_ddp = DDP(self.D, broadcast_buffers=False)
        if resume_from is not None and Path(resume_from).suffix == ".safetensors":
            self._load_compact(Path(resume_from))
        elif resume_from is not None:
            self._load_resume(Path(resume_from))
        self._last_eval_nimg = -1
        self._last_snap_nimg = -1
        self.grid_z = torch.randn([32, cfg.z_dim], generator=torch.Generator().manual_seed(1234))
        self.fd = None

    # -- randomness, drawn for the global batch and sliced for this rank -----------------------

    def _randn(self, *shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen)[self.sl].to(self.device)

    def _noises(self, B: int) -> list[torch.Tensor]:
        return [self._randn(B, 1, layer.resolution, layer.resolution) for layer in self.G.synthesis.noise_layers()]

    def _gen_inputs(self, B: int):
        z = self._randn(B, self.cfg.z_dim)
        z2 = self._randn(B, self.cfg.z_dim)
        mix = torch.rand([], generator=self.gen).item() < self.cfg.style_mixing
        cutoff = int(torch.randint(1, self.G.num_ws, [], generator=self.gen)) if mix else self.G.num_ws
        return z, (z2 if mix else None), cutoff, self._noises(B)

    def _real_batch(self) -> torch.Tensor:
        x = self.data.batch(self.stream.next(), self.device)
        if self.cfg.mirror:
            flip = torch.rand([self.cfg.batch], generator=self.gen)[self.sl].to(self.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return x

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.ada.p, self.gen, global_batch=self.cfg.batch, sl=self.sl)

    # -- one training step ---------------------------------------------------------------------

    def lr_factor(self) -> float:
        """The learning rates' multiplier now: 1, falling linearly to ``lr_decay_to`` over
        ``lr_decay_kimg`` kimg from where this run began."""
        cfg = self.cfg
        if cfg.lr_decay_kimg <= 0:
            return 1.0
        start = self.cur_nimg if self.lr_decay_start_nimg is None else self.lr_decay_start_nimg
        t = min(max((self.cur_nimg - start) / (cfg.lr_decay_kimg * 1000), 0.0), 1.0)
        return 1.0 + (cfg.lr_decay_to - 1.0) * t

    def train_step(self) -> dict[str, float]:
        """One minibatch: D main (+ lazy R1), G main (+ lazy path length), then EMA and augment p.

        The phases draw their randomness in a fixed order from ``self.gen`` (resume is exact).
        """
        cfg = self.cfg
        stats: dict[str, float] = {}
        if cfg.lr_decay_kimg > 0:
            f = self.lr_factor()
            for opt, net in ((self.opt_G, "G"), (self.opt_D, "D")):
                for group in opt.param_groups:
                    group["lr"] = self._base_lr[net] * f
            stats["lr_factor"] = f
        real = self._phase("D_main", self._d_main, stats)
        if cfg.d == "residual" and self.r1_gamma > 0 and cfg.r1_every > 0 and self.step % cfg.r1_every == 0:
            self._phase("D_r1", self._d_r1, stats, real)
        self._phase("G_main", self._g_main, stats)
        if self._pl_on() and self.step % cfg.pl_every == 0:
            self._phase("G_pl", self._g_pl, stats)
        self.cur_nimg += cfg.batch
        losses.update_ema(self.G_ema, self.G, losses.ema_beta(cfg.batch, self.cur_nimg, cfg.ema_kimg, cfg.ema_rampup))
        for k, net in self.G_ema_extra.items():
            losses.update_ema(net, self.G, losses.ema_beta(cfg.batch, self.cur_nimg, k, None))
        self.ada.step(cfg.batch)
        stats["augment_p"] = self.ada.p
        self.step += 1
        return stats

    def _pl_on(self) -> bool:
        """The lazy path-length pass runs (it regularises the synthesis: not when that is frozen)."""
        cfg = self.cfg
        return cfg.pl_weight > 0 and cfg.pl_every > 0 and cfg.g_train != "mapping"

    @staticmethod
    def _phase(name: str, fn, *args):
        with torch.profiler.record_function(name):  # named scopes for torch.profiler (free otherwise)
            return fn(*args)

    def _d_main(self, stats: dict) -> torch.Tensor:
        """D on augmented reals vs augmented detached fakes; returns the (un-augmented) reals."""
        projected = self.cfg.d == "projected"
        self.D.requires_grad_(True)
        if projected:
            self.D.features.requires_grad_(False)
        real = self._real_batch()
        z, z2, cutoff, noises = self._gen_inputs(self.cfg.batch)
        with torch.no_grad():
            fake, _, _ = TrainG(self.G)(z, z2, cutoff, noises)
        real_logits = self.D_ddp(self._aug(real))
        fake_logits = self.D_ddp(self._aug(fake))
        loss_fn = losses.d_hinge if projected else losses.d_logistic
        d_loss = loss_fn(real_logits, fake_logits).mean()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_D.step()
        stats["loss_d"] = d_loss.item()
        sign = all_reduce_mean(real_logits.detach().sign().mean()).item()
        self.ada.accumulate(sign)
        stats["d_real_sign"] = sign
        return real

    def _d_r1(self, stats: dict, real: torch.Tensor) -> None:
        real_r = real.detach().requires_grad_(True)
        logits = self.D_ddp(self._aug(real_r))
        r1 = losses.r1_penalty(real_r, logits)
        # "+ 0 * logits": every D parameter takes part (R1 does not reach the last bias; DDP needs all).
        loss = (r1 * (self.r1_gamma / 2) * self.cfg.r1_every + 0 * logits.squeeze(1)).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        stats["r1"] = r1.mean().item()

    def _g_main(self, stats: dict) -> None:
        self.D.requires_grad_(False)
        z, z2, cutoff, noises = self._gen_inputs(self.cfg.batch)
        fake, _, w = self.G_ddp(z, z2, cutoff, noises)
        loss_fn = losses.g_hinge if self.cfg.d == "projected" else losses.g_nonsaturating
        g_loss = loss_fn(self.D(self._aug(fake))).mean()  # D is frozen here: no DDP sync needed
        self.opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_G.step()
        stats["loss_g"] = g_loss.item()
        self.G.mapping.update_w_avg(all_reduce_mean(w.detach().mean(0, keepdim=True)))

    def _g_pl(self, stats: dict) -> None:
        cfg = self.cfg
        Bp = max(cfg.batch // cfg.pl_batch_shrink, self.world)
        Bp -= Bp % self.world
        z, z2, cutoff, noises = self._gen_inputs(Bp)
        img, ws, _ = self.G_ddp(z, z2, cutoff, noises)
        y = losses.pl_noise([Bp, *img.shape[1:]], self.gen, self.sl, self.device)
        pen, _, self.pl_mean = losses.path_length_penalty(img, ws, self.pl_mean, noise=y, decay=cfg.pl_decay,
                                                          reduce_mean=all_reduce_mean)
        # "+ 0 * img": keeps every G parameter in the graph for DDP (as NVIDIA's loss does).
        loss = (pen * cfg.pl_weight * cfg.pl_every + 0 * img[:, 0, 0, 0]).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        stats["pl_penalty"] = pen.mean().item()
        stats["pl_mean"] = self.pl_mean.item()

    # -- persistence -----------------------------------------------------------------------------

    def _resume_state(self) -> dict:
        return {
            "format": "stylestudio-gan-resume", "version": 1,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(), "pl_mean": self.pl_mean.cpu(), "step": self.step,
            "cur_nimg": self.cur_nimg, "rng": self.gen.get_state(), "stream": self.stream.state_dict(),
            "best_fd": self.best_fd, "fd_history": json.dumps(self.fd_history),
            "G_ema_extra": {_ema_key(k): net.state_dict() for k, net in self.G_ema_extra.items()},
            "best_fd_extra": json.dumps(self.best_fd_extra),
            "lr_decay_start_nimg": self.lr_decay_start_nimg,
        }

    def _load_resume(self, path: Path) -> None:
        from studio.core.formats import safe_torch_load

        st = safe_torch_load(path)
        if not isinstance(st, dict) or st.get("format") != "stylestudio-gan-resume":
            raise UserError(f"--resume: {path} is not a StyleStudio GAN resume snapshot")
        self.G.load_state_dict(st["G"])
        self.D.load_state_dict(st["D"])
        self.G_ema.load_state_dict(st["G_ema"])
        self.opt_G.load_state_dict(st["opt_G"])
        self.opt_D.load_state_dict(st["opt_D"])
        self.ada.load_state_dict(st["ada"])
        self.pl_mean = st["pl_mean"].to(self.device)
        self.step, self.cur_nimg = int(st["step"]), int(st["cur_nimg"])
        self.gen.set_state(st["rng"])
        self.stream.load_state_dict(st["stream"])
        self.best_fd = float(st["best_fd"])
        self.fd_history = json.loads(st["fd_history"])
        saved = st.get("G_ema_extra") or {}
        for k, net in self.G_ema_extra.items():  # one not in the snapshot starts from G_ema
            net.load_state_dict(saved.get(_ema_key(k), self.G_ema.state_dict()))
        self.lr_decay_start_nimg = st.get("lr_decay_start_nimg")
        self.best_fd_extra = json.loads(st.get("best_fd_extra") or "{}")

    def _load_compact(self, path: Path) -> None:
        meta, nets = read_compact(path)
        for name, net in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            ours = net.state_dict()
            src = nets.get(name, {})
            missing = [k for k in ours if k not in src and not k.startswith("features.")]
            if missing or set(src) - set(ours):
                raise UserError(f"--resume-compact: {path} does not fit this config ({name}: missing {missing[:3]})")
            net.load_state_dict({**ours, **{k: v.to(ours[k].dtype) for k, v in src.items()}})
        if self.cfg.g_from_ema:
            self.G.load_state_dict(self.G_ema.state_dict())
        self.ada.load_state_dict(meta["ada"])
        self.pl_mean = torch.tensor(float(meta["pl_mean"]), device=self.device)
        self.step, self.cur_nimg = int(meta["step"]), int(meta["cur_nimg"])
        self.gen.set_state(torch.frombuffer(bytearray(bytes.fromhex(meta["rng"])), dtype=torch.uint8))
        self.stream.load_state_dict(meta["stream"])
        self.best_fd = float(meta["best_fd"])
        self.fd_history = json.loads(meta["fd_history"])
        for net in self.G_ema_extra.values():  # a compact snapshot keeps G_ema only: they start from it
            net.load_state_dict(self.G_ema.state_dict())

    def save_snapshot(self, *, reason: str) -> None:
        """Resume snapshot (always) and a network snapshot of G_ema in our format."""
        if not is_main() or self.run_dir is None or self._last_snap_nimg == self.cur_nimg:
            return
        self._last_snap_nimg = self.cur_nimg
        atomic_torch_save(self.run_dir / "resume.pt", self._resume_state())
        kimg = self.cur_nimg / 1000
        snap = self.run_dir / "snapshots" / f"network-{kimg:08.3f}kimg.safetensors"
        self._save_network(snap, kimg)
        snaps = sorted((self.run_dir / "snapshots").glob("network-*kimg.safetensors"))
        for old in snaps[:-self.cfg.keep_snapshots]:
            old.unlink(missing_ok=True)
        for k, net in self.G_ema_extra.items():
            folder = self.run_dir / "snapshots" / _ema_key(k)
            self._save_network(folder / snap.name, kimg, {"ema_kimg": k}, net=net, half=True)
            for old in sorted(folder.glob("network-*kimg.safetensors"))[:-self.cfg.keep_snapshots]:
                old.unlink(missing_ok=True)
        log.info("snapshot at %.3f kimg (%s)", kimg, reason)

    def _save_network(self, path: Path, kimg: float, extra: dict | None = None, *, net=None,
                      half: bool = False) -> None:
        net = self.G_ema if net is None else net
        bundle = ModelBundle(format="stylestudio", path="", generator=copy.deepcopy(net).cpu(), discriminator=None)
        bundle.meta["provenance"] = {"trainer": "trainers.stylegan2", "kimg": round(kimg, 3),
                                     "run": self.run_dir.name if self.run_dir else None,
                                     "config": asdict(self.cfg), **(extra or {})}
        bundle.meta["licence"] = "inherits the licence of the training images"
        stylestudio_fmt.save(bundle, path, half=half)

    # -- evaluation & samples --------------------------------------------------------------------

    def sample_grid(self) -> None:
        if not is_main() or self.run_dir is None:
            return
        from studio.core.tensors import make_grid, to_uint8

        with torch.no_grad():
            img = self.G_ema.synthesis(self.G_ema.map(self.grid_z.to(self.device)), noise_mode="const")
        grid = make_grid(to_uint8(img), cols=8)
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(grid).save(buf, format="PNG")
        atomic_write_bytes(self.run_dir / "samples" / f"fakes{self.cur_nimg / 1000:08.3f}.png", buf.getvalue())
        atomic_write_bytes(self.run_dir / "samples" / "latest.png", buf.getvalue())
        self.tb.image("samples", self.cur_nimg / 1000, grid)

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not is_main():
            return out
        t0 = time.time()
        if self.cfg.fd_samples > 0:
            if self.fd is None:
                from trainers.metrics import FDEvaluator

                held = load_images(self.cfg.data, self.cfg.resolution, split="heldout",
                                   heldout_fraction=self.cfg.heldout_fraction, cache_dir=self.cfg.data_cache)
                n = min(self.cfg.fd_samples, len(held))
                # spread over the name-sorted list: UTKFace names start with the age, the first n are children
                idx = np.unique(np.linspace(0, len(held) - 1, n).round().astype(np.int64))
                self.fd = FDEvaluator(held.batch(idx), device=self.device, weights_dir=self.cfg.lpips_dir)
            out.update(self.fd(self.G_ema))
            for k, net in self.G_ema_extra.items():  # the longer averages too, each with its own best
                out[f"fd_vgg16_{_ema_key(k)}"] = self.fd(net)["fd_vgg16"]
        if self.cfg.ppl_samples > 0:
            from studio.core.lpips import LPIPS
            from trainers.metrics import ppl_w

            out["ppl_w"] = ppl_w(self.G_ema, LPIPS("vgg", self.cfg.lpips_dir).to(self.device), n=self.cfg.ppl_samples,
                                 device=self.device)
        out["eval_sec"] = time.time() - t0
        return out

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.cfg
        main = is_main() and self.run_dir is not None
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=main) if self.run_dir else MetricsLog(os.devnull, False)
        self.tb = TensorBoard(self.run_dir / "tb", enabled=main) if self.run_dir else TensorBoard("", False)
        stop = StopFlag(install=True)
        total_nimg = int(cfg.kimg * 1000)
        bar = None
        if self.tqdm_bar:
            from tqdm import tqdm

            bar = tqdm(total=round(cfg.kimg, 3), initial=round(self.cur_nimg / 1000, 3), unit="kimg",
                       file=sys.stderr, dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.2f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]")
        self.metrics.write(event="start" if self.step == 0 else "resume", step=self.step, kimg=self.cur_nimg / 1000,
                           world_size=self.world)
        next_sample = self._next_mark(cfg.sample_every_kimg)
        next_snap = self._next_mark(cfg.snapshot_every_kimg)
        next_eval = self._next_mark(cfg.metrics_every_kimg)
        t_last, nimg_last = time.time(), self.cur_nimg
        if self.step == 0:
            self.sample_grid()
        if self.lr_decay_start_nimg is None:
            self.lr_decay_start_nimg = self.cur_nimg  # the decay counts from here (see lr_decay_kimg)
        reason = "done"
        while self.cur_nimg < total_nimg:
            ended = stop_reason(self.step, cfg.max_steps, stop, self.should_stop)
            if ended is not None:
                reason = ended
                break
            stats = self.train_step()
            if bar is not None:
                bar.update(cfg.batch / 1000)
            kimg = self.cur_nimg / 1000
            if self.step % cfg.log_every == 0:
                now = time.time()
                sec_per_kimg = (now - t_last) / max((self.cur_nimg - nimg_last) / 1000, 1e-9)
                t_last, nimg_last = now, self.cur_nimg
                rec = {"step": self.step, "kimg": round(kimg, 4), **{k: round(v, 6) for k, v in stats.items()},
                       "sec_per_kimg": round(sec_per_kimg, 2), "rss_mb": round(peak_rss_mb(), 1)}
                self.metrics.write(**rec)
                self.tb.scalars(kimg, {f"train/{k}": v for k, v in rec.items() if k not in ("step", "kimg")})
                if bar is not None:
                    bar.set_postfix(loss_g=f"{stats['loss_g']:.3f}", loss_d=f"{stats['loss_d']:.3f}",
                                    p=f"{self.ada.p:.2f}", s_kimg=f"{sec_per_kimg:.0f}")
                if self.on_progress:
                    self.on_progress(rec)
            if kimg >= next_sample:
                self.sample_grid()
                next_sample = self._next_mark(cfg.sample_every_kimg)
            if kimg >= next_eval:
                self._run_eval()
                next_eval = self._next_mark(cfg.metrics_every_kimg)
                t_last, nimg_last = time.time(), self.cur_nimg  # don't count eval time as training speed
            if kimg >= next_snap:
                self.save_snapshot(reason="interval")
                next_snap = self._next_mark(cfg.snapshot_every_kimg)
        if bar is not None:
            bar.close()
        if reason == "done" and cfg.metrics_every_kimg > 0 and self._last_eval_nimg != self.cur_nimg:
            self._run_eval()
        self.sample_grid()
        self.save_snapshot(reason=reason)
        self.metrics.write(event="end", reason=reason, step=self.step, kimg=self.cur_nimg / 1000)
        dump = os.environ.get("STYLESTUDIO_DUMP_RANK_STATE")  # tests: compare parameters across ranks
        if dump:
            atomic_torch_save(Path(dump) / f"G_rank{self.rank}.pt", {k: v.cpu() for k, v in self.G.state_dict().items()})
        self.metrics.close()
        self.tb.close()
        barrier()

    def _next_mark(self, every_kimg: float) -> float:
        if every_kimg <= 0:
            return math.inf
        return (math.floor(self.cur_nimg / 1000 / every_kimg + 1e-9) + 1) * every_kimg

    def _run_eval(self) -> None:
        self._last_eval_nimg = self.cur_nimg
        res = self.evaluate()
        if res and is_main():
            kimg = self.cur_nimg / 1000
            self.metrics.write(event="eval", step=self.step, kimg=round(kimg, 4), **{k: round(v, 5) for k, v in res.items()})
            self.tb.scalars(kimg, {f"metrics/{k}": v for k, v in res.items()})
            if "fd_vgg16" in res:
                self.fd_history.append({"kimg": kimg, "fd_vgg16": res["fd_vgg16"]})
                if res["fd_vgg16"] < self.best_fd:
                    self.best_fd = res["fd_vgg16"]
                    self._save_network(self.run_dir / "best.safetensors", kimg, {"fd_vgg16": res["fd_vgg16"]})
            for k, net in self.G_ema_extra.items():
                key = _ema_key(k)
                fd = res.get(f"fd_vgg16_{key}")
                if fd is not None and fd < self.best_fd_extra.get(key, math.inf):
                    self.best_fd_extra[key] = fd
                    self._save_network(self.run_dir / f"best-{key}.safetensors", kimg,
                                       {"fd_vgg16": fd, "ema_kimg": k}, net=net, half=True)
        barrier()


# ----------------------------------------------------------------------------
# Compact snapshots: what a run needs to continue, small enough to keep in git (trainers/pack/).

COMPACT_FORMAT = "stylestudio-gan-compact"


def _ema_key(kimg: float) -> str:
    return f"ema{kimg:g}"


def export_compact(run_dir: str | Path, out: str | Path, *, g_ema_from: str | Path | None = None) -> Path:
    """G, G_ema and D's trainable weights in float16 + counters, augment p and RNG state, as one
    safetensors file. Adam's moments are left out (beta1 = 0; the second moment re-warms in ~100
    steps), so continuing from it is close to, not bit-identical with, ``--resume``.

    ``g_ema_from``: a network snapshot of the run (e.g. its lowest-FD one, earlier than the latest
    state) whose weights replace G_ema; its kimg is recorded as ``g_ema_kimg`` (what
    ``build_pack`` reports), and continuing from the file averages on from those weights."""
    from safetensors.torch import save as st_save

    from studio.core.formats import safe_torch_load

    run_dir = Path(run_dir)
    st = safe_torch_load(run_dir / "resume.pt")
    cfg = json.loads((run_dir / "config.json").read_text())["train"]
    extra = {}
    if g_ema_from is not None:
        from studio.core.formats import load_checkpoint

        b = load_checkpoint(g_ema_from)
        sd = None if b.generator is None else b.generator.state_dict()
        if sd is None or set(sd) != set(st["G_ema"]) or any(sd[k].shape != v.shape for k, v in st["G_ema"].items()):
            raise UserError(f"--g-ema-from {g_ema_from}: not a generator of this run's architecture")
        st["G_ema"] = {k: sd[k] for k in st["G_ema"]}
        prov = b.meta.get("provenance") or {}
        extra = {"g_ema_from": Path(g_ema_from).name, "g_ema_kimg": float(prov.get("kimg", st["cur_nimg"] / 1000))}
    tensors = {}
    for net in ("G", "G_ema", "D"):
        for k, v in st[net].items():
            if net == "D" and k.startswith("features."):
                continue  # the frozen ImageNet backbone of the projected D is rebuilt from its weights
            tensors[f"{net}/{k}"] = v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
    meta = {"format": COMPACT_FORMAT, "config": cfg, "step": int(st["step"]), "cur_nimg": int(st["cur_nimg"]),
            "ada": st["ada"], "pl_mean": float(st["pl_mean"]), "stream": st["stream"],
            "rng": bytes(st["rng"].numpy()).hex(), "best_fd": float(st["best_fd"]), "fd_history": st["fd_history"],
            "source_run": run_dir.name, **extra}
    out = Path(out)
    atomic_write_bytes(out, st_save(tensors, metadata={"stylestudio": json.dumps(meta)}))
    return out


def read_compact(path: str | Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("stylestudio", "{}"))
            nets: dict[str, dict[str, torch.Tensor]] = {}
            for k in f.keys():
                net, _, name = k.partition("/")
                nets.setdefault(net, {})[name] = f.get_tensor(k)
    except Exception as e:
        raise UserError(f"--resume-compact: cannot read {path}: {e}") from None
    if meta.get("format") != COMPACT_FORMAT:
        raise UserError(f"--resume-compact: {path} is not a StyleStudio compact GAN snapshot")
    return meta, nets


def _run_desc(cfg) -> str:
    data = Path(cfg.data)
    name = data.resolve().parent.name if data.name == "images" else data.name
    return cfg.desc or f"{name}-{cfg.cfg}-{cfg.d}"


def _export_only(cfg, args) -> int | None:
    if not args.export_compact:
        if args.g_ema_from:
            raise UserError("--g-ema-from goes with --export-compact RUN_DIR OUT")
        return None
    out = export_compact(*args.export_compact, g_ema_from=args.g_ema_from)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv=None) -> int:
    return trainer_main(argv, parse_args, Trainer, _run_desc, before=_export_only,
                        resume_from_new=lambda args: Path(args.resume_compact) if args.resume_compact else None)

if __name__ == "__main__":
    sys.exit(main())
