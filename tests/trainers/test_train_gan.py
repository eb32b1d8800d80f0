"""The StyleGAN2 trainer end to end on tiny configs: run directory contract, lazy intervals,
bit-exact resume, kill -9 + resume, and torchrun (2 processes, gloo) vs one process."""

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

from studio.core.formats import load_checkpoint, safe_torch_load
from tests.trainers.run_checks import assert_run_dir_intact
from trainers.common import UserError
from trainers.stylegan2 import PRESETS, TrainConfig, Trainer, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(48):
        a = np.zeros((32, 32, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
        a[8:24, 10:22] = rng.integers(0, 255, 3)
        Image.fromarray(a).save(d / f"{i:03d}.png")
    return d


def tiny_cfg(data_dir, tmp_path, **kw) -> TrainConfig:
    cfg = TrainConfig(cfg="tiny", **PRESETS["tiny"])
    cfg.data = str(data_dir)
    cfg.data_cache = str(tmp_path / "cache")
    cfg.fd_samples = 0
    cfg.metrics_every_kimg = 0
    cfg.sample_every_kimg = 0
    cfg.snapshot_every_kimg = 0
    cfg.heldout_fraction = 0.1
    cfg.log_every = 1
    cfg.threads = 1
    cfg.r1_every = 2
    cfg.pl_every = 3
    cfg.d = "residual"  # the paper's D (R1); the projected D has its own test
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.G.state_dict().items()}


def test_run_directory_contract_and_lazy_intervals(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=6, sample_every_kimg=0.016, snapshot_every_kimg=0.024)
    t = Trainer(cfg, run, tqdm_bar=False)
    t.run()
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss_g" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    # R1 on steps 0, 2, 4 (logged after the step counter moved), path length on 0 and 3
    assert [r["step"] - 1 for r in steps if "r1" in r] == [0, 2, 4]
    assert [r["step"] - 1 for r in steps if "pl_penalty" in r] == [0, 3]
    for r in steps:
        assert {"kimg", "loss_d", "loss_g", "augment_p", "sec_per_kimg", "rss_mb"} <= set(r)
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end"
    assert (run / "resume.pt").is_file() and list((run / "samples").glob("fakes*.png"))
    snaps = sorted((run / "snapshots").glob("*.safetensors"))
    assert snaps
    b = load_checkpoint(snaps[-1])
    for k, v in t.G_ema.state_dict().items():
        assert torch.equal(b.generator.state_dict()[k], v), k
    assert list((run / "tb").glob("events.*"))


def test_resume_is_bit_exact(data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=6)
    full = Trainer(cfg, None, tqdm_bar=False)
    for _ in range(6):
        full.train_step()
    run = tmp_path / "run"
    run.mkdir()
    first = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=4), run, tqdm_bar=False)
    first.run()  # stops at max_steps and writes resume.pt
    second = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=6), run, resume_from=run / "resume.pt", tqdm_bar=False)
    assert second.step == 4
    for _ in range(2):
        second.train_step()
    a, b = _params(full), _params(second)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, v in full.G_ema.state_dict().items():
        assert torch.equal(v, second.G_ema.state_dict()[k]), k


def _cli(data_dir, tmp_path, *extra):
    return [sys.executable, "-m", "trainers.stylegan2", "--data", str(data_dir), "--cfg", "tiny", "--out",
            str(tmp_path / "runs"), "--data-cache", str(tmp_path / "cache"), "--fd-samples", "0",
            "--metrics-every-kimg", "0", "--no-tqdm", "--threads", "1", "--heldout-fraction", "0.1", "--discriminator", "residual",
            *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_extra_ema_copies_average_snapshot_and_resume(data_dir, tmp_path):
    """--ema-extra-kimg: each copy follows G with its own fixed half-life, is snapshotted under
    snapshots/ema<K>/ (float16) and resumes exactly."""
    kw = dict(ema_extra_kimg="0.05, 1", snapshot_every_kimg=0.016)
    full = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=6, **kw), None, tqdm_bar=False)
    assert sorted(full.G_ema_extra) == [0.05, 1.0]
    for _ in range(3):
        full.train_step()
    before = {k: {n: v.clone() for n, v in net.state_dict().items()} for k, net in full.G_ema_extra.items()}
    full.train_step()
    g = full.G.state_dict()
    for k, net in full.G_ema_extra.items():
        beta = 0.5 ** (full.cfg.batch / (k * 1000))
        for n, p in dict(full.G.named_parameters()).items():
            torch.testing.assert_close(net.state_dict()[n], g[n].lerp(before[k][n], beta), rtol=0, atol=1e-6)
    slow, fast = full.G_ema_extra[1.0].state_dict(), full.G_ema_extra[0.05].state_dict()
    assert any(not torch.equal(slow[n], fast[n]) for n in slow)
    for _ in range(2):
        full.train_step()

    run = tmp_path / "run"
    run.mkdir()
    first = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=4, **kw), run, tqdm_bar=False)
    first.run()
    snaps = sorted((run / "snapshots" / "ema1").glob("network-*kimg.safetensors"))
    assert snaps and sorted((run / "snapshots" / "ema0.05").glob("network-*kimg.safetensors"))
    b = load_checkpoint(snaps[-1])
    assert b.meta["provenance"]["ema_kimg"] == 1.0
    for n, v in first.G_ema_extra[1.0].state_dict().items():
        torch.testing.assert_close(b.generator.state_dict()[n], v, rtol=1e-3, atol=1e-3)  # float16
    second = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=6, **kw), run, resume_from=run / "resume.pt",
                     tqdm_bar=False)
    for _ in range(2):
        second.train_step()
    for k, net in full.G_ema_extra.items():
        for n, v in net.state_dict().items():
            assert torch.equal(second.G_ema_extra[k].state_dict()[n], v), (k, n)


def test_in_run_fd_keeps_the_best_of_each_average(data_dir, tmp_path, monkeypatch):
    """Each evaluation measures G_ema and every --ema-extra-kimg average; best.safetensors and
    best-ema<K>.safetensors hold the lowest-FD weights of each, and the bests survive --resume."""
    import trainers.metrics

    scores = iter([5.0, 9.0, 4.0, 3.0, 6.0, 8.0, 7.0, 1.0])  # per eval: G_ema, then ema1

    class FakeFD:
        def __init__(self, real, **kw):
            assert len(real) > 0

        def __call__(self, G, **kw):
            return {"fd_vgg16": next(scores), "kid_vgg16_x1000": 0.0}

    monkeypatch.setattr(trainers.metrics, "FDEvaluator", FakeFD)
    run = tmp_path / "run"
    run.mkdir()
    kw = dict(ema_extra_kimg="1", fd_samples=4, metrics_every_kimg=0.008)  # tiny: 8 images a step
    first = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=2, **kw), run, tqdm_bar=False)
    first.run()
    assert (first.best_fd, first.best_fd_extra) == (4.0, {"ema1": 3.0})
    best, best1 = load_checkpoint(run / "best.safetensors"), load_checkpoint(run / "best-ema1.safetensors")
    assert best.meta["provenance"]["fd_vgg16"] == 4.0
    assert best1.meta["provenance"]["fd_vgg16"] == 3.0 and best1.meta["provenance"]["ema_kimg"] == 1.0
    for n, v in first.G_ema_extra[1.0].state_dict().items():  # the last eval was the best: these weights
        torch.testing.assert_close(best1.generator.state_dict()[n], v, rtol=1e-3, atol=1e-3)  # float16
    second = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=4, **kw), run, resume_from=run / "resume.pt",
                     tqdm_bar=False)
    assert (second.best_fd, second.best_fd_extra) == (4.0, {"ema1": 3.0})
    second.run()  # step 3: 6.0 / 8.0, neither better; step 4: 7.0 / 1.0, only the average's best moves
    assert (second.best_fd, second.best_fd_extra) == (4.0, {"ema1": 1.0})
    assert load_checkpoint(run / "best.safetensors").meta["provenance"]["fd_vgg16"] == 4.0
    assert load_checkpoint(run / "best-ema1.safetensors").meta["provenance"]["fd_vgg16"] == 1.0
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(e["fd_vgg16"], e["fd_vgg16_ema1"]) for e in evals if e.get("event") == "eval"] == \
        [(5.0, 9.0), (4.0, 3.0), (6.0, 8.0), (7.0, 1.0)]


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "40;80", "nan"])
def test_extra_ema_refuses_nonsense(bad, data_dir, tmp_path):
    with pytest.raises(UserError, match="--ema-extra-kimg"):
        validate(tiny_cfg(data_dir, tmp_path, ema_extra_kimg=bad))


def test_kill9_then_resume(data_dir, tmp_path):
    cmd = _cli(data_dir, tmp_path, "--kimg", "1", "--snapshot-every-kimg", "0.008", "--sample-every-kimg", "0.016")
    p = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "runs"
    deadline = time.time() + 120
    run = None
    while time.time() < deadline:
        found = list(runs.glob("*/resume.pt")) if runs.exists() else []
        if found:
            run = found[0].parent
            snaps = list((run / "snapshots").glob("*.safetensors"))
            if len(snaps) >= 2:
                break
        time.sleep(0.05)
    assert run is not None, "no snapshot appeared"
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # Nothing in the run directory is truncated or corrupt.
    kinds = assert_run_dir_intact(run)
    assert kinds[".safetensors"] >= 2 and kinds[".png"] >= 1
    st = safe_torch_load(run / "resume.pt")
    killed_at = st["step"]
    assert killed_at >= 1
    for snap in (run / "snapshots").glob("*.safetensors"):
        load_checkpoint(snap)
    # Resume continues from the last snapshot to the end.
    r = subprocess.run([sys.executable, "-m", "trainers.stylegan2", "--resume", str(run), "--no-tqdm",
                        "--kimg", str((killed_at + 3) * 8 / 1000)], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert any(x.get("event") == "resume" and x["step"] == killed_at for x in recs)
    assert recs[-1]["event"] == "end" and recs[-1]["step"] >= killed_at + 3


@pytest.mark.slow
def test_torchrun_two_processes_match_one(data_dir, tmp_path):
    outs = {}
    for n in (1, 2):
        dump = tmp_path / f"dump{n}"
        dump.mkdir()
        env = _env()
        env["STYLESTUDIO_DUMP_RANK_STATE"] = str(dump)
        base = _cli(data_dir, tmp_path / f"w{n}", "--max-steps", "4", "--batch", "8", "--snapshot-every-kimg", "0",
                    "--sample-every-kimg", "0")
        cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + base[1:]
               if n == 2 else base)
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[n] = [torch.load(dump / f"G_rank{i}.pt", weights_only=True) for i in range(n)]
    one, (r0, r1) = outs[1][0], outs[2]
    for k in one:
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=0, msg=f"torchrun vs single process at {k}")


def test_compact_snapshot_round_trip(data_dir, tmp_path):
    from trainers.stylegan2 import export_compact

    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=3)
    from dataclasses import asdict

    from trainers.common import atomic_write_json

    atomic_write_json(run / "config.json", {"train": asdict(cfg)})
    a = Trainer(cfg, run, tqdm_bar=False)
    a.run()
    out = export_compact(run, tmp_path / "compact.safetensors")
    assert out.stat().st_size < 2_000_000
    b = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=5), None, resume_from=out, tqdm_bar=False)
    assert (b.step, b.cur_nimg) == (a.step, a.cur_nimg)
    for k, v in a.G_ema.state_dict().items():
        torch.testing.assert_close(b.G_ema.state_dict()[k], v, atol=2e-3, rtol=2e-3)
    assert torch.equal(b.gen.get_state(), a.gen.get_state())
    b.train_step()  # and it trains on
    assert b.step == a.step + 1


def test_compact_with_an_earlier_snapshot_as_g_ema(data_dir, tmp_path):
    """--export-compact --g-ema-from: G_ema from a chosen (earlier, better) network snapshot, G / D /
    counters the latest; build_pack reports that snapshot's kimg. A foreign generator is refused."""
    from dataclasses import asdict

    from studio.core.formats import load_checkpoint
    from trainers.common import UserError, atomic_write_json
    from trainers.pack.build_pack import generator_from
    from trainers.stylegan2 import export_compact, read_compact

    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=10, keep_snapshots=5)
    atomic_write_json(run / "config.json", {"train": asdict(cfg)})
    a = Trainer(cfg, run, tqdm_bar=False)
    for _ in range(2):
        a.train_step()
    a.save_snapshot(reason="test")
    first = sorted((run / "snapshots").glob("network-*.safetensors"))[0]
    for _ in range(2):
        a.train_step()
    a.save_snapshot(reason="test")
    meta, nets = read_compact(export_compact(run, tmp_path / "c.safetensors", g_ema_from=first))
    early = load_checkpoint(first).generator.state_dict()
    assert meta["g_ema_kimg"] == pytest.approx(float(first.name[8:16])) and meta["g_ema_from"] == first.name
    assert meta["cur_nimg"] == a.cur_nimg > meta["g_ema_kimg"] * 1000
    for k, v in nets["G_ema"].items():
        torch.testing.assert_close(v.float(), early[k].float(), atol=2e-3, rtol=2e-3)
    assert any(not torch.allclose(v.float(), a.G_ema.state_dict()[k].float(), atol=1e-3) for k, v in nets["G_ema"].items())
    for k, v in nets["G"].items():
        torch.testing.assert_close(v.float(), a.G.state_dict()[k].float(), atol=2e-3, rtol=2e-3)
    G, prov = generator_from(tmp_path / "c.safetensors")
    assert prov["kimg"] == pytest.approx(meta["g_ema_kimg"])

    from studio.core.nets.stylegan2 import Generator

    other = tmp_path / "other.safetensors"
    a._save_network(other, 1.0, net=Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=256,
                                              channel_max=16))
    with pytest.raises(UserError, match="--g-ema-from .*not a generator of this run's architecture"):
        export_compact(run, tmp_path / "bad.safetensors", g_ema_from=other)


def _trained_compact(data_dir, tmp_path, steps: int = 3) -> tuple[TrainConfig, Path]:
    """A tiny run trained ``steps`` steps in tmp_path/src and its compact snapshot: (config, file)."""
    from dataclasses import asdict

    from trainers.common import atomic_write_json
    from trainers.stylegan2 import export_compact

    src = tmp_path / "src"
    src.mkdir()
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=steps)
    atomic_write_json(src / "config.json", {"train": asdict(cfg)})
    Trainer(cfg, src, tqdm_bar=False).run()
    return cfg, export_compact(src, tmp_path / "compact.safetensors")


@pytest.mark.parametrize("which", ["mapping", "mapping+styles"])
def test_fine_tuning_the_mapping_of_a_snapshots_average(which, data_dir, tmp_path):
    """--g-train mapping[+styles] --g-from-ema: a new run from a compact snapshot starts its trained G
    at the snapshot's G_ema and moves only the mapping (and the style affines); the frozen weights stay
    bit for bit (G_ema's too: it averages equal values), and the path-length pass is off for 'mapping'."""
    _, compact = _trained_compact(data_dir, tmp_path)
    b = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=8, g_train=which, g_from_ema=True), None,
                resume_from=compact, tqdm_bar=False)
    start = _params(b)
    assert all(torch.equal(v, b.G_ema.state_dict()[k]) for k, v in start.items())  # G starts as G_ema
    assert b._pl_on() == (which != "mapping")
    b.run()
    end = _params(b)

    def trains(k: str) -> bool:
        return k.startswith("mapping.") or (which == "mapping+styles" and ".affine." in k)

    moved = {k for k in start if start[k].is_floating_point() and not torch.equal(start[k], end[k])}
    assert moved and all(trains(k) for k in moved - {"mapping.w_avg"})
    assert any(".affine." in k for k in moved) == (which == "mapping+styles")
    frozen = [k for k in start if k.startswith("synthesis.") and not trains(k)]
    assert frozen and all(torch.equal(b.G_ema.state_dict()[k], start[k]) for k in frozen)
    with pytest.raises(UserError, match="--g-train"):
        validate(tiny_cfg(data_dir, tmp_path, g_train="synthesis"))


def test_lr_decay_counts_from_where_the_run_began_and_resumes(data_dir, tmp_path):
    """--lr-decay-kimg: both learning rates fall linearly to --lr-decay-to x over that many kimg
    from the kimg the run began at (a compact snapshot's), and a --resume keeps counting from there."""
    cfg, compact = _trained_compact(data_dir, tmp_path)

    batch = cfg.batch
    kw = dict(lr_decay_kimg=4 * batch / 1000, lr_decay_to=0.2)  # over 4 steps, to 0.2 x
    run = tmp_path / "run"
    run.mkdir()
    a = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=5, **kw), run, resume_from=compact, tqdm_bar=False)
    base_g, base_d = a.opt_G.param_groups[0]["lr"], a.opt_D.param_groups[0]["lr"]
    a.run()  # steps 3 and 4: factors 1.0 and 0.8
    assert a.lr_decay_start_nimg == 3 * batch
    assert a.opt_G.param_groups[0]["lr"] == pytest.approx(base_g * 0.8)
    assert a.opt_D.param_groups[0]["lr"] == pytest.approx(base_d * 0.8)
    b = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=9, **kw), run, resume_from=run / "resume.pt", tqdm_bar=False)
    assert b.lr_decay_start_nimg == 3 * batch and b.lr_factor() == pytest.approx(0.6)
    factors = [b.train_step()["lr_factor"] for _ in range(4)]
    assert factors == pytest.approx([0.6, 0.4, 0.2, 0.2])          # then it stays at the floor
    assert b.opt_G.param_groups[0]["lr"] == pytest.approx(base_g * 0.2)
    plain = Trainer(tiny_cfg(data_dir, tmp_path, max_steps=1), None, tqdm_bar=False)
    assert "lr_factor" not in plain.train_step() and plain.lr_factor() == 1.0
    for bad in (dict(lr_decay_kimg=-1), dict(lr_decay_to=1.5), dict(lr_decay_to=float("nan"))):
        with pytest.raises(UserError, match="--lr-decay"):
            validate(tiny_cfg(data_dir, tmp_path, **bad))


def test_compact_snapshot_from_a_gpu_machine_continues_here(data_dir, tmp_path, monkeypatch):
    """A compact snapshot made on a GPU machine (device cuda, its own threads and data path) is
    continued on this one: the machine's settings are not carried over, the recipe is."""
    from dataclasses import asdict

    from safetensors.torch import load_file, save_file

    from trainers.common import atomic_write_json
    from trainers.stylegan2 import export_compact, parse_args

    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_cfg(data_dir, tmp_path, max_steps=2, batch=8, ema_kimg=3.0)
    atomic_write_json(run / "config.json", {"train": asdict(cfg)})
    Trainer(cfg, run, tqdm_bar=False).run()
    out = export_compact(run, tmp_path / "compact.safetensors")
    # rewrite its config as the GPU machine's
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        meta = json.loads(f.metadata()["stylestudio"])
    meta["config"].update(device="cuda", threads=16, data="/tmp/elsewhere/images", data_cache="/tmp/elsewhere/c",
                          out="/tmp/elsewhere/runs")
    save_file(load_file(str(out)), str(out), metadata={"stylestudio": json.dumps(meta)})

    got, _ = parse_args(["--resume-compact", str(out), "--data", str(data_dir), "--out", str(tmp_path / "r")])
    assert (got.device, got.threads, got.data_cache, got.lpips_dir) == ("auto", 0, None, None)
    assert (got.data, got.out) == (str(data_dir), str(tmp_path / "r"))
    assert (got.batch, got.ema_kimg, got.cfg) == (8, 3.0, "tiny")  # the recipe is kept
    got, _ = parse_args(["--resume-compact", str(out), "--data", str(data_dir), "--device", "cpu", "--threads", "1"])
    assert (got.device, got.threads) == ("cpu", 1)
    with pytest.raises(Exception, match="--data"):  # its own data path is not here: say so
        parse_args(["--resume-compact", str(out)])


def test_batch_that_the_discriminator_cannot_group_is_refused(data_dir, tmp_path):
    from trainers.common import UserError
    from trainers.stylegan2 import validate

    with pytest.raises(UserError, match="multiple of 4"):
        validate(tiny_cfg(data_dir, tmp_path, batch=6))
    validate(tiny_cfg(data_dir, tmp_path, batch=3))  # one group of 3
    validate(tiny_cfg(data_dir, tmp_path, batch=6, d="projected"))  # no minibatch stddev there


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_asked_for_without_cuda_says_what_to_do(name, monkeypatch):
    from trainers.common import UserError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="--device cpu"):
        resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "mps", "cuda:x"):
        with pytest.raises(UserError, match="--device"):
            resolve_device(bad)


def test_projected_discriminator_trains(data_dir, tmp_path):
    from studio.core.nets.perceptual import default_weight_dirs

    if not any((d / "alexnet_features_fp16.pth").is_file() for d in default_weight_dirs()):
        pytest.skip("AlexNet feature weights not available")
    t = Trainer(tiny_cfg(data_dir, tmp_path, d="projected"), None, tqdm_bar=False)
    backbone = {k: v.clone() for k, v in t.D.features.state_dict().items()}
    heads = {k: v.clone() for k, v in t.D.heads.state_dict().items()}
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    stats = [t.train_step() for _ in range(3)]
    assert all("r1" not in s for s in stats)  # hinge loss, no R1
    assert all(torch.equal(v, t.D.features.state_dict()[k]) for k, v in backbone.items())  # frozen
    assert any(not torch.equal(v, t.D.heads.state_dict()[k]) for k, v in heads.items())  # heads train
    assert any(not torch.equal(v, t.G.state_dict()[k]) for k, v in g0.items())  # G gets gradients through it
