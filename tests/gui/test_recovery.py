"""Autosave and crash recovery through the real window: the edit is autosaved a moment after each
change and removed on save / close; a window killed with SIGKILL leaves an autosave that the next
window offers and restores exactly (latent, directions, mixing, truncation, photo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from studio.engine import recovery
from studio.gui.main_window import MainWindow
from tests.conftest import DATA

REPO = Path(__file__).resolve().parents[2]
PHOTO = DATA / "faces" / "celebahq_male_005735.jpg"

# The "crashing" editor: the real window in its own process. It opens a photo (or draws a random face
# when the sample photos are missing), inverts it, moves a direction, truncation and style mixing,
# waits until the autosave on disk holds exactly that edit, writes what it expects to be recovered and
# prints READY; the test then kills it with SIGKILL.
DRIVER = r"""
import json, sys
import numpy as np
from PySide6.QtWidgets import QApplication
app = QApplication([])
from studio.engine import recovery
from studio.gui.main_window import MainWindow

model, out, photo = sys.argv[1], sys.argv[2], sys.argv[3]
win = MainWindow(model_path=model, optimize_steps=2, settings=False, recover="ignore")
win.autosave_delay_ms = 100
edits_done = [False]

def edit():
    s = win.session
    name = s.directions[1].direction.name
    s.set_amount(name, 1.5)
    s.set_truncation(0.8)
    win.reference_from_seed(7)

def mixed():
    win.session.set_mix_strength("coarse", 0.6)
    win.session.set_amount(win.session.directions[0].direction.name, -0.75)
    edits_done[0] = True

def saved(path):
    if not edits_done[0]:
        return
    info = recovery.read_info(path)
    on_disk = recovery.load(info)
    s = win.session
    if not np.array_equal(on_disk.ws().numpy(), s.ws().numpy()) or on_disk.state.psi != s.state.psi:
        return  # an older state: wait for the next autosave
    np.savez(out, source=s.state.source, ws=s.ws().numpy(), reference=s.mixer.reference,
             alphas=np.array([ad.alpha for ad in s.directions]), psi=s.state.psi,
             coarse=s.mixer.strengths["coarse"])
    print("READY", path, json.dumps({"photo": info.photo, "face": info.face,
                                     "names": [ad.direction.name for ad in s.directions]}), flush=True)

win.autosaved.connect(saved)
win.reference_ready.connect(mixed)
win.inversion_finished.connect(edit)
if photo:
    win.photo_ready.connect(lambda: (win.set_method("optimize"), win.invert()))
    win.model_loaded.connect(lambda: win.open_path(photo))
else:
    from PySide6.QtCore import QTimer

    def wait_session():
        if win.session is None:
            QTimer.singleShot(50, wait_session)
        else:
            edit()
    win.model_loaded.connect(lambda: (win.random_face(), wait_session()))
win.show()
app.exec()
"""


def _fake_autosave(folder: Path, model: Path, *, alpha: float = 0.5) -> Path:
    """An autosave of a process that no longer runs, for the tiny model."""
    from studio.core.formats import load_checkpoint
    from studio.engine.session import EditSession
    from studio.engine.workspace import random_latent

    G = load_checkpoint(model).generator
    s = EditSession.for_generator(G, random_latent(G, 3), format="stylestudio", path=str(model))
    s.set_truncation(alpha)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recovery.PREFIX}{p.pid}-1{recovery.SUFFIX}"
    path.write_bytes(recovery.recovery_bytes(s.to_project_bytes(), model_path=str(model), pid=p.pid))
    return path


def test_autosave_follows_edits_and_goes_on_save_and_close(qtbot, window, recovery_dir, tmp_path):
    win = window
    win.autosave_delay_ms = 50
    assert win.recovery_folder == recovery_dir and not win.autosave_path.exists()
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.random_face()
    assert win.autosave_path.exists() and win.last_autosave_ms < 100  # GUI-thread share of an autosave
    info = recovery.read_info(win.autosave_path)
    assert info.pid == os.getpid() and info.model_path == str(win.model.path) and info.photo is None
    assert recovery.find_recoverable(recovery_dir) == []  # this process is alive: not a crash

    name = next(iter(win._sliders))
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.session.set_amount(name, 1.0)
    assert recovery.load(recovery.read_info(win.autosave_path)).amount(name) == 1.0

    with qtbot.waitSignal(win.project_saved, timeout=10000):
        win.save_project(tmp_path / "edit.stylestudio")
    qtbot.waitUntil(lambda: not win.autosave_path.exists(), timeout=10000)  # saved: nothing to recover
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.session.set_amount(name, 2.0)   # unsaved again
    assert win.autosave_path.exists()
    win.close()                              # a clean exit with unsaved changes: the edit is kept
    assert recovery.load(recovery.read_info(win.autosave_path)).amount(name) == 2.0


def test_clean_close_of_a_saved_edit_leaves_nothing(qtbot, window, recovery_dir, tmp_path):
    win = window
    win.autosave_delay_ms = 50
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.random_face()
    with qtbot.waitSignal(win.project_saved, timeout=10000):
        win.save_project(tmp_path / "edit")   # no suffix: .stylestudio is added
    assert (tmp_path / "edit.stylestudio").is_file()
    win.close()
    assert not win.autosave_path.exists() and not list(recovery_dir.iterdir())


def test_a_save_still_queued_at_close_is_written(qtbot, window, recovery_dir, tmp_path, monkeypatch):
    win = window
    with qtbot.waitSignal(win.frame_shown, timeout=30000):
        win.random_face()
    monkeypatch.setattr(win.io_jobs, "submit", lambda *a, **k: None)  # never started: it stays queued
    win.save_project(tmp_path / "late.txt")
    assert not (tmp_path / "late.txt.stylestudio").exists()
    win.close()
    assert (tmp_path / "late.txt.stylestudio").is_file()            # written at close, as .stylestudio
    assert not recovery_dir.exists() or not list(recovery_dir.iterdir())  # and counted as saved


def test_a_save_is_not_queued_behind_long_jobs(qtbot, window, tmp_path):
    import threading

    win = window
    with qtbot.waitSignal(win.frame_shown, timeout=30000):
        win.random_face()
    release = threading.Event()
    for _ in range(3):  # every general worker busy (an inversion, a Refine, a reference...)
        win.jobs.submit(lambda ctx: release.wait(60), name="long")
    try:
        with qtbot.waitSignal(win.project_saved, timeout=10000):
            win.save_project(tmp_path / "now.stylestudio")
        with qtbot.waitSignal(win.exported, timeout=10000):
            win.export_aligned(tmp_path / "now.png")
    finally:
        release.set()
    assert (tmp_path / "now.stylestudio").is_file() and (tmp_path / "now.png").is_file()
    assert not win.session.modified


def test_a_save_or_export_failing_as_the_window_closes(qtbot, window, recovery_dir, tmp_path, monkeypatch):
    """Tried once (not again at close), the edit kept in the autosave, and no error box left behind
    the closed window."""
    import studio.core.fileio as fileio
    import studio.gui.main_window as mw

    win = window
    with qtbot.waitSignal(win.frame_shown, timeout=30000):
        win.random_face()
    name = next(iter(win._sliders))
    win.session.set_amount(name, 1.0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    real, tries, boxes = fileio.atomic_write_bytes, [], []

    def counting(path, data, **kw):
        tries.append(path)
        return real(path, data, **kw)

    monkeypatch.setattr(fileio, "atomic_write_bytes", counting)
    monkeypatch.setattr(mw, "open_message_box", lambda *a: boxes.append(a))
    win.save_project(blocker / "edit.stylestudio")
    win.export_aligned(blocker / "x.png")
    win.close()
    qtbot.wait(300)  # the failures' callbacks arrive after the close
    assert [Path(p).suffix for p in tries].count(".stylestudio") == 1 and not boxes
    assert any(k == "error" for k, *_ in win.messages)  # recorded (and logged), not shown
    assert list(recovery_dir.iterdir())                  # the edit is in the autosave


def test_debounce_merges_a_drag_into_few_writes(qtbot, window):
    win = window
    win.autosave_delay_ms, win.autosave_max_wait_ms = 300, 100000
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.random_face()
    saves = win._autosaver.saves
    name = next(iter(win._sliders))
    for i in range(20):
        win.session.set_amount(name, i / 10, dragging=True)
    win.session.end_drag()
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        pass
    qtbot.wait(400)
    assert win._autosaver.saves == saves + 1
    assert recovery.load(recovery.read_info(win.autosave_path)).amount(name) == pytest.approx(1.9)


@pytest.mark.parametrize("answer", ["discard", "later"])
def test_declined_recovery(qtbot, tiny_model, recovery_dir, monkeypatch, answer):
    path = _fake_autosave(recovery_dir, tiny_model)
    asked = []
    monkeypatch.setattr(MainWindow, "ask_recover", lambda self, info: asked.append(info) or answer)
    win = MainWindow(model_path=tiny_model, settings=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_loaded, timeout=30000):
        win.show()
    assert [i.path for i in asked] == [path]
    assert win.session is None
    assert path.exists() == (answer == "later")
    win.shutdown()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second tiny generator (another w_avg): an edit of ``tiny_model`` does not fit it."""
    import torch

    from studio.core.formats import ModelBundle, stylestudio_fmt
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(1)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32)).mean(0))
    path = tmp_path_factory.mktemp("other-model") / "other.safetensors"
    return stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), path)


@pytest.mark.parametrize("start", ["none", "other"])
def test_recovery_loads_the_model_of_the_edit(qtbot, tiny_model, other_model, recovery_dir, start):
    path = _fake_autosave(recovery_dir, tiny_model, alpha=0.25)
    win = MainWindow(model_path="" if start == "none" else other_model, settings=False, recover="recover")
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.recovered, timeout=60000):
        win.show()
    assert Path(win.model.path) == Path(tiny_model) and win.session.state.psi == 0.25
    assert win.session.model.check_same(win.model.identity()) is None
    qtbot.waitUntil(lambda: not path.exists() and win.autosave_path.exists(), timeout=10000)
    win.close()  # still not saved anywhere else: closing keeps it for the next start
    assert list(recovery_dir.iterdir()) == [win.autosave_path]


@pytest.mark.slow
def test_kill_the_editor_then_recover(qtbot, tiny_model, recovery_dir, monkeypatch, tmp_path):
    photo = str(PHOTO) if PHOTO.is_file() else ""
    out = tmp_path / "expected.npz"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env[recovery.ENV_DIR] = str(recovery_dir)
    p = subprocess.Popen([sys.executable, "-c", DRIVER, str(tiny_model), str(out), photo], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        line = ""
        while time.time() < deadline and p.poll() is None:
            line = p.stdout.readline()
            if line.startswith("READY"):
                break
        assert line.startswith("READY"), p.stderr.read()[-3000:] if p.poll() is not None else "no autosave"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    import json

    _, saved_path, meta = line.split(" ", 2)
    meta = json.loads(meta)
    expected = np.load(out)
    assert Path(saved_path).exists()
    assert [i.path for i in recovery.find_recoverable(recovery_dir, clean=False)] == [Path(saved_path)]

    asked = []
    monkeypatch.setattr(MainWindow, "ask_recover", lambda self, info: asked.append(info) or "recover")
    win = MainWindow(model_path=tiny_model, settings=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.recovered, timeout=60000):
        win.show()
    assert len(asked) == 1 and asked[0].path == Path(saved_path) and asked[0].pid == p.pid
    s = win.session
    assert np.array_equal(s.state.source, expected["source"])
    assert np.array_equal(s.ws().numpy(), expected["ws"])
    assert [ad.direction.name for ad in s.directions] == meta["names"]
    assert np.array_equal(np.array([ad.alpha for ad in s.directions]), expected["alphas"])
    assert s.state.psi == float(expected["psi"]) and s.mixer.strengths["coarse"] == float(expected["coarse"])
    assert np.array_equal(s.mixer.reference, expected["reference"])
    assert s.modified  # not saved anywhere but in the autosave
    assert [sl.alpha for sl in win._sliders.values()] == pytest.approx(list(expected["alphas"]))
    if photo:
        assert meta["photo"] == str(Path(photo).resolve())
        assert win.photo is not None and Path(win.photo.path) == Path(photo) and win.aligned is not None
        with qtbot.waitSignal(win.paste_shown, timeout=60000):
            win.request_render()
        assert win.pasted_image.shape == win.photo.image.shape
    # the recovered edit now lives in this window's autosave; the crashed one's file is gone
    qtbot.waitUntil(lambda: not Path(saved_path).exists() and win.autosave_path.exists(), timeout=10000)
    assert recovery.load(recovery.read_info(win.autosave_path)).ws().numpy().tobytes() == expected["ws"].tobytes()
    win.close()  # still not saved anywhere else: closing keeps it for the next start
    assert list(recovery_dir.iterdir()) == [win.autosave_path]


def test_opening_another_model_keeps_an_unsaved_edit_for_recovery(qtbot, window, other_model, recovery_dir):
    win = window
    win.autosave_delay_ms = 50
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.random_face()
    name = next(iter(win._sliders))
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.session.set_amount(name, 1.5)
    kept = win.autosave_path
    with qtbot.waitSignal(win.model_loaded, timeout=30000):
        win.load_model(other_model)
    assert win.session is None and win.autosave_path != kept
    assert recovery.load(recovery.read_info(kept)).amount(name) == 1.5   # still on disk, not discarded
    assert "kept for recovery" in win.statusBar().currentMessage()


def _unsaved_edit(qtbot, win):
    win.autosave_delay_ms = 50
    with qtbot.waitSignal(win.frame_shown, timeout=30000):
        win.random_face()
    assert not win.has_unsaved_edit() and not win.isWindowModified()  # a new face, nothing edited yet
    with qtbot.waitSignal(win.autosaved, timeout=30000):
        win.session.set_amount(next(iter(win._sliders)), 0.5)
    assert win.has_unsaved_edit() and win.isWindowModified()  # the title's [*] mark


@pytest.mark.parametrize("answer, path", [("cancel", None), ("save", "cancelled"), ("save", "unwritable")])
def test_closing_an_unsaved_edit_can_be_called_off(qtbot, window, recovery_dir, tmp_path, monkeypatch,
                                                   answer, path):
    """Cancel, a cancelled file dialog or a save that fails keep the window open with the edit."""
    win = window
    win.confirm_close = True
    _unsaved_edit(qtbot, win)
    asked = []
    monkeypatch.setattr(win, "ask_save_changes", lambda: asked.append(1) or answer)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = None if path == "cancelled" else str(blocker / "edit.stylestudio")
    monkeypatch.setattr(win, "ask_save_path", lambda *a: target)
    latent = win.session.state.copy()
    win.close()
    assert asked == [1] and win.isVisible() and not win._closed
    assert win.session is not None and win.session.modified and win.autosave_path.exists()
    assert np.array_equal(win.session.state.source, latent.source)
    assert any(k == "error" for k, *_ in win.messages) == (path == "unwritable")
    win.confirm_close = False


@pytest.mark.parametrize("answer", ["save", "discard"])
def test_closing_an_unsaved_edit_saves_or_discards_it(qtbot, window, recovery_dir, tmp_path, monkeypatch, answer):
    win = window
    win.confirm_close = True
    _unsaved_edit(qtbot, win)
    name = next(iter(win._sliders))
    win.session.set_amount(name, 1.5)
    monkeypatch.setattr(win, "ask_save_changes", lambda: answer)
    monkeypatch.setattr(win, "ask_save_path", lambda *a: str(tmp_path / "closing"))
    win.close()
    assert not win.isVisible() and win._closed
    assert not list(recovery_dir.iterdir())  # saved or discarded: nothing left to recover
    saved = tmp_path / "closing.stylestudio"
    assert saved.is_file() == (answer == "save")
    if answer == "save":
        from studio.engine.session import EditSession

        assert EditSession.load(saved).amount(name) == 1.5


def test_closing_asks_only_for_an_unsaved_edit(qtbot, window, recovery_dir, tmp_path, monkeypatch):
    win = window
    win.confirm_close = True
    monkeypatch.setattr(win, "ask_save_changes", lambda: pytest.fail("asked"))
    _unsaved_edit(qtbot, win)
    with qtbot.waitSignal(win.project_saved, timeout=10000):
        win.save_project(tmp_path / "edit.stylestudio")
    assert not win.isWindowModified() and not win.has_unsaved_edit()
    win.close()
    assert not win.isVisible()


def test_saving_at_close_comes_after_a_save_still_queued(qtbot, window, recovery_dir, tmp_path, monkeypatch):
    """A save asked for earlier and still queued is written before the one made at close, not over
    it: the file holds the latest edit and no autosave is left to offer at the next start."""
    from studio.engine.session import EditSession

    win = window
    win.confirm_close = True
    _unsaved_edit(qtbot, win)
    name = next(iter(win._sliders))
    monkeypatch.setattr(win.io_jobs, "submit", lambda *a, **k: None)  # never started: it stays queued
    win.save_project(tmp_path / "edit.stylestudio")  # the edit at 0.5
    win.session.set_amount(name, 1.5)
    monkeypatch.setattr(win, "ask_save_changes", lambda: "save")
    monkeypatch.setattr(win, "ask_save_path", lambda *a: str(tmp_path / "edit.stylestudio"))
    win.close()
    assert win._closed
    assert EditSession.load(tmp_path / "edit.stylestudio").amount(name) == 1.5
    assert not list(recovery_dir.iterdir())
