"""The CRG trainer (seed 003) on a tiny random generator: the plateau rule (lr halving / early stop)
replayed, validation loss going down, the best checkpoint as a working 'crg' encoder, bit-exact
resume, SIGTERM and kill -9 + resume from the command line, and torchrun (2 processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.core.formats import load_checkpoint, safe_torch_load, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.stylegan2 import Generator
from tests.trainers.run_checks import assert_run_dir_intact
from trainers.common import UserError
from trainers.crg import SIZES, CRGConfig, CRGTrainer, PlateauSchedule, parse_args

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    """A tiny random 16-px generator (with a measured w_avg) in our format."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, 32)).mean(0))
    path = tmp_path_factory.mktemp("gen") / "tiny-g.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, meta={"licence": "test"}), path)
    return path


def tiny_cfg(gen_file, **kw) -> CRGConfig:
    # lr 1e-3 (not the seed's 1e-4) so a few dozen steps show learning
    cfg = CRGConfig(model=str(gen_file), size="tiny", **SIZES["tiny"], dropout=0.0, lr=1e-3, val_samples=128,
                    eval_every=10, log_every=5, snapshot_every=0, threads=1)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


# -- the plateau rule ------------------------------------------------------------------------------


def _replay(vals, **kw):
    s = PlateauSchedule(**kw)
    return [s.update(v) for v in vals], s


def test_plateau_halves_after_10_and_stops_after_20():
    out, s = _replay([1.0] + [1.0] * 20)  # equal is not an improvement
    halves = [i for i, d in enumerate(out) if d["halve"]]
    stops = [i for i, d in enumerate(out) if d["stop"]]
    assert out[0]["improved"] and not any(d["improved"] for d in out[1:])
    assert halves == [10]  # the 10th evaluation without improvement; the 20th stops instead
    assert stops == [20] and s.since_best == 20


def test_plateau_improvement_resets_both_counts():
    vals = [1.0] + [2.0] * 9 + [0.5] + [0.6] * 10 + [0.7] * 10
    out, s = _replay(vals)
    assert [i for i, d in enumerate(out) if d["improved"]] == [0, 10]
    assert [i for i, d in enumerate(out) if d["halve"]] == [20]  # 10 after the improvement at 10
    assert [i for i, d in enumerate(out) if d["stop"]] == [30]
    assert s.best == 0.5


def test_plateau_halving_restarts_its_own_count_but_not_the_stop_count():
    out, _ = _replay([1.0] + [1.0] * 9, lr_patience=3, stop_patience=9)
    assert [i for i, d in enumerate(out) if d["halve"]] == [3, 6]  # every 3 without improvement
    assert [i for i, d in enumerate(out) if d["stop"]] == [9]  # 9 since the best, halvings or not


def test_plateau_min_delta_and_nan():
    out, s = _replay([1.0, 0.95, 0.8, float("nan")], min_delta=0.1, lr_patience=1, stop_patience=5)
    assert [d["improved"] for d in out] == [True, False, True, False]
    assert out[1]["halve"] and out[3]["halve"]
    st = s.state_dict()
    s2 = PlateauSchedule(min_delta=0.1, lr_patience=1, stop_patience=5)
    s2.load_state_dict(json.loads(json.dumps(st)))
    assert s2.update(0.5) == s.update(0.5) and s2.state_dict() == s.state_dict()


# -- training --------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["w", "z"])
def test_validation_loss_goes_down_and_best_checkpoint_inverts(gen_file, tmp_path, space):
    from studio.core.inversion import make_inverter
    from studio.core.nets.crg import CRGEncoder
    from studio.core.nets.encoding import EncoderPipeline

    run = tmp_path / "run"
    run.mkdir()
    steps = 60 if space == "w" else 40
    t = CRGTrainer(tiny_cfg(gen_file, space=space, steps=steps), run, tqdm_bar=False)
    _, targets = t.validation_set()
    baseline = float(targets.var(0, unbiased=False).mean())  # MSE of always predicting the mean
    initial = t.validate()
    t0 = time.time()
    assert t.run() == "done"
    elapsed = time.time() - t0
    recs = _records(run)
    logs = [r for r in recs if "loss" in r]
    evals = [r for r in recs if r.get("event") == "eval"]
    assert [r["step"] for r in logs] == list(range(5, steps + 1, 5))
    for r in logs:
        assert {"step", "loss", "lr", "sec_per_step"} <= set(r) and r["lr"] == 1e-3
    assert [r["step"] for r in evals] == list(range(10, steps + 1, 10))
    for r in evals:
        assert {"val_loss", "best_val_loss", "improved", "evals_without_improvement", "lr", "lr_halved",
                "val_img_mse"} <= set(r)
    vals = [r["val_loss"] for r in evals]
    assert vals[-1] < vals[0] < initial * 1.01, vals
    if space == "w":
        assert vals[-1] < 0.8 * baseline, (vals, baseline)  # it learned more than the mean
    assert recs[0]["event"] == "start" and recs[-1] == {**recs[-1], "event": "end", "reason": "done", "step": steps}
    assert (run / "resume.pt").is_file() and (run / "samples" / "latest.png").is_file()
    assert list((run / "tb").glob("events.*"))
    print(f"crg {space}: {steps} steps in {elapsed:.1f} s, val {initial:.4f} -> {vals[-1]:.4f} (mean: {baseline:.4f})")

    # the best checkpoint: our format, generator + a 'crg' encoder pipeline
    best = min(evals, key=lambda r: r["val_loss"])
    bundle = load_checkpoint(run / "best.safetensors")
    pipe = bundle.encoder
    assert isinstance(pipe, EncoderPipeline) and pipe.config.kind == "crg"
    assert isinstance(pipe.encoder, CRGEncoder) and pipe.encoder.config.space == space
    assert pipe.config.start_from_latent_avg == (space == "w")
    assert bundle.meta["provenance"]["step"] == best["step"]
    assert bundle.meta["provenance"]["val_loss"] == pytest.approx(best["val_loss"])
    assert bundle.meta["licence"] == "test"
    G = bundle.generator
    for k, v in t.G.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k
    if best["step"] == steps:  # the file holds the final encoder
        for k, v in t.E.state_dict().items():
            assert torch.equal(pipe.encoder.state_dict()[k], v.cpu()), k
    # it scores the validation set as the trainer did
    x, tg = t.validation_set()
    with torch.no_grad():
        pred = pipe.encoder(x)
    offset = t.latent_avg[0].cpu() if space == "w" else 0
    assert float(((pred - tg) ** 2).mean()) == pytest.approx(best["val_loss"], rel=1e-4)
    # and it works as the app's 'crg' inversion method
    inv = make_inverter("crg", G, {"crg": pipe})
    with torch.no_grad():
        img = G.synthesis(G.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(5))), noise_mode="const")
    face = ((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    res = inv.invert(face)
    assert res.latent_wplus.shape == (G.num_ws, G.w_dim) and res.reconstruction.shape == (16, 16, 3)
    assert np.isfinite(res.metrics["mse"]) and np.isfinite(res.metrics["lpips"])
    with torch.no_grad():
        want = pipe.encoder(inv.target(face))
        want = G.map(want)[0] if space == "z" else want[0] + offset
    if space == "w":
        want = want.unsqueeze(0).repeat(G.num_ws, 1)
    torch.testing.assert_close(res.latent_wplus, want, atol=1e-5, rtol=1e-5)


def test_lr_halving_and_early_stop_in_the_loop(gen_file, tmp_path):
    # min_delta that nothing beats: only the first evaluation improves (on inf)
    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(gen_file, eval_every=3, lr_patience=2, stop_patience=4, min_delta=1e9, steps=1000)
    t = CRGTrainer(cfg, run, tqdm_bar=False)
    assert t.run() == "early_stop"
    evals = [r for r in _records(run) if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6, 9, 12, 15]
    assert [r["improved"] for r in evals] == [True, False, False, False, False]
    assert [r["lr_halved"] for r in evals] == [False, False, True, False, False]
    assert [r["lr"] for r in evals] == [1e-3, 1e-3, 5e-4, 5e-4, 5e-4]
    assert [r["stop"] for r in evals] == [False] * 4 + [True]
    assert all(g["lr"] == 5e-4 for g in t.opt.param_groups)
    assert _records(run)[-1]["reason"] == "early_stop" and t.step == 15
    assert load_checkpoint(run / "best.safetensors").meta["provenance"]["step"] == 3
    # a resumed run that had already stopped stops at once
    t2 = CRGTrainer(cfg, run, resume_from=run / "resume.pt", tqdm_bar=False)
    assert t2.run() == "early_stop" and t2.step == 15


def test_resume_is_bit_exact_and_continues_the_step_count(gen_file, tmp_path):
    cfg = dict(dropout=0.2, steps=20)  # dropout: the global RNG state is part of the snapshot
    full = CRGTrainer(tiny_cfg(gen_file, **cfg), None, tqdm_bar=False)
    full.run()
    run = tmp_path / "run"
    run.mkdir()
    first = CRGTrainer(tiny_cfg(gen_file, max_steps=12, **cfg), run, tqdm_bar=False)
    assert first.run() == "max_steps"
    second = CRGTrainer(tiny_cfg(gen_file, **cfg), run, resume_from=run / "resume.pt", tqdm_bar=False)
    assert second.step == 12 and second.schedule.num_evals == 1
    assert second.run() == "done" and second.step == 20
    for k, v in full.E.state_dict().items():
        assert torch.equal(v, second.E.state_dict()[k]), k
    assert second.schedule.state_dict() == full.schedule.state_dict()
    recs = _records(run)
    assert [r["event"] for r in recs if "event" in r and r["event"] != "eval"] == ["start", "end", "resume", "end"]
    assert [r["step"] for r in recs if "loss" in r] == [5, 10, 15, 20]


def test_config_errors_name_the_flag(gen_file):
    with pytest.raises(UserError, match="--space"):
        CRGTrainer(tiny_cfg(gen_file, space="x"), None)
    with pytest.raises(UserError, match="--input-size"):
        CRGTrainer(tiny_cfg(gen_file, channels=[4, 4, 4, 4, 4], convs=[1, 1, 1, 1, 1]), None)
    with pytest.raises(UserError, match="--model"):
        CRGTrainer(tiny_cfg(gen_file, model=str(gen_file.parent / "missing.pt")), None)
    cfg, _ = parse_args(["--model", str(gen_file), "--size", "vgg19", "--space", "w", "--input-size", "64"])
    assert (cfg.channels, cfg.convs, cfg.hidden) == (SIZES["vgg19"]["channels"], SIZES["vgg19"]["convs"], 1024)
    assert (cfg.batch, cfg.lr, cfg.adam_eps, cfg.lr_patience, cfg.stop_patience) == (16, 1e-4, 1e-8, 10, 20)
    cfg, _ = parse_args(["--channels", "8,16", "--convs", "1,2"])
    assert cfg.model == "" and (cfg.channels, cfg.convs) == ([8, 16], [1, 2])


def test_default_model_is_the_pack():
    from trainers.crg import default_model

    pack = REPO / "resources" / "pack"
    if not (pack / "manifest.json").is_file():
        pytest.skip("no default pack in this checkout")
    assert default_model() == pack


# -- the command line ------------------------------------------------------------------------------


def _cli(gen_file, out, *extra):
    return [sys.executable, "-m", "trainers.crg", "--model", str(gen_file), "--size", "tiny", "--dropout", "0",
            "--lr", "1e-3", "--val-samples", "64", "--eval-every", "10", "--log-every", "5", "--threads", "1",
            "--out", str(out), "--no-tqdm", *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _wait_for(runs: Path, n_snaps: int, p: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(runs.glob("*/resume.pt")) if runs.exists() else []
        if found and len(list((found[0].parent / "snapshots").glob("*.safetensors"))) >= n_snaps:
            return found[0].parent
        assert p.poll() is None, "the trainer exited early"
        time.sleep(0.05)
    raise AssertionError("no snapshot appeared")


def test_sigterm_writes_a_snapshot(gen_file, tmp_path):
    p = subprocess.Popen(_cli(gen_file, tmp_path / "runs", "--snapshot-every", "5", "--steps", "100000"),
                         cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = _wait_for(tmp_path / "runs", 1, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    end = _records(run)[-1]
    assert end["event"] == "end" and end["reason"] == f"signal {int(signal.SIGTERM)}"
    assert safe_torch_load(run / "resume.pt")["step"] == end["step"]
    assert (run / "snapshots" / f"network-{end['step']:08d}.safetensors").is_file()
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["space"] == "z" and cfg["size"] == "tiny" and cfg["model"] == str(gen_file.resolve())


@pytest.mark.slow
def test_kill9_then_resume(gen_file, tmp_path):
    p = subprocess.Popen(_cli(gen_file, tmp_path / "runs", "--snapshot-every", "5", "--steps", "100000"),
                         cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = _wait_for(tmp_path / "runs", 2, p)
    time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # nothing in the run directory is truncated or corrupt
    assert assert_run_dir_intact(run)[".safetensors"] >= 2
    killed_at = safe_torch_load(run / "resume.pt")["step"]
    assert killed_at >= 10
    for snap in (run / "snapshots").glob("*.safetensors"):
        assert load_checkpoint(snap).encoder is not None
    if (run / "best.safetensors").exists():
        load_checkpoint(run / "best.safetensors")
    r = subprocess.run([sys.executable, "-m", "trainers.crg", "--resume", str(run), "--no-tqdm",
                        "--max-steps", str(killed_at + 10)], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = _records(run)
    assert any(x.get("event") == "resume" and x["step"] == killed_at for x in recs)
    assert recs[-1]["event"] == "end" and recs[-1]["step"] == killed_at + 10
    assert safe_torch_load(run / "resume.pt")["step"] == killed_at + 10


@pytest.mark.slow
def test_torchrun_two_processes_match_one(gen_file, tmp_path):
    # no BatchNorm and no dropout: then a global batch split over 2 ranks is the same computation
    outs = {}
    for n in (1, 2):
        dump = tmp_path / f"dump{n}"
        dump.mkdir()
        env = _env()
        env["STYLESTUDIO_DUMP_RANK_STATE"] = str(dump)
        base = _cli(gen_file, tmp_path / f"w{n}", "--max-steps", "6", "--no-batch-norm", "--snapshot-every", "0")
        cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + base[1:]
               if n == 2 else base)
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[n] = [torch.load(dump / f"E_rank{i}.pt", weights_only=True) for i in range(n)]
    one, (r0, r1) = outs[1][0], outs[2]
    for k in one:
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=1e-4, msg=f"torchrun vs single process at {k}")


def test_init_starts_from_another_crg_encoder(gen_file, tmp_path):
    """--init MODEL starts the encoder from that file's CRG encoder (weights equal), with a fresh
    Adam and step count; another space or size is refused, as is a file without a CRG encoder."""
    (tmp_path / "a").mkdir()
    t = CRGTrainer(tiny_cfg(gen_file, space="w", steps=10), tmp_path / "a", tqdm_bar=False)
    t.run()
    best = tmp_path / "a" / "best.safetensors"
    saved = load_checkpoint(best).encoder.encoder.state_dict()
    init = CRGTrainer(tiny_cfg(gen_file, space="w", init=str(best)), None, tqdm_bar=False)
    fresh = CRGTrainer(tiny_cfg(gen_file, space="w"), None, tqdm_bar=False)
    assert all(torch.equal(v, saved[k]) for k, v in init.E.state_dict().items())
    assert not all(torch.equal(v, saved[k]) for k, v in fresh.E.state_dict().items())
    assert init.step == 0 and not init.opt.state
    with pytest.raises(UserError, match=r"--init: .* different CRG encoder: space w \(here z\)"):
        CRGTrainer(tiny_cfg(gen_file, space="z", init=str(best)), None, tqdm_bar=False)
    with pytest.raises(UserError, match="--init: .* has no CRG encoder"):
        CRGTrainer(tiny_cfg(gen_file, space="w", init=str(gen_file)), None, tqdm_bar=False)
    cfg, _ = parse_args(["--init", str(best), "--space", "w", "--dry-run"])
    assert cfg.init == str(best.resolve())
