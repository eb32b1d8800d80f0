"""Training monitor engine (no Qt): tail a run's ``metrics.jsonl``, aggregate it into a
:class:`RunModel` for the GUI's Training window, and build the trainers' command lines.

A run directory is the trainers' contract (``trainers/common.py``, README "Training a generator"):
``config.json`` (``{"train": {...}, "argv": [...]}``), ``metrics.jsonl`` (one JSON object per line,
appended and flushed line by line), ``samples/latest.png``, ``snapshots/*.safetensors``,
``best.safetensors``, ``resume.pt``. The record schema is documented in ``trainers/encoder.py``;
abortion checks and aborts follow METHODS.md §4.

* :class:`MetricsTailer` reads new complete lines by byte offset; a torn last line is kept until its
  newline arrives; a file truncated, rewritten or replaced (size shrink, changed first bytes or a new
  inode) is read again from 0 and reported as a restart.
* :class:`RunModel` folds records into curves (``(step, value)`` per term), speed, ETA, abortion
  checks and events, stage lanes and the compute saved against a fixed-N run. A ``resume`` event
  rewinds everything logged after the step it resumes from (a killed run repeats those steps).
* :func:`build_command` / :func:`resume_command` build ``python -m trainers.<name> ...`` argument
  lists from :data:`TRAINERS` (the flags each trainer's argparse accepts).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "TRAINERS",
    "AbortCheck",
    "AbortEvent",
    "FlagSpec",
    "MetricsTailer",
    "RunModel",
    "StageLane",
    "TextTailer",
    "TrainerSpec",
    "build_command",
    "detect_trainer",
    "latest_snapshot",
    "new_run_dirs",
    "read_config",
    "resume_command",
    "run_dir_from_log",
    "trainer_env",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------
# Tailing metrics.jsonl


class MetricsTailer:
    """Incremental reader of a JSON-lines file.

    :meth:`poll` returns ``(records, restarted)``: the records of the lines completed since the last
    poll, and whether the file was found truncated / replaced (then ``records`` are read from byte 0
    and the caller should forget what it had). Lines that are not JSON objects are counted in
    ``bad_lines`` and skipped (e.g. the fragment a crash left before the trainer started a new line).
    ``max_bytes`` caps one poll's read, so a huge file is taken in slices.
    """

    FINGERPRINT = 256  # bytes at the head compared between polls (an in-place rewrite changes them)

    def __init__(self, path: str | Path, max_bytes: int = 1 << 20):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.offset = 0              # bytes consumed (complete lines and the pending fragment)
        self.pending = b""           # a torn last line, kept until its newline arrives
        self.bad_lines = 0
        self.restarts = 0
        self._ino: tuple[int, int] | None = None
        self._head = b""

    def reset(self) -> None:
        self.offset, self.pending, self._ino, self._head = 0, b"", None, b""

    def poll(self) -> tuple[list[dict], bool]:
        try:
            st = os.stat(self.path)
        except OSError:
            return [], False  # not there (yet, or while being replaced): keep the state
        ino = (st.st_dev, st.st_ino)
        restarted = False
        if self._ino is not None and (ino != self._ino or st.st_size < self.offset or not self._head_matches()):
            self.reset()
            self.restarts += 1
            restarted = True
        self._ino = ino
        if st.st_size <= self.offset:
            return [], restarted
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(min(st.st_size - self.offset, self.max_bytes))
                if len(self._head) < self.FINGERPRINT:
                    f.seek(0)
                    self._head = f.read(self.FINGERPRINT)
        except OSError:
            return [], restarted
        self.offset += len(data)
        buf = self.pending + data
        lines = buf.split(b"\n")
        self.pending = lines.pop()  # b"" when the data ended with a newline
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):  # not JSON / not UTF-8; absurdly nested
                rec = None
            if isinstance(rec, dict):
                out.append(rec)
            else:
                self.bad_lines += 1
        return out, restarted

    def _head_matches(self) -> bool:
        if not self._head:
            return True
        try:
            with open(self.path, "rb") as f:
                return f.read(len(self._head)) == self._head
        except OSError:
            return True


class TextTailer:
    """New text appended to a file (e.g. a run's ``log.txt``), by byte offset; a shrunk or replaced
    file is read again from the start. ``poll()`` returns ``(text, restarted)``."""

    def __init__(self, path: str | Path, max_bytes: int = 1 << 18):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.offset = 0
        self._ino: tuple[int, int] | None = None

    def poll(self) -> tuple[str, bool]:
        try:
            st = os.stat(self.path)
        except OSError:
            return "", False
        ino = (st.st_dev, st.st_ino)
        restarted = self._ino is not None and (ino != self._ino or st.st_size < self.offset)
        if restarted:
            self.offset = 0
        self._ino = ino
        if st.st_size <= self.offset:
            return "", restarted
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(min(st.st_size - self.offset, self.max_bytes))
        except OSError:
            return "", restarted
        cut = data.rfind(b"\n") + 1  # whole lines only (a huge line is taken in slices)
        if cut == 0 and len(data) < self.max_bytes:
            return "", restarted
        data = data[:cut] if cut else data
        self.offset += len(data)
        return data.decode("utf-8", "replace"), restarted


# ----------------------------------------------------------------------------
# The run model


@dataclass(frozen=True)
class AbortCheck:
    step: int
    signal: float
    prev: float | None
    abort_count: int
    active_stages: int


@dataclass(frozen=True)
class AbortEvent:
    step: int
    dropped_stage: int
    active_stages: int


@dataclass(frozen=True)
class StageLane:
    stage: int                     # 1-based
    active: bool
    aborted_at: int | None         # step of the abort that dropped it


#: Most refinement stages a record or config.json may claim (E2Style uses a handful); more is damage.
MAX_STAGES = 64

# Keys of a training record that are not curves of their own.
META_KEYS = {"step", "kimg", "time", "event", "world_size", "arch", "num_stages", "active_stages",
             "stage_passes", "rss_mb", "deltas", "best", "reason", "eval_sec", "stop", "lr"}


def read_config(run_dir: str | Path) -> dict:
    """``config.json`` of a run (``{}`` if missing or unreadable)."""
    try:
        d = json.loads((Path(run_dir) / "config.json").read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def detect_trainer(run_dir: str | Path, config: dict | None = None) -> str | None:
    """'gan' | 'encoder' | 'crg' | 'distill' from the run's ``config.json`` (argv, then its keys)."""
    config = read_config(run_dir) if config is None else config
    argv = config.get("argv")
    argv = [str(a) for a in argv] if isinstance(argv, list) else []
    mods = {spec.module.rsplit(".", 1)[1]: name for name, spec in TRAINERS.items()}
    for a in argv[:3]:
        stem = Path(a).stem
        if stem in mods:
            return mods[stem]
        if a in TRAINERS:  # stylestudio train <name>
            return a
    train = config.get("train")
    train = train if isinstance(train, dict) else {}
    if "arch" in train and "abort" in train:
        return "encoder"
    if "space" in train:
        return "crg"
    if "group" in train and "lambda_feat" in train:
        return "distill"
    if "kimg" in train and "cfg" in train:
        return "gan"
    return None


def latest_snapshot(run_dir: str | Path) -> Path | None:
    """The model file to load from a run: ``best.safetensors``, else the newest snapshot."""
    run_dir = Path(run_dir)
    best = run_dir / "best.safetensors"
    if best.is_file():
        return best
    snaps = [p for p in (run_dir / "snapshots").glob("*.safetensors") if p.is_file()]
    if not snaps:
        return None
    return max(snaps, key=lambda p: (p.stat().st_mtime, p.name))


class RunModel:
    """What the Training window shows about one run directory, built from its records.

    Feed it with :meth:`feed` (records in file order) or let :meth:`poll` tail ``metrics.jsonl``.
    ``curves[key]`` is a list of ``(step, value)``: every numeric term of the training records
    (``loss_total``, ``loss_stage2``, ``loss_g``, ...) and of evaluations (as ``eval/<key>``).
    """

    def __init__(self, run_dir: str | Path | None = None, config: dict | None = None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        full = (read_config(self.run_dir) if self.run_dir is not None else {}) if config is None else config
        train = full.get("train", full) if isinstance(full, dict) else {}
        self.config: dict = dict(train) if isinstance(train, dict) else {}
        self.trainer = detect_trainer(self.run_dir or "", full) if full else None
        self.tailer = MetricsTailer(self.run_dir / "metrics.jsonl") if self.run_dir is not None else None
        self.restarts = 0       # times the file was found truncated / replaced
        self.version = 0        # bumped by every change (views redraw when it moves)
        self.clear()

    # -- state ----------------------------------------------------------------------------------

    def clear(self) -> None:
        self.records = 0                                   # training records seen (after rewinds)
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.checks: list[AbortCheck] = []
        self.aborts: list[AbortEvent] = []
        self.sessions: list[dict] = []                     # start / resume / end events
        self.step = 0
        self.kimg = 0.0
        self.sec_per_step: float | None = None
        self.sec_per_kimg: float | None = None
        self.stage_passes: int | None = None
        self._num_stages: int | None = None
        self._initial_active: int | None = None
        self.ended: str | None = None                      # end reason of the last session
        self.last_time: float | None = None
        self.version += 1

    def poll(self) -> bool:
        """Read what the trainer appended; True when the model changed."""
        if self.tailer is None:
            return False
        if self.trainer is None or not self.config:
            self.reload_config()
        recs, restarted = self.tailer.poll()
        if restarted:
            self.restarts += 1
            self.clear()
        if recs:
            self.feed(recs)
        return bool(recs) or restarted

    def reload_config(self) -> None:
        if self.run_dir is None:
            return
        full = read_config(self.run_dir)
        if full:
            train = full.get("train")
            self.config = dict(train) if isinstance(train, dict) else {}
            self.trainer = detect_trainer(self.run_dir, full)

    def feed(self, records) -> None:
        for r in records:
            self._feed_one(r)
        self.version += 1

    def _feed_one(self, r: dict) -> None:
        ev = r.get("event")
        step = _int(r.get("step"))
        if isinstance(r.get("time"), (int, float)):
            self.last_time = float(r["time"])
        if ev in ("start", "resume"):
            self._rewind(step or 0)
            self.sessions.append({"event": ev, "step": step or 0, "time": r.get("time")})
            self.ended = None
            if 1 <= (_int(r.get("num_stages")) or 0) <= MAX_STAGES:
                self._num_stages = _int(r["num_stages"])
            if ev == "start" and _int(r.get("active_stages")):
                self._initial_active = _int(r["active_stages"])
            self.step = step or 0
            if isinstance(r.get("kimg"), (int, float)):
                self.kimg = float(r["kimg"])
            return
        if ev == "end":
            self.ended = str(r.get("reason", "done"))
            self._reached(step, r.get("kimg"))  # a run shorter than --log-every logged no training record
            self.sessions.append({"event": "end", "step": step, "reason": self.ended, "time": r.get("time")})
            return
        if ev == "abort_check":
            if step is None or not isinstance(r.get("signal"), (int, float)):
                return
            prev = r.get("prev")
            self.checks.append(AbortCheck(step, float(r["signal"]), float(prev) if isinstance(prev, (int, float)) else None,
                                          _int(r.get("abort_count")) or 0, _int(r.get("active_stages")) or 0))
            return
        if ev == "abort":
            if step is None:
                return
            self.aborts.append(AbortEvent(step, _int(r.get("dropped_stage")) or 0, _int(r.get("active_stages")) or 0))
            return
        if ev is not None and ev != "eval":
            return  # progressive, ...: not drawn
        if step is None:
            return
        prefix = "eval/" if ev == "eval" else ""
        self._reached(step, r.get("kimg"))
        for k, v in r.items():
            if k in META_KEYS or k.startswith("sec_per") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(v):
                self.curves.setdefault(prefix + k, []).append((step, float(v)))
        if ev == "eval":
            return
        self.records += 1
        self.step = max(self.step, step)
        if isinstance(r.get("kimg"), (int, float)):
            self.kimg = float(r["kimg"])
        if isinstance(r.get("sec_per_step"), (int, float)):
            self.sec_per_step = float(r["sec_per_step"])
        if isinstance(r.get("sec_per_kimg"), (int, float)):
            self.sec_per_kimg = float(r["sec_per_kimg"])
            batch = self.config.get("batch")
            if "sec_per_step" not in r and isinstance(batch, int) and batch > 0:
                self.sec_per_step = self.sec_per_kimg * batch / 1000  # the generator logs s/kimg
        if isinstance(r.get("stage_passes"), (int, float)):
            self.stage_passes = int(r["stage_passes"])

    def _reached(self, step: int | None, kimg) -> None:
        """The run got to ``step`` (and ``kimg``) according to a record."""
        if step is not None and step >= self.step:
            self.step = step
            if isinstance(kimg, (int, float)) and not isinstance(kimg, bool) and math.isfinite(kimg):
                self.kimg = float(kimg)

    def _rewind(self, step: int) -> None:
        """Forget what was logged after ``step`` (a resumed run repeats the steps after its snapshot)."""
        for k in list(self.curves):
            self.curves[k] = [p for p in self.curves[k] if p[0] <= step]
            if not self.curves[k]:
                del self.curves[k]
        self.checks = [c for c in self.checks if c.step <= step]
        self.aborts = [a for a in self.aborts if a.step <= step]
        self.step = min(self.step, step)

    # -- derived --------------------------------------------------------------------------------

    @property
    def loss_terms(self) -> list[str]:
        """Training-loss curves (``loss*`` keys), ``loss_total`` first."""
        keys = [k for k in self.curves if k.startswith("loss")]
        return sorted(keys, key=lambda k: (k != "loss_total", k))

    @property
    def num_stages(self) -> int:
        if self._num_stages:
            return self._num_stages
        if self.config.get("arch") == "e2style":
            s = self.config.get("stages")
            return s if isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_STAGES else 1
        return 1

    @property
    def patience(self) -> int | None:
        p = self.config.get("abort_patience")
        return int(p) if isinstance(p, int) else None

    @property
    def abort_mode(self) -> str | None:
        return self.config.get("abort") if self.trainer == "encoder" or "abort" in self.config else None

    @property
    def abort_threshold(self) -> float | None:
        t = self.config.get("abort_threshold")
        return float(t) if isinstance(t, (int, float)) else None

    @property
    def abort_count(self) -> int:
        return self.checks[-1].abort_count if self.checks else 0

    @property
    def active_stages(self) -> int:
        n = self.num_stages
        if self.aborts:
            return self.aborts[-1].active_stages
        return self._initial_active or n

    def stage_lanes(self) -> list[StageLane]:
        """One lane per stage: active, or aborted with the step of its abort."""
        dropped = {a.dropped_stage: a.step for a in self.aborts}
        active = self.active_stages
        lanes = []
        for k in range(1, self.num_stages + 1):
            at = dropped.get(k)
            lanes.append(StageLane(k, k <= active and at is None, at))
        return lanes

    @property
    def target_steps(self) -> int | None:
        s = self.config.get("steps")
        return int(s) if isinstance(s, int) and s > 0 else None

    @property
    def target_kimg(self) -> float | None:
        k = self.config.get("kimg")
        return float(k) if isinstance(k, (int, float)) and k > 0 else None

    @property
    def progress(self) -> float | None:
        """Fraction of the training target done (steps, or kimg for the generator)."""
        if self.target_steps:
            return min(1.0, self.step / self.target_steps)
        if self.target_kimg:
            return min(1.0, self.kimg / self.target_kimg)
        return None

    @property
    def eta_seconds(self) -> float | None:
        """Training time left at the latest speed (evaluations not included)."""
        if self.target_steps and self.sec_per_step is not None:
            return max(0, self.target_steps - self.step) * self.sec_per_step
        if self.target_kimg and self.sec_per_kimg is not None:
            return max(0.0, self.target_kimg - self.kimg) * self.sec_per_kimg
        return None

    def compute(self) -> dict[str, float]:
        """Stage-passes so far against a fixed-N run of the same steps (METHODS.md §4).

        ``actual`` = sum over steps of the active stages, ``fixed`` = steps x N, ``saved`` = the
        difference and ``saved_fraction`` = saved / fixed. Steps after an abort at step s run one
        stage fewer, so ``saved = sum over aborts of (step - s)``.
        """
        n, step = self.num_stages, self.step
        start_active = self._initial_active or n
        fixed = step * n
        saved = step * (n - start_active) + sum(max(0, step - a.step) for a in self.aborts)
        actual = fixed - saved
        return {"actual": float(actual), "fixed": float(fixed), "saved": float(saved),
                "saved_fraction": saved / fixed if fixed else 0.0}

    def latest_sample(self) -> Path | None:
        """The newest sample grid the trainer wrote (``samples/latest.png`` or the newest PNG)."""
        if self.run_dir is None:
            return None
        d = self.run_dir / "samples"
        p = d / "latest.png"
        if p.is_file():
            return p
        pngs = [q for q in d.glob("*.png") if q.is_file()] if d.is_dir() else []
        return max(pngs, key=lambda q: q.stat().st_mtime) if pngs else None

    def latest_snapshot(self) -> Path | None:
        return latest_snapshot(self.run_dir) if self.run_dir is not None else None

    @property
    def running(self) -> bool:
        """A session started and has not logged its end (it may still have been killed)."""
        return bool(self.sessions) and self.ended is None


def _int(x) -> int | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # JSON allows Infinity, NaN
    return int(x) if ok else None


# ----------------------------------------------------------------------------
# Launching


@dataclass(frozen=True)
class FlagSpec:
    """One trainer flag as the Training window's form shows it.

    ``kind``: 'int' | 'float' | 'str' | 'path' (a file) | 'dir' (a folder) | 'choice' | 'switch'
    (a flag without value, given when True). ``default`` None: the trainer's own default (flag left out).
    ``minimum``: the smallest value :func:`build_command` lets through, for the flags a trainer does not
    check itself and would crash on (``--threads -1``: a traceback from torch) or misread
    (``--max-images -1``: one image fewer); None: any value (the trainer says what it refuses).
    """

    flag: str
    kind: str = "str"
    default: Any = None
    choices: tuple = ()
    label: str = ""
    tip: str = ""
    only: dict = field(default_factory=dict)   # shown only when other options have these values
    minimum: float | None = None

    @property
    def key(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    module: str
    label: str
    flags: tuple[FlagSpec, ...]
    target: str = "steps"          # the option that sets the run's length ('steps' or 'kimg')
    loads_in_editor: bool = True   # snapshots are generator / encoder models the editor can open


def _f(flag, kind="str", default=None, choices=(), label="", tip="", minimum=None, **only) -> FlagSpec:
    return FlagSpec(flag, kind, default, tuple(choices), label or flag.lstrip("-").replace("-", " "), tip, only,
                    minimum)


_COMMON_TAIL = (
    _f("--device", "choice", None, ("auto", "cpu", "cuda"), tip="auto: CUDA when PyTorch sees a GPU"),
    _f("--threads", "int", None, tip="CPU threads per process (0: all)", minimum=0),
    _f("--log-every", "int", None, tip="steps between metrics.jsonl records", minimum=1),
    _f("--snapshot-every", "int", None, tip="steps between snapshots", minimum=0),
    _f("--max-steps", "int", None, tip="stop this invocation at this step (resumable)", minimum=1),
    _f("--seed", "int", None, tip="seed of every random draw (default 0)"),
    _f("--desc", "str", None, tip="run name suffix"),
)

_RUNS = "folder the numbered run directory is created in"
#: Where the training window puts runs by default: an absolute folder, not one relative to wherever
#: the app was started from (``STYLESTUDIO_RUNS_DIR`` overrides it).
DEFAULT_RUNS = Path(os.environ.get("STYLESTUDIO_RUNS_DIR") or Path.home() / "StyleStudio" / "runs")

TRAINERS: dict[str, TrainerSpec] = {
    "encoder": TrainerSpec("encoder", "trainers.encoder", "Encoder (pSp / e4e / E2Style / SAE)", (
        _f("--arch", "choice", "e2style", ("psp", "e4e", "e2style", "sae"),
           tip="pSp, e4e, E2Style (stages + abortion) or SAE (pSp with CBAM attention)"),
        _f("--model", "path", None, label="generator", tip="frozen generator checkpoint (empty: the default pack)"),
        _f("--data", "dir", None, tip="folder of aligned faces (empty: the generator's own samples)"),
        _f("--max-images", "int", None, tip="use at most this many images of --data", minimum=1),
        _f("--out", "dir", str(DEFAULT_RUNS), label="runs folder", tip=_RUNS),
        _f("--size", "choice", "light", ("light", "official"),
           tip="light: a small ResNet at the generator's resolution; official: IR-SE-50 at 256 px"),
        _f("--width", "int", None, tip="light: channels of the first stage (default 32)"),
        _f("--depth", "choice", None, ("10", "18", "34"), tip="light: ResNet depth (default 18)"),
        _f("--stages", "int", 3, tip="E2Style stages N", arch="e2style"),
        _f("--abort", "choice", "relative", ("relative", "absolute", "off"), tip="abortion mode (METHODS.md §4)",
           arch="e2style"),
        _f("--abort-threshold", "float", None, tip="absolute mode: the loss a stage must get below", arch="e2style"),
        _f("--abort-patience", "int", 10, tip="checks without improvement before the last stage is dropped",
           arch="e2style"),
        _f("--check-every", "int", 50, tip="steps between abortion checks", arch="e2style"),
        _f("--min-stages", "int", 1, tip="abortion never drops below this many stages", arch="e2style"),
        _f("--min-delta", "float", None, tip="smallest loss decrease that counts as an improvement", arch="e2style"),
        _f("--abort-signal", "choice", None, ("train", "heldout"),
           tip="train: EMA of the last stage's loss; heldout: LPIPS at each evaluation", arch="e2style"),
        _f("--batch", "int", 8, tip="images per step, over all processes"),
        _f("--steps", "int", 20000, tip="training length (the learning-rate decay is planned over it)"),
        _f("--lr", "float", None, tip="Adam learning rate (default 1e-4)"),
        _f("--lambda-lpips", "float", None, tip="weight of the LPIPS loss (default 0.8)"),
        _f("--lpips-net", "choice", None, ("vgg", "alex"),
           tip="LPIPS of the training loss: vgg (the metric the benchmarks use) or alex (far cheaper)"),
        _f("--eval-every", "int", None, tip="steps between held-out evaluations (0: none)", minimum=0),
        _f("--eval-batch", "int", None, tip="held-out images per evaluation (default 32)", minimum=1),
        *_COMMON_TAIL)),
    "gan": TrainerSpec("gan", "trainers.stylegan2", "Generator (StyleGAN2)", (
        _f("--data", "dir", None, tip="folder of face images"),
        _f("--max-images", "int", None, tip="use at most this many images of --data", minimum=1),
        _f("--out", "dir", str(DEFAULT_RUNS), label="runs folder", tip=_RUNS),
        _f("--cfg", "choice", "cpu64", ("cpu64", "cpu64-wide", "cpu128", "gpu128", "tiny"), label="preset",
           tip="architecture preset: resolution, latent sizes, channels and batch"),
        _f("--d", "choice", None, ("projected", "residual"), label="discriminator",
           tip="projected: frozen ImageNet features (faces soonest); residual: the paper's, with R1"),
        _f("--kimg", "float", 100.0, tip="stop after this many thousand images shown"),
        _f("--batch", "int", None, tip="images per step, over all processes (default: the preset's)"),
        _f("--augment", "choice", None, ("ada", "diffaugment", "none"),
           tip="ada: augment as much as D overfits; diffaugment: always; none"),
        _f("--lr-g", "float", None, tip="generator learning rate (default 0.0025)"),
        _f("--lr-d", "float", None, tip="discriminator learning rate (default 0.0025)"),
        _f("--lr-decay-kimg", "float", None, tip="both learning rates fall linearly to 0 over this many kimg "
                                                   "from where the run begins (0: constant)"),
        _f("--ema-kimg", "float", None, tip="half-life of the G average (G_ema) in kimg", minimum=0),
        _f("--sample-every-kimg", "float", None, tip="kimg between sample grids (0: never)", minimum=0),
        _f("--snapshot-every-kimg", "float", None, tip="kimg between snapshots", minimum=0),
        _f("--metrics-every-kimg", "float", None, tip="kimg between FD-VGG16 evaluations (0: never)", minimum=0),
        _f("--fd-samples", "int", None, tip="images per side of the FD-VGG16 evaluation (0: off)", minimum=0),
        _f("--device", "choice", None, ("auto", "cpu", "cuda"), tip="auto: CUDA when PyTorch sees a GPU"),
        _f("--threads", "int", None, tip="CPU threads per process (0: all)", minimum=0),
        _f("--log-every", "int", None, tip="steps between metrics.jsonl records", minimum=1),
        _f("--max-steps", "int", None, tip="stop this invocation at this step (resumable)", minimum=1),
        _f("--seed", "int", None, tip="seed of every random draw (default 0)"),
        _f("--desc", "str", None, tip="run name suffix")), target="kimg"),
    "crg": TrainerSpec("crg", "trainers.crg", "CRG encoder", (
        _f("--model", "path", None, label="generator", tip="frozen generator checkpoint (empty: the default pack)"),
        _f("--out", "dir", str(DEFAULT_RUNS), label="runs folder", tip=_RUNS),
        _f("--space", "choice", None, ("z", "w"), tip="latent space the encoder predicts (default z, as the paper)"),
        _f("--size", "choice", None, ("small", "vgg19", "tiny"), tip="encoder size (vgg19: the paper's)"),
        _f("--batch", "int", None, tip="generated images per step (default 16)"),
        _f("--steps", "int", None, tip="training steps at most (it also stops when validation stops improving)"),
        _f("--lr", "float", None, tip="Adam learning rate (default 1e-4)"),
        _f("--eval-every", "int", None, tip="steps between validations"),
        _f("--val-samples", "int", None, tip="generated images in the validation set"),
        _f("--init", "path", None, label="start from",
           tip="a model file or pack whose CRG encoder the weights start from (empty: random); refits an "
               "encoder to a fine-tuned generator in far fewer steps (same space and size)"),
        *_COMMON_TAIL)),
    "distill": TrainerSpec("distill", "trainers.distill", "Mixing student (distillation)", (
        _f("--generator", "path", None, label="teacher generator",
           tip="generator whose style mixes the student learns (empty: the default pack)"),
        _f("--data", "path", None, tip="triplet data set .npz (empty: rendered on the fly)"),
        _f("--out", "dir", str(DEFAULT_RUNS), label="runs folder", tip=_RUNS),
        _f("--group", "choice", None, ("medium", "fine"), tip="which style rows the student mixes (default medium)"),
        _f("--size", "choice", None, ("small", "paper", "tiny"), tip="student and discriminator size"),
        _f("--batch", "int", None, tip="triplets per step"),
        _f("--steps", "int", None, tip="training steps (sets the learning-rate decay)"),
        _f("--lr", "float", None, tip="Adam learning rate"),
        _f("--eval-every", "int", None, tip="steps between validations"),
        _f("--init", "path", None, label="start from",
           tip="a student file or model pack whose student the weights start from (empty: random); "
               "refits a student to a fine-tuned generator in far fewer steps"),
        *_COMMON_TAIL), loads_in_editor=False),
}

def _python() -> str:
    return sys.executable or "python3"


def _launch(spec: TrainerSpec, python: str | None) -> list[str]:
    """The start of a trainer's command line: ``python -m trainers.X``, or inside a frozen (PyInstaller)
    app, whose executable is the app itself, ``stylestudio train NAME``."""
    if python is None and getattr(sys, "frozen", False):
        return [sys.executable, "train", spec.name]
    return [python or _python(), "-m", spec.module]


def visible_flags(spec: TrainerSpec, options: dict) -> list[FlagSpec]:
    """The flags that apply given the other options (e.g. abortion flags only for e2style)."""
    out = []
    for fs in spec.flags:
        if all(str(options.get(k, _default_of(spec, k))) == str(v) for k, v in fs.only.items()):
            out.append(fs)
    return out


def _default_of(spec: TrainerSpec, key: str):
    for fs in spec.flags:
        if fs.key == key:
            return fs.default
    return None


def build_command(trainer: str, options: dict[str, Any], *, python: str | None = None,
                  extra: list[str] | None = None) -> list[str]:
    """``[python, -m, trainers.<x>, --flag, value, ...]`` for ``options`` (keys: flag names without
    dashes, ``_`` or ``-``); None / '' / False values are left out (the trainer's default applies).
    Unknown keys, and a number below its flag's ``minimum``, raise ValueError naming the flag."""
    spec = TRAINERS[trainer]
    opts = {k.replace("-", "_"): v for k, v in options.items()}
    known = {fs.key: fs for fs in spec.flags}
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ValueError(f"{trainer} trainer has no flag(s) {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    cmd = [*_launch(spec, python), "--no-tqdm"]
    shown = {fs.key for fs in visible_flags(spec, opts)}
    for fs in spec.flags:
        if fs.key not in opts or fs.key not in shown:
            continue
        v = opts[fs.key]
        if v is None or v == "" or v is False:
            continue
        if fs.kind == "switch":
            cmd.append(fs.flag)
            continue
        if (fs.minimum is not None and isinstance(v, (int, float)) and not isinstance(v, bool)
                and not v >= fs.minimum):  # NaN too
            raise ValueError(f"{fs.flag} must be {fs.minimum:g} or more, got {_fmt(v)}"
                             + (f" ({fs.tip})" if fs.tip else ""))
        cmd += [fs.flag, _fmt(v)]
    return cmd + list(extra or [])


def resume_command(run_dir: str | Path, trainer: str | None = None, *, python: str | None = None,
                   extra: list[str] | None = None) -> list[str]:
    """The command that continues ``run_dir`` (``--resume RUN_DIR``; its config.json is used)."""
    trainer = trainer or detect_trainer(run_dir)
    if trainer not in TRAINERS:
        raise ValueError(f"{run_dir}: cannot tell which trainer wrote this run (config.json missing or unknown)")
    return [*_launch(TRAINERS[trainer], python), "--resume", str(run_dir), "--no-tqdm",
            *(extra or [])]


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def trainer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a trainer process: this checkout importable, unbuffered output."""
    env = dict(os.environ if base is None else base)
    root = str(REPO_ROOT)
    pp = env.get("PYTHONPATH", "")
    if root not in pp.split(os.pathsep):
        env["PYTHONPATH"] = root + (os.pathsep + pp if pp else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


RUN_DIR_RE = re.compile(r"run directory: (.+?)\s*$", re.MULTILINE)


def run_dir_from_log(text: str) -> Path | None:
    """The run directory a trainer announced on stderr (``... trainers: run directory: X``)."""
    m = None
    for m in RUN_DIR_RE.finditer(text):
        pass
    return Path(m.group(1)) if m else None


def new_run_dirs(out: str | Path, before: set[str]) -> list[Path]:
    """Run directories (with a config.json) under ``out`` whose names are not in ``before``."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name not in before and (p / "config.json").is_file())
