"""The real window, offscreen, on a tiny random generator and the shared sample photos."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATA

FACES = DATA / "faces"
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
PHOTO = FACES / "celebahq_male_005735.jpg"


def _final_of(win):
    """frame_shown filter: the full render of the latest state."""
    return lambda g, final: final and win.is_current(g)


def _pixels(view) -> bytes:
    img = view.pixmap().toImage()
    return bytes(img.constBits()) if not img.isNull() else b""


def _open_photo(qtbot, win, path=PHOTO):
    with qtbot.waitSignal(win.photo_ready, timeout=30000):
        win.open_path(path)


def _invert(qtbot, win, method="optimize"):
    win.set_method(method)
    with qtbot.waitSignal(win.paste_shown, timeout=60000):
        win.invert()


@needs_faces
def test_keep_the_photos_detail_pastes_the_change_only(qtbot, window, monkeypatch):
    """On (the default): the photo plus the edit's change over the unedited reconstruction, which is
    rendered once per source latent; off: the generated face replaces the photo's. The choice persists."""
    from studio.engine import workspace as ws_ops

    win = window
    assert win.keep_detail.isChecked()
    _open_photo(qtbot, win)
    _invert(qtbot, win)
    assert np.array_equal(win.pasted_image, win.photo.image)  # no edit: nothing changes
    renders = []
    real = ws_ops.render_latent
    monkeypatch.setattr(ws_ops, "render_latent", lambda G, lat: renders.append(1) or real(G, lat))
    slider = next(iter(win._sliders.values()))
    for value in (slider.slider.maximum(), slider.slider.minimum()):
        with qtbot.waitSignal(win.paste_shown, timeout=30000):
            slider.slider.setValue(value)
    assert len(renders) == 1  # the base of this source, once
    base = real(win.model.G, win.session.state.source)
    expect = ws_ops.paste(win.photo, win.edit_image, win.aligned.transform, base=base)
    assert np.array_equal(win.pasted_image, expect) and not np.array_equal(expect, win.photo.image)
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        win.keep_detail.setChecked(False)
    assert np.array_equal(win.pasted_image, ws_ops.paste(win.photo, win.edit_image, win.aligned.transform))
    assert win.recipe("photo")["paste"] == "replace"


@needs_faces
def test_a_paste_finishing_after_another_photo_opened_is_dropped(qtbot, window, monkeypatch):
    """The paste of the previous photo (its base render makes it slow) must not land on the photo
    opened meanwhile: the canvas and Export photo would show the old photo with its edit."""
    import threading

    from studio.engine import workspace as ws_ops

    win = window
    _open_photo(qtbot, win)
    _invert(qtbot, win)
    gate, started, landed = threading.Event(), threading.Event(), []
    real = ws_ops.paste

    def slow(*a, **k):
        started.set()
        gate.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(ws_ops, "paste", slow)
    real_pasted = win._pasted
    monkeypatch.setattr(win, "_pasted", lambda *a: (landed.append(1), real_pasted(*a)))
    slider = next(iter(win._sliders.values()))
    slider.slider.setValue(slider.slider.maximum())
    qtbot.waitUntil(started.is_set, timeout=30000)
    _open_photo(qtbot, win, FACES / "celebahq_female_039913.jpg")
    gate.set()
    qtbot.waitUntil(lambda: bool(landed), timeout=30000)
    assert win.pasted_image is None and not win.export_photo_action.isEnabled()


def test_keep_detail_choice_persists(qtbot, tiny_model, tmp_path):
    from PySide6.QtCore import QSettings

    from studio.gui.main_window import MainWindow

    ini = str(tmp_path / "s.ini")
    win = MainWindow(model_path="", settings=QSettings(ini, QSettings.Format.IniFormat), recovery_dir=False)
    qtbot.addWidget(win)
    win.keep_detail.setChecked(False)
    win.close()
    again = MainWindow(model_path="", settings=QSettings(ini, QSettings.Format.IniFormat), recovery_dir=False)
    qtbot.addWidget(again)
    assert not again.keep_detail.isChecked()
    again.close()


def test_model_offers_methods_and_sefa_sliders(window):
    names = {window.method_combo.model().item(i).data(256): window.method_combo.model().item(i).isEnabled()
             for i in range(window.method_combo.count())}
    assert names["optimize"] and not names["psp"] and not names["hybrid"]  # greyed out, with a reason
    assert window.model.directions_source == "sefa" and len(window._sliders) == 5
    assert window.random_button.isEnabled() and not window.invert_button.isEnabled()


@needs_faces
def test_photo_invert_edit_undo_redo_export(qtbot, window, tmp_path):
    win = window
    _open_photo(qtbot, win)
    assert win.aligned.image.shape == (256, 256, 3)   # FFHQ profile for a model without one
    assert win.photo_view.array.shape == win.photo.image.shape
    _invert(qtbot, win)
    assert win.session is not None and win.session.ws().shape == (8, 32)
    assert win.edit_image.shape == (32, 32, 3) and win.pasted_image.shape == win.photo.image.shape
    before_edit, before_photo = _pixels(win.edit_view), win.pasted_image.copy()

    name, slider = next(iter(win._sliders.items()))
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        slider.slider.setValue(slider.slider.maximum())
    assert win.session.amount(name) == pytest.approx(slider.alpha) and slider.alpha > 0
    assert _pixels(win.edit_view) != before_edit
    assert not np.array_equal(win.pasted_image, before_photo)
    assert "Undo" in win.undo_action.text() and win.undo_action.isEnabled()

    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.undo_action.trigger()
    assert win.session.amount(name) == 0 and slider.alpha == 0
    assert _pixels(win.edit_view) == before_edit
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.redo_action.trigger()
    assert win.session.amount(name) == pytest.approx(slider.alpha) and slider.alpha > 0
    qtbot.waitSignal(win.paste_shown, timeout=30000).wait()  # (may already have been emitted)

    with qtbot.waitSignal(win.exported, timeout=10000):
        win.export_photo(tmp_path / "photo.png")
    with qtbot.waitSignal(win.exported, timeout=10000):
        win.export_aligned(tmp_path / "face.png")
    assert Image.open(tmp_path / "photo.png").size == Image.open(PHOTO).size
    assert np.array_equal(np.asarray(Image.open(tmp_path / "face.png")), win.edit_image)


def test_shortcuts(window):
    assert window.undo_action.shortcut().toString() == "Ctrl+Z"
    assert window.redo_action.shortcut().toString() == "Ctrl+Shift+Z"


def test_random_face_truncation_and_reset(qtbot, window):
    win = window
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.random_button.click()
    assert win.session is not None and win.seed_spin.value() == 1
    first = _pixels(win.edit_view)
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.psi_slider.setValue(0)
    assert win.session.state.psi == 0 and _pixels(win.edit_view) != first
    avg = win.session.ws().numpy()
    assert np.allclose(avg, win.model.G.w_avg.numpy()[None], atol=1e-5)  # psi 0 = the average face
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.reset_button.click()
    assert win.session.state.psi == 1 and win.psi_slider.value() == 100


def _expect_error(qtbot, win, path, needle):
    with qtbot.waitSignal(win.message_shown, timeout=30000) as sig:
        win.open_path(path)
    kind, title, text = sig.args
    assert kind == "error" and needle in text.lower(), text
    assert "Traceback" not in text


@needs_faces
def test_error_dialogs(qtbot, window, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    _expect_error(qtbot, window, bad, "broken.jpg")
    _expect_error(qtbot, window, FACES / "noface_coffee.png", "no face")
    bad_model = tmp_path / "model.safetensors"
    bad_model.write_bytes(b"\0" * 100)
    _expect_error(qtbot, window, bad_model, "model.safetensors")
    assert window.model is not None  # the loaded model stays
    assert len(window.messages) == 3


@needs_faces
def test_face_picker_for_several_faces(qtbot, window, monkeypatch):
    asked = []
    monkeypatch.setattr(window, "ask_face", lambda photo: asked.append(len(photo.faces)) or 1)
    _open_photo(qtbot, window, FACES / "two_faces_celebahq.jpg")
    assert asked and asked[0] >= 2
    face = window.photo.faces[1]
    assert window.aligned is not None and face is not window.photo.faces[0]


@needs_faces
def test_weak_second_detection_is_skipped_and_choose_face_switches(qtbot, window, monkeypatch):
    asked = []
    monkeypatch.setattr(window, "ask_face", lambda photo: asked.append(len(photo.faces)) or None)
    _open_photo(qtbot, window, FACES / "astronaut.png")   # her face, and the patch on her suit
    assert asked == [] and window.face_index == 0 and len(window.photo.faces) >= 2
    assert "weak detection" in window.statusBar().currentMessage()
    assert window.choose_face_action.isEnabled()
    first = window.aligned.image.copy()

    window.choose_face_action.trigger()       # cancelled: nothing changes
    assert asked == [len(window.photo.faces)] and window.face_index == 0
    monkeypatch.setattr(window, "ask_face", lambda photo: 1)
    with qtbot.waitSignal(window.photo_ready, timeout=30000):
        window.choose_face_action.trigger()
    assert window.face_index == 1 and not np.array_equal(window.aligned.image, first)

    _open_photo(qtbot, window)                # one face: nothing to choose
    assert not window.choose_face_action.isEnabled()


def test_about_shows_the_model_licence(window):
    window.show_about()
    kind, title, text = window.messages[-1]
    assert "StyleStudio" in text and window.model.licence in text and "MIT" in text


def test_default_pack_licence_is_read():
    from studio.core.formats import load_checkpoint
    from studio.engine.workspace import bundle_licence, default_model_path

    pack = default_model_path()
    if pack is None:
        pytest.skip("no default pack")
    assert "UTKFace" in bundle_licence(load_checkpoint(pack))


@needs_faces
def test_ui_stays_responsive_during_inversion_and_cancel(qtbot, window):
    from PySide6.QtCore import QTimer

    win = window
    _open_photo(qtbot, win)
    win.optimize_steps = 10_000  # runs until cancelled
    win.set_method("optimize")
    stamps = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    win.invert()
    assert win.cancel_button.isEnabled() and not win.invert_button.isEnabled()
    qtbot.waitUntil(lambda: win.invert_step > 0, timeout=30000)  # the optimisation is running
    stamps.clear()
    qtbot.wait(1500)
    timer.stop()
    gaps = np.diff(stamps) * 1000
    assert len(stamps) > 20 and gaps.max() < 100, f"max gap {gaps.max():.0f} ms"
    win.cancel_inversion()
    qtbot.waitUntil(lambda: win.invert_button.isEnabled(), timeout=30000)
    assert win.session is None and win.progress.value() == 0
    assert not any(k == "error" for k, *_ in win.messages)


@needs_faces
def test_drop_a_photo(qtbot, window):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(PHOTO))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.photo_ready, timeout=30000):
        window.dropEvent(ev)
    assert window.photo.path == str(PHOTO)


@needs_faces
def test_a_new_photo_is_not_edited_with_the_previous_face(qtbot, window, monkeypatch, tmp_path):
    win = window
    _open_photo(qtbot, win)
    _invert(qtbot, win)
    first = win.session.state.source.copy()

    # an inversion still running when another photo opens must not land on it
    win.set_method("optimize")
    monkeypatch.setattr(win, "optimize_steps", 400)
    win.invert()
    assert win._invert_job is not None and not win.invert_action.isEnabled() and win.cancel_button.isEnabled()
    job = win._invert_job
    win.invert()                                   # Ctrl+I again while it runs: ignored
    assert win._invert_job is job
    other = FACES / "celebahq_female_039913.jpg"
    _open_photo(qtbot, win, other)
    qtbot.waitUntil(lambda: win._invert_job is None, timeout=30000)   # cancelled, not restarted
    qtbot.wait(200)
    assert np.array_equal(win.session.state.source, first)           # nothing landed
    assert win.invert_action.isEnabled() and not win.refine_action.isEnabled()
    # the canvas shows the new face (not a blank), and the edit controls, which would act on the
    # previous face's latent, wait for this face's inversion (QA, session 25)
    assert np.array_equal(win.edit_view.array, win.aligned.image)
    assert not any(sl.isEnabled() for sl in win._sliders.values()) and not win.psi_slider.isEnabled()
    assert not win.undo_action.isEnabled() and not win.reset_button.isEnabled()
    assert not win.cancel_action.isEnabled() and win.save_action.isEnabled()
    # the autosave keeps recording the photo this latent was inverted from, not the one now open
    from studio.engine import recovery

    if win.autosave_path is not None:
        with qtbot.waitSignal(win.autosaved, timeout=30000):
            assert win.autosave_now()
        assert recovery.read_info(win.autosave_path).photo == str(PHOTO.resolve())

    # the previous face's latent is not pasted into this photo, nor shown over its face
    name, slider = next(iter(win._sliders.items()))
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        slider.slider.setValue(slider.slider.maximum())
    qtbot.wait(200)
    assert win.pasted_image is None and win.edit_image is None and not win.export_photo_action.isEnabled()
    assert np.array_equal(win.photo_view.array, win.photo.image)

    # Save now writes the previous face's edit (the session's), and says so
    titles = []
    monkeypatch.setattr(win, "ask_save_path", lambda title, *a: titles.append(title) or str(tmp_path / "p.stylestudio"))
    with qtbot.waitSignal(win.project_saved, timeout=30000):
        win.save_project()
    assert "previous face" in titles[0] and "previous face" in win.statusBar().currentMessage()
    assert (tmp_path / "p.stylestudio").is_file()

    win.set_method("optimize")
    monkeypatch.setattr(win, "optimize_steps", 3)
    with qtbot.waitSignal(win.paste_shown, timeout=60000):
        win.invert()                               # this face's own inversion: pasted and refinable
    assert not np.array_equal(win.session.state.source, first) and win.pasted_image is not None
    assert win.refine_action.isEnabled() and win.export_photo_action.isEnabled()
    assert all(sl.isEnabled() for sl in win._sliders.values()) and win.psi_slider.isEnabled()


def test_saving_a_project_where_it_cannot_be_written_says_what_to_do(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.frame_shown, timeout=30000):
        window.random_face()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with qtbot.waitSignal(window.message_shown, timeout=10000) as sig:
        window.save_project(blocker / "edit.stylestudio")
    kind, title, text = sig.args
    assert kind == "error" and "cannot write" in text and "writable" in text
    assert "Please report" not in text and ".tmp" not in text


def test_export_direction_sweep(qtbot, window, tmp_path, monkeypatch):
    """File ▸ Export direction sweep…: frame i is the current edit with the direction at the i-th
    amount (rendered on a worker from a copy: the edit itself and its undo history are untouched);
    .gif loops there and back."""
    from studio.engine import workspace as ws_ops
    from studio.engine.session import AppliedDirection, compose

    win = window
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.random_face()
    names = list(win._sliders)
    win.session.set_amount(names[1], 1.0)  # another edit, kept in every frame
    undo, version = win.undo_action.text(), win.session.version
    assert win.export_sweep_action.isEnabled()
    with qtbot.waitSignal(win.exported, timeout=30000):
        win.export_sweep(names[0], -2, 2, 3, tmp_path / "strip.png")
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    R = win.model.resolution
    assert strip.shape == (R, 3 * R, 3)
    state = win.session.state.copy()
    i = state.index_of(names[0])
    for k, a in enumerate((-2.0, 0.0, 2.0)):
        state.directions[i] = AppliedDirection(state.directions[i].direction, a)
        assert np.array_equal(strip[:, k * R:(k + 1) * R], ws_ops.render_latent(win.model.G, compose(state, win.session.w_avg).numpy()))
    assert win.session.version == version and win.undo_action.text() == undo and win.session.amount(names[0]) == 0
    monkeypatch.setattr(win, "ask_sweep", lambda: (names[0], -1.0, 1.0, 4))
    monkeypatch.setattr(win, "ask_save_path", lambda *a: str(tmp_path / "anim"))
    with qtbot.waitSignal(win.exported, timeout=30000):
        win.export_sweep()
    gif = Image.open(tmp_path / "anim.gif")
    assert gif.n_frames == 6 and gif.size == (R, R)
    monkeypatch.setattr(win, "ask_save_path", lambda *a: str(tmp_path / "x.mp4"))
    win.export_sweep()
    assert win.messages[-1][1] == "Cannot export the sweep" and ".gif" in win.messages[-1][2]
