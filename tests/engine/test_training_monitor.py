"""The training monitor's engine (no Qt): tailing metrics.jsonl written incrementally (torn lines,
truncation, replacement, a restarted run), the run model's aggregates, and the trainer command lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from studio.engine.training import (
    TRAINERS,
    AbortCheck,
    AbortEvent,
    MetricsTailer,
    RunModel,
    StageLane,
    TextTailer,
    build_command,
    detect_trainer,
    latest_snapshot,
    new_run_dirs,
    resume_command,
    run_dir_from_log,
)

CONFIG = {"train": {"arch": "e2style", "stages": 3, "abort": "absolute", "abort_threshold": 0.0,
                    "abort_patience": 2, "check_every": 1, "min_stages": 1, "steps": 100, "batch": 4},
          "argv": ["/x/trainers/encoder.py", "--arch", "e2style"], "torch": "2"}


def line(**rec) -> bytes:
    return (json.dumps(rec) + "\n").encode()


def train_rec(step: int, active: int, passes: int) -> dict:
    return {"step": step, "kimg": step * 4 / 1000, "loss_l2": 1.0 / step, "loss_stage1": 2.0 / step,
            "loss_total": 3.0 / step, "lr": 1e-3, "sec_per_step": 0.5, "active_stages": active,
            "stage_passes": passes, "rss_mb": 100.0}


def synthetic_run(n_steps: int = 6) -> list[bytes]:
    """What the encoder trainer writes for e2style N=3, absolute threshold 0, patience 2, check every step."""
    out = [line(event="start", step=0, kimg=0, world_size=1, arch="e2style", num_stages=3, active_stages=3)]
    active, passes, count, prev = 3, 0, 0, None
    for s in range(1, n_steps + 1):
        passes += 4 * active
        count += 1
        sig = 1.0 / s
        out.append(line(event="abort_check", step=s, signal=sig, prev=prev, abort_count=count, active_stages=active))
        prev = sig
        if count >= 2 and active > 1:
            out.append(line(event="abort", step=s, dropped_stage=active, active_stages=active - 1))
            active -= 1
            count = 0
        out.append(line(**train_rec(s, active, passes)))
    return out


@pytest.fixture
def run_dir(tmp_path) -> Path:
    d = tmp_path / "00003-synthetic-e2style3-light"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CONFIG))
    return d


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ----------------------------------------------------------------------------


def test_tailer_reads_incrementally_and_keeps_a_torn_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    t = MetricsTailer(p)
    assert t.poll() == ([], False)  # no file yet
    append(p, line(step=1) + line(step=2))
    assert t.poll() == ([{"step": 1}, {"step": 2}], False)
    assert t.poll() == ([], False)
    whole = line(step=3, loss=0.5)
    append(p, whole[:7])  # torn: no newline yet
    assert t.poll() == ([], False)
    assert t.pending == whole[:7]
    append(p, whole[7:-1])
    assert t.poll() == ([], False)
    append(p, b"\n" + line(step=4))
    assert t.poll() == ([{"step": 3, "loss": 0.5}, {"step": 4}], False)
    assert t.offset == p.stat().st_size and t.pending == b""
    # A crash fragment the trainer closed with a newline before writing on: skipped, counted.
    append(p, b'{"step": 5, "lo\n' + line(step=6) + b"[1, 2]\n")
    assert t.poll() == ([{"step": 6}], False)
    assert t.bad_lines == 2


def test_tailer_reads_large_files_in_slices(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_bytes(b"".join(line(step=i, value=i * 0.5) for i in range(2000)))
    t = MetricsTailer(p, max_bytes=4096)
    got = []
    for _ in range(1000):
        recs, _ = t.poll()
        got += recs
        if t.offset == p.stat().st_size:
            break
    assert [r["step"] for r in got] == list(range(2000))


def test_tailer_restarts_on_truncation_rewrite_and_replacement(tmp_path):
    p = tmp_path / "metrics.jsonl"
    append(p, line(step=1) + line(step=2) + line(step=3))
    t = MetricsTailer(p)
    assert len(t.poll()[0]) == 3
    # Truncated (size shrinks).
    p.write_bytes(line(step=10))
    assert t.poll() == ([{"step": 10}], True)
    # Rewritten in place to a bigger size between two polls: the head changed.
    with open(p, "r+b") as f:
        f.write(line(step=20) + line(step=21) + line(step=22))
    assert t.poll() == ([{"step": 20}, {"step": 21}, {"step": 22}], True)
    # Replaced by a new file (new inode; rename as an atomic writer does), even a bigger one.
    q = tmp_path / "new.jsonl"
    q.write_bytes(line(step=30) + line(step=31) + line(step=32) + line(step=33))
    os.replace(q, p)
    assert t.poll() == ([{"step": 30}, {"step": 31}, {"step": 32}, {"step": 33}], True)
    assert t.restarts == 3
    # Deleted: nothing, state kept; recreated: read from 0.
    p.unlink()
    assert t.poll() == ([], False)
    p.write_bytes(line(step=40))
    recs, restarted = t.poll()
    assert recs == [{"step": 40}] and restarted


def test_model_counts_aborts_active_stages_and_curves_written_incrementally(run_dir):
    path = run_dir / "metrics.jsonl"
    model = RunModel(run_dir)
    assert model.trainer == "encoder" and model.num_stages == 3 and model.patience == 2
    chunks = synthetic_run(6)
    blob = b"".join(chunks)
    # Write in odd-sized pieces (lines torn everywhere), polling after each.
    for i in range(0, len(blob), 37):
        append(path, blob[i:i + 37])
        model.poll()
    assert model.records == 6 and model.step == 6
    assert model.checks[0] == AbortCheck(1, 1.0, None, 1, 3)
    assert [c.abort_count for c in model.checks] == [1, 2, 1, 2, 1, 2]
    assert model.aborts == [AbortEvent(2, 3, 2), AbortEvent(4, 2, 1)]
    assert model.active_stages == 1 and model.abort_count == 2
    assert model.stage_lanes() == [StageLane(1, True, None), StageLane(2, False, 4), StageLane(3, False, 2)]
    assert model.loss_terms == ["loss_total", "loss_l2", "loss_stage1"]
    assert model.curves["loss_total"] == [(s, 3.0 / s) for s in range(1, 7)]
    assert "lr" not in model.curves and "stage_passes" not in model.curves
    # Compute: steps 1-2 run 3 stages, 3-4 two, 5-6 one = 12 stage-passes of 18 for fixed N = 3.
    c = model.compute()
    assert (c["actual"], c["fixed"], c["saved"]) == (12, 18, 6)
    assert c["saved_fraction"] == pytest.approx(1 / 3)
    assert model.stage_passes == 4 * 12  # the trainer's image x stage count agrees
    assert model.sec_per_step == 0.5 and model.eta_seconds == pytest.approx(94 * 0.5)
    assert model.progress == pytest.approx(0.06)
    assert model.running
    append(path, line(event="end", reason="signal 15", step=6, kimg=0.024))
    model.poll()
    assert not model.running and model.ended == "signal 15"


def test_model_resume_rewinds_and_truncation_restarts(run_dir):
    path = run_dir / "metrics.jsonl"
    model = RunModel(run_dir)
    chunks = synthetic_run(6)
    # Killed after step 6 with the last snapshot at step 3: the resumed run repeats steps 4-6.
    append(path, b"".join(chunks) + b'{"step": 7, "loss_to')  # torn line from the kill
    model.poll()
    assert model.step == 6 and len(model.aborts) == 2
    append(path, b"\n" + line(event="resume", step=3, kimg=0.012, world_size=1, arch="e2style", num_stages=3,
                                  active_stages=2))
    model.poll()
    assert model.sessions[-1]["event"] == "resume" and model.sessions[-1]["step"] == 3
    assert model.step == 3 and model.aborts == [AbortEvent(2, 3, 2)] and model.active_stages == 2
    assert [s for s, _ in model.curves["loss_total"]] == [1, 2, 3]
    assert model.tailer.bad_lines == 1
    append(path, line(**train_rec(4, 2, 0)))
    model.poll()
    assert [s for s, _ in model.curves["loss_total"]] == [1, 2, 3, 4]
    assert model.compute()["saved"] == 2  # steps 3 and 4 after the abort at step 2
    # The file is truncated and the run starts again: the model forgets everything.
    path.write_bytes(chunks[0] + chunks[1])
    assert model.poll()
    assert model.restarts == 1 and model.step == 0 and len(model.checks) == 1 and not model.aborts
    assert model.records == 0 and model.curves == {}


def test_model_eval_curves_gan_eta_and_samples(tmp_path):
    run = tmp_path / "00001-faces-tiny"
    (run / "samples").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"cfg": "tiny", "kimg": 2.0, "batch": 8},
                                                 "argv": ["-m"]}))
    m = RunModel(run)
    assert m.trainer == "gan" and m.num_stages == 1
    m.feed([{"event": "start", "step": 0, "kimg": 0.0, "world_size": 1},
            {"step": 10, "kimg": 0.08, "loss_g": 1.0, "loss_d": 0.5, "sec_per_kimg": 100.0},
            {"event": "eval", "step": 10, "kimg": 0.08, "fd_vgg16": 50.0}])
    assert m.loss_terms == ["loss_d", "loss_g"] and m.curves["eval/fd_vgg16"] == [(10, 50.0)]
    assert m.eta_seconds == pytest.approx((2.0 - 0.08) * 100.0)
    assert m.compute()["saved"] == 0 and m.abort_mode is None
    assert m.latest_sample() is None
    (run / "samples" / "fakes0000.080.png").write_bytes(b"png")
    assert m.latest_sample().name == "fakes0000.080.png"
    (run / "samples" / "latest.png").write_bytes(b"png")
    assert m.latest_sample().name == "latest.png"


def test_snapshots_run_dirs_and_trainer_detection(tmp_path, run_dir):
    assert latest_snapshot(run_dir) is None
    snaps = run_dir / "snapshots"
    snaps.mkdir()
    (snaps / "encoder-0000002.safetensors").write_bytes(b"a")
    os.utime(snaps / "encoder-0000002.safetensors", (1, 1))
    (snaps / "encoder-0000004.safetensors").write_bytes(b"b")
    assert latest_snapshot(run_dir).name == "encoder-0000004.safetensors"
    (run_dir / "best.safetensors").write_bytes(b"c")
    assert latest_snapshot(run_dir).name == "best.safetensors"
    assert new_run_dirs(run_dir.parent, set()) == [run_dir]
    assert new_run_dirs(run_dir.parent, {run_dir.name}) == []
    assert run_dir_from_log("x\n2026 INFO trainers: run directory: runs/00007-a b\nmore") == Path("runs/00007-a b")
    for argv, want in ((["/usr/bin/stylestudio", "train", "crg"], "crg"), (["/r/trainers/distill.py"], "distill"),
                       (["/r/trainers/stylegan2.py"], "gan")):
        assert detect_trainer(tmp_path, {"train": {}, "argv": argv}) == want


def test_commands(run_dir):
    cmd = build_command("encoder", {"arch": "e2style", "stages": 3, "abort": "absolute", "abort_threshold": 0.0,
                                    "check_every": 1, "abort_patience": 2, "model": "", "data": None,
                                    "lambda-lpips": 0.0}, python="py")
    assert cmd == ["py", "-m", "trainers.encoder", "--no-tqdm", "--arch", "e2style", "--stages", "3", "--abort",
                   "absolute",
                   "--abort-threshold", "0.0", "--abort-patience", "2", "--check-every", "1", "--lambda-lpips", "0.0"]
    # The abortion flags only apply to e2style.
    cmd = build_command("encoder", {"arch": "psp", "abort": "relative", "steps": 10}, python="py")
    assert cmd == ["py", "-m", "trainers.encoder", "--no-tqdm", "--arch", "psp", "--steps", "10"]
    with pytest.raises(ValueError, match="--bogus"):
        build_command("crg", {"bogus": 1})
    assert resume_command(run_dir, python="py") == ["py", "-m", "trainers.encoder", "--resume", str(run_dir),
                                                    "--no-tqdm"]
    with pytest.raises(ValueError, match="which trainer"):
        resume_command(run_dir.parent)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_form_flag_exists_in_the_trainer(name, capsys):
    """The form's flags are the trainers' real argparse flags (``--help`` lists them)."""
    import importlib

    spec = TRAINERS[name]
    try:
        mod = importlib.import_module(spec.module)
    except ImportError as e:  # a trainer still landing
        pytest.skip(f"{spec.module} not importable: {e}")
    with pytest.raises(SystemExit):
        mod.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in [fs.flag for fs in spec.flags] + ["--resume", "--no-tqdm"]:
        assert f"{flag} " in text or f"{flag}," in text or f"{flag}\n" in text, (name, flag)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_form_flag_has_a_tooltip(name):
    """The training window shows each field's tip as its tooltip: none is left bare."""
    bare = [fs.flag for fs in TRAINERS[name].flags if not fs.tip.strip()]
    assert not bare, f"{name}: form fields without a tip: {bare}"


def test_text_tailer_gives_whole_lines(tmp_path):
    p = tmp_path / "log.txt"
    t = TextTailer(p)
    assert t.poll() == ("", False)
    p.write_text("one\ntw")
    assert t.poll() == ("one\n", False)
    with open(p, "a") as f:
        f.write("o\n")
    assert t.poll() == ("two\n", False)
    p.write_text("new\n")
    assert t.poll() == ("new\n", True)


def test_generator_speed_in_seconds_per_step(tmp_path):
    m = RunModel(config={"train": {"cfg": "tiny", "kimg": 1.0, "batch": 8}})
    m.feed([{"step": 10, "kimg": 0.08, "loss_g": 1.0, "sec_per_kimg": 100.0}])
    assert m.sec_per_step == pytest.approx(0.8) and m.eta_seconds == pytest.approx(92.0)


def test_frozen_app_launches_trainers_through_its_own_cli(monkeypatch, tmp_path):
    """Inside a PyInstaller app sys.executable is the app: trainers start as `stylestudio train NAME`."""
    import sys

    from studio.engine import training as tr

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    cmd = tr.build_command("crg", {"steps": 5})
    assert cmd[:3] == [sys.executable, "train", "crg"] and "--steps" in cmd
    monkeypatch.delattr(sys, "frozen")
    assert tr.build_command("crg", {"steps": 5})[1:3] == ["-m", "trainers.crg"]


def test_end_and_eval_records_move_the_step(tmp_path):
    """A run shorter than --log-every logs no training record: its end (and evaluation) records still
    say how far it went, so the window does not show "step 0 (0.00 kimg)" for a finished run."""
    m = RunModel(config={"train": {"cfg": "tiny", "kimg": 0.05, "batch": 8}})
    m.feed([{"event": "start", "step": 0, "kimg": 0.0, "world_size": 1},
            {"event": "eval", "step": 7, "kimg": 0.056, "fd_vgg16": 46.9}])
    assert m.step == 7 and m.kimg == pytest.approx(0.056) and m.records == 0
    m.feed([{"event": "end", "reason": "done", "step": 9, "kimg": 0.072}])
    assert m.step == 9 and m.kimg == pytest.approx(0.072) and m.progress == 1.0
    # a resume still rewinds to its own step
    m.feed([{"event": "resume", "step": 5, "kimg": 0.04}])
    assert m.step == 5 and m.kimg == pytest.approx(0.04)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_values_a_trainer_cannot_take_are_refused_before_launch(name):
    """--threads -1 and --log-every 0 crash the trainers with a traceback (set_num_threads, modulo by
    zero); --max-images -1 silently drops an image: the form refuses them with the flag's meaning."""
    spec = TRAINERS[name]
    keys = {fs.key for fs in spec.flags}
    with pytest.raises(ValueError, match=r"--threads must be 0 or more, got -1 \(CPU threads"):
        build_command(name, {"threads": -1})
    build_command(name, {"threads": 0})  # 0: all cores
    with pytest.raises(ValueError, match="--log-every must be 1 or more, got 0"):
        build_command(name, {"log_every": 0})
    with pytest.raises(ValueError, match="--max-steps must be 1 or more"):
        build_command(name, {"max_steps": -3})
    if "max_images" in keys:
        with pytest.raises(ValueError, match="--max-images must be 1 or more"):
            build_command(name, {"max_images": -1})
    build_command(name, {"seed": -1})  # any seed
    # the trainers' own checks (--batch at least 2, ...) still speak for themselves
    if "batch" in keys:
        assert "-4" in build_command(name, {"batch": -4})
