"""Fast mix (distilled) in the style-mixing panel, on the default pack: the aligned face and a face of
another photo through the pack's student, shown in a dialog; a photo without a face is an error dialog."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA

FACES = DATA / "faces"
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
PHOTO = FACES / "celebahq_male_005735.jpg"
STYLE_PHOTO = FACES / "celebahq_female_039913.jpg"
NO_FACE = FACES / "noface_coffee.png"


@pytest.fixture
def pack_window(qtbot, one_thread):
    from studio.engine.workspace import default_model_path
    from studio.gui.main_window import MainWindow

    if default_model_path() is None:
        pytest.skip("no default pack")
    win = MainWindow(model_path=None, settings=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_loaded, timeout=60000):
        win.show()
    yield win
    win.shutdown()


def test_fast_mix_button_needs_a_student(qtbot, window):
    """A model without a student: no fast-mix button."""
    assert window.model.student is None
    assert not window.mixing.fast_button.isVisibleTo(window)


@needs_faces
def test_fast_mix_with_a_photo(qtbot, pack_window, monkeypatch, tmp_path):
    win = pack_window
    button = win.mixing.fast_button
    assert win.model.student is not None and win.model.student_group == "medium"
    # a student, but no face yet: shown, disabled, and the tooltip says why
    assert button.isVisibleTo(win) and not button.isEnabled() and "photo" in button.toolTip().lower()

    with qtbot.waitSignal(win.photo_ready, timeout=30000):
        win.open_path(PHOTO)
    assert win.session is None  # not inverted: the fast mix needs only the aligned face
    assert button.isEnabled() and win.mixing.isEnabled() and not win.mixing.controls.isEnabled()

    asked = []
    monkeypatch.setattr(win, "ask_open_path", lambda *a: asked.append(a) or str(STYLE_PHOTO))
    with qtbot.waitSignal(win.fast_mix_shown, timeout=20000):
        button.click()
    assert asked
    dlg = win.fast_mix_dialog
    assert dlg is not None and dlg.isVisible()
    r = dlg.result
    res = win.model.resolution
    assert r.mixed.shape == (res, res, 3) and r.mixed.dtype == np.uint8
    assert r.content.shape == r.style.shape == (res, res, 3)
    assert np.array_equal(r.content, win.aligned.image)
    for other in (r.content, r.style):
        assert np.abs(r.mixed.astype(int) - other.astype(int)).mean() > 1
    assert np.array_equal(dlg.views["mixed"].array, r.mixed)
    assert "medium" in dlg.info.text() and "ms" in dlg.info.text() and STYLE_PHOTO.name in dlg.info.text()
    assert not any(k == "error" for k, *_ in win.messages)

    # Export… saves the mixed face
    out = tmp_path / "mix.png"
    monkeypatch.setattr(win, "ask_save_path", lambda *a: str(out))
    with qtbot.waitSignal(win.exported, timeout=10000):
        dlg.export_button.click()
    from studio.core.imageio import load_image

    assert np.array_equal(load_image(out)[0], r.mixed)
    dlg.close_button.click()
    assert not dlg.isVisible()

    # a photo without a face: the error dialog, no new mix
    monkeypatch.setattr(win, "ask_open_path", lambda *a: str(NO_FACE))
    with qtbot.waitSignal(win.message_shown, timeout=20000) as sig:
        button.click()
    kind, _title, text = sig.args
    assert kind == "error" and "no face" in text and NO_FACE.name in text and "Traceback" not in text
    assert win.fast_mix_dialog is dlg and button.isEnabled()

    # a corrupt file: the error dialog too
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8not a jpeg")
    monkeypatch.setattr(win, "ask_open_path", lambda *a: str(bad))
    with qtbot.waitSignal(win.message_shown, timeout=20000) as sig:
        button.click()
    assert sig.args[0] == "error" and "broken.jpg" in sig.args[2] and "Traceback" not in sig.args[2]
