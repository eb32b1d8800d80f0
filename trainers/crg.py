"""Train a CRG encoder (seed 003, METHODS.md §2) for a frozen StyleGAN2 generator, on its own samples.

    python -m trainers.crg                                  # the default pack's generator, z space
    python -m trainers.crg --model ffhq.pkl --space w --size vgg19 --input-size 256
    torchrun --nproc_per_node=2 -m trainers.crg --model ...
    python -m trainers.crg --resume runs/00004-crg-pack-z-small        # continue exactly
    python -m trainers.crg --model new_pack/ --init old_pack/ --space w --lr 1e-4   # refit an encoder

"Cyclic" training needs no real images: draw z, render G(z) (random per-pixel noise, clamped to
[-1, 1], resized to the encoder's input size as inversion resizes photos), encode, and minimise
``MSE(E(G(z)), z)`` (``--space z``) or ``MSE(E(G(z)), G.mapping(z))`` (``--space w``; the encoder
predicts ``w - w_avg``). Adam (lr 1e-4, eps 1e-8), batch 16. Every ``--eval-every`` steps the same
validation set (``--val-samples`` generated with a fixed seed, constant noise) is scored with the
training loss in eval mode (no dropout): the learning rate halves after ``--lr-patience`` (10)
evaluations without improvement and training stops after ``--stop-patience`` (20); the best
encoder is kept as ``best.safetensors``.

Run directory (same contract as ``trainers.stylegan2``): ``config.json``, ``log.txt``,
``metrics.jsonl``, TensorBoard events (``tb/``), ``samples/latest.png`` (validation targets over
their reconstructions), ``snapshots/network-<step>.safetensors``, ``best.safetensors`` and
``resume.pt``, all written atomically; SIGINT/SIGTERM write a snapshot before exiting.

Network files hold the frozen generator and the encoder as an ``EncoderPipeline`` of kind 'crg',
so ``studio.core.formats.load_checkpoint(path).encoder`` is ready for
``studio.core.inversion.make_inverter('crg', G, {'crg': bundle.encoder})``.

``metrics.jsonl`` (one JSON object a line, each with ``time``):

* ``{"event": "start" | "resume", "step", "world_size"}``;
* every ``--log-every`` steps: ``{"step", "loss", "lr", "sec_per_step", "rss_mb"}`` (``loss`` is the
  latent MSE of the last minibatch, averaged over processes);
* every evaluation: ``{"event": "eval", "step", "val_loss", "best_val_loss", "improved",
  "evals_without_improvement", "lr", "lr_halved", "val_img_mse", "eval_sec"}`` where ``lr`` is the
  rate from now on and ``val_img_mse`` the image MSE of the first validation reconstructions;
* ``{"event": "end", "reason", "step"}`` with reason 'done' (``--steps`` reached), 'early_stop',
  'max_steps' or 'signal N'.
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from studio.core.errors import StudioError
from studio.core.formats import load_checkpoint, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.crg import SPACES, CRGEncoder
from studio.core.nets.encoding import EncoderPipeline
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
    peak_rss_mb,
    rotate_snapshot,
    stop_reason,
    trainer_main,
)

log = logging.getLogger("trainers.crg")

# ----------------------------------------------------------------------------
# Configuration

SIZES: dict[str, dict] = {
    # The paper's VGG19 (64-128-256-512-512 filters, 2-2-4-4-4 convs): for GPUs and large generators.
    "vgg19": dict(channels=[64, 128, 256, 512, 512], convs=[2, 2, 4, 4, 4], hidden=1024),
    # Half the filters and a quarter of the convs, one block fewer: ~0.14 GMAC per 64-px image
    # (vgg19: ~1.6), sized for the default pack's 64-px generator on a laptop CPU.
    "small": dict(channels=[32, 64, 128, 256], convs=[1, 1, 2, 2], hidden=512),
    # For tests: runs in seconds on 16-px generators.
    "tiny": dict(channels=[8, 16, 32], convs=[1, 1, 1], hidden=64),
}


@dataclass
class CRGConfig:
    model: str = ""                 # generator checkpoint (any supported format); "" = the default pack
    out: str = "runs"
    desc: str = ""
    space: str = "z"                # 'z': MSE to z | 'w': MSE to G.mapping(z)
    size: str = "small"             # SIZES preset (filled into channels/convs/hidden)
    channels: list[int] = field(default_factory=lambda: list(SIZES["small"]["channels"]))
    convs: list[int] = field(default_factory=lambda: list(SIZES["small"]["convs"]))
    hidden: int = 512
    dropout: float = 0.5            # spatial dropout after every block (seed 003)
    batch_norm: bool = True
    input_size: int | None = None   # None: the generator's resolution
    batch: int = 16                 # global batch (all processes)
    lr: float = 1e-4
    adam_eps: float = 1e-8
    steps: int = 100_000            # stop after this many steps (unless early stopping comes first)
    eval_every: int = 500           # steps between validation evaluations
    val_samples: int = 512          # fixed validation set size
    val_seed: int = 1234
    lr_patience: int = 10           # evaluations without improvement before the lr halves
    stop_patience: int = 20         # evaluations without improvement before training stops
    lr_factor: float = 0.5
    min_delta: float = 0.0          # a validation loss must beat the best by more than this
    seed: int = 0
    device: str = "auto"
    threads: int = 0                # 0 = all cores (per process)
    log_every: int = 10             # steps
    snapshot_every: int = 2000      # steps (0: only at the end)
    keep_snapshots: int = 2
    max_steps: int | None = None    # for tests: stop (with a snapshot) at this step
    init: str = ""                  # start from this CRG encoder's weights (a model file or pack; "" = random)


def validate(cfg: CRGConfig) -> None:
    require_loop_fields(cfg)
    if cfg.space not in SPACES:
        raise UserError(f"--space must be one of {', '.join(SPACES)}, got {cfg.space!r}")
    if cfg.size not in SIZES:
        raise UserError(f"--size must be one of {', '.join(SIZES)}, got {cfg.size!r}")
    if not cfg.channels or len(cfg.channels) != len(cfg.convs) or min(cfg.convs) < 1 or min(cfg.channels) < 1:
        raise UserError(f"--channels {cfg.channels} and --convs {cfg.convs} must be equally long, all >= 1")
    if cfg.input_size is not None and cfg.input_size < 2 ** len(cfg.channels):
        raise UserError(f"--input-size {cfg.input_size} is too small for {len(cfg.channels)} pooling blocks "
                        f"(at least {2 ** len(cfg.channels)})")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"--dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.batch < 2:
        raise UserError("--batch must be at least 2 (BatchNorm)")
    for name in ("steps", "eval_every", "val_samples", "lr_patience", "stop_patience", "log_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 < cfg.lr_factor < 1.0:
        raise UserError(f"--lr-factor must be in (0, 1), got {cfg.lr_factor}")
    require_positive(cfg, "lr")
    if not cfg.adam_eps > 0:
        raise UserError(f"adam_eps must be positive (the run's config.json), got {cfg.adam_eps}")


def default_model() -> Path:
    """The embedded default model pack (``resources/pack``)."""
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is not None:
        return pack
    raise UserError("--model: no model given and no default model pack is installed; pass a generator "
                    "checkpoint (NVIDIA .pkl, rosinality .pt, pSp/e4e/E2Style .pt or a StyleStudio file)")


def parse_args(argv=None) -> tuple[CRGConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m trainers.crg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = CRGConfig()
    ap.add_argument("--model", help="generator checkpoint (default: the embedded model pack)")
    ap.add_argument("--out", help=f"runs folder (default {d.out})")
    ap.add_argument("--desc", help="run name suffix")
    ap.add_argument("--space", choices=SPACES, help="latent space of the targets (default z)")
    ap.add_argument("--size", choices=sorted(SIZES), help="encoder size preset (default small)")
    ap.add_argument("--channels", type=_int_list, help="filters per block, e.g. 32,64,128,256 (overrides --size)")
    ap.add_argument("--convs", type=_int_list, help="3x3 convs per block, e.g. 1,1,2,2 (overrides --size)")
    ap.add_argument("--hidden", type=int, help="hidden units of the head (0: one linear layer)")
    ap.add_argument("--dropout", type=float, help=f"spatial dropout (default {d.dropout})")
    ap.add_argument("--no-batch-norm", dest="batch_norm", action="store_false", default=None,
                    help="no BatchNorm after the convs")
    ap.add_argument("--input-size", type=int, help="encoder input side (default: generator resolution)")
    ap.add_argument("--batch", type=int, help=f"global batch (default {d.batch})")
    ap.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    ap.add_argument("--steps", type=int, help=f"training steps at most (default {d.steps})")
    ap.add_argument("--eval-every", type=int, help=f"steps between evaluations (default {d.eval_every})")
    ap.add_argument("--val-samples", type=int, help=f"validation set size (default {d.val_samples})")
    ap.add_argument("--lr-patience", type=int, help=f"halve lr after N evals without improvement ({d.lr_patience})")
    ap.add_argument("--stop-patience", type=int, help=f"stop after N evals without improvement ({d.stop_patience})")
    ap.add_argument("--init", help="start from this CRG encoder's weights: a CRG run's best.safetensors / snapshot or "
                                   "a model pack with a CRG encoder (e.g. to refit the pack's to a fine-tuned "
                                   "generator); same --space and size")
    add_run_args(ap)
    args = ap.parse_args(argv)
    if args.resume:
        return config_from_run(args, CRGConfig, "CRG", ("steps", "max_steps", "threads", "device", "log_every",
                                                        "snapshot_every")), args
    cfg = CRGConfig()
    if args.size:
        cfg.size = args.size
        cfg.channels, cfg.convs = list(SIZES[args.size]["channels"]), list(SIZES[args.size]["convs"])
        cfg.hidden = SIZES[args.size]["hidden"]
    for f in fields(CRGConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name != "size":
            setattr(cfg, f.name, v)
    cfg.model = str(Path(args.model).resolve()) if args.model else ""
    cfg.init = str(Path(args.init).resolve()) if args.init else ""
    validate(cfg)
    return cfg, args


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


# ----------------------------------------------------------------------------
# The learning-rate / early-stopping rule


class PlateauSchedule:
    """Seed 003's validation rule: halve the lr after ``lr_patience`` evaluations without improvement
    (counting again from 0 after each halving), stop after ``stop_patience`` evaluations without
    improvement (counted from the best). An improvement beats the best by more than ``min_delta``.
    """

    def __init__(self, lr_patience: int = 10, stop_patience: int = 20, min_delta: float = 0.0):
        self.lr_patience, self.stop_patience, self.min_delta = lr_patience, stop_patience, min_delta
        self.best = math.inf
        self.since_best = 0   # evaluations since the best (early stopping's count)
        self.since_lr = 0     # evaluations since the best or the last halving (the lr rule's count)
        self.num_evals = 0

    def update(self, val_loss: float) -> dict[str, bool]:
        """One evaluation; returns ``{"improved", "halve", "stop"}`` (no halving on the stopping one)."""
        self.num_evals += 1
        if val_loss < self.best - self.min_delta:  # NaN never improves
            self.best, self.since_best, self.since_lr = float(val_loss), 0, 0
            return {"improved": True, "halve": False, "stop": False}
        self.since_best += 1
        self.since_lr += 1
        stop = self.since_best >= self.stop_patience
        halve = not stop and self.since_lr >= self.lr_patience
        if halve:
            self.since_lr = 0
        return {"improved": False, "halve": halve, "stop": stop}

    def state_dict(self) -> dict:
        return {"best": self.best, "since_best": self.since_best, "since_lr": self.since_lr,
                "num_evals": self.num_evals}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.since_best = float(d["best"]), int(d["since_best"])
        self.since_lr, self.num_evals = int(d["since_lr"]), int(d["num_evals"])


# ----------------------------------------------------------------------------
# The loop


class CRGTrainer:
    def __init__(self, cfg: CRGConfig, run_dir: Path | None, *, resume_from: Path | None = None,
                 tqdm_bar: bool = True, should_stop=None, on_progress=None):
        """``run_dir``: where this process writes (None on ranks > 0 or to train without files);
        ``resume_from``: a resume.pt."""
        validate(cfg)
        self.cfg = cfg
        init_trainer(self, cfg, run_dir, tqdm_bar=tqdm_bar, should_stop=should_stop, on_progress=on_progress)
        if cfg.batch % self.world:
            raise UserError(f"--batch {cfg.batch} does not split evenly over {self.world} processes")

        model = Path(cfg.model) if cfg.model else default_model()
        try:
            self.source = load_checkpoint(model)
        except StudioError as e:
            raise UserError(f"--model: {e}") from None
        if self.source.generator is None:
            raise UserError(f"--model: {model} has no generator")
        self.G = self.source.generator.to(self.device).eval().requires_grad_(False)
        self.input_size = cfg.input_size or int(self.G.img_resolution)
        if self.input_size < 2 ** len(cfg.channels):
            raise UserError(f"--input-size: the generator's {self.input_size} px is too small for "
                            f"{len(cfg.channels)} pooling blocks; pass --input-size or fewer --channels")
        # [num_ws, w_dim]: stored with the encoder; W space predicts the offset from it.
        self.latent_avg = self.G.mapping.w_avg.detach().float().unsqueeze(0).repeat(self.G.num_ws, 1).to(self.device)

        torch.manual_seed(cfg.seed)  # initial weights and dropout masks: identical on every rank
        self.E = CRGEncoder(input_size=self.input_size, out_dim=self.G.z_dim if cfg.space == "z" else self.G.w_dim,
                            space=cfg.space, channels=tuple(cfg.channels), convs=tuple(cfg.convs),
                            batch_norm=cfg.batch_norm, dropout=cfg.dropout, hidden=cfg.hidden)
        self.E.to(self.device).train()
        self.lr = cfg.lr
        self.opt = torch.optim.Adam(self.E.parameters(), lr=self.lr, eps=cfg.adam_eps)
        self.schedule = PlateauSchedule(cfg.lr_patience, cfg.stop_patience, cfg.min_delta)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # all training samples (same on every rank)
        self.step = 0
        self.history: list[dict] = []  # one entry per evaluation
        self.E_ddp = self.E
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.E_ddp = DDP(self.E, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None
        self._last_snap_step = -1
        self._last_eval_step = -1
        self.metrics = MetricsLog(os.devnull, False)  # run() opens the real ones
        self.tb = TensorBoard("", False)
        if resume_from is not None:
            self._load_resume(Path(resume_from))
        elif cfg.init:
            self._load_init(Path(cfg.init))

    # -- samples ---------------------------------------------------------------------------------

    @torch.no_grad()
    def render(self, z: torch.Tensor, noises: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """z [N, z_dim] -> (encoder input [N, 3, S, S] in [-1, 1], target [N, out_dim] in the config's space).

        ``noises``: per-layer noise maps, or None for the generator's constant noise."""
        w = self.G.mapping(z)  # [N, w_dim]
        ws = w.unsqueeze(1).repeat(1, self.G.num_ws, 1)
        img = self.G.synthesis(ws, noise_mode="const", noises=noises).clamp(-1, 1)
        if img.shape[-1] != self.input_size:  # as inversion resizes aligned photos
            img = F.interpolate(img, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False,
                                antialias=True).clamp(-1, 1)
        target = z if self.cfg.space == "z" else w - self.latent_avg[0]
        return img, target

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of a fresh global batch (drawn in a fixed order from ``self.gen``)."""
        B = self.cfg.batch
        z = torch.randn([B, self.G.z_dim], generator=self.gen)[self.sl]
        noises = [torch.randn([B, 1, layer.resolution, layer.resolution], generator=self.gen)[self.sl].to(self.device)
                  for layer in self.G.synthesis.noise_layers()]
        return self.render(z.to(self.device), noises)

    def validation_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed validation inputs and targets (rendered once, constant noise, on CPU)."""
        if self._val is None:
            z = torch.randn([self.cfg.val_samples, self.G.z_dim], generator=torch.Generator().manual_seed(self.cfg.val_seed))
            xs, ts = [], []
            for i in range(0, len(z), 64):
                x, t = self.render(z[i:i + 64].to(self.device), None)
                xs.append(x.cpu())
                ts.append(t.cpu())
            self._val = (torch.cat(xs), torch.cat(ts))
        return self._val

    # -- training and evaluation ----------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        x, target = self._batch()
        self.E_ddp.train()
        loss = F.mse_loss(self.E_ddp(x), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": all_reduce_mean(loss.detach()).item()}

    @torch.no_grad()
    def validate(self) -> float:
        """Mean latent MSE over the validation set, in eval mode (the same number on every rank)."""
        x, t = self.validation_set()
        self.E.eval()
        total = 0.0
        for i in range(0, len(x), 64):
            pred = self.E(x[i:i + 64].to(self.device))
            total += F.mse_loss(pred, t[i:i + 64].to(self.device), reduction="sum").item()
        self.E.train()
        val = torch.tensor(total / t.numel(), dtype=torch.float64)
        return float(all_reduce_mean(val))  # ranks' BatchNorm statistics differ slightly: agree on one value

    def pipeline(self) -> EncoderPipeline:
        """A CPU copy of the encoder (eval mode) with the generator as decoder, as saved."""
        enc = copy.deepcopy(self.E).cpu().eval().requires_grad_(False)
        G = copy.deepcopy(self.G).cpu()
        return EncoderPipeline(enc, G, self.latent_avg.cpu(), kind="crg", start_from_latent_avg=self.cfg.space == "w",
                               out_size=int(G.img_resolution)).eval()

    @torch.no_grad()
    def _recon_preview(self, n: int = 8) -> float:
        """Image MSE of the first ``n`` validation reconstructions; writes samples/latest.png."""
        x, _ = self.validation_set()
        x = x[:n].to(self.device)
        self.E.eval()
        ws = EncoderPipeline(self.E, self.G, self.latent_avg, kind="crg",
                             start_from_latent_avg=self.cfg.space == "w").encode(x)
        self.E.train()
        recon = self.G.synthesis(ws, noise_mode="const").clamp(-1, 1)
        target = x if x.shape[-1] == recon.shape[-1] else F.interpolate(
            x, size=recon.shape[-2:], mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
        mse = float(F.mse_loss(recon, target))
        if is_main() and self.run_dir is not None:
            import io

            from PIL import Image

            from studio.core.tensors import make_grid, to_uint8

            grid = make_grid(to_uint8(torch.cat([target, recon])), cols=len(x))
            buf = io.BytesIO()
            Image.fromarray(grid).save(buf, format="PNG")
            atomic_write_bytes(self.run_dir / "samples" / "latest.png", buf.getvalue())
            self.tb.image("val/targets_over_reconstructions", self.step, grid)
        return mse

    def evaluate(self) -> dict:
        """Validation loss, the plateau rule (lr halving, early stop) and the best checkpoint."""
        t0 = time.time()
        self._last_eval_step = self.step
        val = self.validate()
        decision = self.schedule.update(val)
        if decision["halve"]:
            self.lr *= self.cfg.lr_factor
            for g in self.opt.param_groups:
                g["lr"] = self.lr
        img_mse = self._recon_preview()
        rec = {"event": "eval", "step": self.step, "val_loss": val, "best_val_loss": self.schedule.best,
               "improved": decision["improved"], "evals_without_improvement": self.schedule.since_best,
               "lr": self.lr, "lr_halved": decision["halve"], "val_img_mse": img_mse,
               "eval_sec": round(time.time() - t0, 3), "stop": decision["stop"]}
        self.history.append({k: rec[k] for k in ("step", "val_loss", "lr")})
        if decision["improved"] and self._writes:
            self._save_network(self.run_dir / "best.safetensors", {"val_loss": val})
        barrier()
        return rec

    # -- persistence -----------------------------------------------------------------------------

    @property
    def _writes(self) -> bool:
        return is_main() and self.run_dir is not None

    def _save_network(self, path: Path, extra: dict | None = None) -> None:
        bundle = ModelBundle(format="stylestudio", path="", generator=None, encoder=None)
        pipe = self.pipeline()
        bundle.generator, bundle.encoder = pipe.decoder, pipe
        bundle.latent_avg = pipe.latent_avg
        src_prov = self.source.meta.get("provenance") or {}
        bundle.meta["provenance"] = {
            "trainer": "trainers.crg", "step": self.step, "run": self.run_dir.name if self.run_dir else None,
            "config": asdict(self.cfg), "generator_from": self.cfg.model or "default pack",
            "generator_provenance": src_prov, **(extra or {})}
        bundle.meta["alignment_profile"] = self.source.meta.get("alignment_profile", "ffhq")
        bundle.meta["licence"] = self.source.meta.get("licence", "inherits the licence of the generator")
        stylestudio_fmt.save(bundle, path)

    def _resume_state(self) -> dict:
        return {
            "format": "stylestudio-crg-resume", "version": 1, "E": self.E.state_dict(),
            "opt": self.opt.state_dict(), "lr": self.lr, "step": self.step, "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout masks
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "schedule": self.schedule.state_dict(), "history": json.dumps(self.history),
            "last_eval_step": self._last_eval_step,
        }

    def _load_init(self, path: Path) -> None:
        """The encoder's weights from another CRG encoder (``--init``: a model file or pack); Adam,
        the plateau schedule and the step count start fresh. Its configuration must match."""
        from studio.core.inversion import bundle_encoders

        try:
            enc = bundle_encoders(load_checkpoint(path)).get("crg")
        except StudioError as e:
            raise UserError(f"--init: {e}") from None
        if enc is None or not isinstance(getattr(enc, "encoder", None), CRGEncoder):
            raise UserError(f"--init: {path} has no CRG encoder")
        theirs, ours = enc.encoder.config, self.E.config
        diff = config_differences(theirs, ours, ("space", "input_size", "out_dim", "channels", "convs", "batch_norm",
                                                 "hidden", "head_pool"))
        if diff:
            raise UserError(f"--init: {path} holds a different CRG encoder: {', '.join(diff)}; give the matching "
                            f"--space / --size / --channels / --convs / --hidden / --input-size")
        self.E.load_state_dict({k: v.float() for k, v in enc.encoder.state_dict().items()})
        self.E.to(self.device).train()
        log.info("initialised the encoder from %s", path)

    def _load_resume(self, path: Path) -> None:
        from studio.core.formats import safe_torch_load

        try:
            st = safe_torch_load(path)
        except StudioError as e:
            raise UserError(f"--resume: {e}") from None
        if not isinstance(st, dict) or st.get("format") != "stylestudio-crg-resume":
            raise UserError(f"--resume: {path} is not a StyleStudio CRG resume snapshot")
        self.E.load_state_dict(st["E"])
        self.opt.load_state_dict(st["opt"])
        self.lr = float(st["lr"])
        for g in self.opt.param_groups:
            g["lr"] = self.lr
        self.step = int(st["step"])
        self.gen.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        if st.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["cuda_rng"])
        self.schedule.load_state_dict(st["schedule"])
        self.history = json.loads(st["history"])
        self._last_eval_step = int(st.get("last_eval_step", -1))

    def save_snapshot(self, *, reason: str) -> None:
        """resume.pt and a network file (encoder + generator) under snapshots/."""
        if not self._writes or self._last_snap_step == self.step:
            return
        self._last_snap_step = self.step
        rotate_snapshot(self.run_dir, self._resume_state(), self._save_network, "network", self.step,
                        self.cfg.keep_snapshots)
        log.info("snapshot at step %d (%s)", self.step, reason)

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> str:
        """Train until ``steps``, early stopping, ``max_steps`` or a stop request; returns the reason."""
        cfg = self.cfg
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self._writes) if self._writes \
            else MetricsLog(os.devnull, False)
        self.tb = TensorBoard(self.run_dir / "tb", enabled=self._writes) if self._writes else TensorBoard("", False)
        stop = StopFlag(install=True)
        bar = None
        if self.tqdm_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.metrics.write(event="start" if self.step == 0 else "resume", step=self.step, world_size=self.world)
        reason = "done"
        if self.schedule.since_best >= cfg.stop_patience:
            reason = "early_stop"  # resumed after it had already stopped
        t_last, step_last = time.time(), self.step
        while reason == "done" and self.step < cfg.steps:
            ended = stop_reason(self.step, cfg.max_steps, stop, self.should_stop)
            if ended is not None:
                reason = ended
                break
            stats = self.train_step()
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_every == 0:
                now = time.time()
                rec = {"step": self.step, "loss": round(stats["loss"], 7), "lr": self.lr,
                       "sec_per_step": round((now - t_last) / max(self.step - step_last, 1), 4),
                       "rss_mb": round(peak_rss_mb(), 1)}
                t_last, step_last = now, self.step
                self.metrics.write(**rec)
                self.tb.scalars(self.step, {"train/loss": rec["loss"], "train/lr": self.lr,
                                            "train/sec_per_step": rec["sec_per_step"]})
                if bar is not None:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{self.lr:.1e}")
                if self.on_progress:
                    self.on_progress(rec)
            if self.step % cfg.eval_every == 0:
                rec = self.evaluate()
                self.metrics.write(**rec)
                self.tb.scalars(self.step, {"val/loss": rec["val_loss"], "val/img_mse": rec["val_img_mse"]})
                if self.on_progress:
                    self.on_progress(rec)
                if rec["stop"]:
                    reason = "early_stop"
                t_last, step_last = time.time(), self.step  # don't count eval time as training speed
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.save_snapshot(reason="interval")
        if bar is not None:
            bar.close()
        if reason == "done" and self._last_eval_step != self.step and self.step > 0:
            rec = self.evaluate()  # the last steps count for the best checkpoint too
            self.metrics.write(**rec)
        self.save_snapshot(reason=reason)
        self.metrics.write(event="end", reason=reason, step=self.step)
        log.info("stopped at step %d (%s); best validation loss %.5f", self.step, reason, self.schedule.best)
        dump = os.environ.get("STYLESTUDIO_DUMP_RANK_STATE")  # tests: compare parameters across ranks
        if dump:
            atomic_torch_save(Path(dump) / f"E_rank{self.rank}.pt", {k: v.cpu() for k, v in self.E.state_dict().items()})
        self.metrics.close()
        self.tb.close()
        barrier()
        return reason


def main(argv=None) -> int:
    return trainer_main(argv, parse_args, CRGTrainer, lambda cfg: cfg.desc or (
        f"crg-{Path(cfg.model).stem if cfg.model else 'pack'}-{cfg.space}-{cfg.size}"))

if __name__ == "__main__":
    sys.exit(main())
