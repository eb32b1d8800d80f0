"""Pieces every trainer shares: run directories, atomic files, metrics logging, distributed helpers,
signal-safe stopping. One code path serves a single process and ``torchrun``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import os
import re
import resource
import signal
import shutil
import sys
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from studio.core.errors import StudioError
from studio.core.fileio import atomic_write_bytes  # noqa: F401 (re-exported for trainers)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# Distributed (rank helpers fall back to one process)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_distributed(device: torch.device) -> None:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


# ----------------------------------------------------------------------------
# Files


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=_json_default) + "\n").encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(x):
    if is_dataclass(x):
        return asdict(x)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return repr(x)


def new_run_dir(root: str | Path, desc: str) -> Path:
    """``root/00012-<desc>``: the next free number, created (rank 0 only calls this)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    nums = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    d = root / f"{(max(nums) + 1) if nums else 0:05d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', desc)}"
    d.mkdir()
    return d


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (flushed each line; rank 0 only)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._f = open(self.path, "a", encoding="utf-8") if enabled else None
        if self._f is not None and self._f.tell() > 0:
            # A crash can leave a torn last line; start on a fresh line so readers recover.
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._f.write("\n")

    def write(self, **record) -> None:
        if self._f is None:
            return
        record.setdefault("time", round(time.time(), 3))
        self._f.write(json.dumps(record, default=_json_default) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class TensorBoard:
    """TensorBoard scalars/images if tensorboardX (or torch's writer) is installed; else a no-op."""

    def __init__(self, logdir: str | Path, enabled: bool = True):
        self.w = None
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboardX not installed: no TensorBoard events (metrics.jsonl has everything)")
                return
        self.w = SummaryWriter(str(logdir))

    def scalars(self, step: float, values: dict[str, float]) -> None:
        if self.w is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.w.add_scalar(k, v, global_step=int(step))

    def image(self, tag: str, step: float, img_hwc_uint8) -> None:
        if self.w is not None:
            self.w.add_image(tag, img_hwc_uint8, global_step=int(step), dataformats="HWC")

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


# ----------------------------------------------------------------------------
# Stopping


class StopFlag:
    """Set by SIGINT / SIGTERM (or ``should_stop()``); the loop snapshots and exits at the next step."""

    def __init__(self, install: bool = True):
        self.requested = False
        self.signal: int | None = None
        if install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    signal.signal(sig, self._handler)
                except ValueError:  # not in the main thread
                    pass

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now
        self.requested = True
        self.signal = signum

    def __bool__(self) -> bool:
        return self.requested


# ----------------------------------------------------------------------------
# Config helpers


def config_differences(theirs, ours, names) -> list[str]:
    """``'name THEIRS (here OURS)'`` for each attribute in ``names`` whose values differ: what an
    ``--init`` file's network was built with against this run's (for its error message)."""
    return [f"{k} {getattr(theirs, k)} (here {getattr(ours, k)})" for k in names
            if getattr(theirs, k) != getattr(ours, k)]


def dataclass_from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    return cls(**d)


class UserError(StudioError):
    """A bad flag or input: the message names the flag and says what to do (exit code 2)."""


def field_converter(type_name: str):
    """argparse type for a config dataclass field annotation ('int', 'float | None', 'str', 'bool', ...)."""
    optional = "None" in type_name
    base = type_name.split("|")[0].strip()

    def conv(s: str):
        if optional and s.lower() in ("none", "auto", ""):
            return None
        if base == "bool":
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")
        return {"int": int, "float": float}.get(base, str)(s)

    conv.__name__ = base
    return conv


def field_help(f, helps: dict[str, str], preset_fields=frozenset()) -> str | None:
    """``--help`` text of a config dataclass field: ``helps[f.name]`` plus its default (argparse's own
    defaults are None so that a run's config can tell the flags given from those left out)."""
    text = helps.get(f.name)
    if text is None:
        return None
    if f.name in preset_fields:
        return f"{text} (default: the --cfg preset's)"
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None or "default" in text:
        return text
    if isinstance(default, bool):
        default = str(default).lower()
    return f"{text} (default {default})" if default != "" else text


def require_positive(cfg, *names: str) -> None:
    """A :class:`UserError` naming the flag unless each of ``cfg``'s fields is a finite number > 0
    (NaN and infinity included: a NaN learning rate would otherwise fail deep inside torch)."""
    for name in names:
        v = getattr(cfg, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {v}")


#: Loop and machine fields most trainers share: (field, smallest value, what it takes). Checked by
#: :func:`require_loop_fields` (a missing field or None is not checked: None means "no limit").
LOOP_FIELDS = (("threads", 0, "0 (all cores) or a positive number"),
               ("log_every", 1, "a positive number (steps between log lines)"),
               ("max_images", 1, "a positive number (leave it out for all images)"),
               ("max_steps", 1, "a positive number (leave it out for no limit)"))


def require_loop_fields(cfg) -> None:
    """A :class:`UserError` naming the flag for a loop / machine field below its smallest sensible
    value (``--threads -1`` or ``--log-every 0`` would otherwise fail deep inside torch or the loop,
    ``--max-images -1`` silently drop an image, ``--max-steps 0`` end the run before it began)."""
    for name, low, what in LOOP_FIELDS:
        v = getattr(cfg, name, None)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"--{name.replace('_', '-')} must be {what}, got {v}")


def open_run_dir(out: str | Path, desc: str, config: dict) -> Path:
    """A new numbered run directory with its ``config.json`` (the run's config, argv, torch version)."""
    try:
        run_dir = new_run_dir(out, desc)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--out {out}: that is a file, not a folder; give a folder for the run "
                        f"directories (it is created if missing)") from None
    except OSError as e:
        raise UserError(f"--out {out}: cannot create a run directory there ({e.strerror or e}); give a "
                        f"writable folder") from None
    atomic_write_json(run_dir / "config.json", {"train": config, "argv": sys.argv, "torch": torch.__version__})
    return run_dir


def log_to_run_dir(run_dir: Path) -> logging.Handler:
    """Copy every log record into ``run_dir/log.txt`` too (returns the handler)."""
    fh = logging.FileHandler(run_dir / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(fh)
    logging.getLogger("trainers").info("run directory: %s", run_dir)
    return fh


def discard_unstarted_run(run_dir: Path, handler: logging.Handler | None = None) -> bool:
    """Remove a new run directory that holds nothing but its ``config.json`` and ``log.txt`` (and
    empty folders): a run refused before its first step leaves no numbered clutter behind. A folder
    with anything else in it (metrics, samples, snapshots) is kept. Returns whether it was removed."""
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if run_dir is None or not run_dir.is_dir():
        return False
    files = [p for p in run_dir.rglob("*") if not p.is_dir()]
    if any(p.parent != run_dir or p.name not in ("config.json", "log.txt") for p in files):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return not run_dir.exists()


def trainer_main(argv, parse_args, make_trainer, run_desc, *, resume_from_new=None,
                 before=None) -> int:
    """The trainers' shared ``main()``: logging, ``--dry-run`` (print the config), the run directory
    (a new numbered one on rank 0, or ``--resume RUN_DIR``: its ``resume.pt``, none if the run was
    killed before its first snapshot), the log file, then ``make_trainer(cfg, run_dir or None on
    other ranks, resume_from=..., tqdm_bar=...).run()``. A :class:`UserError` prints ``error: ...``
    and returns 2.

    ``run_desc(cfg)``: the new run's name; ``resume_from_new(args)``: a snapshot a *new* run starts
    from (e.g. the generator's ``--resume-compact``); ``before(cfg, args)``: handles extra one-shot
    modes, returning an exit status to stop there or None to go on."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `stylestudio train` has set up WARNING logging for the app already (basicConfig above then does
    # nothing): the trainers still report where the run goes and how it does, on stderr and in log.txt
    logging.getLogger("trainers").setLevel(logging.INFO)
    new_run: Path | None = None
    log_handler: logging.Handler | None = None
    try:
        cfg, args = parse_args(argv)
        if before is not None:
            rc = before(cfg, args)
            if rc is not None:
                return rc
        if args.dry_run:
            print(json.dumps(asdict(cfg), indent=1))
            return 0
        is_rank0 = int(os.environ.get("RANK", "0")) == 0
        run_dir = None
        if args.resume:
            run_dir = Path(args.resume)
            if is_rank0:
                persist_schedule(run_dir, asdict(cfg))
            resume_from = run_dir / "resume.pt"
            if not resume_from.is_file():
                resume_from = None  # killed before the first snapshot: start over in the same folder
        else:
            resume_from = resume_from_new(args) if resume_from_new is not None else None
            if is_rank0:
                run_dir = open_run_dir(cfg.out, run_desc(cfg), asdict(cfg))
                new_run = run_dir
        if is_rank0:
            log_handler = log_to_run_dir(run_dir)
        make_trainer(cfg, run_dir if is_rank0 else None, resume_from=resume_from, tqdm_bar=not args.no_tqdm).run()
    except StudioError as e:  # UserError, and e.g. a --model that is no checkpoint (CheckpointError)
        print(f"error: {e}", file=sys.stderr)
        if new_run is not None:  # refused before it started (bad --data, --model, ...): no empty run folder
            discard_unstarted_run(new_run, log_handler)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the trainer's own handler was in: no empty run folder
        if new_run is not None:
            discard_unstarted_run(new_run, log_handler)
        raise
    return 0


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The run-control flags every trainer shares (a resumed run may change these)."""
    ap.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
    ap.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, help="CPU threads per process (0: all)")
    ap.add_argument("--log-every", type=int, help="steps between log lines (default 10)")
    ap.add_argument("--snapshot-every", type=int, help="steps between snapshots (0: only at the end)")
    ap.add_argument("--max-steps", type=int, help="stop (with a snapshot) at this step")
    ap.add_argument("--resume", help="run directory to continue (its config is used)")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--no-tqdm", action="store_true", help="plain log lines instead of a progress bar")


#: Trainer modules by the names a run's argv may show: the module file's stem, or
#: ``stylestudio train <name>``.
_WRITERS = {"stylegan2": "trainers.stylegan2", "gan": "trainers.stylegan2", "encoder": "trainers.encoder",
            "crg": "trainers.crg", "distill": "trainers.distill"}


def _run_writer(saved: dict) -> str | None:
    """The trainer module that wrote a run's ``config.json`` (from its argv), or None."""
    argv = saved.get("argv")
    if not isinstance(argv, list):
        return None
    argv = [str(a) for a in argv[:3]]
    for i, a in enumerate(argv):
        if Path(a).suffix == ".py" and Path(a).stem in _WRITERS:
            return _WRITERS[Path(a).stem]
        if a == "train" and i + 1 < len(argv) and argv[i + 1] in _WRITERS:
            return _WRITERS[argv[i + 1]]
    return None


# The fields of a resumed run's config that change the run itself, not just this invocation: a larger
# --steps / --kimg (Train longer…) is written back to config.json, so that the run's target, its progress
# and a later plain --resume use it (--max-steps, --threads, --device, --time-budget are per invocation).
SCHEDULE_FIELDS = ("steps", "kimg", "decay_fraction", "eval_every", "metrics_every_kimg", "snapshot_every_kimg",
                   "sample_every_kimg", "snapshot_every", "keep_snapshots")


def persist_schedule(run_dir: Path, config: dict) -> dict:
    """Write the :data:`SCHEDULE_FIELDS` of a resumed run's ``config`` that differ from its
    ``config.json`` back into it (with the change and this argv appended to its ``"resumed"`` list);
    returns the changes ({} when none)."""
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # config_from_run has read it a moment ago; nothing to keep in step with otherwise
    train = saved.get("train") if isinstance(saved, dict) else None
    if not isinstance(train, dict):
        return {}
    changed = {k: config[k] for k in SCHEDULE_FIELDS if k in config and k in train and train[k] != config[k]}
    if changed:
        log.info("%s: %s", path, ", ".join(f"{k} {train[k]} -> {v}" for k, v in changed.items()))
        train.update(changed)
        saved.setdefault("resumed", []).append({"argv": sys.argv, "changed": changed})
        atomic_write_json(path, saved)
    return changed


def config_from_run(args: argparse.Namespace, config_cls, what: str, overrides) -> Any:
    """``--resume RUN_DIR``: the run's config (``config.json``'s ``train``) as ``config_cls``, with
    the flags named in ``overrides`` that were given on this command line applied on top."""
    cfg_path = Path(args.resume) / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"--resume: {args.resume} is not a run directory (no config.json)")
    try:
        saved = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--resume: {cfg_path} cannot be read ({e}); is this a run directory?") from None
    try:
        cfg = config_cls(**saved["train"])
    except (KeyError, TypeError, ValueError) as e:
        writer = _run_writer(saved) if isinstance(saved, dict) else None
        if writer and writer != config_cls.__module__:
            raise UserError(f"--resume: {args.resume} is a run of {writer}, and this trainer continues {what} runs "
                            f"only; continue it with python -m {writer} --resume {args.resume}") from None
        raise UserError(f"--resume: {cfg_path} is not a {what} run config ({e})") from None
    for name in overrides:
        v = getattr(args, name, None)
        if v is not None:
            setattr(cfg, name, v)
    return cfg


def resolve_device(name: str | None) -> torch.device:
    """``--device``: 'auto' (or none) = CUDA when present, else the CPU. A CUDA device asked for on a
    machine without one (a run or snapshot made on a GPU machine, continued on a laptop) is a
    ``UserError`` that says how to go on, not a traceback from the first ``.to()``."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: give 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"--device {name}: this machine has no CUDA device (the run may have been made on "
                            "a GPU machine); add --device cpu (or --device auto) to continue on the CPU")
        if dev.index is not None and dev.index >= n:
            raise UserError(f"--device {name}: this machine has {n} CUDA device(s) (cuda:0 .. cuda:{n - 1})")
    elif dev.type != "cpu":
        raise UserError(f"--device {name!r}: give 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def init_trainer(trainer, cfg, run_dir, *, tqdm_bar: bool, should_stop, on_progress) -> None:
    """The set-up every trainer starts with: ``trainer.device`` (``cfg.device``, 'auto' = CUDA when
    present), the process group under torchrun, ``cfg.threads``, ``rank`` / ``world`` and ``sl`` (this
    rank's samples of every global batch), ``run_dir`` and the GUI hooks."""
    trainer.device = resolve_device(cfg.device)
    init_distributed(trainer.device)
    if trainer.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer.rank, trainer.world = rank(), world_size()
    trainer.sl = slice(trainer.rank, None, trainer.world)
    trainer.run_dir = run_dir
    trainer.should_stop = should_stop or (lambda: False)
    trainer.on_progress = on_progress
    trainer.tqdm_bar = tqdm_bar and is_main()


def linear_decay_lr(lr: float, step: int, steps: int, decay_fraction: float) -> float:
    """Constant ``lr``, then linear decay to 0 over the last ``decay_fraction`` of ``steps`` (pix2pixHD's
    schedule; the end of a fixed budget gains most from it)."""
    decay_start = steps * (1 - decay_fraction)
    if step < decay_start or decay_fraction <= 0:
        return lr
    return lr * max(0.0, (steps - step) / max(steps - decay_start, 1e-9))


def stop_reason(step: int, max_steps: int | None, stop, should_stop) -> str | None:
    """Why a training loop must end before this step, or None: ``'max_steps'``, a signal
    (``stop`` is the :class:`StopFlag`) or ``should_stop()`` (e.g. the GUI). Under DDP every rank
    gets the same answer, so all leave at the same step."""
    if max_steps is not None and step >= max_steps:
        return "max_steps"
    want = bool(stop) or bool(should_stop())
    if is_distributed():
        want = all_reduce_mean(torch.tensor(float(want))).item() > 0
    if want:
        return f"signal {stop.signal}" if stop.signal else "stopped"
    return None


def rotate_snapshot(run_dir: Path, resume_state: dict, save_network, prefix: str, step: int, keep: int) -> Path:
    """Write ``resume.pt`` and ``snapshots/{prefix}-{step:08d}.safetensors`` (via ``save_network(path)``),
    keeping the newest ``keep`` (at least 1) network files."""
    atomic_torch_save(run_dir / "resume.pt", resume_state)
    snap = run_dir / "snapshots" / f"{prefix}-{step:08d}.safetensors"
    snap.parent.mkdir(parents=True, exist_ok=True)
    save_network(snap)
    for old in sorted(snap.parent.glob(f"{prefix}-*.safetensors"))[:-max(int(keep), 1)]:
        old.unlink(missing_ok=True)
    return snap

