"""The Training window (offscreen): the abortion-progress panel fed by a synthetic metrics.jsonl
written incrementally (torn lines, a truncation), the form's command lines, the editor's menu entry
and "Use this snapshot", and a real tiny E2Style run launched, stopped (SIGTERM) and resumed."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.engine.test_training_monitor import CONFIG, synthetic_run


@pytest.fixture
def training(qtbot):
    from studio.gui.training import TrainingWindow

    got: list[Path] = []
    win = TrainingWindow(use_snapshot=got.append, poll_ms=100)
    win.used = got
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown(wait_ms=30000)


def _run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "00000-synthetic-e2style3-light"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(CONFIG))
    return d


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_panel_follows_a_synthetic_run(training, tmp_path):
    win = training
    run = _run_dir(tmp_path)
    assert win.attach(run)
    assert not win.snapshot_button.isEnabled() and win.resume_button.isEnabled()
    blob = b"".join(synthetic_run(6))
    cut = blob.index(b'"event": "abort"') + 5  # torn in the middle of the first abort event
    _append(run / "metrics.jsonl", blob[:cut])
    (run / "log.txt").write_text("2026 INFO trainers: run directory: a run started from a terminal\n")
    win.poll()
    assert "started from a terminal" in win.log_view.toPlainText()
    assert win.model.aborts == [] and win.abort_table.rowCount() == 0
    assert win.count_bar.value() == 2 and win.count_bar.maximum() == 2   # count at the patience
    _append(run / "metrics.jsonl", blob[cut:])
    win.poll()
    m = win.model
    assert [(a.step, a.dropped_stage) for a in m.aborts] == [(2, 3), (4, 2)]
    assert win.abort_table.rowCount() == 2
    assert [win.abort_table.item(0, j).text() for j in range(3)] == ["2", "3", "2"]
    assert [(ln.active, ln.aborted_at) for ln in win.lanes.lanes] == [(True, None), (False, 4), (False, 2)]
    xs, ys = win._curves["loss_total"].getData()
    assert list(xs) == [1, 2, 3, 4, 5, 6] and ys[0] == pytest.approx(3.0)
    assert len(win.check_points.data) == 6 and len(win._abort_lines) == 2
    assert win.count_bar.value() == 2 and "patience 2" in win.count_label.text()
    assert "6 of 18 stage-passes (33.3 %)" in win.saved_label.text()
    assert win.step_label.text() == "step 6 / 100" and win.speed_label.text() == "0.500 s/step"
    assert win.eta_label.text() == "ETA 47 s"
    assert "mode absolute, 3 stages, 1 active, 6 checks" in win.abort_box.title()
    # Samples and snapshots appear.
    from PIL import Image

    (run / "samples").mkdir()
    Image.new("RGB", (64, 32), (200, 10, 10)).save(run / "samples" / "latest.png")
    (run / "snapshots").mkdir()
    (run / "snapshots" / "encoder-0000006.safetensors").write_bytes(b"x")
    win.poll()
    assert win.sample_view.image() is not None and win.sample_view.image().width() == 64
    assert win.snapshot_button.isEnabled()
    win.snapshot_button.click()
    assert win.used == [run / "snapshots" / "encoder-0000006.safetensors"]
    # The file is truncated (the run was started over): the panel starts from nothing.
    (run / "metrics.jsonl").write_bytes(synthetic_run(1)[0])
    win.poll()
    assert win.model.restarts == 1 and win.abort_table.rowCount() == 0 and win.model.step == 0
    assert len(win.check_points.data) == 0 and not win._abort_lines


def test_a_long_run_keeps_the_panel_light(training, tmp_path):
    """Thousands of checks: the signal curve has every one, the dots are thinned (the latest kept)
    and share one brush per abort count, so a redraw stays cheap."""
    from studio.gui.training import MAX_CHECK_DOTS

    win = training
    run = _run_dir(tmp_path)
    assert win.attach(run)
    n = 3 * MAX_CHECK_DOTS + 7
    _append(run / "metrics.jsonl", b"".join(synthetic_run(n)))
    for _ in range(200):  # the tailer reads in chunks
        win.poll()
        if win.model.step == n:
            break
    assert win.model.step == n and len(win.model.checks) == n
    xs, _ = win.signal_curve.getData()
    assert len(xs) == n
    dots = win.check_points.data
    assert len(dots) <= MAX_CHECK_DOTS and dots["x"][0] == 1 and dots["x"][-1] == n
    assert len({b.color().rgb() for b in dots["brush"]}) <= 3  # abort counts 0..patience


def test_form_maps_to_flags(training, tmp_path):
    win = training
    win.set_trainer("encoder")
    form = win.forms["encoder"]
    assert form.form.isRowVisible(form.inputs["abort_patience"])
    win.set_option("arch", "psp")
    assert not form.form.isRowVisible(form.inputs["abort_patience"])
    win.set_option("arch", "e2style")
    win.set_option("out", str(tmp_path / "runs"))
    win.set_option("abort", "absolute")
    win.set_option("abort-threshold", "0.05")
    win.extra_edit.setText("--lambda-l2 2")
    cmd = win.command()
    assert cmd[:4] == [sys.executable, "-m", "trainers.encoder", "--no-tqdm"]
    assert cmd[cmd.index("--abort") + 1] == "absolute" and cmd[cmd.index("--abort-threshold") + 1] == "0.05"
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "runs") and cmd[-2:] == ["--lambda-l2", "2"]
    win.set_option("steps", "many")
    assert not win.start()
    assert win.messages[-1][0] == "error" and "--steps" in win.messages[-1][2]
    win.set_trainer("gan")
    assert "--kimg" in win.command()
    assert not win.attach(tmp_path)  # not a run directory
    assert win.messages[-1][1] == "Not a run directory"


def test_editor_menu_opens_training_and_loads_a_snapshot(window, qtbot, tmp_path, tiny_model):
    window.training_action.trigger()
    tw = window.training_window
    assert tw is not None and tw.isVisible()
    run = _run_dir(tmp_path)
    shutil.copy(tiny_model, run / "best.safetensors")
    tw.attach(run)
    assert tw.snapshot_button.isEnabled()
    with qtbot.waitSignal(window.model_loaded, timeout=30000):
        tw.snapshot_button.click()
    assert Path(window.model.path) == run / "best.safetensors"


@pytest.fixture(scope="module")
def tiny_g(tmp_path_factory) -> Path:
    import torch

    from studio.core.formats import ModelBundle, stylestudio_fmt
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32)
    path = tmp_path_factory.mktemp("train-gen") / "g.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), path)
    return path


@pytest.mark.slow
def test_real_e2style_run_launch_abort_stop_resume(training, qtbot, tmp_path, tiny_g):
    """A tiny E2Style N=3 run with an abort every 2 checks, started from the form, stopped and resumed."""
    win = training
    win.set_trainer("encoder")
    for k, v in {"arch": "e2style", "model": tiny_g, "out": tmp_path / "runs", "width": 8, "depth": "10",
                 "stages": 3, "abort": "absolute", "abort_threshold": 0, "abort_patience": 2, "check_every": 1,
                 "min_stages": 1, "batch": 4, "steps": 100000, "lr": 1e-3, "lambda_lpips": 0, "eval_every": 0,
                 "threads": 1, "log_every": 1, "snapshot_every": 0}.items():
        win.set_option(k, v)
    assert win.start()
    qtbot.waitUntil(lambda: win.model is not None, timeout=60000)
    qtbot.waitUntil(lambda: win.abort_table.rowCount() >= 1, timeout=60000)
    m = win.model
    assert m.aborts[0].step == 2 and m.aborts[0].dropped_stage == 3
    assert win.lanes.lanes[2].aborted_at == 2 and win.stop_button.isEnabled()
    with qtbot.waitSignal(win.process_finished, timeout=60000) as sig:
        win.stop_button.click()
    assert sig.args == [0]
    qtbot.waitUntil(lambda: m.ended is not None, timeout=10000)
    assert m.ended == f"signal {int(signal.SIGTERM)}"
    stopped_at = m.step
    assert "SIGTERM" in win.log_view.toPlainText() and "run directory" in win.log_view.toPlainText()
    assert win.resume_button.isEnabled() and win.snapshot_button.isEnabled()
    assert win.model.latest_snapshot().name == f"encoder-{stopped_at:07d}.safetensors"
    # Resume: a "resume" event from the step it stopped at, the aborts kept.
    assert win.resume()
    qtbot.waitUntil(lambda: m.sessions[-1]["event"] == "resume", timeout=60000)
    assert m.sessions[-1]["step"] == stopped_at and m.aborts[0].step == 2
    assert "resumed at" in win.state_label.text()
    with qtbot.waitSignal(win.process_finished, timeout=60000):
        win.stop()
    qtbot.waitUntil(lambda: m.ended is not None, timeout=10000)
    assert [s["event"] for s in m.sessions] == ["start", "end", "resume", "end"]
    # killed (no end logged, metrics written a moment ago): this window's own trainer has exited, so
    # Resume goes ahead at once rather than asking to stop a run that "looks alive"
    assert win.resume()
    qtbot.waitUntil(lambda: m.sessions[-1]["event"] == "resume" and m.step > m.sessions[-1]["step"], timeout=60000)
    with qtbot.waitSignal(win.process_finished, timeout=60000):
        win.process.kill()
    assert "crashed" in win.state_label.text() and win.messages[-1][1] == "The trainer failed"
    n = len(win.messages)
    assert win.resume(), win.messages[n:]
    qtbot.waitUntil(lambda: len(m.sessions) >= 4 and m.sessions[-1]["event"] == "resume", timeout=60000)
    with qtbot.waitSignal(win.process_finished, timeout=60000):
        win.stop()


def test_a_trainer_refused_at_its_start_says_why(training, qtbot, tmp_path):
    """A --model that is no checkpoint: one clear error in a message box (no traceback), and the
    run folder the trainer removed is not left attached with Resume enabled."""
    win = training
    bad = tmp_path / "notes.pt"
    bad.write_text("not a model")
    win.set_trainer("encoder")
    for k, v in {"arch": "e2style", "model": bad, "out": tmp_path / "runs", "data": tmp_path, "threads": 1}.items():
        win.set_option(k, v)
    assert win.start()
    with qtbot.waitSignal(win.process_finished, timeout=60000) as sig:
        pass
    assert sig.args == [2]
    errors = [m for m in win.messages if m[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == "The trainer failed"
    assert str(bad) in errors[0][2] and "Traceback" not in errors[0][2] and "Please report" not in errors[0][2]
    assert "Traceback" not in win.log_view.toPlainText()
    assert not win.resume_button.isEnabled()
    assert not (tmp_path / "runs").is_dir() or not list((tmp_path / "runs").iterdir())


def test_stop_right_after_start_is_no_failure(training, qtbot, tmp_path, tiny_g):
    win = training
    win.set_trainer("encoder")
    for k, v in {"arch": "e2style", "model": tiny_g, "out": tmp_path / "runs", "threads": 1}.items():
        win.set_option(k, v)
    assert win.start()
    with qtbot.waitSignal(win.process_finished, timeout=60000):
        win.stop()                                   # before the trainer has even imported torch
    assert win.state_label.text() == "stopped before training began"
    assert not [m for m in win.messages if m[0] == "error"]
