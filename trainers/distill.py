"""Distil StyleGAN2 style mixing into a one-pass image-to-image student (seed 002, METHODS.md §6).

    python -m trainers.distill                                   # the default pack, crossover at 'medium'
    python -m trainers.distill --generator ffhq.pkl --group fine --size paper
    python -m trainers.distill --data triplets.npz               # a data set from trainers.distill_data
    torchrun --nproc_per_node=2 -m trainers.distill ...
    python -m trainers.distill --resume runs/00003-distill-pack-medium-small   # continue exactly
    python -m trainers.distill --generator new_pack/ --init old_pack/ --lr 1e-4 --steps 3000  # refit a student

Triplets (content, style, mixed) come from the frozen generator (``--generator``, default the
embedded pack), rendered on the fly (2B renders per batch of B; :mod:`trainers.distill_data`) or
read from ``--data``. The student (:class:`studio.core.nets.distill.DistillStudent`, pix2pixHD's
global generator) sees content and style stacked on channels and is trained as pix2pixHD trains
it: a conditional multi-scale PatchGAN (``--num-d`` discriminators on 9-channel input = content,
style, image; ``--gan-loss lsgan`` (pix2pixHD) or ``hinge``), discriminator feature matching
(``--lambda-feat`` 10) and a VGG16 perceptual loss (``--lambda-vgg`` 10; L1 on the five relu taps
of :class:`studio.core.nets.perceptual.FeatureNet`, weights 1/32 .. 1 as pix2pixHD; the backbone
comes from ``resources/lpips``, nothing is downloaded), plus an optional pixel L1 (``--lambda-l1``).
Adam (2e-4, betas 0.5/0.999) for both nets; the rate is constant, then decays linearly to 0 over
the last ``--decay-fraction`` of ``--steps`` (pix2pixHD: half).

Every ``--eval-every`` steps a fixed validation set (``--val-triplets`` from seeds that training
never draws) is scored: L1, LPIPS (VGG) and SSIM of the student against the generator's mixed
image; the lowest LPIPS is kept as ``best.safetensors`` (a student file:
``studio.core.distill.load_student``).

Run directory (the contract of ``trainers.stylegan2`` / ``trainers.crg``): ``config.json``,
``log.txt``, ``metrics.jsonl``, TensorBoard events (``tb/``, optional), ``samples/latest.png``
(rows: content, style, target, student), ``snapshots/student-<step>.safetensors``,
``best.safetensors`` and ``resume.pt``, all written atomically; SIGINT/SIGTERM write a snapshot
first. ``metrics.jsonl``: ``{"event": "start"|"resume", "step", "world_size"}``; every
``--log-every`` steps ``{"step", "loss_g", "loss_d", "g_gan", "g_feat", "g_vgg", "g_l1", "d_real",
"d_fake", "lr", "sec_per_step", "rss_mb"}``; every evaluation ``{"event": "eval", "step", "val_l1",
"val_lpips", "val_ssim", "best_val_lpips", "improved", "eval_sec"}``; ``{"event": "end", "reason",
"step"}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from studio.core.distill import crossover_row, ssim
from studio.core.errors import StudioError
from studio.core.formats import load_checkpoint, stylestudio_fmt
from studio.core.nets.distill import DistillStudent, stack_inputs
from trainers.common import (
    require_loop_fields,
    require_positive,
    MetricsLog,
    StopFlag,
    TensorBoard,
    UserError,
    add_run_args,
    all_reduce_mean,
    atomic_torch_save,
    atomic_write_bytes,
    barrier,
    config_differences,
    config_from_run,
    init_trainer,
    is_distributed,
    is_main,
    linear_decay_lr,
    peak_rss_mb,
    rotate_snapshot,
    stop_reason,
    trainer_main,
)
from trainers.distill_data import (
    VAL_SEED_START,
    NpzTriplets,
    TripletSource,
    heldout_seeds,
    render_seed_triplets,
)

log = logging.getLogger("trainers.distill")

# ----------------------------------------------------------------------------
# Configuration

SIZES: dict[str, dict] = {
    # For the default pack's 64-px generator on a laptop CPU: 1.4M parameters (2.8 MB as float16),
    # ~0.4 GMAC per 64-px image; D: two 3-layer PatchGANs of 32 base filters.
    "small": dict(width=32, downsamples=2, blocks=4, ndf=32, d_layers=3, num_d=2),
    # pix2pixHD's global generator as the seed trains it at 256 px (ngf 64, 4 downsamples, 9 blocks).
    "paper": dict(width=64, downsamples=4, blocks=9, ndf=64, d_layers=3, num_d=2),
    # For tests: seconds on 16-px generators.
    "tiny": dict(width=8, downsamples=1, blocks=1, ndf=8, d_layers=2, num_d=2),
}
GAN_LOSSES = ("lsgan", "hinge")
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # pix2pixHD's VGGLoss, shallow to deep


@dataclass
class DistillConfig:
    generator: str = ""             # teacher checkpoint (any supported format); "" = the default pack
    data: str = ""                  # triplet data set (.npz from trainers.distill_data); "" = render on the fly
    out: str = "runs"
    desc: str = ""
    group: str = "medium"           # crossover group: style rows from this group's first row on
    psi: float = 1.0                # truncation of the training latents
    size: str = "small"             # SIZES preset (filled into the fields below)
    width: int = 32
    downsamples: int = 2
    blocks: int = 4
    norm: str = "instance"
    ndf: int = 32                   # discriminator base filters
    d_layers: int = 3               # stride-2 layers per PatchGAN
    num_d: int = 2                  # discriminator scales
    gan_loss: str = "lsgan"
    lambda_feat: float = 10.0       # feature matching (pix2pixHD)
    lambda_vgg: float = 10.0        # VGG perceptual (pix2pixHD)
    lambda_l1: float = 0.0          # pixel L1 (not in pix2pixHD)
    batch: int = 8                  # global batch (all processes)
    lr: float = 2e-4
    beta1: float = 0.5
    steps: int = 20_000
    decay_fraction: float = 0.5     # linear lr decay to 0 over this last fraction of the steps
    eval_every: int = 500
    val_triplets: int = 64
    seed: int = 0                   # weight init; training triplets are fixed by their seeds
    device: str = "auto"
    threads: int = 0                # 0 = all cores (per process)
    log_every: int = 10
    snapshot_every: int = 1000      # steps (0: only at the end)
    keep_snapshots: int = 2
    max_steps: int | None = None    # stop (with a snapshot) at this step; the lr schedule still uses --steps
    init: str = ""                  # start the student from this student file / model pack's student ("" = random)


def validate(cfg: DistillConfig) -> None:
    require_loop_fields(cfg)
    if cfg.size not in SIZES:
        raise UserError(f"--size must be one of {', '.join(SIZES)}, got {cfg.size!r}")
    if cfg.gan_loss not in GAN_LOSSES:
        raise UserError(f"--gan-loss must be one of {', '.join(GAN_LOSSES)}, got {cfg.gan_loss!r}")
    if cfg.norm not in ("instance", "batch", "none"):
        raise UserError(f"--norm must be instance, batch or none, got {cfg.norm!r}")
    for name in ("width", "ndf", "d_layers", "num_d", "steps", "eval_every", "val_triplets", "log_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.downsamples < 0 or cfg.blocks < 0:
        raise UserError("--downsamples and --blocks must be >= 0")
    if cfg.batch < 2:
        raise UserError("--batch must be at least 2 (a triplet's style is the next face of the batch)")
    require_positive(cfg, "lr")
    if not 0 <= cfg.beta1 < 1:
        raise UserError(f"beta1 must be in [0, 1) (the run's config.json), got {cfg.beta1}")
    if not 0 <= cfg.decay_fraction <= 1:
        raise UserError(f"--decay-fraction must be in [0, 1], got {cfg.decay_fraction}")
    if min(cfg.lambda_feat, cfg.lambda_vgg, cfg.lambda_l1) < 0:
        raise UserError("--lambda-* must be >= 0")
    if not 0 < cfg.psi <= 1:
        raise UserError(f"--psi must be in (0, 1], got {cfg.psi}")


def get_lr(step: int, cfg: DistillConfig) -> float:
    """Constant ``lr``, then linear decay to 0 over the last ``decay_fraction`` of ``steps`` (pix2pixHD)."""
    return linear_decay_lr(cfg.lr, step, cfg.steps, cfg.decay_fraction)


# Flags a resumed run may change; everything else comes from its config.json. A larger --steps trains
# a finished run longer (its learning rate follows the new schedule from where it is).
RESUME_OVERRIDES = ("steps", "decay_fraction", "eval_every", "max_steps", "threads", "device", "log_every",
                    "snapshot_every")


def parse_args(argv=None) -> tuple[DistillConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m trainers.distill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DistillConfig()
    ap.add_argument("--generator", help="teacher generator (default: the embedded model pack)")
    ap.add_argument("--data", help="triplet data set .npz (default: render triplets on the fly)")
    ap.add_argument("--out", help=f"runs folder (default {d.out})")
    ap.add_argument("--desc", help="run name suffix")
    ap.add_argument("--group", help="crossover group: medium (default) or fine; style rows from its first row on")
    ap.add_argument("--psi", type=float, help="truncation of the training latents (default 1)")
    ap.add_argument("--size", choices=sorted(SIZES), help="student/discriminator preset (default small)")
    for name in ("width", "downsamples", "blocks", "ndf", "d_layers", "num_d"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, help="overrides --size")
    ap.add_argument("--norm", help="student normalisation: instance (default), batch, none")
    ap.add_argument("--gan-loss", choices=GAN_LOSSES, help="adversarial loss (default lsgan, as pix2pixHD)")
    ap.add_argument("--lambda-feat", type=float, help=f"feature-matching weight (default {d.lambda_feat})")
    ap.add_argument("--lambda-vgg", type=float, help=f"VGG perceptual weight (default {d.lambda_vgg})")
    ap.add_argument("--lambda-l1", type=float, help=f"pixel L1 weight (default {d.lambda_l1})")
    ap.add_argument("--batch", type=int, help=f"global batch (default {d.batch})")
    ap.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    ap.add_argument("--steps", type=int, help=f"training steps (default {d.steps}); sets the lr decay")
    ap.add_argument("--decay-fraction", type=float, help="last fraction of --steps with linear lr decay (0.5)")
    ap.add_argument("--eval-every", type=int, help=f"steps between evaluations (default {d.eval_every})")
    ap.add_argument("--val-triplets", type=int, help=f"validation triplets (default {d.val_triplets})")
    ap.add_argument("--init", help="start the student from these weights: a student file (a run's best.safetensors "
                                   "or snapshot) or a model pack folder (its student for --group), e.g. to refit "
                                   "the pack's student to a fine-tuned generator; same --size and --group")
    add_run_args(ap)
    args = ap.parse_args(argv)
    if args.resume:
        cfg = config_from_run(args, DistillConfig, "distillation", RESUME_OVERRIDES)
        validate(cfg)  # e.g. a --steps given to train longer
        return cfg, args
    cfg = DistillConfig()
    if args.size:
        cfg.size = args.size
    for k, v in SIZES[cfg.size].items():
        setattr(cfg, k, v)
    for f in fields(DistillConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name != "size":
            setattr(cfg, f.name, v)
    cfg.generator = str(Path(args.generator).resolve()) if args.generator else ""
    cfg.data = str(Path(args.data).resolve()) if args.data else ""
    cfg.init = str(Path(args.init).resolve()) if args.init else ""
    validate(cfg)
    return cfg, args


# ----------------------------------------------------------------------------
# Discriminator (pix2pixHD's NLayerDiscriminator x num_d scales; only training needs it)


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN: returns the feature map of every layer (the last is the [N, 1, h, w] score)."""

    def __init__(self, in_channels: int, ndf: int = 64, layers: int = 3, max_channels: int = 512):
        super().__init__()
        kw, pad = 4, 2
        seq: list[list[nn.Module]] = [[nn.Conv2d(in_channels, ndf, kw, 2, pad), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for _ in range(1, layers):
            prev, nf = nf, min(nf * 2, max_channels)
            seq.append([nn.Conv2d(prev, nf, kw, 2, pad), nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2, True)])
        prev, nf = nf, min(nf * 2, max_channels)
        seq.append([nn.Conv2d(prev, nf, kw, 1, pad), nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2, True)])
        seq.append([nn.Conv2d(nf, 1, kw, 1, pad)])
        self.layers = nn.ModuleList(nn.Sequential(*s) for s in seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input and its 2x, 4x, ... average-pooled copies (pix2pixHD)."""

    def __init__(self, in_channels: int = 9, ndf: int = 64, layers: int = 3, num_d: int = 2):
        super().__init__()
        self.nets = nn.ModuleList(PatchDiscriminator(in_channels, ndf, layers) for _ in range(num_d))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, net in enumerate(self.nets):
            if i:
                x = self.pool(x)
            out.append(net(x))
        return out


def init_weights(net: nn.Module, gen: torch.Generator) -> None:
    """pix2pixHD's init: conv weights N(0, 0.02), biases 0; norm weights N(1, 0.02)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * 0.02)
                m.bias.zero_()


# ----------------------------------------------------------------------------
# Losses (small functions; weights applied by the caller)


def gan_loss(preds: list[list[torch.Tensor]], real: bool, kind: str, *, for_d: bool) -> torch.Tensor:
    """Mean over scales of the last (score) map's loss. lsgan: (p - 1)^2 or p^2; hinge: relu(1 -+ p)
    for D, -p for G."""
    total = 0.0
    for feats in preds:
        p = feats[-1]
        if kind == "lsgan":
            total = total + (F.mse_loss(p, torch.ones_like(p)) if real else F.mse_loss(p, torch.zeros_like(p)))
        elif for_d:
            total = total + (F.relu(1 - p).mean() if real else F.relu(1 + p).mean())
        else:
            total = total - p.mean()
    return total / len(preds)


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD: L1 between D's intermediate features of fake and (detached) real, weighted
    4 / (layers + 1) per layer and 1 / num_d per scale."""
    total = 0.0
    num_d = len(fake)
    for f_feats, r_feats in zip(fake, real):
        w = 4.0 / len(f_feats)  # len = layers + 2 maps; pix2pixHD: 4 / (n_layers + 1)
        for f, r in zip(f_feats[:-1], r_feats[:-1]):
            total = total + w / num_d * F.l1_loss(f, r.detach())
    return total


def vgg_loss(featnet, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's VGGLoss on our frozen VGG16 taps: sum_k w_k * L1(phi_k(fake), phi_k(real))."""
    ff = featnet.taps(fake)
    with torch.no_grad():
        rf = featnet.taps(real)
    return sum(w * F.l1_loss(a, b) for w, a, b in zip(VGG_WEIGHTS, ff, rf))


_FROZEN: dict[str, nn.Module] = {}


def frozen_net(kind: str, device: torch.device) -> nn.Module:
    """The frozen LPIPS ('lpips') or its VGG16 taps ('vgg', for the perceptual loss) on ``device``,
    loaded once per process (both read-only: trainers in one process, e.g. tests, share them)."""
    key = str(device)
    if key not in _FROZEN:
        from studio.core.lpips import LPIPS

        _FROZEN[key] = LPIPS("vgg").to(device).eval()
    return _FROZEN[key].features if kind == "vgg" else _FROZEN[key]


# ----------------------------------------------------------------------------
# The loop


class DistillTrainer:
    def __init__(self, cfg: DistillConfig, run_dir: Path | None, *, resume_from: Path | None = None,
                 tqdm_bar: bool = True, should_stop=None, on_progress=None):
        """``run_dir``: where this process writes (None on ranks > 0 or to train without files);
        ``resume_from``: a resume.pt."""
        validate(cfg)
        self.cfg = cfg
        init_trainer(self, cfg, run_dir, tqdm_bar=tqdm_bar, should_stop=should_stop, on_progress=on_progress)
        if cfg.batch % self.world:
            raise UserError(f"--batch {cfg.batch} does not split evenly over {self.world} processes")

        from trainers.crg import default_model

        gpath = Path(cfg.generator) if cfg.generator else default_model()
        try:
            self.source = load_checkpoint(gpath)
        except StudioError as e:
            raise UserError(f"--generator: {e}") from None
        if self.source.generator is None:
            raise UserError(f"--generator: {gpath} has no generator")
        self.G = self.source.generator.to(self.device).eval().requires_grad_(False)
        self.R = int(self.G.img_resolution)
        try:
            self.crossover = crossover_row(self.G.num_ws, cfg.group)
        except ValueError as e:
            raise UserError(f"--group: {e}") from None
        if self.R % (2 ** cfg.downsamples):
            raise UserError(f"--downsamples {cfg.downsamples}: the generator's {self.R} px is not a multiple of "
                            f"{2 ** cfg.downsamples}")
        if cfg.data:
            self.data = NpzTriplets(cfg.data, cfg.batch, cfg.seed)
            made_by = str(self.data.info.get("generator") or "")
            if self.data.crossover != self.crossover or self.data.resolution != self.R:
                teacher = f"--generator {cfg.generator}" if cfg.generator else "the default pack (no --generator)"
                hint = (f"; it was rendered by {made_by}: give that generator with --generator"
                        if made_by and made_by != "default pack" and made_by != cfg.generator else
                        "; give the generator that rendered it with --generator, and its --group")
                raise UserError(f"--data: {cfg.data} has crossover row {self.data.crossover} at "
                                f"{self.data.resolution} px, but {teacher} needs row {self.crossover} at "
                                f"{self.R} px{hint}")
        else:
            self.data = TripletSource(self.G, self.crossover, cfg.batch, cfg.psi)

        gen = torch.Generator().manual_seed(cfg.seed)  # identical initial weights on every rank
        self.S = DistillStudent(resolution=self.R, width=cfg.width, downsamples=cfg.downsamples, blocks=cfg.blocks,
                                norm=cfg.norm)
        self.D = MultiscaleDiscriminator(9, cfg.ndf, cfg.d_layers, cfg.num_d)
        init_weights(self.S, gen)
        init_weights(self.D, gen)
        self.S.to(self.device).train()
        self.D.to(self.device).train()
        self.vgg = frozen_net("vgg", self.device) if cfg.lambda_vgg > 0 else None
        self.lr = get_lr(0, cfg)
        self.opt_g = torch.optim.Adam(self.S.parameters(), lr=self.lr, betas=(cfg.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.lr, betas=(cfg.beta1, 0.999))
        self.step = 0
        self.best = math.inf
        self.history: list[dict] = []
        self.S_ddp, self.D_ddp = self.S, self.D
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.S_ddp = DDP(self.S, device_ids=ids)
            self.D_ddp = DDP(self.D, device_ids=ids)
        self._val = None
        self._lpips = None
        self._last_snap_step = -1
        self._last_eval_step = -1
        self.metrics = MetricsLog(os.devnull, False)
        self.tb = TensorBoard("", False)
        if resume_from is not None:
            self._load_resume(Path(resume_from))
        elif cfg.init:
            self._load_init(Path(cfg.init))

    # -- training --------------------------------------------------------------------------------

    def _set_lr(self, lr: float) -> None:
        self.lr = lr
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self._set_lr(get_lr(self.step, cfg))
        tr = self.data.batch(self.step, self.sl)
        content, style, target = (x.to(self.device) for x in (tr.content, tr.style, tr.target))
        cond = stack_inputs(content, style)                            # [B, 6, R, R]
        fake = self.S_ddp(cond)                                        # [B, 3, R, R]

        # G step: D frozen (its raw module, so DDP's hooks stay out of the student's backward).
        self.D.requires_grad_(False)
        n = len(fake)
        preds = self.D(torch.cat([torch.cat([cond, fake], 1), torch.cat([cond, target], 1)]))
        p_fake = [[f[:n] for f in feats] for feats in preds]
        p_real = [[f[n:] for f in feats] for feats in preds]
        g_gan = gan_loss(p_fake, True, cfg.gan_loss, for_d=False)
        g_feat = feature_matching(p_fake, p_real) if cfg.lambda_feat > 0 else fake.new_zeros(())
        g_vgg = vgg_loss(self.vgg, fake, target) if self.vgg is not None else fake.new_zeros(())
        g_l1 = F.l1_loss(fake, target) if cfg.lambda_l1 > 0 else fake.new_zeros(())
        loss_g = g_gan + cfg.lambda_feat * g_feat + cfg.lambda_vgg * g_vgg + cfg.lambda_l1 * g_l1
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)

        # D step: fake (detached) and real in one forward.
        preds = self.D_ddp(torch.cat([torch.cat([cond, fake.detach()], 1), torch.cat([cond, target], 1)]))
        d_fake = gan_loss([[f[-1][:n]] for f in preds], False, cfg.gan_loss, for_d=True)
        d_real = gan_loss([[f[-1][n:]] for f in preds], True, cfg.gan_loss, for_d=True)
        loss_d = 0.5 * (d_fake + d_real)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self.step += 1
        vals = torch.stack([loss_g.detach(), loss_d.detach(), g_gan.detach(), g_feat.detach(), g_vgg.detach(),
                            g_l1.detach(), d_real.detach(), d_fake.detach()]).float()
        vals = all_reduce_mean(vals).tolist()
        return dict(zip(("loss_g", "loss_d", "g_gan", "g_feat", "g_vgg", "g_l1", "d_real", "d_fake"), vals))

    # -- evaluation ------------------------------------------------------------------------------

    def validation_set(self):
        """The fixed validation triplets (seeds from VAL_SEED_START; constant noise; on the CPU)."""
        if self._val is None:
            cs, ss = heldout_seeds(self.cfg.val_triplets, VAL_SEED_START)
            tr = render_seed_triplets(self.G, cs, ss, self.crossover, self.cfg.psi)
            self._val = (tr.content.cpu(), tr.style.cpu(), tr.target.cpu())
        return self._val

    @torch.no_grad()
    def validate(self, *, preview: bool = False) -> dict[str, float]:
        """Mean L1, LPIPS (VGG) and SSIM of the student against the targets, in eval mode."""
        from studio.core.projector import lpips_input

        if self._lpips is None:
            self._lpips = frozen_net("lpips", self.device)
        c, s, t = self.validation_set()
        self.S.eval()
        l1 = lp = ss = 0.0
        outs = []
        for i in range(0, len(c), 32):
            ci, si, ti = (x[i:i + 32].to(self.device) for x in (c, s, t))
            y = self.S(stack_inputs(ci, si)).clamp(-1, 1)
            l1 += float(F.l1_loss(y, ti, reduction="sum")) / (3 * self.R * self.R)
            lp += float(self._lpips(lpips_input(y), lpips_input(ti)).sum())
            ss += float(ssim(y, ti).sum())
            if i == 0:
                outs.append(y[:8].cpu())
        self.S.train()
        n = len(c)
        res = {"val_l1": l1 / n, "val_lpips": lp / n, "val_ssim": ss / n}
        if preview and is_main() and self.run_dir is not None:
            self._write_preview(c[:8], s[:8], t[:8], outs[0])
        return res

    def _write_preview(self, c, s, t, y) -> None:
        import io

        from PIL import Image

        from studio.core.tensors import make_grid, to_uint8

        grid = make_grid(to_uint8(torch.cat([c, s, t, y])), cols=len(c))
        buf = io.BytesIO()
        Image.fromarray(grid).save(buf, format="PNG")
        atomic_write_bytes(self.run_dir / "samples" / "latest.png", buf.getvalue())
        self.tb.image("val/content_style_target_student", self.step, grid)

    def evaluate(self) -> dict:
        t0 = time.time()
        self._last_eval_step = self.step
        m = self.validate(preview=True)
        improved = m["val_lpips"] < self.best
        if improved:
            self.best = m["val_lpips"]
            if self._writes:
                self._save_student(self.run_dir / "best.safetensors", {"val": m})
        rec = {"event": "eval", "step": self.step, **{k: round(v, 6) for k, v in m.items()},
               "best_val_lpips": round(self.best, 6), "improved": improved, "eval_sec": round(time.time() - t0, 3)}
        self.history.append({k: rec[k] for k in ("step", "val_l1", "val_lpips", "val_ssim")})
        barrier()
        return rec

    # -- persistence -----------------------------------------------------------------------------

    @property
    def _writes(self) -> bool:
        return is_main() and self.run_dir is not None

    def distill_info(self) -> dict:
        return {"group": self.cfg.group, "crossover": self.crossover, "num_ws": int(self.G.num_ws),
                "w_dim": int(self.G.w_dim), "resolution": self.R, "psi": self.cfg.psi,
                "teacher": self.cfg.generator or "default pack"}

    def _save_student(self, path: Path, extra: dict | None = None) -> None:
        S = copy.deepcopy(self.S).cpu().eval()
        prov = {"trainer": "trainers.distill", "step": self.step, "run": self.run_dir.name if self.run_dir else None,
                "config": asdict(self.cfg), "teacher_provenance": self.source.meta.get("provenance") or {},
                **(extra or {})}
        stylestudio_fmt.save_student(S, path, distill=self.distill_info(), half=False, provenance=prov,
                                     alignment_profile=self.source.meta.get("alignment_profile", "ffhq"),
                                     licence=self.source.meta.get("licence"))

    def _resume_state(self) -> dict:
        return {"format": "stylestudio-distill-resume", "version": 1, "S": self.S.state_dict(),
                "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "step": self.step, "best": self.best, "history": json.dumps(self.history),
                "torch_rng": torch.get_rng_state(), "last_eval_step": self._last_eval_step}

    def _load_init(self, path: Path) -> None:
        """The student's weights from a student file or a pack's student (``--init``); the
        discriminator and the optimisers start fresh. Architecture and crossover must match."""
        from studio.core.distill import find_student

        try:
            if path.is_dir():
                found = find_student(path, self.cfg.group)
                if found is None:
                    raise UserError(f"--init: {path} lists no student for --group {self.cfg.group}")
                path = found
            student, man = stylestudio_fmt.load_student(path)
        except StudioError as e:
            raise UserError(f"--init: {e}") from None
        theirs, ours = student.config, self.S.config
        diff = config_differences(theirs, ours,
                                  ("resolution", "width", "downsamples", "blocks", "max_channels", "norm"))
        if diff:
            raise UserError(f"--init: {path} is a different student: {', '.join(diff)}; give the matching "
                            f"--size / --width / --downsamples / --blocks / --norm")
        cross = man["distill"].get("crossover")
        if cross is not None and int(cross) != self.crossover:
            raise UserError(f"--init: {path} mixes at row {cross}, this run at row {self.crossover} "
                            f"(--group {self.cfg.group}); give its --group")
        self.S.load_state_dict({k: v.float() for k, v in student.state_dict().items()})
        self.S.to(self.device).train()
        log.info("initialised the student from %s", path)

    def _load_resume(self, path: Path) -> None:
        from studio.core.formats import safe_torch_load

        try:
            st = safe_torch_load(path)
        except StudioError as e:
            raise UserError(f"--resume: {e}") from None
        if not isinstance(st, dict) or st.get("format") != "stylestudio-distill-resume":
            raise UserError(f"--resume: {path} is not a StyleStudio distillation resume snapshot")
        self.S.load_state_dict(st["S"])
        self.D.load_state_dict(st["D"])
        self.opt_g.load_state_dict(st["opt_g"])
        self.opt_d.load_state_dict(st["opt_d"])
        self.step = int(st["step"])
        self.best = float(st["best"])
        self.history = json.loads(st["history"])
        torch.set_rng_state(st["torch_rng"])
        self._last_eval_step = int(st.get("last_eval_step", -1))
        self._set_lr(get_lr(self.step, self.cfg))

    def save_snapshot(self, *, reason: str) -> None:
        """resume.pt and a student file under snapshots/."""
        if not self._writes or self._last_snap_step == self.step:
            return
        self._last_snap_step = self.step
        rotate_snapshot(self.run_dir, self._resume_state(), self._save_student, "student", self.step,
                        self.cfg.keep_snapshots)
        log.info("snapshot at step %d (%s)", self.step, reason)

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> str:
        """Train until ``steps``, ``max_steps`` or a stop request; returns the reason."""
        cfg = self.cfg
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=True) if self._writes \
            else MetricsLog(os.devnull, False)
        self.tb = TensorBoard(self.run_dir / "tb", enabled=True) if self._writes else TensorBoard("", False)
        stop = StopFlag(install=True)
        bar = None
        if self.tqdm_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.metrics.write(event="start" if self.step == 0 else "resume", step=self.step, world_size=self.world)
        reason = "done"
        t_last, step_last = time.time(), self.step
        while self.step < cfg.steps:
            ended = stop_reason(self.step, cfg.max_steps, stop, self.should_stop)
            if ended is not None:
                reason = ended
                break
            stats = self.train_step()
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_every == 0:
                now = time.time()
                rec = {"step": self.step, **{k: round(v, 6) for k, v in stats.items()}, "lr": self.lr,
                       "sec_per_step": round((now - t_last) / max(self.step - step_last, 1), 4),
                       "rss_mb": round(peak_rss_mb(), 1)}
                t_last, step_last = now, self.step
                self.metrics.write(**rec)
                self.tb.scalars(self.step, {f"train/{k}": v for k, v in stats.items()} | {"train/lr": self.lr})
                if bar is not None:
                    bar.set_postfix(g=f"{stats['loss_g']:.3f}", d=f"{stats['loss_d']:.3f}")
                if self.on_progress:
                    self.on_progress(rec)
            if self.step % cfg.eval_every == 0:
                rec = self.evaluate()
                self.metrics.write(**rec)
                self.tb.scalars(self.step, {"val/l1": rec["val_l1"], "val/lpips": rec["val_lpips"],
                                            "val/ssim": rec["val_ssim"]})
                if self.on_progress:
                    self.on_progress(rec)
                t_last, step_last = time.time(), self.step
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.save_snapshot(reason="interval")
        if bar is not None:
            bar.close()
        if self._last_eval_step != self.step and self.step > 0:
            rec = self.evaluate()  # the last steps count for the best checkpoint too
            self.metrics.write(**rec)
        self.save_snapshot(reason=reason)
        self.metrics.write(event="end", reason=reason, step=self.step)
        log.info("stopped at step %d (%s); best validation LPIPS %.4f", self.step, reason, self.best)
        dump = os.environ.get("STYLESTUDIO_DUMP_RANK_STATE")  # tests: compare parameters across ranks
        if dump:
            atomic_torch_save(Path(dump) / f"S_rank{self.rank}.pt", {k: v.cpu() for k, v in self.S.state_dict().items()})
        self.metrics.close()
        self.tb.close()
        barrier()
        return reason


def main(argv=None) -> int:
    return trainer_main(argv, parse_args, DistillTrainer, lambda cfg: cfg.desc or (
        f"distill-{Path(cfg.generator).stem if cfg.generator else 'pack'}-{cfg.group}-{cfg.size}"))

if __name__ == "__main__":
    sys.exit(main())
