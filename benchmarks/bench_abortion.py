"""The abortion method (METHODS.md §4): E2Style with N stages, abortion off vs relative vs absolute.

Each mode is one run of the encoder trainer (:mod:`trainers.encoder`, ``--arch e2style``, the light
backbone the default pack's encoder uses) with the same seed, data order, initial weights and step
count; runs are bit-identical until their first abort. For each mode the bench reports

* **stage-passes**: image x stage forward/backward passes over the whole run (the trainer's own
  counter, ``stage_passes`` in metrics.jsonl): the compute the abortion saves;
* **wall / train seconds**: the whole run, and the run less its periodic evaluations;
* **held-out MSE / LPIPS (VGG) / ID** of the *final* model (only its active stages) on the same
  held-out chips (the trainer's name-hash split; ``--n`` spread evenly over the name-sorted list, as
  bench_inversion.py picks them - UTKFace names start with the age; the trainer's periodic
  evaluations, the held-out curve, use the same chips): MSE of images in [-1, 1], LPIPS with
  :class:`studio.core.lpips.LPIPS` ('vgg'), identity = cosine similarity of dlib descriptors as
  ``benchmarks/bench_inversion.py`` measures it (mean over the faces where it could be measured);
* the abort steps.

Acceptance (issue 9): an aborting mode uses fewer stage-passes than 'off' with held-out LPIPS
within 2 % of off's. The verdict is printed for every aborting mode, whether it holds or not.

Schedule defaults are sized for the default 200-step CPU budget from the measured fixed-N curve
of this very setup (same seed: every mode follows it until its first abort). The signal is the EMA
of the last active stage's training loss, checked every ``--check-every 10`` steps, patience 4
checks (40 steps: the earliest abort). EMA(0.95) of stage 3's loss in the 'off' run: 0.32 at
step 10, 0.235 at 40, 0.183 at 80, 0.164 at 120, 0.145 at 200; its drop per check is 0.01-0.016
up to step 80, 0.002-0.0055 from 90 to 140 and noisy (-0.005 to +0.009) after. *relative*: a check
counts as non-improving unless the EMA (beta ``--abort-ema`` 0.95) fell by more than ``--min-delta
0.006`` since the previous one (a slope of 0.0006 / step: the curve gets flatter than that from
step ~90, so stage 3 goes at ~120); *absolute*: a check counts unless the EMA is below
``--abort-threshold 0.2``, which it reaches at step ~65 (stage 3 goes at 40). Both keep counting
afterwards and may drop stage 2 too (``--min-stages`` 1).
A longer budget (GPU) wants the METHODS.md defaults instead: ``--check-every 50 --patience 10
--abort-ema 0.98`` and a threshold read off its own curve.

    python benchmarks/bench_abortion.py                           # defaults: 200 steps, ~25 min on 1 CPU thread
    python benchmarks/bench_abortion.py --steps 2000 --device cuda --check-every 50 --patience 10
    python benchmarks/bench_abortion.py --modes off,relative --out /tmp/bench-abortion
    python benchmarks/bench_abortion.py --reevaluate --n 100          # re-measure the runs in --out

Writes to ``--out``: ``bench_abortion.json`` (settings, per-mode results, curves: training-loss
records, abortion checks, aborts, evaluations), ``bench_abortion.csv`` (the table),
``bench_abortion_curves.csv`` (one row per logged step and mode) and ``runs/<mode>/`` (each run's
directory: metrics.jsonl, samples, final snapshot).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.core.errors import StudioError  # noqa: E402
from trainers.encoder import EncoderTrainConfig, Trainer, resolve_defaults, validate  # noqa: E402

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

MODES = ("off", "relative", "absolute")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "utkface" / "images"
LPIPS_TOLERANCE = 0.02  # the acceptance: held-out LPIPS within 2 % of the fixed-N run's

# Schedule defaults (see the module docstring).
DEFAULT_SCHEDULE = {"check_every": 10, "abort_patience": 4, "abort_ema": 0.95, "min_delta": 0.006,
                    "abort_threshold": 0.2}


def pack_config(**kw) -> EncoderTrainConfig:
    """The pack encoder's recipe (trainers/pack/README.md) with N stages; ``kw`` overrides fields."""
    cfg = EncoderTrainConfig(arch="e2style", stages=3, size="light", width=32, depth=18,
                             data=str(DEFAULT_DATA),
                             synthetic_fraction=0.25, lpips_net="alex", lr=2e-4, batch=8, steps=200,
                             log_every=5, eval_every=50, eval_batch=50, snapshot_every=0, keep_snapshots=1,
                             threads=1, device="cpu", abort="off", **DEFAULT_SCHEDULE)
    for k, v in kw.items():
        setattr(cfg, k, v)
    if cfg.steps % cfg.log_every:  # the summary reads the last step's record: log it
        cfg.log_every = 1
    return cfg


# ----------------------------------------------------------------------------
# Held-out chips and the metrics of a final model


def heldout_batch(cfg: EncoderTrainConfig, size: int, n: int) -> torch.Tensor | None:
    """``n`` held-out chips of ``cfg.data`` (the trainer's name-hash split) spread evenly over the
    name-sorted list (UTKFace names start with the age: the first n would all be babies), as the
    trainer reads them ([n, 3, size, size] in [-1, 1]); None without data or held-out images."""
    from trainers.data import load_images

    if not cfg.data:
        return None
    held = load_images(cfg.data, size, split="heldout", heldout_fraction=cfg.heldout_fraction,
                       cache_dir=cfg.data_cache)
    if not len(held):
        return None
    idx = np.linspace(0, len(held) - 1, min(n, len(held))).round().astype(int)
    return held.batch(idx)


@torch.no_grad()
def final_metrics(pipeline, x: torch.Tensor, lpips_vgg, *, identity: bool = True) -> dict:
    """Held-out MSE / LPIPS (VGG) / identity of an encoder pipeline as it is (active stages only)."""
    from studio.core.projector import lpips_input
    from studio.core.tensors import to_uint8

    enc = pipeline.encoder
    was_training = enc.training
    enc.eval()
    try:
        rec = torch.cat([pipeline(x[i:i + 16])[0] for i in range(0, len(x), 16)]).clamp(-1, 1)
    finally:
        enc.train(was_training)
    lp = lpips_vgg(lpips_input(rec), lpips_input(x)).flatten()
    mse = F.mse_loss(rec, x, reduction="none").flatten(1).mean(1)
    out = {"faces": len(x), "active_stages": int(getattr(enc, "active_stages", 1)),
           "heldout_mse": float(mse.mean()), "heldout_lpips": float(lp.mean()),
           "lpips_per_face": [round(float(v), 6) for v in lp], "identity": None, "identity_faces": 0}
    if identity:
        from benchmarks.bench_inversion import identity as id_sim

        a, b = to_uint8(x), to_uint8(rec)
        ids = [id_sim(np.ascontiguousarray(a[i]), np.ascontiguousarray(b[i])) for i in range(len(x))]
        ok = [v for v in ids if v is not None]
        out["identity"] = float(np.mean(ok)) if ok else None
        out["identity_faces"] = len(ok)
    return out


# ----------------------------------------------------------------------------
# One run per mode


def read_metrics(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []


def summarize(run_dir: Path) -> dict:
    """Stage-passes, abort steps, times and curves of a finished run, from its metrics.jsonl."""
    recs = read_metrics(run_dir)
    train = [r for r in recs if "event" not in r]
    checks = [r for r in recs if r.get("event") == "abort_check"]
    aborts = [r for r in recs if r.get("event") == "abort"]
    evals = [r for r in recs if r.get("event") == "eval"]
    start = next(r for r in recs if r.get("event") == "start")
    end = [r for r in recs if r.get("event") == "end"][-1]
    wall = float(end["time"]) - float(start["time"])
    eval_sec = sum(float(r.get("eval_sec", 0.0)) for r in evals)
    return {"steps": int(end["step"]), "stage_passes": int(train[-1]["stage_passes"]) if train else 0,
            "final_active_stages": int(train[-1]["active_stages"]) if train else int(start["active_stages"]),
            "abort_steps": [int(a["step"]) for a in aborts], "wall_s": round(wall, 2),
            "train_s": round(wall - eval_sec, 2),
            "curves": {"train": train, "checks": checks, "aborts": aborts, "evals": evals}}


def run_mode(cfg: EncoderTrainConfig, run_dir: Path, *, n_heldout: int | None = None,
             identity: bool = True) -> dict:
    """Train one mode from scratch in ``run_dir`` (emptied first); its summary, metrics and curves.
    The trainer's evaluations and the final metrics use :func:`heldout_batch` (``n_heldout`` chips,
    default ``cfg.eval_batch``)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg)}, indent=1))
    trainer = Trainer(cfg, run_dir, tqdm_bar=False)
    x = heldout_batch(cfg, trainer.input_size, n_heldout or cfg.eval_batch)
    if x is not None:
        trainer.eval_x = x.to(trainer.device)  # the trainer's evaluations use the same chips
    trainer.run()
    s = summarize(run_dir)
    assert s["stage_passes"] == trainer.stage_passes and s["final_active_stages"] == trainer.active_stages
    t0 = time.perf_counter()
    fm = final_metrics(trainer.pipeline, trainer._eval_batch(), trainer.lpips("vgg"), identity=identity)
    return {"mode": cfg.abort, **s, **fm, "metrics_s": round(time.perf_counter() - t0, 2),
            "config": dataclasses.asdict(cfg), "run_dir": str(run_dir)}


def reevaluate_mode(cfg: EncoderTrainConfig, run_dir: Path, *, n_heldout: int, identity: bool = True) -> dict:
    """A finished run of :func:`run_mode` measured again from its final snapshot (no training)."""
    from studio.core.formats import load_checkpoint
    from studio.core.lpips import LPIPS

    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():  # the run's own data and split; this invocation's device
        cfg = dataclasses.replace(EncoderTrainConfig(**json.loads(cfg_path.read_text())["train"]), device=cfg.device)
    s = summarize(run_dir)
    snap = run_dir / "snapshots" / f"encoder-{s['steps']:07d}.safetensors"
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    pipe = load_checkpoint(snap).encoder.to(device).eval()
    x = heldout_batch(cfg, pipe.config.out_size, n_heldout)
    t0 = time.perf_counter()
    fm = final_metrics(pipe, x.to(device), LPIPS("vgg", cfg.lpips_dir).to(device).eval(), identity=identity)
    assert fm["active_stages"] == s["final_active_stages"]
    return {"mode": cfg.abort, **s, **fm, "metrics_s": round(time.perf_counter() - t0, 2),
            "config": dataclasses.asdict(cfg), "run_dir": str(run_dir), "reevaluated": str(snap)}


def verdicts(results: list[dict], tol: float = LPIPS_TOLERANCE) -> list[dict]:
    """For every mode but 'off': fewer stage-passes than off, and held-out LPIPS within ``tol``."""
    off = next((r for r in results if r["mode"] == "off"), None)
    out = []
    if off is None:
        return out
    for r in results:
        if r["mode"] == "off":
            continue
        saved = 1.0 - r["stage_passes"] / off["stage_passes"]
        rel = (r["heldout_lpips"] - off["heldout_lpips"]) / off["heldout_lpips"]
        fewer, within = r["stage_passes"] < off["stage_passes"], rel <= tol
        out.append({"mode": r["mode"], "aborted": bool(r["abort_steps"]), "passes_saved": saved,
                    "lpips_rel_diff": rel, "fewer_passes": fewer, "lpips_within_tol": within,
                    "accepted": fewer and within})
    return out


def run_bench(base: EncoderTrainConfig, out_dir: Path, *, modes=MODES, n_heldout: int | None = None,
              identity: bool = True, reevaluate: bool = False, log=print) -> dict:
    """Every mode in ``modes`` as its own run of ``base`` (abort mode replaced) in ``out_dir/runs/MODE``;
    ``reevaluate``: no training, measure the final snapshots of runs already there again."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for mode in modes:
        cfg = dataclasses.replace(base, abort=mode)
        run_dir = out_dir / "runs" / mode
        if reevaluate:
            log(f"# mode {mode}: re-evaluating {run_dir} ...")
            r = reevaluate_mode(cfg, run_dir, n_heldout=n_heldout or cfg.eval_batch, identity=identity)
        else:
            log(f"# mode {mode}: training {cfg.steps} steps ...")
            r = run_mode(cfg, run_dir, n_heldout=n_heldout, identity=identity)
        log(f"#   {mode}: {r['stage_passes']} stage-passes, aborts at {r['abort_steps'] or '-'}, "
            f"{r['wall_s']:.0f} s, held-out LPIPS {r['heldout_lpips']:.4f}")
        results.append(r)
    return {"results": results, "verdicts": verdicts(results)}


# ----------------------------------------------------------------------------
# Output


def format_table(bench: dict) -> str:
    res = bench["results"]
    off = next((r for r in res if r["mode"] == "off"), None)
    header = (f"{'mode':<9} {'steps':>5} {'stage-passes':>12} {'vs off':>7} {'stages':>6} {'wall s':>7} "
              f"{'train s':>7} {'MSE':>7} {'LPIPS':>7} {'vs off':>7} {'ID':>14}  abort steps")
    lines = [header]
    for r in res:
        vs = f"{r['stage_passes'] / off['stage_passes']:.0%}" if off else "-"
        lp_vs = f"{(r['heldout_lpips'] - off['heldout_lpips']) / off['heldout_lpips']:+.1%}" if off else "-"
        ident = f"{r['identity']:.3f} ({r['identity_faces']}/{r['faces']})" if r["identity"] is not None else "-"
        aborts = ", ".join(map(str, r["abort_steps"])) or "none"
        lines.append(f"{r['mode']:<9} {r['steps']:>5} {r['stage_passes']:>12} {vs:>7} {r['final_active_stages']:>6} "
                     f"{r['wall_s']:>7.0f} {r['train_s']:>7.0f} {r['heldout_mse']:>7.4f} {r['heldout_lpips']:>7.4f} "
                     f"{lp_vs:>7} {ident:>14}  {aborts}")
    for v in bench["verdicts"]:
        if not v["aborted"]:
            txt = "no abort happened within the budget (same stage-passes as off): acceptance not shown"
        else:
            txt = (f"{v['passes_saved']:.0%} fewer stage-passes, held-out LPIPS {v['lpips_rel_diff']:+.1%} vs off "
                   f"-> acceptance {'HOLDS' if v['accepted'] else 'does NOT hold'} "
                   f"(fewer passes: {v['fewer_passes']}, LPIPS within {LPIPS_TOLERANCE:.0%}: {v['lpips_within_tol']})")
        lines.append(f"{v['mode']}: {txt}")
    return "\n".join(lines)


def write_outputs(bench: dict, out_dir: Path, settings: dict) -> list[Path]:
    out_dir = Path(out_dir)
    js = out_dir / "bench_abortion.json"
    js.write_text(json.dumps({"settings": settings, **bench}, indent=1))
    table = out_dir / "bench_abortion.csv"
    cols = ["mode", "steps", "stage_passes", "final_active_stages", "abort_steps", "wall_s", "train_s",
            "heldout_mse", "heldout_lpips", "identity", "identity_faces", "faces"]
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in bench["results"]:
            w.writerow({c: (" ".join(map(str, r[c])) if c == "abort_steps" else r[c]) for c in cols})
    curves = out_dir / "bench_abortion_curves.csv"
    keys = sorted({k for r in bench["results"] for t in r["curves"]["train"] for k in t if k.startswith("loss_")})
    with open(curves, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "step", "stage_passes", "active_stages", *keys, "signal", "abort_count",
                    "heldout_lpips", "heldout_mse"])
        for r in bench["results"]:
            checks = {c["step"]: c for c in r["curves"]["checks"]}
            evals = {e["step"]: e for e in r["curves"]["evals"]}
            for t in r["curves"]["train"]:
                c, e = checks.get(t["step"], {}), evals.get(t["step"], {})
                w.writerow([r["mode"], t["step"], t["stage_passes"], t["active_stages"], *[t.get(k, "") for k in keys],
                            c.get("signal", ""), c.get("abort_count", ""), e.get("heldout_lpips", ""),
                            e.get("heldout_mse", "")])
    return [js, table, curves]


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--steps", type=_cli.int_at_least(1), default=200, help="training steps of every run (default 200)")
    ap.add_argument("--stages", type=_cli.int_at_least(1), default=3,
                    help="E2Style stages N (abortion needs 2 or more; 1 only with --modes off)")
    ap.add_argument("--modes", type=_cli.name_list(MODES, "mode"), default=",".join(MODES),
                    help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--model", default=None, help="frozen generator (default: the embedded pack)")
    ap.add_argument("--data", default=None, help=f"folder of aligned faces (default: {DEFAULT_DATA})")
    ap.add_argument("--n", type=_cli.int_at_least(1), default=50, help="held-out chips to evaluate on")
    ap.add_argument("--batch", type=_cli.int_at_least(2), default=8, help="training batch size")
    ap.add_argument("--lr", type=_cli.float_at_least(0, strict=True), default=2e-4, help="learning rate")
    ap.add_argument("--seed", type=_cli.int_at_least(0), default=0,
                    help="seed of every run (initial weights, data order)")
    ap.add_argument("--eval-every", type=_cli.int_at_least(0), default=50,
                    help="steps between held-out LPIPS curve points (0: none)")
    ap.add_argument("--check-every", type=_cli.int_at_least(1), default=DEFAULT_SCHEDULE["check_every"],
                    help="steps between abortion checks")
    ap.add_argument("--patience", type=_cli.int_at_least(1), default=DEFAULT_SCHEDULE["abort_patience"],
                    help="non-improving checks in a row before the last active stage is dropped")
    ap.add_argument("--abort-ema", type=_cli.float_in_range(0, 1, hi_open=True), default=DEFAULT_SCHEDULE["abort_ema"],
                    help="EMA beta of the training-loss signal, in [0, 1)")
    ap.add_argument("--min-delta", type=_cli.float_at_least(0), default=DEFAULT_SCHEDULE["min_delta"],
                    help="relative mode: the signal drop per check that counts as improving")
    ap.add_argument("--abort-threshold", type=_cli.float_at_least(0),
                    default=DEFAULT_SCHEDULE["abort_threshold"],
                    help="absolute mode: the signal level a stage must get below")
    ap.add_argument("--min-stages", type=_cli.int_at_least(1), default=1,
                    help="abortion never drops below this many stages (at most --stages)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--threads", type=_cli.int_at_least(0), default=1, help="torch threads (0: all cores)")
    ap.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")
    ap.add_argument("--reevaluate", action="store_true",
                    help="no training: measure the final snapshots of the runs already in --out again")
    ap.add_argument("--out", type=Path, default=Path("bench-abortion"), help="folder for the runs and the tables")
    return ap


def _finished(run_dir: Path) -> bool:
    """A run of :func:`run_mode` got to its end (metrics.jsonl holds the 'end' event)."""
    try:
        return any(r.get("event") == "end" for r in read_metrics(run_dir))
    except (OSError, ValueError):
        return False


def check_args(ap, a) -> None:
    """Checks of the parsed arguments made before any training: an argparse error (exit 2)."""
    if a.stages < 2 and any(m != "off" for m in a.modes):
        ap.error(f"--stages {a.stages}: abortion needs 2 or more stages; pass --stages 2 or more, or --modes off")
    if a.min_stages > a.stages:
        ap.error(f"--min-stages {a.min_stages} is more than --stages {a.stages}; pass --min-stages {a.stages} or less")
    _cli.check_device(ap, a.device, allow_auto=True)
    if a.model is not None:
        _cli.check_path(ap, a.model, "--model", "pass a model file or pack folder")
    if not a.reevaluate:
        _cli.check_image_dir(ap, a.data or DEFAULT_DATA, "--data", recursive=True,
                             hint="pass --data FOLDER of aligned faces")
    _cli.check_out_dir(ap, a.out, "--out")
    if a.reevaluate:
        for m in a.modes:
            if not _finished(a.out / "runs" / m):
                ap.error(f"--reevaluate: no finished '{m}' run in {a.out / 'runs' / m}; run without --reevaluate "
                         f"first, or pass the --out of an earlier run")


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    check_args(ap, a)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    modes = a.modes
    kw = {"steps": a.steps, "stages": a.stages, "batch": a.batch, "lr": a.lr, "seed": a.seed,
          "eval_every": a.eval_every, "eval_batch": a.n, "check_every": a.check_every, "abort_patience": a.patience,
          "abort_ema": a.abort_ema, "min_delta": a.min_delta, "abort_threshold": a.abort_threshold,
          "min_stages": a.min_stages, "device": a.device, "threads": a.threads, "out": str(a.out)}
    if a.model:
        kw["model"] = a.model
    if a.data:
        kw["data"] = a.data
    base = pack_config(**kw)
    for m in modes:  # the trainer's own checks, as its flags would fail them
        try:
            validate(resolve_defaults(dataclasses.replace(base, abort=m)))
        except StudioError as e:
            ap.error(f"the trainer refuses the settings of the '{m}' run: {e}")
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {a.device}")
    print(f"# e2style light w{base.width} d{base.depth}, N={base.stages}, batch {base.batch}, {base.steps} steps, "
          f"lr {base.lr}, seed {base.seed}, data {base.data} (synthetic {base.synthetic_fraction}), "
          f"model {base.model or 'default pack'}")
    print(f"# schedule: signal EMA(beta {base.abort_ema}) of the last stage's loss, check every {base.check_every} "
          f"steps, patience {base.abort_patience}, relative min_delta {base.min_delta}, absolute threshold "
          f"{base.abort_threshold}, min stages {base.min_stages}; held-out: {a.n} chips spread over the "
          f"name-sorted held-out split")
    t0 = time.perf_counter()
    bench = run_bench(base, a.out, modes=modes, n_heldout=a.n, identity=not a.no_identity, reevaluate=a.reevaluate)
    settings = {"argv": sys.argv if argv is None else ["bench_abortion.py", *argv], "base": dataclasses.asdict(base),
                "torch": torch.__version__, "machine": platform.machine(), "cores": os.cpu_count(),
                "total_s": round(time.perf_counter() - t0, 1)}
    print()
    print(format_table(bench))
    files = write_outputs(bench, a.out, settings)
    print(f"\n# total {settings['total_s']:.0f} s; wrote {', '.join(map(str, files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
