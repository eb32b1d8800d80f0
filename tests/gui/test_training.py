"""The Training window (offscreen): the abortion-progress panel fed by a synthetic metrics.jsonl
written incrementally (torn lines, a truncation), the form's command lines, the editor's menu entry
and "Use this snapshot", and a real tiny E2Style run launched, stopped (SIGTERM) and resumed."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.engine.test_training_monitor import CONFIG, line, synthetic_run


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


# ----------------------------------------------------------------------------
# Stand-in trainers (a few lines of Python instead of torch): what the window does around them


def _fake_trainer(monkeypatch, win, tmp_path: Path, body: str) -> None:
    """Start runs ``body`` (a Python script) instead of the form's trainer."""
    script = tmp_path / "fake_trainer.py"
    script.write_text("import os, signal, sys, time\n" + body)
    monkeypatch.setattr(win, "command", lambda: [sys.executable, str(script)])


def _ended_run(tmp_path: Path, name: str = "00001-ended", reason: str = "done") -> Path:
    """An encoder run with a sample grid and a snapshot that logged its end."""
    from PIL import Image

    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(CONFIG))
    _append(run / "metrics.jsonl", b"".join(synthetic_run(6)) + line(event="end", reason=reason, step=6))
    (run / "samples").mkdir()
    Image.new("RGB", (64, 32), (200, 10, 10)).save(run / "samples" / "latest.png")
    (run / "snapshots").mkdir()
    (run / "snapshots" / "encoder-0000006.safetensors").write_bytes(b"x")
    return run


def test_a_trainer_gone_before_its_run_directory_leaves_no_waiting(training, qtbot, monkeypatch, tmp_path):
    """Refused before it made a run directory: the window does not keep "Waiting for the run
    directory…", and a run that appears in that runs folder later is not taken for it."""
    win = training
    win.set_option("out", str(tmp_path / "runs"))
    _fake_trainer(monkeypatch, win, tmp_path, "print('error: --data: give a folder of face images', file=sys.stderr)\n"
                                              "sys.exit(2)\n")
    with qtbot.waitSignal(win.process_finished, timeout=30000):
        assert win.start()
    assert "Waiting" not in win.run_label.text() and "before creating a run directory" in win.run_label.text()
    assert win.messages[-1][1] == "The trainer failed" and "give a folder of face images" in win.messages[-1][2]
    _ended_run(tmp_path, "00000-started-from-a-terminal")
    win.poll()
    assert win.model is None


def test_a_command_line_error_is_quoted_without_the_usage(training, qtbot, monkeypatch, tmp_path):
    """argparse's "prog: error: ..." (a flag of the extra-flags box the trainer does not know) is
    the message, not the 800 characters of usage text before it."""
    win = training
    _fake_trainer(monkeypatch, win, tmp_path, "print('usage: python -m trainers.encoder [-h] [--arch ARCH]\\n"
                                              + "                [--x X]\\n" * 30
                                              + "python -m trainers.encoder: error: unrecognized arguments: "
                                                "--bogus 3', file=sys.stderr)\nsys.exit(2)\n")
    with qtbot.waitSignal(win.process_finished, timeout=30000):
        assert win.start()
    kind, title, text = win.messages[-1]
    assert title == "The trainer failed" and "unrecognized arguments: --bogus 3" in text
    assert "usage:" not in text and "[--x X]" not in text


def test_unbalanced_quotes_in_the_extra_flags_say_where(training, tmp_path):
    win = training
    win.set_option("out", str(tmp_path / "runs"))
    win.extra_edit.setText("--desc 'my run")
    assert not win.start()
    kind, title, text = win.messages[-1]
    assert kind == "error" and "more flags" in text and "quot" in text and "--desc 'my run" in text


def test_a_bad_number_is_refused_in_the_form(training, tmp_path):
    """--threads -1 would crash the trainer with a traceback; the form says what the flag takes."""
    win = training
    win.set_trainer("gan")
    win.set_option("out", str(tmp_path / "runs"))
    win.set_option("threads", "-1")
    assert not win.start() and win.process is None
    assert win.messages[-1][1] == "Cannot start the trainer" and "--threads must be 0 or more" in win.messages[-1][2]


def test_attaching_another_run_forgets_the_last_ones_views(training, qtbot, tmp_path):
    """The state, the sample grid, the abortion panel's title and count: nothing of the previous run
    stays on screen when another run (or none) is shown."""
    win = training
    assert win.attach(_ended_run(tmp_path))
    assert win.sample_view.image() is not None and win.state_label.text().startswith("finished")
    assert "6 checks" in win.abort_box.title() and "patience 2" in win.count_label.text()
    qtbot.wait(50)  # the plots take the range of steps 1-6
    empty = tmp_path / "runs" / "00002-empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "abort_patience": 7}}))
    assert win.attach(empty)
    assert win.sample_view.image() is None and win.sample_view.pixmap().isNull()
    assert win.state_label.text() == "no records yet"
    assert "0 checks" in win.abort_box.title() and win.count_label.text() == "abort_count 0 of patience 7"
    for plot in (win.loss_plot, win.signal_plot):  # empty plots, not the axes of steps 1-6
        assert plot.getViewBox().viewRange()[0][1] < 2
    assert win.step_label.text() == "step 0 / 100"
    win.detach()
    assert win.state_label.text() == "" and win.sample_view.image() is None


def test_a_run_that_logged_no_end_long_ago_is_not_shown_running(training, tmp_path):
    """A run killed elsewhere (no end record) and attached an hour later is not "running"."""
    win = training
    run = _run_dir(tmp_path)
    old = time.time() - 3600
    recs = [json.loads(b) for b in synthetic_run(4)]
    _append(run / "metrics.jsonl", "".join(json.dumps({**r, "time": old}) + "\n" for r in recs).encode())
    assert win.attach(run)
    text = win.state_label.text()
    assert "running" not in text and "no end logged" in text and "1 h" in text
    assert win.eta_label.text() == "ETA –"
    _append(run / "metrics.jsonl", (json.dumps({**recs[-1], "step": 5, "time": time.time()}) + "\n").encode())
    win.poll()
    assert win.state_label.text() == "running"


def test_a_run_folder_deleted_while_shown(training, tmp_path):
    win = training
    run = _ended_run(tmp_path, reason="signal 15")
    assert win.attach(run)
    assert win.resume_button.isEnabled() and win.snapshot_button.isEnabled()
    shutil.rmtree(run)
    win.poll()
    assert "gone" in win.run_label.text() and "gone" in win.state_label.text()
    assert not win.resume_button.isEnabled() and not win.snapshot_button.isEnabled()
    assert win.model.step == 6  # what was read stays on screen


def test_the_snapshot_tooltip_follows_the_run(training, tmp_path):
    win = training
    d = tmp_path / "runs" / "00003-distill"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"train": {}, "argv": ["/r/trainers/distill.py"]}))
    assert win.attach(d)
    assert "not an editor model" in win.snapshot_button.toolTip()
    assert win.attach(_ended_run(tmp_path))
    assert "not an editor model" not in win.snapshot_button.toolTip()


def _announcing_trainer(run: Path, then: str) -> str:
    return (f"print('2026 INFO trainers: run directory: {run}', file=sys.stderr, flush=True)\n" + then)


def test_the_trainer_started_here_is_reported_while_another_run_is_shown(training, qtbot, monkeypatch, tmp_path):
    """Attach an old run while the window's trainer goes on: when the trainer dies, the failure names
    its own run (not the one on screen) and the run on screen keeps its state."""
    win = training
    own = _run_dir(tmp_path)
    _append(own / "metrics.jsonl", synthetic_run(1)[0])
    _fake_trainer(monkeypatch, win, tmp_path, _announcing_trainer(own, "time.sleep(60)\n"))
    assert win.start()
    qtbot.waitUntil(lambda: win.model is not None, timeout=30000)
    assert win.model.run_dir == own
    other = _ended_run(tmp_path)
    assert win.attach(other)
    state = win.state_label.text()
    assert win.stop_button.isEnabled() and own.name in win.stop_button.toolTip()
    with qtbot.waitSignal(win.process_finished, timeout=30000):
        win.process.kill()
    assert win.messages[-1][1] == "The trainer failed" and own.name in win.messages[-1][2]
    assert win.state_label.text() == state and win.model.run_dir == other
    assert win._exited_run == own


def test_stop_twice_kills_a_trainer_that_does_not_stop(training, qtbot, monkeypatch, tmp_path):
    """A trainer deaf to SIGTERM (stuck in a long step or evaluation): the second Stop kills it."""
    win = training
    own = _run_dir(tmp_path)
    _append(own / "metrics.jsonl", synthetic_run(1)[0])
    _fake_trainer(monkeypatch, win, tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  + _announcing_trainer(own, "time.sleep(60)\n"))
    monkeypatch.setattr("studio.gui.training.KILL_DELAY_S", 0.5)
    assert win.start()
    qtbot.waitUntil(lambda: win.model is not None, timeout=30000)
    win.stop()
    win.stop()  # a double click on Stop does not kill it
    assert win.state_label.text() == "stopping…" and not win.stop_button.isEnabled()
    qtbot.wait(300)
    assert win.process_running
    qtbot.waitUntil(lambda: win.stop_button.isEnabled(), timeout=5000)
    assert win.process_running and win.stop_button.text() == "Kill" and "SIGKILL" in win.stop_button.toolTip()
    with qtbot.waitSignal(win.process_finished, timeout=30000):
        win.stop_button.click()
    assert not win.process_running and win.stop_button.text() == "Stop"
    assert "killed" in win.state_label.text()
    assert not [m for m in win.messages if m[0] == "error"]


def test_a_trainer_that_cannot_start_leaves_no_waiting(training, qtbot, monkeypatch, tmp_path):
    """The Python to run the trainer is missing: one error, and the window is not left "starting…"."""
    win = training
    monkeypatch.setattr(win, "command", lambda: [str(tmp_path / "no-such-python"), "-m", "trainers.encoder"])
    with qtbot.waitSignal(win.message_shown, timeout=30000):
        assert win.start()
    qtbot.waitUntil(lambda: not win.process_running, timeout=30000)
    assert win.messages[-1][1] == "Cannot start the trainer"
    assert win.state_label.text() == "failed to start" and "Waiting" not in win.run_label.text()
    assert win.start_button.isEnabled() and not win.stop_button.isEnabled()


def test_a_run_refused_before_the_window_saw_it_is_named(training, qtbot, monkeypatch, tmp_path):
    """The trainer announced its run directory and removed it (bad --data) before a poll saw it (here
    it never makes it): the message says it refused to start, not that it made no run directory."""
    win = training
    win.set_option("out", str(tmp_path / "runs"))
    gone = tmp_path / "runs" / "00000-nope"
    _fake_trainer(monkeypatch, win, tmp_path, _announcing_trainer(
        gone, "print('error: --data: /x is not a folder of images', file=sys.stderr)\nsys.exit(2)\n"))
    with qtbot.waitSignal(win.process_finished, timeout=30000):
        assert win.start()
    text = win.messages[-1][2]
    assert "refused to start" in text and "00000-nope" in text and "/x is not a folder of images" in text


def test_a_finished_run_is_not_offered_for_resume(training, tmp_path):
    """--resume of a run that reached its target only ends it again (after reloading and evaluating):
    a run its validation stopped early is not offered; a run stopped early stays resumable."""
    win = training
    run = _ended_run(tmp_path, reason="early_stop")
    assert win.attach(run)
    assert not win.resume_button.isEnabled() and "--steps" in win.resume_button.toolTip()
    assert win.resume_button.text() == "Resume"
    assert not win.resume() and win.messages[-1][1] == "Nothing to resume" and win.process is None
    _append(run / "metrics.jsonl", b'{"event": "resume", "step": 6}\n'
                                   b'{"event": "end", "reason": "signal 15", "step": 7}\n')
    win.poll()
    assert win.resume_button.isEnabled() and "finished" not in win.resume_button.toolTip()


def test_a_run_that_reached_its_target_can_train_longer(training, tmp_path, monkeypatch):
    """Train longer…: a finished run resumes with the larger target asked for (--steps here);
    cancelled or not larger than what it did: nothing is launched."""
    win = training
    run = _ended_run(tmp_path)
    assert win.attach(run)
    assert win.resume_button.isEnabled() and win.resume_button.text() == "Train longer…"
    assert "--steps" in win.resume_button.toolTip()
    launched, answers = [], iter([None, 5, 250])
    monkeypatch.setattr(win, "_launch", launched.append)
    monkeypatch.setattr(win, "ask_target", lambda m: next(answers))
    assert not win.resume() and not launched                                   # cancelled
    assert not win.resume() and not launched and "give a larger --steps" in win.messages[-1][2]  # 5 < 6 done
    assert win.resume() and len(launched) == 1
    cmd = launched[0]
    assert cmd[cmd.index("--resume") + 1] == str(run) and cmd[cmd.index("--steps") + 1] == "250"
    from studio.engine import training as tr
    from studio.gui.training import EXTEND

    assert set(EXTEND) == set(tr.TRAINERS)  # every trainer's finished run can train longer
