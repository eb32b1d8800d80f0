"""The window's editing features, offscreen: style mixing, direction resets / layer ranges / extra
direction files, Refine, projects, export with the recipe, clipboard, recent files and settings;
and the two pack encoders end to end."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATA

FACES = DATA / "faces"
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
PHOTO = FACES / "celebahq_male_005735.jpg"
REF_PHOTO = FACES / "celebahq_female_039913.jpg"


def _final_of(win):
    """frame_shown filter: the full render of the latest state."""
    return lambda g, final: final and win.is_current(g)


def _pixels(view) -> np.ndarray:
    img = view.pixmap().toImage().convertToFormat(view.pixmap().toImage().Format.Format_RGB888)
    return np.array(img.constBits(), dtype=np.uint8).copy() if not img.isNull() else np.zeros(0, np.uint8)


def _final(qtbot, win, action, timeout=30000):
    with qtbot.waitSignal(win.frame_shown, timeout=timeout, check_params_cb=_final_of(win)):
        action()


def _random_face(qtbot, win):
    _final(qtbot, win, win.random_button.click)
    assert win.session is not None


# ----------------------------------------------------------------------------
# Style mixing


def test_coarse_mixing_takes_the_reference_rows(qtbot, window):
    win = window
    _random_face(qtbot, win)
    source = win.session.state.source.copy()
    before = _pixels(win.edit_view)

    win.mixing.seed_spin.setValue(7)
    with qtbot.waitSignal(win.reference_ready, timeout=30000):
        win.mixing.seed_button.click()
    ref = win.session.mixer.reference
    assert ref is not None and not np.array_equal(ref, source)
    assert win.mixing.thumb.array is not None and win.mixing.thumb.array.shape == (32, 32, 3)
    assert "seed 7" in win.mixing.caption.text()
    assert np.array_equal(win.session.ws().numpy(), source)  # strengths 0: nothing mixed yet

    _final(qtbot, win, lambda: win.mixing.groups["coarse"].slider.setValue(100))
    a, b = win.session.mixer.groups["coarse"]
    ws = win.session.ws().numpy()
    assert (a, b) == (0, 4) and win.session.mixer.strengths["coarse"] == 1
    assert np.array_equal(ws[a:b], ref[a:b])          # coarse rows: the reference's
    assert np.array_equal(ws[b:], source[b:])         # the others: the source's
    assert not np.array_equal(_pixels(win.edit_view), before)
    assert win.mixing.groups["coarse"].label.text().startswith("Coarse (0")

    # advanced: per-layer strengths start from the groups, then one row is changed
    win.mixing.per_layer_check.setChecked(True)
    assert win.mixing.layer_box.isVisibleTo(win) and len(win.mixing.layers) == 8
    assert win.mixing.layers[0].label.text() == "row 0 (4 px)" and win.mixing.layers[7].label.text() == "row 7 (32 px)"
    assert np.array_equal(win.session.mixer.per_layer, [1, 1, 1, 1, 0, 0, 0, 0])
    _final(qtbot, win, lambda: win.mixing.layers[6].slider.setValue(100))
    ws = win.session.ws().numpy()
    assert np.array_equal(ws[6], ref[6]) and np.array_equal(ws[5], source[5]) and np.array_equal(ws[0], ref[0])

    # undo walks back through per-layer, the mode switch and the coarse strength
    for _ in range(3):
        _final(qtbot, win, win.undo_action.trigger)
    assert win.session.mixer.per_layer is None and win.session.mixer.strengths["coarse"] == 0
    assert win.mixing.groups["coarse"].value == 0 and not win.mixing.per_layer_check.isChecked()
    assert np.array_equal(win.session.ws().numpy(), source)

    with qtbot.waitSignal(win.reference_thumb_shown, timeout=30000):
        win.mixing.clear_button.click()
    assert win.session.mixer.reference is None and win.mixing.thumb.array is None


def test_mixing_without_a_face_explains(window):
    window.reference_from_seed(3)
    kind, _title, text = window.messages[-1]
    assert kind == "info" and "random face" in text


# ----------------------------------------------------------------------------
# Directions


def test_direction_reset_all_and_layer_range(qtbot, window):
    win = window
    _random_face(qtbot, win)
    source = win.session.state.source.copy()
    names = list(win._sliders)
    s0, s1 = win._sliders[names[0]], win._sliders[names[1]]
    _final(qtbot, win, lambda: s0.slider.setValue(s0.slider.maximum()))
    _final(qtbot, win, lambda: s1.slider.setValue(s1.slider.minimum()))
    assert win.session.amount(names[0]) > 0 and win.session.amount(names[1]) < 0

    _final(qtbot, win, s0.reset_button.click)  # reset one slider
    assert win.session.amount(names[0]) == 0 and s0.alpha == 0 and win.session.amount(names[1]) < 0

    # advanced: restrict the second direction to rows 2-4
    win.dir_advanced.setChecked(True)
    assert s1.span_row.isVisibleTo(win) and s1.span == (0, 8)
    s1.span_last.setValue(4)
    _final(qtbot, win, lambda: s1.span_first.setValue(2))
    d = win.session.directions[1].direction
    assert d.span(8) == (2, 5)
    ws = win.session.ws().numpy()
    changed = np.flatnonzero(np.abs(ws - source).max(1) > 0)
    assert changed.tolist() == [2, 3, 4]

    _final(qtbot, win, win.reset_dirs_button.click)  # reset all, one undo step
    assert all(ad.alpha == 0 for ad in win.session.directions) and s1.alpha == 0
    assert np.array_equal(win.session.ws().numpy(), source)
    assert win.undo_action.text() == "&Undo reset directions"
    _final(qtbot, win, win.undo_action.trigger)
    assert win.session.amount(names[1]) < 0 and s1.alpha < 0


def test_load_direction_files(qtbot, window, tmp_path):
    win = window
    _random_face(qtbot, win)
    good = tmp_path / "glasses_w_boundary.npy"
    np.save(good, np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32))
    with qtbot.waitSignal(win.directions_loaded, timeout=10000):
        win.load_directions(good)
    assert "glasses" in win._sliders and win.session.directions[-1].direction.name == "glasses"
    s = win._sliders["glasses"]
    before = win.session.ws().numpy()
    _final(qtbot, win, lambda: s.slider.setValue(s.slider.maximum()))
    assert not np.array_equal(win.session.ws().numpy(), before)

    # the same file again: a second slider with its own name
    with qtbot.waitSignal(win.directions_loaded, timeout=10000):
        win.load_directions(good)
    assert "glasses (2)" in win._sliders

    # wrong size: an error dialog that says why and what to do; nothing added
    bad = tmp_path / "age_boundary.npy"
    np.save(bad, np.ones((1, 512), np.float32))
    n = len(win._sliders)
    with qtbot.waitSignal(win.message_shown, timeout=10000) as sig:
        win.load_directions(bad)
    kind, _title, text = sig.args
    assert kind == "error" and "age_boundary.npy" in text and "512" in text and "w_dim=32" in text
    assert "made for this model" in text and len(win._sliders) == n

    # undo removes the added direction's slider again
    _final(qtbot, win, win.undo_action.trigger)   # second file's add
    assert "glasses (2)" not in win._sliders and "glasses" in win._sliders


def test_a_direction_file_with_thousands_of_components_adds_a_capped_batch(qtbot, window, tmp_path):
    """A GANSpace file of 3000 components used to add 3000 sliders one by one (minutes, then out of
    memory); it adds the strongest MAX_FILE_DIRECTIONS as one undo step and says so."""
    from studio.gui.main_window import MAX_FILE_DIRECTIONS

    win = window
    _random_face(qtbot, win)
    many = tmp_path / "many.npz"
    np.savez(many, lat_comp=np.random.default_rng(1).standard_normal((3000, 1, 32)).astype(np.float32))
    n = len(win.session.directions)
    with qtbot.waitSignal(win.message_shown, timeout=30000) as sig:
        win.load_directions(many)
    assert sig.args[0] == "info" and "3000 components" in sig.args[2] and "2950 were left out" in sig.args[2]
    assert len(win.session.directions) == n + MAX_FILE_DIRECTIONS
    assert [ad.direction.name for ad in win.session.directions[n:n + 2]] == ["pc0", "pc1"]
    _final(qtbot, win, win.undo_action.trigger)   # one step removes the whole file
    assert len(win.session.directions) == n and "pc0" not in win._sliders


# ----------------------------------------------------------------------------
# Projects, export, clipboard


def test_save_and_reopen_project(qtbot, window, tmp_path):
    win = window
    _random_face(qtbot, win)
    name = next(iter(win._sliders))
    _final(qtbot, win, lambda: win._sliders[name].slider.setValue(150))
    with qtbot.waitSignal(win.reference_ready, timeout=30000):
        win.reference_from_seed(11)
    _final(qtbot, win, lambda: win.mixing.groups["medium"].slider.setValue(60))
    _final(qtbot, win, lambda: win.psi_slider.setValue(80))
    ws = win.session.ws().numpy()
    shown = win.edit_view.array.copy()

    with qtbot.waitSignal(win.project_saved, timeout=10000) as sig:
        win.save_project(tmp_path / "edit")
    path = sig.args[0]
    assert path.endswith(".stylestudio") and not win.session.modified

    _final(qtbot, win, win.reset_button.click)
    assert not np.array_equal(win.session.ws().numpy(), ws)
    with qtbot.waitSignal(win.project_opened, timeout=10000):
        win.open_path(path)
    assert not np.array_equal(win.edit_view.array, shown)
    qtbot.waitUntil(lambda: np.array_equal(win.edit_view.array, shown), timeout=30000)
    assert np.array_equal(win.session.ws().numpy(), ws)
    assert win._sliders[name].alpha == pytest.approx(1.5) and win.psi_slider.value() == 80
    assert win.mixing.groups["medium"].value == pytest.approx(0.6)
    qtbot.waitUntil(lambda: win.mixing.thumb.array is not None, timeout=30000)  # reference shown again
    assert win.recent[0].endswith("edit.stylestudio")


def test_corrupt_project_is_an_error_dialog(qtbot, window, tmp_path):
    bad = tmp_path / "broken.stylestudio"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with qtbot.waitSignal(window.message_shown, timeout=10000) as sig:
        window.open_path(bad)
    kind, _title, text = sig.args
    assert kind == "error" and "broken.stylestudio" in text and "Traceback" not in text


def test_export_carries_the_recipe_and_copy(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QApplication

    from studio.engine.workspace import read_recipe

    win = window
    _random_face(qtbot, win)
    name = next(iter(win._sliders))
    _final(qtbot, win, lambda: win._sliders[name].slider.setValue(-120))
    for suffix in ("png", "jpg"):
        with qtbot.waitSignal(win.exported, timeout=10000):
            win.export_aligned(tmp_path / f"face.{suffix}")
        r = read_recipe(tmp_path / f"face.{suffix}")
        assert r["directions"] == [{"name": name, "alpha": -1.2, "layers": [0, 8], "source": "sefa"}], suffix
        assert r["model"]["num_ws"] == 8 and r["psi"] == 1 and r["image"] == "aligned"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "face.png")), win.edit_image)
    assert Image.open(tmp_path / "face.jpg").size == (32, 32)

    win.copy_action.trigger()
    img = QApplication.clipboard().image()
    assert (img.width(), img.height()) == (32, 32)
    rgb = img.convertToFormat(img.Format.Format_RGB888)
    arr = np.array(rgb.constBits(), np.uint8).reshape(32, rgb.bytesPerLine())[:, :96].reshape(32, 32, 3)
    assert np.array_equal(arr, win.edit_image)


def test_settings_and_recent_files_persist(qtbot, tiny_model, tmp_path, one_thread):
    from PySide6.QtCore import QSettings

    from studio.gui.main_window import MainWindow

    ini = str(tmp_path / "settings.ini")
    win = MainWindow(model_path=tiny_model, optimize_steps=3, settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_loaded, timeout=30000):
        win.show()
    assert win.device_combo.currentData() == "cpu" and win.device_combo.count() >= 1
    win.refine_steps.setValue(17)
    win.resize(900, 650)
    assert win.recent == [str(tiny_model.resolve())]
    win.close()

    win2 = MainWindow(model_path="", settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win2)
    assert win2.refine_steps.value() == 17 and win2.device == "cpu"
    assert win2.recent == [str(tiny_model.resolve())]
    assert [a.text() for a in win2.recent_menu.actions()][0].endswith("tiny.safetensors")
    assert win2.height() == 650  # the window geometry came back (offscreen frames may shift the width)
    with qtbot.waitSignal(win2.model_loaded, timeout=30000):
        win2.recent_menu.actions()[0].trigger()
    win2.shutdown()


def test_shortcuts_and_tooltips(window):
    win = window
    keys = {a.text().replace("&", ""): a.shortcut().toString() for a in win.findChildren(type(win.undo_action))}
    for name, key in (("Open…", "Ctrl+O"), ("Save project…", "Ctrl+S"), ("Export photo…", "Ctrl+E"),
                      ("Copy image", "Ctrl+C"), ("Invert", "Ctrl+I"), ("Refine", "Ctrl+Shift+R"),
                      ("Load directions…", "Ctrl+D"), ("Cancel", "Esc"), ("Show original (before)", "Ctrl+B")):
        assert keys.get(name) == key, (name, keys.get(name))
    for w in (win.method_combo, win.device_combo, win.invert_button, win.refine_button, win.psi_slider,
              win.random_button, win.mixing.seed_button, win.mixing.photo_button, win.reset_dirs_button):
        assert w.toolTip(), w
    win.show_shortcuts()
    assert "Ctrl+Shift+Z" in win.messages[-1][2]
    win.show_model_info()
    assert "num_ws 8" in win.messages[-1][2] and win.model.licence in win.messages[-1][2]


# ----------------------------------------------------------------------------
# Refine


@needs_faces
def test_refine_improves_in_the_background_and_cancel_keeps_the_face(qtbot, window):
    from PySide6.QtCore import QTimer

    win = window
    with qtbot.waitSignal(win.photo_ready, timeout=30000):
        win.open_path(PHOTO)
    assert not win.refine_button.isEnabled()  # nothing to refine yet
    win.set_method("optimize")
    with qtbot.waitSignal(win.paste_shown, timeout=60000):
        win.invert()
    start = win.session.state.source.copy()
    win.refine_steps.setValue(2)
    with qtbot.waitSignal(win.refine_finished, timeout=60000):
        win.refine_button.click()
    assert win.progress.value() == 100 and win.last_inversion.method == "refine"
    assert not np.array_equal(win.session.state.source, start)
    assert win.undo_action.text() == "&Undo set source face"
    _final(qtbot, win, win.undo_action.trigger)
    assert np.array_equal(win.session.state.source, start)

    # a long refinement: the event loop stays responsive, previews arrive, Cancel keeps the face
    win.refine_steps.setValue(2000)
    stamps = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    win.refine()
    assert win.cancel_button.isEnabled() and not win.invert_button.isEnabled() and not win.refine_button.isEnabled()
    qtbot.waitUntil(lambda: win.invert_step >= 1, timeout=60000)
    stamps.clear()
    qtbot.wait(1000)
    timer.stop()
    gaps = np.diff(stamps) * 1000
    assert len(stamps) > 15 and gaps.max() < 100, f"max gap {gaps.max():.0f} ms"
    win.cancel_action.trigger()
    qtbot.waitUntil(lambda: win.refine_button.isEnabled(), timeout=30000)
    assert np.array_equal(win.session.state.source, start) and win.progress.value() == 0
    assert not any(k == "error" for k, *_ in win.messages)


# ----------------------------------------------------------------------------
# The default pack: two encoders, a photo reference, a wrong-size direction file


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


@needs_faces
def test_pack_two_encoders_slider_and_photo_reference(qtbot, pack_window, tmp_path):
    win = pack_window
    import json

    from studio.engine.workspace import default_model_path
    declared = json.loads((default_model_path() / "manifest.json").read_text())["directions"]
    assert {"e2style", "crg"} <= set(win.model.encoders) and len(win._sliders) == len(declared) >= 4
    win.show_model_info()   # the pack's provenance: kimg and FD-VGG16 from its manifest
    prov = json.loads((default_model_path() / "manifest.json").read_text())["provenance"]
    info = win.messages[-1][2]
    assert f"{float(prov['kimg']):g} kimg" in info and f"{prov['fd_vgg16']['value']} (" in info
    with qtbot.waitSignal(win.photo_ready, timeout=30000):
        win.open_path(PHOTO)
    results = {}
    win.keep_detail.setChecked(False)  # the generated face replaces the photo's: each encoder's shows
    for method in ("e2style", "crg"):
        win.set_method(method)
        with qtbot.waitSignal(win.paste_shown, timeout=60000):
            win.invert()
        assert win.last_inversion.method == method
        results[method] = (win.session.state.source.copy(), _pixels(win.edit_view), win.pasted_image.copy())
    (la, pa, qa), (lb, pb, qb) = results.values()
    assert la.shape == (10, 256) and not np.allclose(la, lb)
    assert not np.array_equal(pa, pb) and not np.array_equal(qa, qb)
    # both reconstruct the same face: closer to each other than to the average face
    G = win.model.G
    avg = G.w_avg.numpy()[None]
    assert np.abs(la - lb).mean() < np.abs(la - avg).mean() + np.abs(lb - avg).mean()
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        win.keep_detail.setChecked(True)  # the change only: no edit yet, so the photo comes back as it is
    assert np.array_equal(win.pasted_image, win.photo.image)

    # a named pack direction moves the canvas, and the photo by the change it makes
    s = win._sliders["age"]
    before = _pixels(win.edit_view)
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        s.slider.setValue(s.slider.maximum())
    assert np.abs(_pixels(win.edit_view).astype(int) - before.astype(int)).mean() > 1
    changed = np.abs(win.pasted_image.astype(int) - win.photo.image.astype(int)).max(2) > 0
    assert 0.01 < changed.mean() < 0.5  # the face, not the whole photo
    assert win.recipe("photo")["paste"] == "change"

    # mixing reference from another photo, inverted with the chosen encoder
    with qtbot.waitSignal(win.reference_ready, timeout=60000):
        win.reference_from_photo(REF_PHOTO)
    ref = win.session.mixer.reference
    assert ref.shape == (10, 256) and REF_PHOTO.name in win.mixing.caption.text()
    _final(qtbot, win, lambda: win.mixing.groups["fine"].slider.setValue(100))
    a, b = win.session.mixer.groups["fine"]
    assert (a, b) == (8, 10)
    unedited = win.session.state.source.copy()
    unedited[a:b] = ref[a:b]
    d = win.session.directions[win.session.state.index_of("age")]
    unedited[slice(*d.direction.span(10))] += d.alpha * d.direction.vector
    assert np.allclose(win.session.ws().numpy(), unedited, atol=1e-6)

    # a direction file for another model is refused with a dialog
    bad = tmp_path / "smile_boundary.npy"
    np.save(bad, np.ones((1, 512), np.float32))
    with qtbot.waitSignal(win.message_shown, timeout=10000) as sig:
        win.load_directions(bad)
    assert sig.args[0] == "error" and "w_dim=256" in sig.args[2]


def test_reloading_the_same_model_keeps_the_edit(qtbot, window):
    """What a device change does: the generator is loaded again and the edit goes on."""
    win = window
    _random_face(qtbot, win)
    name = next(iter(win._sliders))
    _final(qtbot, win, lambda: win._sliders[name].slider.setValue(200))
    ws, session = win.session.ws().numpy(), win.session
    with qtbot.waitSignal(win.frame_shown, timeout=30000, check_params_cb=_final_of(win)):
        win.load_model(win.model.path)
    assert win.session is session and np.array_equal(win.session.ws().numpy(), ws)
    assert win._sliders[name].alpha == 2 and win.undo_action.isEnabled()
    assert "cpu" in win.render_label.text()


@needs_faces
def test_overlapping_pastes_render_the_unedited_base_once(qtbot, window, monkeypatch):
    """Paste jobs of successive renders overlap on the two workers; "Keep the photo's detail" renders
    the unedited base once per source latent, not once per job."""
    import threading

    from studio.engine import workspace as ws_ops

    win = window
    with qtbot.waitSignal(win.photo_ready, timeout=30000):
        win.open_path(PHOTO)
    win.set_method("optimize")
    with qtbot.waitSignal(win.paste_shown, timeout=60000):
        win.invert()
    s = next(iter(win._sliders.values()))
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        s.slider.setValue(s.slider.maximum())  # an edit: the paste needs the unedited base
    assert win.keep_detail.isChecked() and not np.array_equal(win.session.ws(), win.session.state.source)
    real, calls = ws_ops.render_latent, []

    def slow(G, latent):
        calls.append(threading.current_thread().name)
        time.sleep(0.3)  # the second job arrives while the first renders
        return real(G, latent)

    monkeypatch.setattr(ws_ops, "render_latent", slow)
    win._paste_base = None
    gen, img = win.render_worker.latest_generation, win.edit_image
    qtbot.waitUntil(lambda: win.jobs.runner.wait_idle(0), timeout=10000)  # both pastes get a worker
    with qtbot.waitSignal(win.paste_shown, timeout=30000):
        win._paste(gen, img)
        time.sleep(0.05)
        win._paste(gen, img)
    assert win.jobs.runner.wait_idle(30)
    assert len(calls) == 1, calls
    expected = ws_ops.paste(win.photo, img, win.aligned.transform, base=real(win.model.G, win.session.state.source))
    assert np.array_equal(win.pasted_image, expected)
