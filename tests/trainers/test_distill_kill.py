"""The distillation trainer killed with SIGKILL right after a snapshot: every file of the run directory
loads, and ``--resume`` continues from the last snapshot (the other trainers' kill tests live beside
their trainer tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from studio.core.distill import load_student
from studio.core.formats import safe_torch_load, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.stylegan2 import Generator
from tests.trainers.run_checks import assert_run_dir_intact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, 32)).mean(0))
    path = tmp_path_factory.mktemp("gen") / "tiny-g.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, meta={"licence": "test"}), path)
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _records(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a torn last line
    return out


@pytest.mark.slow
def test_kill9_then_resume(gen_file, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "trainers.distill", "--generator", str(gen_file), "--size", "tiny", "--batch", "2",
           "--lambda-vgg", "0", "--lambda-l1", "10", "--val-triplets", "4", "--eval-every", "4", "--log-every", "1",
           "--snapshot-every", "2", "--steps", "100000", "--threads", "1", "--no-tqdm", "--out", str(runs)]
    p = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline and p.poll() is None:
            found = list(runs.glob("*/resume.pt")) if runs.exists() else []
            if found and len(list((found[0].parent / "snapshots").glob("*.safetensors"))) >= 2:
                run = found[0].parent
                break
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert run is not None, p.stderr.read()[-3000:]
    assert assert_run_dir_intact(run)[".safetensors"] >= 2   # nothing truncated or corrupt
    killed_at = safe_torch_load(run / "resume.pt")["step"]
    assert killed_at >= 2 and killed_at % 2 == 0
    for snap in (run / "snapshots").glob("*.safetensors"):
        load_student(snap)
    json.loads((run / "config.json").read_text())

    r = subprocess.run([sys.executable, "-m", "trainers.distill", "--resume", str(run), "--no-tqdm",
                        "--max-steps", str(killed_at + 2)], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _records(run)
    resumed = next(i for i, x in enumerate(recs) if x.get("event") == "resume")
    assert recs[resumed]["step"] == killed_at
    assert recs[-1]["event"] == "end" and recs[-1]["step"] == killed_at + 2
    assert safe_torch_load(run / "resume.pt")["step"] == killed_at + 2
    assert_run_dir_intact(run)
