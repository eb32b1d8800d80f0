"""The StyleStudio main window: canvas (aligned edit + photo with the edit pasted back), inversion
panel, direction sliders, truncation, random face, undo/redo, export, About.

A view only: all state lives in :class:`~studio.engine.session.EditSession` and the
:class:`~studio.engine.workspace.LoadedModel`; every slow step (model loading, face detection and
alignment, inversion, rendering, paste-back, file writing) runs in a worker and comes back through
:mod:`studio.gui.jobs`. Errors become a message box (``show_message``), never a traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio import __version__
from studio.core.errors import StudioError
from studio.engine import workspace as ws_ops
from studio.engine.renderer import Renderer, RenderWorker
from studio.engine.session import AppliedDirection, EditSession
from studio.gui.jobs import QtJobs
from studio.gui.widgets import DirectionSlider, FacePickerDialog, ImageView

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.gif)"
MODEL_FILTER = "Models (*.pkl *.pt *.pth *.safetensors manifest.json)"
PROJECT_FILTER = "StyleStudio projects (*.stylestudio)"
PSI_STEPS = 100


class MainWindow(QMainWindow):
    """``model_path``: model file or pack to load at start (None: the default pack; '' : none).
    ``optimize_steps``: steps of the optimisation / hybrid methods (None: the projector's default).
    ``settings``: a QSettings for layout persistence (None: the user's; False: none)."""

    model_loaded = Signal()
    photo_ready = Signal()          # a face is aligned and shown
    inversion_finished = Signal()   # a new source latent is in the session
    frame_shown = Signal(int, bool)  # generation, final
    paste_shown = Signal(int)
    exported = Signal(str)
    project_saved = Signal(str)
    message_shown = Signal(str, str, str)  # kind, title, text

    def __init__(self, *, model_path: str | Path | None = None, optimize_steps: int | None = None,
                 device: str = "cpu", settings: QSettings | bool | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("StyleStudio")
        self.setAcceptDrops(True)
        self.optimize_steps = optimize_steps
        self.device = device
        self.settings = QSettings("StyleStudio", "StyleStudio") if settings is None else (settings or None)
        self.jobs = QtJobs(parent=self)
        self.messages: list[tuple[str, str, str]] = []
        self.model: ws_ops.LoadedModel | None = None
        self.photo: ws_ops.PhotoFaces | None = None
        self.aligned = None                 # AlignedFace of the face being edited
        self.session: EditSession | None = None
        self.renderer: Renderer | None = None
        self.render_worker: RenderWorker | None = None
        self.edit_image: np.ndarray | None = None    # last final render (R, R, 3) uint8
        self.pasted_image: np.ndarray | None = None  # photo with the edit pasted back
        self._shown_gen = 0
        self._invert_job = None
        self._sliders: dict[str, DirectionSlider] = {}
        self.invert_step = 0              # last progress step reported by the running inversion
        self._pending_open: str | None = None
        self._build_ui()
        self._restore_settings()
        self._update_actions()
        if model_path is None:
            model_path = ws_ops.default_model_path()
            if model_path is None:
                self.statusBar().showMessage("No model pack installed: use File ▸ Open model…")
        if model_path:
            self.load_model(model_path)

    # ------------------------------------------------------------------------------------------------
    # UI

    def _build_ui(self) -> None:
        # canvas
        self.edit_view = ImageView("Drop a photo here, or File ▸ Open")
        self.photo_view = ImageView("The photo with the edit pasted back")
        self.show_original = QCheckBox("Show original (before)")
        self.show_original.setToolTip("Hold to compare the edit with the original face and photo")
        self.show_original.toggled.connect(self._refresh_canvas)
        canvas = QWidget()
        cl = QVBoxLayout(canvas)
        row = QSplitter(Qt.Orientation.Horizontal)
        row.addWidget(self.edit_view)
        row.addWidget(self.photo_view)
        cl.addWidget(row, 1)
        cl.addWidget(self.show_original)

        # inversion panel
        inv = QGroupBox("Inversion")
        il = QVBoxLayout(inv)
        self.method_combo = QComboBox()
        self.method_combo.setToolTip("How the face becomes a latent: encoders are fast, optimisation most faithful")
        self.invert_button = QPushButton("Invert")
        self.invert_button.setToolTip("Find the latent of the aligned face with the chosen method")
        self.invert_button.clicked.connect(self.invert)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_inversion)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        il.addWidget(self.method_combo)
        hb = QHBoxLayout()
        hb.addWidget(self.invert_button)
        hb.addWidget(self.cancel_button)
        il.addLayout(hb)
        il.addWidget(self.progress)

        # generation panel
        gen = QGroupBox("Face")
        gl = QFormLayout(gen)
        self.psi_slider = QSlider(Qt.Orientation.Horizontal)
        self.psi_slider.setRange(0, PSI_STEPS)
        self.psi_slider.setValue(PSI_STEPS)
        self.psi_slider.setToolTip("Truncation ψ: 1 = the face as is, 0 = the average face")
        self.psi_slider.valueChanged.connect(self._psi_moved)
        self.psi_slider.sliderReleased.connect(self._end_drag)
        self.psi_label = QLabel("1.00")
        ph = QHBoxLayout()
        ph.addWidget(self.psi_slider)
        ph.addWidget(self.psi_label)
        gl.addRow("Truncation ψ", ph)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.random_button = QPushButton("Random face")
        self.random_button.setToolTip("Start from a random face drawn from the seed (then the seed advances)")
        self.random_button.clicked.connect(self.random_face)
        rh = QHBoxLayout()
        rh.addWidget(self.seed_spin)
        rh.addWidget(self.random_button)
        gl.addRow("Seed", rh)
        self.reset_button = QPushButton("Reset all edits")
        self.reset_button.clicked.connect(self.reset_edits)
        gl.addRow(self.reset_button)

        # directions panel
        self.dir_box = QGroupBox("Directions")
        self.dir_layout = QVBoxLayout(self.dir_box)
        self.dir_note = QLabel("")
        self.dir_note.setWordWrap(True)
        self.dir_layout.addWidget(self.dir_note)

        side = QWidget()
        sl = QVBoxLayout(side)
        for w in (inv, gen, self.dir_box):
            sl.addWidget(w)
        sl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(side)
        scroll.setMinimumWidth(330)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(canvas)
        split.addWidget(scroll)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.splitter = split
        self.setCentralWidget(split)

        self.render_label = QLabel("")
        self.statusBar().addPermanentWidget(self.render_label)
        self._build_menus()
        self.resize(1200, 720)

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(lambda _=False: slot())
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.open_action = self._action(f, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                                        "Open a photo, a .stylestudio project or a model file")
        self._action(f, "Open &model…", self.open_model_dialog, None, "Load a StyleGAN2 / pSp / e4e checkpoint or pack")
        f.addSeparator()
        self.save_action = self._action(f, "&Save project…", self.save_project, QKeySequence.StandardKey.Save)
        self.export_photo_action = self._action(f, "&Export photo…", self.export_photo, "Ctrl+E",
                                                "Save the photo with the edited face pasted back")
        self.export_aligned_action = self._action(f, "Export &aligned edit…", self.export_aligned, "Ctrl+Shift+E",
                                                  "Save the edited aligned face")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        e = mb.addMenu("&Edit")
        self.undo_action = self._action(e, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(e, "&Redo", self.redo, "Ctrl+Shift+Z")
        e.addSeparator()
        self._action(e, "Reset all edits", self.reset_edits)
        h = mb.addMenu("&Help")
        self._action(h, "&About StyleStudio", self.show_about)

    # ------------------------------------------------------------------------------------------------
    # Messages (tests read ``messages`` / monkeypatch ``ask_*``)

    def show_message(self, kind: str, title: str, text: str) -> None:
        """A non-blocking message box; ``kind`` is 'error', 'warning' or 'info'."""
        self.messages.append((kind, title, text))
        icon = {"error": QMessageBox.Icon.Critical, "warning": QMessageBox.Icon.Warning}.get(
            kind, QMessageBox.Icon.Information)
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.message_shown.emit(kind, title, text)

    def show_error(self, title: str, exc: BaseException) -> None:
        if isinstance(exc, StudioError):
            text = str(exc)
        elif isinstance(exc, MemoryError):
            text = "Out of memory. Close other programs or use a smaller model."
        else:
            log.error("unexpected error: %s", title, exc_info=exc)
            text = f"Unexpected error ({type(exc).__name__}: {exc}). Please report it."
        self.statusBar().showMessage(f"{title}: {text}", 8000)
        self.show_message("error", title, text)

    def ask_open_path(self, title: str, filters: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, title, "", filters)
        return path or None

    def ask_save_path(self, title: str, default: str, filters: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return path or None

    def ask_face(self, photo: ws_ops.PhotoFaces) -> int | None:
        """Which face to edit (index into ``photo.faces``) or None to cancel."""
        thumbs = [ws_ops.face_thumbnail(photo, i) for i in range(len(photo.faces))]
        dlg = FacePickerDialog(thumbs, self)
        dlg.exec()
        return dlg.chosen

    # ------------------------------------------------------------------------------------------------
    # Opening files

    def open_dialog(self) -> None:
        path = self.ask_open_path("Open", f"All supported ({' '.join('*' + s for s in ws_ops.IMAGE_SUFFIXES)} "
                                          f"*.stylestudio *.pkl *.pt *.pth *.safetensors manifest.json);;"
                                          f"{IMAGE_FILTER};;{PROJECT_FILTER};;{MODEL_FILTER}")
        if path:
            self.open_path(path)

    def open_model_dialog(self) -> None:
        path = self.ask_open_path("Open model", MODEL_FILTER)
        if path:
            self.load_model(path)

    def open_path(self, path: str | Path) -> None:
        kind = ws_ops.classify_path(path)
        if kind != "model" and self.model is None and self.jobs.busy:
            self._pending_open = str(path)  # opened once the model being loaded is ready
            return
        if kind == "model":
            self.load_model(path)
        elif kind == "project":
            self.open_project(path)
        else:
            self.open_photo(path)

    def dragEnterEvent(self, e):  # noqa: N802 (Qt)
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e):  # noqa: N802 (Qt)
        files = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if files:
            e.acceptProposedAction()
            self.open_path(files[0])

    # -- model

    def load_model(self, path: str | Path) -> None:
        self.statusBar().showMessage(f"Loading model {path}…")
        device = self.device
        self.jobs.submit(lambda ctx: ws_ops.load_model(path, device=device, ctx=ctx), name="load model",
                         key="model", on_done=self._model_ready,
                         on_error=lambda e: self.show_error("Cannot open the model", e))

    def _model_ready(self, model: ws_ops.LoadedModel) -> None:
        if self.render_worker is not None:
            self.render_worker.close()
        self.model = model
        self.renderer = Renderer(model.G, device=self.device)
        self.render_worker = RenderWorker(
            self.renderer,
            on_frame=lambda f: self.jobs.call.post(self._frame, f.generation, f.to_uint8()[0], f.seconds, f.final),
            on_error=lambda e, g: self.jobs.call.post(self.show_error, "Rendering failed", e))
        self._set_session(None)
        self.photo = self.aligned = None
        self.pasted_image = self.edit_image = None
        self._refresh_canvas()
        self._fill_methods()
        self._build_sliders()
        self.setWindowTitle(f"StyleStudio — {Path(model.path).name}")
        self.statusBar().showMessage(f"Model loaded: {model.describe()}", 6000)
        self.model_loaded.emit()
        pending, self._pending_open = self._pending_open, None
        if pending:
            self.open_path(pending)

    def _fill_methods(self) -> None:
        from studio.core.inversion import ENCODER_METHODS, available_methods

        m = QStandardItemModel(self.method_combo)
        first = None
        for i, info in enumerate(available_methods(self.model.G, self.model.encoders)):
            item = QStandardItem(info.label if info.available else f"{info.label} — {info.reason}")
            item.setData(info.name, Qt.ItemDataRole.UserRole)
            item.setEnabled(info.available)
            item.setToolTip(info.label if info.available else f"Unavailable: {info.reason}")
            m.appendRow(item)
            if info.available and (first is None or (info.name in ENCODER_METHODS
                                                     and m.item(first).data(Qt.ItemDataRole.UserRole) == "optimize")):
                first = i
        self.method_combo.setModel(m)
        last = self.settings.value("method") if self.settings is not None else None
        idx = next((i for i in range(m.rowCount()) if m.item(i).data(Qt.ItemDataRole.UserRole) == last
                    and m.item(i).isEnabled()), first)
        if idx is not None:
            self.method_combo.setCurrentIndex(idx)

    def set_method(self, name: str) -> None:
        m = self.method_combo.model()
        for i in range(m.rowCount()):
            if m.item(i).data(Qt.ItemDataRole.UserRole) == name:
                if not m.item(i).isEnabled():
                    raise ValueError(f"method {name} is unavailable for this model")
                self.method_combo.setCurrentIndex(i)
                return
        raise ValueError(f"no method {name}")

    @property
    def method(self) -> str | None:
        return self.method_combo.currentData(Qt.ItemDataRole.UserRole)

    def _build_sliders(self) -> None:
        for s in self._sliders.values():
            s.setParent(None)
            s.deleteLater()
        self._sliders = {}
        if self.model is None:
            return
        src = self.model.directions_source
        self.dir_note.setText({"pack": "Directions of the model pack.",
                               "sefa": "This model has no named directions: these are its top SeFa "
                                       "components (unsupervised; meanings vary).",
                               "none": "This model has no directions."}.get(src, ""))
        for d in self.model.directions:
            label = str(d.meta.get("label") or d.name)
            lo, hi = d.default_range
            tip = f"{label}: {lo:+g} to {hi:+g}" + (f", layers {d.layers[0]}-{d.layers[1] - 1}" if d.layers else "")
            s = DirectionSlider(d.name, label, lo, hi, tip)
            s.moved.connect(self._amount_moved)
            s.released.connect(lambda _n: self._end_drag())
            self.dir_layout.addWidget(s)
            self._sliders[d.name] = s

    # -- photo

    def open_photo(self, path: str | Path) -> None:
        if self.model is None:
            self.show_message("warning", "No model", "Load a model first (File ▸ Open model…).")
            return
        self.statusBar().showMessage(f"Finding faces in {Path(path).name}…")
        self.jobs.submit(lambda ctx: ws_ops.read_photo(path, ctx=ctx), name="read photo", key="photo",
                         on_done=self._photo_read, on_error=lambda e: self.show_error("Cannot use this photo", e))

    def _photo_read(self, photo: ws_ops.PhotoFaces) -> None:
        index = 0
        if len(photo.faces) > 1:
            index = self.ask_face(photo)
            if index is None:
                self.statusBar().showMessage("Cancelled", 3000)
                return
        profile = self.model.profile
        self.jobs.submit(lambda ctx: (photo, ws_ops.align(photo, index, profile)), name="align", key="photo",
                         on_done=lambda r: self._photo_aligned(*r),
                         on_error=lambda e: self.show_error("Cannot align the face", e))

    def _photo_aligned(self, photo, aligned) -> None:
        self.photo, self.aligned = photo, aligned
        self.pasted_image = None
        self.edit_image = None
        self._refresh_canvas()
        self.statusBar().showMessage(f"Face aligned ({Path(photo.path).name}): pick a method and click Invert", 8000)
        self._update_actions()
        self.photo_ready.emit()

    # -- project

    def open_project(self, path: str | Path) -> None:
        if self.model is None:
            self.show_message("warning", "No model", "Load the project's model first (File ▸ Open model…).")
            return
        ident = self.model.identity()
        self.jobs.submit(lambda ctx: EditSession.load(path, model=ident), name="open project",
                         on_done=lambda s: self._project_opened(s, path),
                         on_error=lambda e: self.show_error("Cannot open the project", e))

    def _project_opened(self, session: EditSession, path) -> None:
        self.photo = self.aligned = None
        self.pasted_image = None
        self._set_session(session)
        self.statusBar().showMessage(f"Opened {path}", 5000)

    def save_project(self, path: str | Path | None = None) -> None:
        if self.session is None:
            self.show_message("info", "Nothing to save", "Invert a photo or draw a random face first.")
            return
        path = path or self.ask_save_path("Save project", "edit.stylestudio", PROJECT_FILTER)
        if not path:
            return
        data = self.session.to_project_bytes()
        sess = self.session

        def write(ctx):
            from studio.core.fileio import atomic_write_bytes

            p = Path(path) if Path(path).suffix else Path(path).with_suffix(ws_ops.PROJECT_SUFFIX)
            atomic_write_bytes(p, data)
            return p

        def done(p):
            sess._saved_version = sess.version  # the bytes written are of this version
            self.statusBar().showMessage(f"Saved {p}", 5000)
            self.project_saved.emit(str(p))

        self.jobs.submit(write, name="save project", on_done=done,
                         on_error=lambda e: self.show_error("Cannot save the project", e))

    # ------------------------------------------------------------------------------------------------
    # Inversion and random faces

    def invert(self) -> None:
        if self.model is None or self.aligned is None:
            self.show_message("info", "No face", "Open a photo with a face first (File ▸ Open or drop it here).")
            return
        method = self.method
        if method is None:
            return
        model, image, steps = self.model, self.aligned.image, self.optimize_steps
        self.progress.setValue(0)
        self.invert_step = 0
        self.invert_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.statusBar().showMessage(f"Inverting with {method}…")
        if self.settings is not None:
            self.settings.setValue("method", method)

        def job(ctx):
            return ws_ops.invert(model, image, method, steps=steps, progress=ctx.progress, cancel=ctx.token)

        self._invert_job = self.jobs.submit(job, name="invert", key="invert", on_done=self._inverted,
                                            on_error=self._invert_failed, on_cancelled=self._invert_cancelled,
                                            on_progress=self._invert_progress)

    def cancel_inversion(self) -> None:
        if self._invert_job is not None:
            self._invert_job.cancel()

    def _invert_progress(self, p) -> None:
        self.invert_step = getattr(p, "step", 0)
        if getattr(p, "total", 0):
            self.progress.setValue(int(100 * p.step / p.total))
        if getattr(p, "preview", None) is not None and not self.show_original.isChecked():
            self.edit_view.set_array(p.preview)

    def _invert_end(self) -> None:
        self._invert_job = None
        self.invert_button.setEnabled(True)
        self._update_actions()

    def _inverted(self, inv) -> None:
        self._invert_end()
        self.progress.setValue(100)
        self.last_inversion = inv
        latent = inv.latent_wplus.numpy()
        if self.session is None or self.session.model != self.model.identity():
            self._set_session(self._new_session(latent))
        else:
            self.session.set_source(latent)
        lp = inv.metrics.get("lpips")
        self.statusBar().showMessage(f"Inverted with {inv.method} in {inv.seconds:.1f} s"
                                     + (f" (LPIPS {lp:.3f})" if lp is not None else ""), 8000)
        self.inversion_finished.emit()

    def _invert_failed(self, e) -> None:
        self._invert_end()
        self.progress.setValue(0)
        self.show_error("Inversion failed", e)
        self._refresh_canvas()

    def _invert_cancelled(self) -> None:
        self._invert_end()
        self.progress.setValue(0)
        self.statusBar().showMessage("Inversion cancelled", 4000)
        self._refresh_canvas()

    def random_face(self) -> None:
        if self.model is None:
            self.show_message("warning", "No model", "Load a model first (File ▸ Open model…).")
            return
        G, seed = self.model.G, self.seed_spin.value()
        self.seed_spin.setValue(seed + 1)

        def done(latent):
            self.photo = self.aligned = None
            self.pasted_image = None
            if self.session is None:
                self._set_session(self._new_session(latent))
            else:
                self.session.set_source(latent)
            self.statusBar().showMessage(f"Random face, seed {seed}", 4000)

        self.jobs.submit(lambda ctx: ws_ops.random_latent(G, seed), name="random face", on_done=done,
                         on_error=lambda e: self.show_error("Cannot draw a random face", e))

    # ------------------------------------------------------------------------------------------------
    # Session

    def _new_session(self, latent) -> EditSession:
        m = self.model
        s = EditSession.for_generator(m.G, latent, format=m.format, path=m.path)
        for d in m.directions:
            s.state.directions.append(AppliedDirection(d, 0.0))  # offered at 0: not an undo step
        return s

    def _set_session(self, session: EditSession | None) -> None:
        if self.session is not None:
            self.session.listeners.remove(self._session_changed)
        self.session = session
        if session is not None:
            session.listeners.append(self._session_changed)
            names = {ad.direction.name for ad in session.directions}
            if set(self._sliders) != names and self.model is not None:
                # a project may carry its own directions: show exactly the session's
                self._build_sliders_for(session)
            self._session_changed(session)
        self._update_actions()

    def _build_sliders_for(self, session: EditSession) -> None:
        saved = self.model.directions
        self.model.directions = [ad.direction for ad in session.directions]
        try:
            self._build_sliders()
        finally:
            self.model.directions = saved

    def _session_changed(self, session: EditSession) -> None:
        for ad in session.directions:
            s = self._sliders.get(ad.direction.name)
            if s is not None and abs(s.alpha - ad.alpha) > 1e-9:
                s.set_alpha(ad.alpha)
        psi = session.state.psi
        if round(psi * PSI_STEPS) != self.psi_slider.value():
            self.psi_slider.blockSignals(True)
            self.psi_slider.setValue(round(psi * PSI_STEPS))
            self.psi_slider.blockSignals(False)
        self.psi_label.setText(f"{psi:.2f}")
        self._update_actions()
        self.request_render()

    def _amount_moved(self, name: str, alpha: float, dragging: bool) -> None:
        if self.session is None:
            return
        try:
            self.session.set_amount(name, alpha, dragging=dragging)
        except StudioError as e:
            self.show_error("Cannot apply the direction", e)

    def _psi_moved(self, v: int) -> None:
        self.psi_label.setText(f"{v / PSI_STEPS:.2f}")
        if self.session is not None:
            self.session.set_truncation(v / PSI_STEPS, dragging=self.psi_slider.isSliderDown())

    def _end_drag(self) -> None:
        if self.session is not None:
            self.session.end_drag()

    def undo(self) -> None:
        if self.session is not None:
            self.session.undo()

    def redo(self) -> None:
        if self.session is not None:
            self.session.redo()

    def reset_edits(self) -> None:
        if self.session is not None:
            self.session.reset()

    def _update_actions(self) -> None:
        s = self.session
        self.undo_action.setEnabled(bool(s and s.can_undo))
        self.redo_action.setEnabled(bool(s and s.can_redo))
        self.undo_action.setText(f"&Undo {s.undo_text}" if s and s.can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {s.redo_text}" if s and s.can_redo else "&Redo")
        has = s is not None
        self.save_action.setEnabled(has)
        self.export_aligned_action.setEnabled(has)
        self.export_photo_action.setEnabled(has and self.photo is not None)
        self.reset_button.setEnabled(has)
        self.invert_button.setEnabled(self.aligned is not None and self._invert_job is None)
        self.cancel_button.setEnabled(self._invert_job is not None)
        self.random_button.setEnabled(self.model is not None)

    # ------------------------------------------------------------------------------------------------
    # Rendering

    def request_render(self) -> None:
        if self.session is None or self.render_worker is None:
            return
        self._render_t0 = time.perf_counter()
        self.render_worker.submit(self.session.ws_batch())

    def _frame(self, gen: int, img: np.ndarray, seconds: float, final: bool) -> None:
        if self.render_worker is None or gen != self.render_worker.latest_generation or gen < self._shown_gen:
            return  # superseded
        self._shown_gen = gen
        if final:
            self.edit_image = img
            self.render_label.setText(f"render {seconds * 1000:.0f} ms")
            if self.photo is not None and self.aligned is not None:
                photo, transform = self.photo, self.aligned.transform
                self.jobs.submit(lambda ctx: ws_ops.paste(photo, img, transform), name="paste", key="paste",
                                 on_done=lambda out: self._pasted(gen, out),
                                 on_error=lambda e: self.show_error("Cannot paste the face back", e))
        if not self.show_original.isChecked():
            self.edit_view.set_array(img)
        self.frame_shown.emit(gen, final)

    def _pasted(self, gen: int, out: np.ndarray) -> None:
        if self.render_worker is None or gen != self.render_worker.latest_generation:
            return
        self.pasted_image = out
        if not self.show_original.isChecked():
            self.photo_view.set_array(out)
        self.paste_shown.emit(gen)

    def _refresh_canvas(self) -> None:
        before = self.show_original.isChecked()
        aligned = None if self.aligned is None else self.aligned.image
        photo = None if self.photo is None else self.photo.image
        if before or self.edit_image is None:
            self.edit_view.set_array(aligned if (before or self.session is None) else self.edit_image)
        else:
            self.edit_view.set_array(self.edit_image)
        if before or self.pasted_image is None:
            self.photo_view.set_array(photo)
        else:
            self.photo_view.set_array(self.pasted_image)

    # ------------------------------------------------------------------------------------------------
    # Export

    def export_photo(self, path: str | Path | None = None) -> None:
        if self.pasted_image is None:
            self.show_message("info", "Nothing to export", "Open a photo and invert its face first.")
            return
        self._export(self.pasted_image, path, "edited_photo.png")

    def export_aligned(self, path: str | Path | None = None) -> None:
        if self.edit_image is None:
            self.show_message("info", "Nothing to export", "Invert a photo or draw a random face first.")
            return
        self._export(self.edit_image, path, "edited_face.png")

    def _export(self, img: np.ndarray, path, default: str) -> None:
        path = path or self.ask_save_path("Export image", default, "PNG (*.png);;JPEG (*.jpg *.jpeg)")
        if not path:
            return
        from studio.core.imageio import save_image

        self.jobs.submit(lambda ctx: save_image(path, img), name="export",
                         on_done=lambda p: (self.statusBar().showMessage(f"Exported {p}", 5000),
                                            self.exported.emit(str(p))),
                         on_error=lambda e: self.show_error("Cannot export", e))

    # ------------------------------------------------------------------------------------------------
    # About, settings, closing

    def about_text(self) -> str:
        lic = self.model.licence if self.model is not None else "no model loaded"
        return (f"<h3>StyleStudio {__version__}</h3>"
                "<p>Edit faces with StyleGAN2 on an ordinary computer, offline.</p>"
                "<p><b>StyleStudio</b>: MIT licence.<br>"
                "<b>Qt / PySide6</b>: LGPL v3.<br><b>PyTorch</b>: BSD-3-Clause.<br>"
                "<b>dlib</b> and its face models: Boost Software License / CC0 (68-point model: iBUG 300-W, "
                "non-commercial use).</p>"
                f"<p><b>Model</b> ({'' if self.model is None else self.model.describe()}): {lic}</p>")

    def show_about(self) -> None:
        self.show_message("info", "About StyleStudio", self.about_text())

    def _restore_settings(self) -> None:
        if self.settings is None:
            return
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        st = self.settings.value("splitter")
        if st is not None:
            self.splitter.restoreState(st)

    def closeEvent(self, e):  # noqa: N802 (Qt)
        if self.settings is not None:
            self.settings.setValue("geometry", self.saveGeometry())
            self.settings.setValue("splitter", self.splitter.saveState())
        self.shutdown()
        super().closeEvent(e)

    def shutdown(self) -> None:
        """Cancel and stop every worker (idempotent)."""
        self.jobs.cancel_all()
        if self.render_worker is not None:
            self.render_worker.close()
            self.render_worker = None
        self.jobs.shutdown()
