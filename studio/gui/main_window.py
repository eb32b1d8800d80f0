"""The StyleStudio main window: canvas (aligned edit + photo with the edit pasted back), inversion
panel (encoders, optimisation, Refine, device), direction sliders (reset, layer ranges, extra direction
files), style mixing, truncation, random face, undo/redo, projects, export with the edit recipe,
clipboard, recent files, About; autosave of the edit and recovery after a crash
(:mod:`studio.engine.recovery`).

A view only: all state lives in :class:`~studio.engine.session.EditSession` and the
:class:`~studio.engine.workspace.LoadedModel`; every slow step (model loading, face detection and
alignment, inversion, rendering, paste-back, file writing) runs in a worker and comes back through
:mod:`studio.gui.jobs`. Errors become a message box (``show_message``), never a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QApplication,
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
from studio.core.latent import layer_groups
from studio.engine import recovery
from studio.engine import workspace as ws_ops
from studio.engine.session import AppliedDirection, EditSession
from studio.engine.workers import JobRunner
from studio.gui.compat import install_none_guard
from studio.gui.jobs import QtJobs
from studio.gui.panels import FastMixDialog, MixingPanel
from studio.gui.widgets import (
    DirectionSlider,
    FacePickerDialog,
    ImageView,
    open_message_box,
    to_qimage,
)

if TYPE_CHECKING:  # the renderer imports PyTorch: loaded with the first model, after the window shows
    from studio.engine.renderer import Renderer, RenderWorker

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.gif)"
MODEL_FILTER = "Models (*.pkl *.pt *.pth *.safetensors manifest.json)"
PROJECT_FILTER = "StyleStudio projects (*.stylestudio)"
DIRECTION_FILTER = "Directions (*.npy *.npz)"
PSI_STEPS = 100
#: Most sliders one direction file adds (a GANSpace file may hold thousands of components).
MAX_FILE_DIRECTIONS = 50
MAX_RECENT = 8
REFINE_STEPS = 60
AUTOSAVE_DELAY_MS = 1000      # autosave this long after the last change...
AUTOSAVE_MAX_WAIT_MS = 5000   # ...or at the latest this long after the first unsaved one (long drags)
SHORTCUTS = [  # (keys, what) for Help ▸ Keyboard shortcuts
    ("Ctrl+O", "Open a photo, project or model"), ("Ctrl+Shift+O", "Open a model"),
    ("Ctrl+D", "Load extra directions"), ("Ctrl+S", "Save the project"),
    ("Ctrl+E", "Export the photo with the edit pasted back"), ("Ctrl+Shift+E", "Export the aligned edit"),
    ("Ctrl+C", "Copy the result to the clipboard"), ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo"),
    ("Ctrl+I", "Invert the face"), ("Ctrl+Shift+R", "Refine the inversion"), ("Esc", "Cancel inversion / refinement"),
    ("Ctrl+R", "Random face"), ("Ctrl+B", "Show the original (before)"), ("Ctrl+0", "Reset the directions"),
    ("Ctrl+T", "Training monitor"),
    ("Ctrl+Q", "Quit"),
]


def _with_hint(exc: BaseException, hint: str) -> BaseException:
    """A user error with ``hint`` (what to do) appended; other exceptions unchanged."""
    if isinstance(exc, StudioError) and hint not in str(exc):
        return StudioError(f"{exc}\n\n{hint}")
    return exc


def _project_path(path: str | Path) -> Path:
    """'edit' or 'edit.txt' gets the project suffix: File ▸ Open must know the file."""
    p = Path(path)
    return p if p.suffix.lower() == ws_ops.PROJECT_SUFFIX else p.with_name(p.name + ws_ops.PROJECT_SUFFIX)


def _write_project(p: Path, data: bytes) -> Path:
    from studio.core.fileio import atomic_write_bytes

    try:
        atomic_write_bytes(p, data)
    except OSError as e:
        raise StudioError(f"cannot write {p} ({e.strerror or e}); check that the folder exists "
                          f"and is writable, or save somewhere else") from None
    return p


class MainWindow(QMainWindow):
    """``model_path``: model file or pack to load at start (None: the default pack; '' : none).
    ``optimize_steps``: steps of the optimisation / hybrid methods (None: the projector's default).
    ``settings``: a QSettings for layout persistence (None: the user's; False: none).
    ``recovery_dir``: folder of the autosaves (None: ``$STYLESTUDIO_RECOVERY_DIR`` or the per-user app
    data folder; False: no autosave). ``recover``: what to do with an edit left by a crashed window
    once the first model is loaded: 'ask' (a dialog), 'recover', 'discard' or 'ignore'.
    ``confirm_close``: closing with an unsaved edit asks Save / Discard / Cancel (the app's window;
    without it, such an edit stays in the autosave and the next start offers it)."""

    model_loaded = Signal()
    photo_ready = Signal()          # a face is aligned and shown
    inversion_finished = Signal()   # a new source latent is in the session
    frame_shown = Signal(int, bool)  # generation, final
    paste_shown = Signal(int)
    exported = Signal(str)
    project_saved = Signal(str)
    project_opened = Signal(str)
    directions_loaded = Signal(int)   # how many were added
    reference_ready = Signal()        # a new mixing reference is in the session
    reference_thumb_shown = Signal()
    fast_mix_shown = Signal()         # a fast (distilled) mix is shown in its dialog
    refine_finished = Signal()
    message_shown = Signal(str, str, str)  # kind, title, text
    autosaved = Signal(str)           # path of the autosave just written
    recovered = Signal(str)           # an edit was recovered (path of the autosave it came from)

    def __init__(self, *, model_path: str | Path | None = None, optimize_steps: int | None = None,
                 device: str = "cpu", settings: QSettings | bool | None = None,
                 recovery_dir: str | Path | bool | None = None, recover: str = "ask", confirm_close: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent)
        install_none_guard()
        self.setWindowTitle("StyleStudio[*]")  # [*]: the unsaved-edit mark (setWindowModified)
        self.confirm_close = confirm_close
        self._discard_unsaved = False   # the user chose Discard at close: no autosave is kept
        self.setAcceptDrops(True)
        self.optimize_steps = optimize_steps
        self.device = device
        self.settings = QSettings("StyleStudio", "StyleStudio") if settings is None else (settings or None)
        self.jobs = QtJobs(parent=self)
        # saves and exports get a worker of their own: never queued behind an inversion or Refine
        self.io_jobs = QtJobs(JobRunner(max_workers=1, name="stylestudio-io"), parent=self)
        self._saves_tried: dict[object, bool] = {}  # save key -> written (its worker got to it)
        self._closed = False
        self.messages: list[tuple[str, str, str]] = []
        self.model: ws_ops.LoadedModel | None = None
        self.photo: ws_ops.PhotoFaces | None = None
        self.aligned = None                 # AlignedFace of the face being edited
        self.session: EditSession | None = None
        self.renderer: Renderer | None = None
        self.render_worker: RenderWorker | None = None
        self.edit_image: np.ndarray | None = None    # last final render (R, R, 3) uint8
        self.pasted_image: np.ndarray | None = None  # photo with the edit pasted back
        self._paste_base: tuple | None = None  # (key, unedited render) of "Keep the photo's detail"
        self._paste_base_lock = threading.Lock()  # paste jobs overlap: the base is rendered once, not per job
        self._shown_gen = 0
        self._invert_job = None
        self._pending_saves: dict = {}    # project saves submitted but not yet written
        # Which face the canvas shows (bumped whenever the photo / aligned face changes) and which face
        # the session's source latent was inverted from: the edit is pasted into the photo, and
        # Refine offered, only while they agree; a late inversion of an earlier face is dropped.
        self._face_token = 0
        self._source_token = 0
        # (photo path, face index) the session's latent was inverted from; None for a random face, a
        # project or a latent. The autosave records this photo, not whichever photo is open.
        self._source_photo: tuple[str, int] | None = None
        self._sliders: dict[str, DirectionSlider] = {}
        self.invert_step = 0              # last progress step reported by the running inversion
        self._pending_open: str | None = None
        self.last_inversion = None
        self._refine_job = None
        self._reference_job = None
        self._fast_job = None
        self.fast_mix_dialog: FastMixDialog | None = None
        self._ref_infos: dict[int, dict] = {}    # hash of a reference W+ -> where it came from
        self._ref_thumb_key: int | None = None
        self._pending_ref: tuple | None = None   # (thumbnail, info) of the reference being set
        self.recent: list[str] = []
        self.last_frame_ms: dict[str, float] = {}  # 'preview' / 'final': request -> pixels shown
        self.last_render_ms = 0.0
        self.training_window = None       # studio.gui.training.TrainingWindow, made on first use
        self._init_autosave(recovery_dir, recover)
        if self.settings is not None:
            self.device = str(self.settings.value("device", device) or device)
            if self.device not in {d for d, _ in ws_ops.available_devices()}:
                self.device = "cpu"
        self._build_ui()
        self._restore_settings()
        self._update_actions()
        if model_path is None:
            model_path = ws_ops.default_model_path()
            if model_path is None:
                self.statusBar().showMessage("No model pack installed: use File ▸ Open model…")
        if model_path:
            self.load_model(model_path)
        else:
            QTimer.singleShot(0, self._first_recovery_check)  # no model coming: offer the recovery now

    # ------------------------------------------------------------------------------------------------
    # UI

    def _build_ui(self) -> None:
        # canvas
        self.edit_view = ImageView("Drop a photo here, or File ▸ Open")
        self.edit_view.setToolTip("The aligned face with your edits")
        self.photo_view = ImageView("The photo with the edit pasted back")
        self.photo_view.setToolTip("The whole photo with the edited face pasted back")
        self.show_original = QCheckBox("Show original (before)")
        self.show_original.setToolTip("Compare the edit with the original face and photo (Ctrl+B)")
        self.show_original.toggled.connect(self._refresh_canvas)
        self.keep_detail = QCheckBox("Keep the photo's detail")
        self.keep_detail.setToolTip("Paste only the change your edit makes, so the photo keeps its own detail and "
                                    "identity (best for shading, colour and moderate shape edits).\nOff: the "
                                    "generated face replaces the photo's face (best for large changes of shape).")
        self.keep_detail.setChecked(True)
        self.keep_detail.toggled.connect(self._keep_detail_toggled)
        canvas = QWidget()
        cl = QVBoxLayout(canvas)
        row = QSplitter(Qt.Orientation.Horizontal)
        row.addWidget(self.edit_view)
        row.addWidget(self.photo_view)
        self.canvas_splitter = row
        cl.addWidget(row, 1)
        checks = QHBoxLayout()
        checks.addWidget(self.show_original)
        checks.addWidget(self.keep_detail)
        checks.addStretch(1)
        cl.addLayout(checks)

        # inversion panel
        inv = QGroupBox("Inversion")
        il = QVBoxLayout(inv)
        self.method_combo = QComboBox()
        self.method_combo.setToolTip("How the face becomes a latent: encoders are fast, optimisation most faithful")
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.device_combo = QComboBox()
        for dev, label in ws_ops.available_devices(probe=False):  # CUDA is added once PyTorch has loaded
            self.device_combo.addItem(label, dev)
        self.device_combo.setToolTip("Where the networks run: the CPU, or a CUDA GPU when one is present")
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.device)))
        self.device_combo.currentIndexChanged.connect(self._device_changed)
        self.invert_button = QPushButton("Invert")
        self.invert_button.setToolTip("Find the latent of the aligned face with the chosen method (Ctrl+I)")
        self.invert_button.clicked.connect(self.invert)
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Improve the current latent by optimisation in the background "
                                      "(live preview; Cancel keeps the previous face) (Ctrl+Shift+R)")
        self.refine_button.clicked.connect(self.refine)
        self.refine_steps = QSpinBox()
        self.refine_steps.setRange(1, 2000)
        steps = self.settings.value("refine_steps", REFINE_STEPS) if self.settings is not None else REFINE_STEPS
        self.refine_steps.setValue(int(steps))
        self.refine_steps.setSuffix(" steps")
        self.refine_steps.setToolTip("Optimisation steps of Refine (more: closer to the photo, slower)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running inversion or refinement (Esc)")
        self.cancel_button.clicked.connect(self.cancel_inversion)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        form = QFormLayout()
        form.addRow("Method", self.method_combo)
        form.addRow("Device", self.device_combo)
        il.addLayout(form)
        hb = QHBoxLayout()
        hb.addWidget(self.invert_button)
        hb.addWidget(self.refine_button)
        hb.addWidget(self.refine_steps)
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
        self.seed_spin.setToolTip("Seed of the next random face")
        self.random_button = QPushButton("Random face")
        self.random_button.setToolTip("Start from a random face drawn from the seed (then the seed advances) (Ctrl+R)")
        self.random_button.clicked.connect(self.random_face)
        rh = QHBoxLayout()
        rh.addWidget(self.seed_spin)
        rh.addWidget(self.random_button)
        gl.addRow("Seed", rh)
        self.reset_button = QPushButton("Reset all edits")
        self.reset_button.setToolTip("Directions, mixing and truncation back to none (undoable)")
        self.reset_button.clicked.connect(self.reset_edits)
        gl.addRow(self.reset_button)

        # directions panel
        self.dir_box = QGroupBox("Directions")
        self.dir_layout = QVBoxLayout(self.dir_box)
        self.dir_note = QLabel("")
        self.dir_note.setWordWrap(True)
        self.dir_layout.addWidget(self.dir_note)
        dh = QHBoxLayout()
        self.reset_dirs_button = QPushButton("Reset directions")
        self.reset_dirs_button.setToolTip("Every direction back to 0 (mixing and truncation stay) (Ctrl+0)")
        self.reset_dirs_button.clicked.connect(self.reset_directions)
        self.load_dirs_button = QPushButton("Load…")
        self.load_dirs_button.setToolTip("Add directions from an InterFaceGAN .npy or GANSpace .npz file (Ctrl+D)")
        self.load_dirs_button.clicked.connect(self.load_directions_dialog)
        dh.addWidget(self.reset_dirs_button)
        dh.addWidget(self.load_dirs_button)
        self.dir_layout.addLayout(dh)
        self.dir_advanced = QCheckBox("Layer ranges (advanced)")
        self.dir_advanced.setToolTip("Choose which W+ rows each direction changes")
        self.dir_advanced.toggled.connect(self._dir_advanced_toggled)
        self.dir_layout.addWidget(self.dir_advanced)

        # style mixing
        self.mixing = MixingPanel()
        self.mixing.photo_requested.connect(lambda: self.reference_from_photo())
        self.mixing.fast_mix_requested.connect(lambda: self.fast_mix_from_photo())
        self.mixing.seed_requested.connect(self.reference_from_seed)
        self.mixing.clear_requested.connect(self.clear_reference)
        self.mixing.cancel_requested.connect(self.cancel_reference)
        self.mixing.strength_moved.connect(self._mix_moved)
        self.mixing.layer_moved.connect(self._mix_layer_moved)
        self.mixing.per_layer_toggled.connect(self._mix_per_layer)
        self.mixing.released.connect(self._end_drag)

        side = QWidget()
        sl = QVBoxLayout(side)
        for w in (inv, gen, self.dir_box, self.mixing):
            sl.addWidget(w)
        sl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(side)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side.setMinimumWidth(side.minimumSizeHint().width())
        scroll.setMinimumWidth(side.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        self.side_scroll = scroll

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(canvas)
        split.addWidget(scroll)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.splitter = split
        self.setCentralWidget(split)

        self.render_label = QLabel("")
        self.render_label.setToolTip("Time from an edit to its pixels on screen (preview / full render)")
        self.statusBar().addPermanentWidget(self.render_label)
        self._build_menus()
        self.resize(1280, 800)

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.triggered.connect(lambda _=False: slot())
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.open_action = self._action(f, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                                        "Open a photo, a .stylestudio project or a model file")
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "Open &model…", self.open_model_dialog, "Ctrl+Shift+O",
                     "Load a StyleGAN2 / pSp / e4e checkpoint or pack")
        self.load_dirs_action = self._action(f, "Load &directions…", self.load_directions_dialog, "Ctrl+D",
                                             "Add directions from an InterFaceGAN .npy or GANSpace .npz file")
        f.addSeparator()
        self.save_action = self._action(f, "&Save project…", self.save_project, QKeySequence.StandardKey.Save,
                                        "Save the latent and every edit as a .stylestudio project")
        self.export_photo_action = self._action(f, "&Export photo…", self.export_photo, "Ctrl+E",
                                                "Save the photo with the edited face pasted back (recipe in metadata)")
        self.export_aligned_action = self._action(f, "Export &aligned edit…", self.export_aligned, "Ctrl+Shift+E",
                                                  "Save the edited aligned face at the model's resolution (recipe in metadata)")
        self.export_sweep_action = self._action(f, "Export direction s&weep…", lambda: self.export_sweep(), None,
                                                "The edit with one direction moving over a range: a looping GIF "
                                                "or a strip of frames")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        e = mb.addMenu("&Edit")
        self.undo_action = self._action(e, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(e, "&Redo", self.redo, "Ctrl+Shift+Z")
        e.addSeparator()
        self.copy_action = self._action(e, "&Copy image", self.copy_to_clipboard, QKeySequence.StandardKey.Copy,
                                        "Copy the edited photo (or the aligned edit) to the clipboard")
        e.addSeparator()
        self.reset_dirs_action = self._action(e, "Reset &directions", self.reset_directions, "Ctrl+0")
        self._action(e, "Reset all edits", self.reset_edits)
        v = mb.addMenu("&View")
        self.before_action = QAction("Show &original (before)", self)
        self.before_action.setCheckable(True)
        self.before_action.setShortcut(QKeySequence("Ctrl+B"))
        self.before_action.toggled.connect(self.show_original.setChecked)
        self.show_original.toggled.connect(self.before_action.setChecked)
        v.addAction(self.before_action)
        fa = mb.addMenu("F&ace")
        self.invert_action = self._action(fa, "&Invert", self.invert, "Ctrl+I",
                                          "Invert the face with the chosen method")
        self.refine_action = self._action(fa, "&Refine", self.refine, "Ctrl+Shift+R",
                                          "Refine the current latent by optimisation")
        self.cancel_action = self._action(fa, "&Cancel", self._cancel_any, "Esc", "Stop the running inversion")
        self._action(fa, "R&andom face", self.random_face, "Ctrl+R")
        self.choose_face_action = self._action(fa, "Choose &face…", self.choose_face, None,
                                               "Edit another face found in this photo")
        m = mb.addMenu("&Model")
        self._action(m, "&Open model…", self.open_model_dialog, None,
                     "Load a StyleGAN2 / pSp / e4e checkpoint or pack")
        self._action(m, "Model &information", self.show_model_info, None,
                     "Format, resolution, W+ size, encoders, directions and licence of the loaded model")
        t = mb.addMenu("&Training")
        self.training_action = self._action(t, "Training &monitor…", self.open_training, "Ctrl+T",
                                            "Start, watch and stop trainers; load a run's snapshot into the editor")
        h = mb.addMenu("&Help")
        self._action(h, "&Keyboard shortcuts", self.show_shortcuts)
        self._action(h, "&About StyleStudio", self.show_about)
        self._fill_recent_menu()

    # ------------------------------------------------------------------------------------------------
    # Messages (tests read ``messages`` / monkeypatch ``ask_*``)

    def show_message(self, kind: str, title: str, text: str) -> None:
        """A non-blocking message box; ``kind`` is 'error', 'warning' or 'info'."""
        self.messages.append((kind, title, text))
        if self._closed:  # a late callback (an export that failed as the window closed): no orphan box
            log.warning("%s: %s", title, text)
            return
        open_message_box(self, kind, title, text)
        self.message_shown.emit(kind, title, text)

    def show_error(self, title: str, exc: BaseException) -> None:
        if isinstance(exc, StudioError):
            text = str(exc)
        elif isinstance(exc, MemoryError):
            text = "Out of memory. Close other programs or use a smaller model."
        else:
            log.error("unexpected error: %s", title, exc_info=exc)
            text = f"Unexpected error ({type(exc).__name__}: {exc}). Please report it."
        # the dialog holds the whole text; the status bar (beside the render timing) only its gist
        first = text.splitlines()[0] if text else ""
        self.statusBar().showMessage(f"{title}: {first[:90]}…" if len(first) > 90 else f"{title}: {first}", 8000)
        self.show_message("error", title, text)

    def ask_open_path(self, title: str, filters: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, title, "", filters)
        return path or None

    def ask_save_path(self, title: str, default: str, filters: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return path or None

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        self.show_message("info", "Keyboard shortcuts", f"<table cellspacing=4>{rows}</table>")

    def model_info_text(self) -> str:
        m = self.model
        if m is None:
            return "No model loaded. Use File ▸ Open model… (StyleGAN2 .pkl/.pt, pSp/e4e .pt, StyleStudio packs)."
        params = sum(p.numel() for p in m.G.parameters())
        encs = ", ".join(sorted(m.encoders)) or "none (use optimisation)"
        from html import escape

        pack = ((getattr(m.bundle, "meta", None) or {}).get("manifest") or {}).get("pack")
        title = Path(m.path).name
        if isinstance(pack, dict) and pack.get("name"):
            title = str(pack["name"]) + (f" — {pack['description']}" if pack.get("description") else "")
        return (f"<h3>{escape(title)}</h3><table cellspacing=3>"
                f"<tr><td>file</td><td>{m.path}</td></tr>"
                f"<tr><td>format</td><td>{m.format}</td></tr>"
                f"<tr><td>resolution</td><td>{m.resolution} px</td></tr>"
                f"<tr><td>W+</td><td>num_ws {m.num_ws} × w_dim {m.w_dim}</td></tr>"
                f"<tr><td>generator</td><td>{params / 1e6:.2f} M parameters</td></tr>"
                f"<tr><td>encoders</td><td>{encs}</td></tr>"
                f"<tr><td>directions</td><td>{len(m.directions)} ({m.directions_source})</td></tr>"
                f"<tr><td>device</td><td>{self.device}</td></tr>"
                f"{self._training_rows(m)}"
                f"<tr><td>licence</td><td>{m.licence}</td></tr></table>")

    @staticmethod
    def _training_rows(m: ws_ops.LoadedModel) -> str:
        """'training' / 'FD-VGG16' rows of the model information for a model that records them."""
        from html import escape

        from studio.core.pack import training_summary

        t = training_summary(getattr(m.bundle, "meta", None) or {})
        rows = []
        what = ", ".join(str(t[k]) for k in ("dataset",) if k in t)
        if "kimg" in t:
            what = f"{float(t['kimg']):g} kimg" + (f" on {what}" if what else "")
        if what:
            rows.append(("training", what))
        if "fd_vgg16" in t:
            rows.append(("FD-VGG16", str(t["fd_vgg16"])))
        return "".join(f"<tr><td>{k}</td><td>{escape(v)}</td></tr>" for k, v in rows)

    def show_model_info(self) -> None:
        self.show_message("info", "Model information", self.model_info_text())

    def ask_face(self, photo: ws_ops.PhotoFaces) -> int | None:
        """Which face to edit (index into ``photo.faces``) or None to cancel."""
        thumbs = [ws_ops.face_thumbnail(photo, i) for i in range(len(photo.faces))]
        dlg = FacePickerDialog(thumbs, self, weak=[photo.is_weak(i) for i in range(len(photo.faces))])
        dlg.exec()
        return dlg.chosen

    def _pick_face(self, photo: ws_ops.PhotoFaces) -> int | None:
        """The face of ``photo`` to use: the only clear one without asking (weak detections such as
        a face on a badge are skipped; see :meth:`_skipped_note`), else the user's pick (None: cancelled)."""
        index = photo.default_face()
        return self.ask_face(photo) if index is None else index

    @staticmethod
    def _skipped_note(photo: ws_ops.PhotoFaces, *, switchable: bool = False) -> str:
        """'; 1 weak detection skipped …' when :meth:`_pick_face` chose without asking, else ''."""
        others = len(photo.faces) - 1
        if not others or photo.default_face() is None:
            return ""
        how = " (Face ▸ Choose face… to use it instead)" if switchable else ""
        return f"; {others} weak detection{'s' if others > 1 else ''} skipped{how}"

    def choose_face(self) -> None:
        """Face ▸ Choose face…: edit another face of the open photo (the picker shows them all)."""
        photo = self.photo
        if photo is None or len(photo.faces) < 2 or self.model is None:
            return
        index = self.ask_face(photo)
        if index is None or index == self.face_index:
            return
        self._align_photo_face(photo, index)

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
        keep = self.session is not None and self._same_model(model)
        if keep and self.model is not None:
            extra = [d for d in self.model.directions if d.meta.get("loaded_from_file")]
            model.directions += [d for d in extra if d.name not in {x.name for x in model.directions}]
        self.model = model
        self._refresh_devices()
        from studio.engine.renderer import Renderer, RenderWorker

        self.renderer = Renderer(model.G, device=self.device)
        self.render_worker = RenderWorker(
            self.renderer,
            on_frame=lambda f: self.jobs.call.post(self._frame, f.generation, f.to_uint8()[0], f.seconds, f.final),
            on_error=lambda e, g: self.jobs.call.post(self.show_error, "Rendering failed", e),
            show_superseded=True)  # frames keep coming while a slider is dragged faster than renders finish
        self._shown_gen = 0
        self._fill_methods()
        self.mixing.set_rows(model.num_ws, layer_groups(model.num_ws), model.resolution)
        if keep:  # the same generator again (e.g. on another device): the edit goes on
            self._build_sliders_for(self.session)
            self._session_changed(self.session)
        parked = False
        if not keep:
            parked = self._park_unsaved_edit()
            self._set_session(None)
            self.photo = self.aligned = None
            self.pasted_image = self.edit_image = None
            self._refresh_canvas()
            self._build_sliders()
        self.setWindowTitle(f"StyleStudio — {Path(model.path).name}[*]")
        self.statusBar().showMessage(f"Model loaded on {self.device}: {model.describe()}"
                                     + ("; the unsaved edit of the previous model is kept for recovery at the next "
                                        "start" if parked else ""), 10000 if parked else 6000)
        if Path(model.path).resolve() != (Path(ws_ops.default_model_path() or "").resolve()):
            self._add_recent(model.path)
        self._update_actions()
        self.model_loaded.emit()
        recovering, self._pending_recovery = self._pending_recovery, None
        if recovering is not None:  # the model of an edit being recovered
            self.recover(recovering, _retry=False)
        pending, self._pending_open = self._pending_open, None
        if pending:
            self.open_path(pending)
        self._first_recovery_check()

    def _same_model(self, model: ws_ops.LoadedModel) -> bool:
        try:
            self.session.model.check_same(model.identity())
        except (StudioError, AttributeError):
            return False
        return True

    def _refresh_devices(self) -> None:
        """Re-list the devices once PyTorch is loaded (the window is built before it, CPU only)."""
        devs = ws_ops.available_devices()
        if [self.device_combo.itemData(i) for i in range(self.device_combo.count())] == [d for d, _ in devs]:
            return
        self.device_combo.blockSignals(True)
        self.device_combo.clear()
        for dev, label in devs:
            self.device_combo.addItem(label, dev)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.device)))
        self.device_combo.blockSignals(False)

    def _device_changed(self, _i: int = 0) -> None:
        dev = self.device_combo.currentData()
        if not dev or dev == self.device:
            return
        self.device = dev
        if self.settings is not None:
            self.settings.setValue("device", dev)
        if self.model is not None:
            self.load_model(self.model.path)  # the edit is kept (same generator)

    def _method_changed(self, _i: int = 0) -> None:
        if self.settings is not None and self.method:
            self.settings.setValue("method", self.method)

    def _fill_methods(self) -> None:
        from studio.core.inversion import ENCODER_METHODS, available_methods

        last = self.settings.value("method") if self.settings is not None else None
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
        self.method_combo.blockSignals(True)
        self.method_combo.setModel(m)
        idx = next((i for i in range(m.rowCount()) if m.item(i).data(Qt.ItemDataRole.UserRole) == last
                    and m.item(i).isEnabled()), first)
        if idx is not None:
            self.method_combo.setCurrentIndex(idx)
        self.method_combo.blockSignals(False)

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
        n = self.model.num_ws
        for d in self.model.directions:
            label = str(d.meta.get("label") or d.name)
            lo, hi = d.default_range
            a, b = d.span(n)
            tip = (f"{label}: {lo:+g} to {hi:+g} (W units), layers {a}-{b - 1}"
                   + (f"; from {d.meta['file']}" if d.meta.get("file") and d.meta.get("loaded_from_file") else ""))
            s = DirectionSlider(d.name, label, lo, hi, tip, num_ws=n, span=(a, b))
            s.setEnabled(self._editable())
            s.moved.connect(self._amount_moved)
            s.released.connect(lambda _n: self._end_drag())
            s.span_changed.connect(self._span_changed)
            s.set_advanced(self.dir_advanced.isChecked())
            self.dir_layout.addWidget(s)
            self._sliders[d.name] = s

    def _dir_advanced_toggled(self, on: bool) -> None:
        for s in self._sliders.values():
            s.set_advanced(on)

    def _span_changed(self, name: str, a: int, b: int) -> None:
        if self.session is None:
            return
        try:
            d = self.session.directions[self.session.state.index_of(name)].direction
            if d.span(self.session.num_ws) != (a, b):
                self.session.replace_direction(name, d.with_layers((a, b)))
        except StudioError as e:
            self.show_error("Cannot change the layer range", e)

    # -- extra directions

    def load_directions_dialog(self) -> None:
        if self.model is None:
            self.show_message("warning", "No model", "Load a model first (File ▸ Open model…).")
            return
        path = self.ask_open_path("Load directions", f"{DIRECTION_FILTER};;All files (*)")
        if path:
            self.load_directions(path)

    def load_directions(self, path: str | Path) -> None:
        """Add the directions of an InterFaceGAN .npy / GANSpace .npz file (read in a worker)."""
        if self.model is None:
            self.show_message("warning", "No model", "Load a model first (File ▸ Open model…).")
            return
        model = self.model
        self.jobs.submit(lambda ctx: ws_ops.load_direction_file(model, path), name="load directions",
                         on_done=lambda found: self._directions_read(found, path),
                         on_error=lambda e: self.show_error(
                             "Cannot load the directions",
                             _with_hint(e, "Use an InterFaceGAN .npy or GANSpace / SeFa .npz direction file made "
                                           "for this model (the same W size).")))

    def _directions_read(self, found: list, path) -> None:
        if self.model is None:
            return
        taken = {d.name for d in self.model.directions}
        if self.session is not None:
            taken |= {ad.direction.name for ad in self.session.directions}
        added = []
        skipped = max(len(found) - MAX_FILE_DIRECTIONS, 0)
        for d in found[:MAX_FILE_DIRECTIONS]:  # a GANSpace file lists its components strongest first
            name, k = d.name, 2
            while name in taken:
                name, k = f"{d.name} ({k})", k + 1
            d = dataclasses.replace(d, name=name, meta=dict(d.meta, loaded_from_file=True,
                                                            label=d.meta.get("label") or name))
            taken.add(name)
            added.append(d)
        self.model.directions = list(self.model.directions) + added
        if self.session is not None:
            self.session.add_directions(added, f"add directions from {Path(path).name}")
        else:
            self._build_sliders()
        self.statusBar().showMessage(f"Added {len(added)} direction(s) from {Path(path).name}", 6000)
        if skipped:
            self.show_message("info", "Directions added",
                              f"{Path(path).name} has {len(found)} components; the first {MAX_FILE_DIRECTIONS} "
                              f"(the strongest, in a GANSpace file) were added as sliders and {skipped} were left out.")
        self.directions_loaded.emit(len(added))

    # -- photo

    def open_photo(self, path: str | Path) -> None:
        if self.model is None:
            self.show_message("warning", "No model", "Load a model first (File ▸ Open model…).")
            return
        self.statusBar().showMessage(f"Finding faces in {Path(path).name}…")
        self.jobs.submit(lambda ctx: ws_ops.read_photo(path, ctx=ctx), name="read photo", key="photo",
                         on_done=self._photo_read, on_error=lambda e: self.show_error("Cannot use this photo", e))

    def _photo_read(self, photo: ws_ops.PhotoFaces) -> None:
        index = self._pick_face(photo)
        if index is None:
            self.statusBar().showMessage("Cancelled", 3000)
            return
        self._align_photo_face(photo, index, note=self._skipped_note(photo, switchable=True))

    def _align_photo_face(self, photo: ws_ops.PhotoFaces, index: int, note: str = "") -> None:
        profile = self.model.profile
        self.jobs.submit(lambda ctx: (photo, ws_ops.align(photo, index, profile)), name="align", key="photo",
                         on_done=lambda r: self._photo_aligned(*r, index=index, note=note),
                         on_error=lambda e: self.show_error("Cannot align the face", e))

    def _photo_aligned(self, photo, aligned, index: int = 0, note: str = "") -> None:
        self._add_recent(photo.path)
        self.cancel_inversion()  # an inversion or Refine of the previous face must not land on this one
        self._face_token += 1    # the session's latent is of the previous face until this one is inverted
        self.photo, self.aligned, self.face_index = photo, aligned, index
        self.pasted_image = None
        self.edit_image = None
        self._refresh_canvas()
        self.statusBar().showMessage(f"Face aligned ({Path(photo.path).name}): pick a method and click Invert"
                                     f"{note}", 12000 if note else 8000)
        self._update_actions()
        self.photo_ready.emit()
        self._schedule_autosave()  # the photo is part of the autosave

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
        self.cancel_inversion()
        self._new_source_face()
        self.photo = self.aligned = None
        self.pasted_image = None
        self._set_session(session, on_disk=True)
        self._add_recent(path)
        self.statusBar().showMessage(f"Opened {path}", 5000)
        self.project_opened.emit(str(path))

    def save_project(self, path: str | Path | None = None) -> None:
        if self.session is None:
            self.show_message("info", "Nothing to save", "Invert a photo or draw a random face first.")
            return
        # a photo opened but not inverted yet: the session (and the edit on the canvas) is still the
        # previous face's, and that is what a project saved now holds - say so rather than surprise
        previous = self.aligned is not None and not self._edits_this_face()
        title = "Save project (the previous face's edit; this photo is not inverted yet)" if previous else "Save project"
        path = path or self.ask_save_path(title, "edit.stylestudio", PROJECT_FILTER)
        if not path:
            return
        data = self.session.to_project_bytes()
        sess, version = self.session, self.session.version
        p = _project_path(path)

        def write(ctx=None):
            return _write_project(p, data)

        def done(p):
            sess._saved_version = version  # the bytes written are of this version
            if sess is self.session:
                self._clean_on_disk = True
                self._update_actions()  # the unsaved mark goes (unless it changed since)
                if not sess.modified:  # saved: the autosave is no longer needed
                    self._autosave_timer.stop()
                    if self._autosaver is not None:
                        self._autosaver.discard()
            self.statusBar().showMessage(f"Saved {p}" + (" (the previous face's edit: invert this photo's face "
                                                         "to edit it)" if previous else ""), 8000 if previous else 5000)
            self.project_saved.emit(str(p))

        key = object()
        self._pending_saves[key] = (write, sess, version)  # written at close if still queued then

        def finished(ok, value):
            self._saves_tried.pop(key, None)
            if self._pending_saves.pop(key, None) is None:
                return  # already written by shutdown()
            if ok:
                done(value)
            else:
                self.show_error("Cannot save the project", value)

        def job(ctx):
            self._saves_tried[key] = False  # tried: shutdown() does not write it again, even if it failed
            out = write()
            self._saves_tried[key] = True
            return out

        self.io_jobs.submit(job, name="save project", on_done=lambda v: finished(True, v),
                            on_error=lambda e: finished(False, e))

    # ------------------------------------------------------------------------------------------------
    # Inversion and random faces

    def invert(self) -> None:
        if self.model is None or self.aligned is None:
            self.show_message("info", "No face", "Open a photo with a face first (File ▸ Open or drop it here).")
            return
        method = self.method
        if method is None or self._invert_job is not None or self._refine_job is not None:
            return  # one inversion at a time (Cancel / Esc stops the running one)
        model, image, steps, token = self.model, self.aligned.image, self.optimize_steps, self._face_token
        self.progress.setValue(0)
        self.invert_step = 0
        self.invert_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.statusBar().showMessage(f"Inverting with {method}…")
        if self.settings is not None:
            self.settings.setValue("method", method)

        def job(ctx):
            return ws_ops.invert(model, image, method, steps=steps, progress=ctx.progress, cancel=ctx.token)

        self._invert_job = self._submit_face_job(job, "invert", token, self._inverted, self._invert_failed,
                                                 self._invert_cancelled)
        self._update_actions()

    def _submit_face_job(self, fn, name: str, token: int, done, failed, cancelled):
        """An inversion / Refine of the open face: its handlers get the job (so an earlier run's end
        does not clear a newer one) and ``done`` the face token (a result for another face is dropped);
        progress of an earlier face is not drawn."""
        ref: list = []
        job = self.jobs.submit(fn, name=name, key="invert", on_done=lambda r: done(r, token, ref[0]),
                               on_error=lambda e: failed(e, ref[0]), on_cancelled=lambda: cancelled(ref[0]),
                               on_progress=lambda p: self._invert_progress(p, token))
        ref.append(job)
        return job

    def _new_source_face(self) -> None:
        """The canvas moves to a face whose latent the session holds (random face, project, recovery)."""
        self._face_token += 1
        self._source_token = self._face_token
        self._source_photo = None

    def cancel_inversion(self) -> None:
        for job in (self._invert_job, self._refine_job):
            if job is not None:
                job.cancel()

    def _cancel_any(self) -> None:
        self.cancel_inversion()
        self.cancel_reference()

    def refine(self) -> None:
        """Hybrid optimisation from the current source latent towards the aligned face, in the
        background, with a live preview; the result replaces the source (undoable)."""
        if self.model is None or self.aligned is None or self.session is None:
            self.show_message("info", "Nothing to refine", "Open a photo and invert its face first; Refine then "
                                                          "improves that latent.")
            return
        if self._invert_job is not None or self._refine_job is not None:
            return
        if self._source_token != self._face_token:
            self.show_message("info", "Nothing to refine", "Invert this face first; Refine then improves its latent.")
            return
        model, image, token = self.model, self.aligned.image, self._face_token
        start, steps = self.session.state.source.copy(), self.refine_steps.value()
        if self.settings is not None:
            self.settings.setValue("refine_steps", steps)
        self.progress.setValue(0)
        self.invert_step = 0
        self.statusBar().showMessage(f"Refining ({steps} steps)…")

        def job(ctx):
            return ws_ops.refine(model, image, start, steps=steps, preview_every=max(1, min(5, steps // 10 or 1)),
                                 progress=ctx.progress, cancel=ctx.token)

        self._refine_job = self._submit_face_job(job, "refine", token, self._refined, self._refine_failed,
                                                 self._refine_cancelled)
        self._update_actions()

    def _refine_end(self, job=None) -> None:
        if job is None or self._refine_job is job:  # not a newer run's
            self._refine_job = None
        self._update_actions()

    def _refined(self, inv, token: int | None = None, job=None) -> None:
        self._refine_end(job)
        if token is not None and token != self._face_token:
            self.statusBar().showMessage("The refinement of the previous face was dropped", 5000)
            return
        self.progress.setValue(100)
        self.last_inversion = inv
        if self.session is not None:
            self.session.set_source(inv.latent_wplus.numpy())
        lp = inv.metrics.get("lpips")
        self.statusBar().showMessage(
            f"Refined in {inv.seconds:.1f} s" + (f" (LPIPS {lp:.3f})" if lp is not None else ""), 8000)
        self.refine_finished.emit()

    def _refine_failed(self, e, job=None) -> None:
        self._refine_end(job)
        self.progress.setValue(0)
        self.show_error("Refinement failed", e)
        self._refresh_canvas()

    def _refine_cancelled(self, job=None) -> None:
        self._refine_end(job)
        self.progress.setValue(0)
        self.statusBar().showMessage("Refinement cancelled: the face is unchanged", 4000)
        self._refresh_canvas()

    def _invert_progress(self, p, token: int | None = None) -> None:
        if token is not None and token != self._face_token:
            return  # a run for the previous face, being cancelled: don't draw it over this one
        self.invert_step = getattr(p, "step", 0)
        if getattr(p, "total", 0):
            self.progress.setValue(int(100 * p.step / p.total))
        if getattr(p, "preview", None) is not None and not self.show_original.isChecked():
            self.edit_view.set_array(p.preview)

    def _invert_end(self, job=None) -> None:
        if job is None or self._invert_job is job:  # not a newer run's
            self._invert_job = None
        self._update_actions()

    def _inverted(self, inv, token: int | None = None, job=None) -> None:
        self._invert_end(job)
        if token is not None and token != self._face_token:
            self.statusBar().showMessage("The inversion of the previous face was dropped", 5000)
            return
        self.progress.setValue(100)
        self.last_inversion = inv
        self._source_token = self._face_token  # the session's latent is now this face's
        self._source_photo = None if self.photo is None else (str(Path(self.photo.path).resolve()), self.face_index)
        latent = inv.latent_wplus.numpy()
        if self.session is None or self.session.model != self.model.identity():
            self._set_session(self._new_session(latent))
        else:
            self.session.set_source(latent)
        lp = inv.metrics.get("lpips")
        self.statusBar().showMessage(f"Inverted with {inv.method} in {inv.seconds:.1f} s"
                                     + (f" (LPIPS {lp:.3f})" if lp is not None else ""), 8000)
        self.inversion_finished.emit()

    def _invert_failed(self, e, job=None) -> None:
        self._invert_end(job)
        self.progress.setValue(0)
        self.show_error("Inversion failed", e)
        self._refresh_canvas()

    def _invert_cancelled(self, job=None) -> None:
        self._invert_end(job)
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
            self.cancel_inversion()
            self._new_source_face()
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
    # Style mixing

    def _need_session(self, what: str) -> bool:
        if self.session is None:
            self.show_message("info", "No face yet", f"Invert a photo or draw a random face first, then {what}.")
            return False
        return True

    def reference_from_seed(self, seed: int) -> None:
        if self.model is None or not self._need_session("pick a reference face"):
            return
        G = self.model.G

        def job(ctx):
            latent = ws_ops.random_latent(G, seed)
            return latent, ws_ops.render_latent(G, latent)

        self.jobs.submit(job, name="reference seed", key="reference",
                         on_done=lambda r: self._reference_ready(r[0], r[1], {"kind": "seed", "seed": int(seed)}),
                         on_error=lambda e: self.show_error("Cannot draw the reference face", e))

    def reference_from_photo(self, path: str | Path | None = None) -> None:
        """Align and invert a face of another photo (with the chosen method) as the mixing reference."""
        if self.model is None or not self._need_session("pick a reference face"):
            return
        path = path or self.ask_open_path("Reference photo", IMAGE_FILTER)
        if not path:
            return
        self.mixing.set_busy(True)
        self.statusBar().showMessage(f"Finding the reference face in {Path(path).name}…")
        self._reference_job = self.jobs.submit(
            lambda ctx: ws_ops.read_photo(path, ctx=ctx), name="reference photo", key="reference",
            on_done=self._reference_photo_read, on_error=self._reference_failed,
            on_cancelled=self._reference_cancelled)
        self._update_actions()  # Esc cancels it

    def _reference_photo_read(self, photo: ws_ops.PhotoFaces) -> None:
        index = self._pick_face(photo)
        if index is None:
            self._reference_cancelled()
            return
        method = self.method
        if self.model is None or method is None:
            self._reference_cancelled()
            return
        model, profile, steps = self.model, self.model.profile, self.optimize_steps

        def job(ctx):
            aligned = ws_ops.align(photo, index, profile)
            return ws_ops.invert(model, aligned.image, method, steps=steps, progress=ctx.progress, cancel=ctx.token)

        self.statusBar().showMessage(f"Inverting the reference face with {method}{self._skipped_note(photo)}…")
        self._reference_job = self.jobs.submit(
            job, name="reference invert", key="reference",
            on_done=lambda inv: self._reference_ready(
                inv.latent_wplus.numpy(), inv.reconstruction,
                {"kind": "photo", "path": Path(photo.path).name, "face": index, "method": inv.method}),
            on_error=self._reference_failed, on_cancelled=self._reference_cancelled,
            on_progress=lambda p: self.mixing.set_busy(True, int(100 * p.step / p.total) if p.total else 0))

    def _reference_ready(self, latent, thumb, info: dict) -> None:
        self._reference_job = None
        self.mixing.set_busy(False)
        self._update_actions()
        if self.session is None:
            return
        self._pending_ref = (thumb, info)  # shown by _show_reference when the session reports the change
        try:
            self.session.set_reference(latent)
        except StudioError as e:
            self.show_error("Cannot use this reference", e)
            return
        finally:
            self._pending_ref = None
        if not any(self.session.mixer.row_strengths() > 0):
            self.statusBar().showMessage("Reference set: raise Coarse, Medium or Fine to mix its styles in", 6000)
        self.reference_ready.emit()

    def _reference_failed(self, e) -> None:
        self._reference_job = None
        self.mixing.set_busy(False)
        self._update_actions()
        self.show_error("Cannot use this reference photo", e)

    def _reference_cancelled(self) -> None:
        self._reference_job = None
        self.mixing.set_busy(False)
        self._update_actions()
        self.statusBar().showMessage("Reference cancelled", 3000)

    def cancel_reference(self) -> None:
        if self._reference_job is not None:
            self._reference_job.cancel()

    def clear_reference(self) -> None:
        if self.session is not None and self.session.mixer.reference is not None:
            self.session.set_reference(None)

    # -- fast (distilled) mix: the aligned face and a face of another photo, one pass of the student

    def fast_mix_from_photo(self, path: str | Path | None = None) -> None:
        """Mix the aligned face with the styles of a face of another photo using the model pack's
        distilled student, and show the result in a dialog (no inversion, the edit is unchanged)."""
        if self.model is None or self.aligned is None:
            self.show_message("info", "No face yet", "Open a photo first: the fast mix uses its aligned face.")
            return
        if self.model.student is None:
            from studio.core.distill import MixError

            self.show_error("Fast mix unavailable", MixError(
                self.model.student_problem or "This model has no distilled mixing student; use “From photo…”."))
            return
        path = path or self.ask_open_path("Style photo for the fast mix", IMAGE_FILTER)
        if not path:
            return
        self.statusBar().showMessage(f"Finding the style face in {Path(path).name}…")
        self._fast_job = self.jobs.submit(
            lambda ctx: ws_ops.read_photo(path, ctx=ctx), name="fast mix photo", key="fastmix",
            on_done=self._fast_photo_read, on_error=self._fast_failed, on_cancelled=self._fast_cancelled)
        self._update_actions()

    def _fast_photo_read(self, photo: ws_ops.PhotoFaces) -> None:
        index = self._pick_face(photo)
        if index is None:
            self._fast_cancelled()
            return
        if self.model is None or self.aligned is None:
            self._fast_cancelled()
            return
        model, content = self.model, self.aligned.image
        self._fast_job = self.jobs.submit(
            lambda ctx: ws_ops.fast_mix(model, content, photo, face_index=index, ctx=ctx), name="fast mix",
            key="fastmix", on_done=self._fast_mixed, on_error=self._fast_failed, on_cancelled=self._fast_cancelled)

    def _fast_mixed(self, result) -> None:
        self._fast_job = None
        self._update_actions()
        if self.fast_mix_dialog is not None:
            self.fast_mix_dialog.close()
            self.fast_mix_dialog.deleteLater()
        face = f", face {result.face_index + 1}" if result.face_index else ""
        dlg = FastMixDialog(result, self, caption=f"Style: {Path(result.style_path).name}{face}\n")
        dlg.export_requested.connect(lambda: self.export_fast_mix())
        self.fast_mix_dialog = dlg
        dlg.show()
        self.statusBar().showMessage(f"Fast mix ({result.group} styles) in {result.seconds * 1000:.0f} ms", 6000)
        self.fast_mix_shown.emit()

    def _fast_failed(self, e) -> None:
        self._fast_job = None
        self._update_actions()
        self.show_error("Cannot mix with this photo", e)

    def _fast_cancelled(self) -> None:
        self._fast_job = None
        self._update_actions()
        self.statusBar().showMessage("Fast mix cancelled", 3000)

    def export_fast_mix(self, path: str | Path | None = None) -> None:
        """Save the mixed face of the fast-mix dialog (PNG or JPEG)."""
        if self.fast_mix_dialog is None:
            return
        img = self.fast_mix_dialog.result.mixed
        path = path or self.ask_save_path("Export the fast mix", "fast_mix.png", "PNG (*.png);;JPEG (*.jpg *.jpeg)")
        if not path:
            return
        if not Path(path).suffix:
            path = Path(path).with_suffix(".png")
        from studio.core.imageio import save_image

        self.io_jobs.submit(lambda ctx: save_image(path, img), name="export fast mix",
                            on_done=lambda p: (self.statusBar().showMessage(
                                f"Exported {p} ({img.shape[1]}×{img.shape[0]} px)", 5000),
                                               self.exported.emit(str(p))),
                            on_error=lambda e: self.show_error("Cannot export", e))

    @staticmethod
    def _ref_key(ref) -> int | None:
        return None if ref is None else hash(np.ascontiguousarray(ref).tobytes())

    @staticmethod
    def _ref_caption(info: dict | None) -> str:
        if not info:
            return "Reference face"
        if info.get("kind") == "seed":
            return f"Reference: random face, seed {info['seed']}"
        if info.get("kind") == "photo":
            return f"Reference: {info['path']} ({info['method']})"
        return "Reference face (from the project)"

    def _show_reference(self, session: EditSession) -> None:
        """Keep the thumbnail in step with the session's reference (undo, projects)."""
        ref = session.mixer.reference
        key = self._ref_key(ref)
        if key == self._ref_thumb_key:
            return
        self._ref_thumb_key = key
        pending = getattr(self, "_pending_ref", None)
        if ref is None or pending is not None:
            if pending is not None:
                self._ref_infos[key] = pending[1]
            thumb, caption = (None, "No reference face") if ref is None else (pending[0], self._ref_caption(pending[1]))
            self.mixing.set_thumbnail(thumb, caption)
            self.reference_thumb_shown.emit()
            return
        G, info = self.model.G, self._ref_infos.get(key)
        self.jobs.submit(lambda ctx: ws_ops.render_latent(G, ref), name="reference thumbnail", key="refthumb",
                         on_done=lambda img: (self.mixing.set_thumbnail(img, self._ref_caption(info))
                                              if self._ref_thumb_key == key else None,
                                              self.reference_thumb_shown.emit()),
                         on_error=lambda e: self.show_error("Cannot show the reference face", e))

    def _mix_moved(self, group: str, value: float, dragging: bool) -> None:
        if self.session is None:
            return
        if self.session.mixer.reference is None and value > 0 and not dragging:
            self.statusBar().showMessage("Pick a reference face first (From photo… or Random)", 5000)
        elif value > 0:
            self.statusBar().clearMessage()
        try:
            self.session.set_mix_strength(group, value, dragging=dragging)
        except StudioError as e:
            self.show_error("Cannot set the mixing strength", e)

    def _mix_layer_moved(self, row: int, value: float, dragging: bool) -> None:
        if self.session is None:
            return
        values = self.session.mixer.row_strengths()
        values[row] = value
        try:
            self.session.set_layer_strengths(values, dragging=dragging)
        except StudioError as e:
            self.show_error("Cannot set the mixing strength", e)

    def _mix_per_layer(self, on: bool) -> None:
        if self.session is None:
            return
        self.session.set_layer_strengths(self.session.mixer.row_strengths() if on else None)

    # ------------------------------------------------------------------------------------------------
    # Session

    def _new_session(self, latent) -> EditSession:
        m = self.model
        s = EditSession.for_generator(m.G, latent, format=m.format, path=m.path)
        for d in m.directions:
            s.state.directions.append(AppliedDirection(d, 0.0))  # offered at 0: not an undo step
        return s

    def _set_session(self, session: EditSession | None, *, on_disk: bool = False) -> None:
        """``on_disk``: the session is exactly a project file (no autosave until it changes)."""
        if self.session is not None:
            self.session.listeners.remove(self._session_changed)
        self.session = session
        self._clean_on_disk = on_disk
        if session is None:
            self._autosave_timer.stop()
            if self._autosaver is not None:
                self._autosaver.discard()
        if session is not None:
            session.listeners.append(self._session_changed)
            self._session_changed(session)  # a project may carry its own directions: shows exactly the session's
        else:
            self._ref_thumb_key = None
            self.mixing.set_thumbnail(None, "No reference face")
        self._update_actions()

    def _build_sliders_for(self, session: EditSession) -> None:
        saved = self.model.directions
        self.model.directions = [ad.direction for ad in session.directions]
        try:
            self._build_sliders()
        finally:
            self.model.directions = saved

    def _session_changed(self, session: EditSession) -> None:
        if self.model is not None and [ad.direction.name for ad in session.directions] != list(self._sliders):
            self._build_sliders_for(session)  # a direction was added / removed (or undone)
        for ad in session.directions:
            s = self._sliders.get(ad.direction.name)
            if s is not None:
                if abs(s.alpha - ad.alpha) > 1e-9:
                    s.set_alpha(ad.alpha)
                span = ad.direction.span(session.num_ws)
                if s.span != span:
                    s.set_span(span)
        self.mixing.show_mixer(session.mixer)
        if self.model is not None:
            self._show_reference(session)
        psi = session.state.psi
        if round(psi * PSI_STEPS) != self.psi_slider.value():
            self.psi_slider.blockSignals(True)
            self.psi_slider.setValue(round(psi * PSI_STEPS))
            self.psi_slider.blockSignals(False)
        self.psi_label.setText(f"{psi:.2f}")
        self._update_actions()
        self.request_render()
        self._schedule_autosave()

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

    def reset_directions(self) -> None:
        if self.session is not None:
            self.session.reset_directions()

    def _editable(self) -> bool:
        """Whether the edit controls act on what the canvas shows: a session exists and, with a photo
        open, its latent is of that photo's face (a newly opened face is edited once inverted)."""
        return self.session is not None and (self.aligned is None or self._edits_this_face())

    def _update_actions(self) -> None:
        s = self.session
        editable = self._editable()
        self.undo_action.setEnabled(bool(editable and s.can_undo))
        self.redo_action.setEnabled(bool(editable and s.can_redo))
        self.undo_action.setText(f"&Undo {s.undo_text}" if s and s.can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {s.redo_text}" if s and s.can_redo else "&Redo")
        has = s is not None
        if self.isWindowModified() != bool(has and s.modified):  # (this runs on every slider step)
            self.setWindowModified(bool(has and s.modified))
        self.save_action.setEnabled(has)
        self.export_aligned_action.setEnabled(has and self.edit_image is not None)
        self.export_sweep_action.setEnabled(bool(editable and s.directions))
        self.export_photo_action.setEnabled(has and self.photo is not None and self.pasted_image is not None)
        self.reset_button.setEnabled(editable)
        self.reset_dirs_button.setEnabled(editable)
        self.reset_dirs_action.setEnabled(editable)
        self.psi_slider.setEnabled(editable)
        if any(sl.isEnabled() != editable for sl in self._sliders.values()):  # runs on every slider step
            for slider in self._sliders.values():
                slider.setEnabled(editable)
        idle = self._invert_job is None and self._refine_job is None
        self.invert_button.setEnabled(self.aligned is not None and idle)
        self.invert_action.setEnabled(self.aligned is not None and idle)
        refinable = self.aligned is not None and has and idle and self._edits_this_face()
        self.refine_button.setEnabled(refinable)
        self.refine_action.setEnabled(refinable)
        self.cancel_button.setEnabled(not idle)
        self.progress.setTextVisible(not idle)  # no stale "0%" / "100%" when nothing runs
        self.cancel_action.setEnabled(not idle or self._reference_job is not None)
        self.choose_face_action.setEnabled(self.photo is not None and len(self.photo.faces) > 1 and idle)
        self.random_button.setEnabled(self.model is not None)
        self.load_dirs_button.setEnabled(self.model is not None)
        self.load_dirs_action.setEnabled(self.model is not None)
        self.copy_action.setEnabled(self.edit_image is not None or self.pasted_image is not None)
        self.mixing.setEnabled(self.model is not None)
        self.mixing.set_parts(editable)
        m = self.model
        if m is None or (m.student is None and m.student_problem is None):
            self.mixing.set_fast_mix(None, "This model has no distilled mixing student")
        elif m.student is None:
            self.mixing.set_fast_mix("unavailable", f"Fast mix unavailable: {m.student_problem}")
        elif self.aligned is None:
            self.mixing.set_fast_mix(m.student_group, "Open a photo first: the fast mix uses its aligned face")
        elif self._fast_job is not None:
            self.mixing.set_fast_mix(m.student_group, "Mixing…")
        else:
            self.mixing.set_fast_mix(m.student_group)
        self.dir_box.setEnabled(self.model is not None)

    # ------------------------------------------------------------------------------------------------
    # Rendering

    def request_render(self) -> None:
        if self.session is None or self.render_worker is None:
            return
        gen = self.render_worker.submit(self.session.ws_batch())
        self._render_t0 = (gen, time.perf_counter())

    def is_current(self, gen: int) -> bool:
        """True when render ``gen`` is of the session's latest state (not an earlier drag position)."""
        return self.render_worker is not None and gen == self.render_worker.latest_generation

    def _frame(self, gen: int, img: np.ndarray, seconds: float, final: bool) -> None:
        if self.render_worker is None or gen < self._shown_gen:
            return  # older than what is shown
        current = self.is_current(gen)
        if not current and not final:
            return
        self._shown_gen = gen
        if self.aligned is not None and not self._edits_this_face():
            # the latent of another face (a new photo not yet inverted): keep showing this face
            self.frame_shown.emit(gen, final)
            return
        if final:
            self.edit_image = img
            self.copy_action.setEnabled(True)
            self.export_aligned_action.setEnabled(self.session is not None)
            if current:
                self._paste(gen, img)
        if not self.show_original.isChecked():
            self.edit_view.set_array(img)
        kind = "final" if final else "preview"
        self.last_render_ms = seconds * 1000  # in the worker: request taken -> frame ready
        t0 = getattr(self, "_render_t0", (None, 0.0))
        if t0[0] == gen:  # edit -> pixmap on the canvas, as the user sees it
            self.last_frame_ms[kind] = (time.perf_counter() - t0[1]) * 1000
        shown = self.last_frame_ms.get(kind)
        self.render_label.setText(f"{'render' if final else 'preview'} {seconds * 1000:.0f} ms"
                                  + (f" · on screen {shown:.0f} ms" if shown else "") + f" · {self.device}")
        self.frame_shown.emit(gen, final)

    def _edits_this_face(self) -> bool:
        """Whether the session's latent was inverted from the face now open (else it is of another
        face, and is not pasted into this photo or refined towards it)."""
        return self._source_token == self._face_token

    def _paste(self, gen: int, img: np.ndarray) -> None:
        """Paste render ``gen`` (the final frame ``img``) into the photo, on a worker: the change only
        (Keep the photo's detail: the unedited reconstruction, rendered once per source latent, is
        its base) or the whole face."""
        if self.photo is None or self.aligned is None or self.session is None or not self._edits_this_face():
            return
        photo, transform, token = self.photo, self.aligned.transform, self._face_token
        base_of = None
        if self.keep_detail.isChecked() and self.model is not None:
            source = self.session.state.source
            if np.array_equal(self.session.ws(), source):
                base_of = lambda: img  # noqa: E731 - no edit: the render is its own base (the photo comes back as is)
            else:
                G, key = self.model.G, (id(self.model), hashlib.blake2b(source.tobytes(), digest_size=16).digest())
                source = source.copy()

                def base_of():
                    with self._paste_base_lock:
                        cached = self._paste_base
                        if cached is None or cached[0] != key:
                            cached = self._paste_base = (key, ws_ops.render_latent(G, source))
                        return cached[1]

        def job(ctx):
            return ws_ops.paste(photo, img, transform, base=None if base_of is None else base_of())

        self.jobs.submit(job, name="paste", key="paste", on_done=lambda out: self._pasted(gen, out, token),
                         on_error=lambda e: self.show_error("Cannot paste the face back", e))

    def _keep_detail_toggled(self, on: bool) -> None:
        if self.settings is not None:
            self.settings.setValue("keep_detail", on)
        if self.edit_image is not None and self.render_worker is not None:
            self._paste(self.render_worker.latest_generation, self.edit_image)

    def _pasted(self, gen: int, out: np.ndarray, token: int | None = None) -> None:
        if self.render_worker is None or gen != self.render_worker.latest_generation:
            return
        if token is not None and (token != self._face_token or self.photo is None):
            return  # pasted into a photo (or face) no longer open: another one was opened meanwhile
        self.pasted_image = out
        self.export_photo_action.setEnabled(self.session is not None)
        if not self.show_original.isChecked():
            self.photo_view.set_array(out)
        self.paste_shown.emit(gen)

    def _refresh_canvas(self) -> None:
        before = self.show_original.isChecked()
        aligned = None if self.aligned is None else self.aligned.image
        photo = None if self.photo is None else self.photo.image
        # the aligned face until its own edit is rendered (a newly opened face shows itself, not a blank)
        own_edit = self.edit_image is not None and self.session is not None and (
            self.aligned is None or self._edits_this_face())
        self.edit_view.set_array(self.edit_image if own_edit and not before else aligned)
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
        self._export(self.pasted_image, path, "edited_photo.png", "photo")

    def export_aligned(self, path: str | Path | None = None) -> None:
        if self.edit_image is None:
            self.show_message("info", "Nothing to export", "Invert a photo or draw a random face first.")
            return
        self._export(self.edit_image, path, "edited_face.png", "aligned")

    def export_sweep(self, name: str | None = None, lo: float | None = None, hi: float | None = None,
                     frames: int = 9, path: str | Path | None = None) -> None:
        """File ▸ Export direction sweep…: the current edit with direction ``name`` moving from ``lo``
        to ``hi`` (its slider range by default) in ``frames`` steps, rendered on a worker; ``.gif``: an
        animation there and back, another image suffix: the frames side by side. Without ``name`` a
        dialog asks."""
        if self.session is None or self.model is None or not self.session.directions or not self._editable():
            self.show_message("info", "Nothing to sweep", "Invert a photo or draw a random face first.")
            return
        if name is None:
            asked = self.ask_sweep()
            if asked is None:
                return
            name, lo, hi, frames = asked
        names = [ad.direction.name for ad in self.session.directions]
        if name not in names:
            self.show_message("warning", "No such direction", f"{name!r} is not one of this edit's directions.")
            return
        d = self.session.directions[names.index(name)].direction
        lo = d.default_range[0] if lo is None else float(lo)
        hi = d.default_range[1] if hi is None else float(hi)
        path = path or self.ask_save_path("Export direction sweep", f"{name.replace(' ', '_')}_sweep.gif",
                                          "GIF animation (*.gif);;PNG strip (*.png)")
        if not path:
            return
        if not Path(path).suffix:
            path = Path(path).with_suffix(".gif")
        problem = ws_ops.sweep_problem(path, int(frames), self.model.resolution)
        if problem is not None or not 2 <= int(frames) <= 200:
            self.show_message("warning", "Cannot export the sweep", problem or "Give 2 to 200 frames.")
            return
        state, w_avg, G, i = self.session.state.copy(), self.session.w_avg, self.model.G, names.index(name)

        def job(ctx):
            from studio.engine.session import compose

            out = []
            for a in np.linspace(lo, hi, int(frames)):
                ctx.check()
                state.directions[i] = AppliedDirection(d, float(a))
                out.append(ws_ops.render_latent(G, compose(state, w_avg).numpy()))
            return ws_ops.save_sweep(path, out)

        def done(r):
            p, n = r
            self.statusBar().showMessage(f"Exported {p} ({n} frames, {name} {lo:+g} to {hi:+g})", 6000)
            self.exported.emit(str(p))

        self.jobs.submit(job, name="direction sweep", on_done=done,
                         on_error=lambda e: self.show_error("Cannot export the sweep", e))

    def ask_sweep(self) -> tuple[str, float, float, int] | None:
        """(direction, from, to, frames) for Export direction sweep…, or None (cancelled)."""
        from PySide6.QtWidgets import QDialog, QDialogButtonBox, QDoubleSpinBox

        dlg = QDialog(self)
        dlg.setWindowTitle("Export direction sweep")
        form = QFormLayout(dlg)
        combo = QComboBox()
        dirs = [ad.direction for ad in self.session.directions]
        for d in dirs:
            combo.addItem(str(d.meta.get("label") or d.name), d.name)
        lo, hi = QDoubleSpinBox(), QDoubleSpinBox()
        for box in (lo, hi):
            box.setRange(-1000.0, 1000.0)
            box.setDecimals(2)
        frames = QSpinBox()
        frames.setRange(2, 200)
        frames.setValue(9)

        def follow(i):
            a, b = dirs[i].default_range
            lo.setValue(a)
            hi.setValue(b)

        combo.currentIndexChanged.connect(follow)
        follow(0)
        form.addRow("Direction", combo)
        form.addRow("From", lo)
        form.addRow("To", hi)
        form.addRow("Frames", frames)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(dlg.accept)
        bb.rejected.connect(dlg.reject)
        form.addRow(bb)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        return combo.currentData(), lo.value(), hi.value(), frames.value()

    def recipe(self, what: str = "aligned") -> dict | None:
        """The edit recipe written into exported images (see ``EditSession.recipe``)."""
        if self.session is None:
            return None
        extra = {"image": what}
        if self.photo is not None:
            extra["photo"] = Path(self.photo.path).name
            if what == "photo":
                extra["paste"] = "change" if self.keep_detail.isChecked() else "replace"
        if self.last_inversion is not None:
            extra["inversion"] = self.last_inversion.method
        ref = self.session.mixer.reference
        if ref is not None and self.session.mixer.active:
            extra["reference"] = self._ref_infos.get(self._ref_key(ref), {"kind": "latent"})
        return self.session.recipe(**extra)

    def _export(self, img: np.ndarray, path, default: str, what: str) -> None:
        path = path or self.ask_save_path("Export image", default, "PNG (*.png);;JPEG (*.jpg *.jpeg)")
        if not path:
            return
        if not Path(path).suffix:
            path = Path(path).with_suffix(".png")
        recipe = self.recipe(what)
        self.io_jobs.submit(lambda ctx: ws_ops.save_with_recipe(path, img, recipe), name="export",
                            on_done=lambda p: (self.statusBar().showMessage(
                                f"Exported {p} ({img.shape[1]}×{img.shape[0]} px)", 5000),
                                               self.exported.emit(str(p))),
                            on_error=lambda e: self.show_error("Cannot export", e))

    def copy_to_clipboard(self) -> None:
        """Put the edited photo (or, without a photo, the aligned edit) on the clipboard."""
        img = self.pasted_image if self.pasted_image is not None else self.edit_image
        if img is None:
            self.show_message("info", "Nothing to copy", "Invert a photo or draw a random face first.")
            return
        QApplication.clipboard().setImage(to_qimage(img))
        self.statusBar().showMessage(f"Copied the {'photo' if img is self.pasted_image else 'face'} "
                                     f"({img.shape[1]}×{img.shape[0]}) to the clipboard", 4000)

    # ------------------------------------------------------------------------------------------------
    # Recent files

    def _add_recent(self, path) -> None:
        p = str(Path(path).resolve())
        self.recent = [p] + [r for r in self.recent if r != p][: MAX_RECENT - 1]
        if self.settings is not None:
            self.settings.setValue("recent", self.recent)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for i, p in enumerate(self.recent):
            a = QAction(f"&{i + 1} {Path(p).name}", self)
            a.setStatusTip(p)
            a.setToolTip(p)
            a.triggered.connect(lambda _=False, p=p: self.open_path(p))
            self.recent_menu.addAction(a)
        if self.recent:
            self.recent_menu.addSeparator()
            self._action(self.recent_menu, "Clear list", self._clear_recent)
        self.recent_menu.setEnabled(bool(self.recent))

    def _clear_recent(self) -> None:
        self.recent = []
        if self.settings is not None:
            self.settings.setValue("recent", [])
        self._fill_recent_menu()

    # ------------------------------------------------------------------------------------------------
    # Autosave and crash recovery (the files: studio.engine.recovery)

    def _init_autosave(self, folder, recover: str) -> None:
        if recover not in ("ask", "recover", "discard", "ignore"):
            raise ValueError(f"recover must be ask, recover, discard or ignore, not {recover!r}")
        self.recover_mode = recover
        self.face_index = 0
        self.autosave_delay_ms = AUTOSAVE_DELAY_MS
        self.autosave_max_wait_ms = AUTOSAVE_MAX_WAIT_MS
        self.last_autosave_ms = 0.0     # GUI-thread time of the last autosave (serialising the project)
        self._autosave_first = 0.0
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.timeout.connect(self.autosave_now)
        self._clean_on_disk = False
        self._recovered_from: Path | None = None
        self._pending_recovery: recovery.RecoveryInfo | None = None
        self._recovery_checked = False
        self.recovery_folder: Path | None = None
        if folder is None:
            app_data = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
            folder = recovery.recovery_dir(Path(app_data) / "recovery" if app_data else None)
        elif folder is not False:
            folder = Path(folder)
        self.recovery_folder = folder or None
        self._autosaver = None if self.recovery_folder is None else self._new_autosaver()

    def _new_autosaver(self) -> recovery.Autosaver:
        return recovery.Autosaver(self.recovery_folder,
                                  on_saved=lambda p: self.jobs.call.post(self._autosaved, str(p)),
                                  on_error=lambda e: self.jobs.call.post(self._autosave_failed, e))

    def _park_unsaved_edit(self) -> bool:
        """Before an unsaved edit is dropped (another model opened): write its autosave and leave the
        file on disk, so the next start offers it for recovery; autosaving goes on in a new file."""
        if self._autosaver is None or self.session is None or not self.session.modified:
            return False
        self.autosave_now()
        self._autosaver.close(discard=False)
        self._autosaver = self._new_autosaver()
        return True

    @property
    def autosave_path(self) -> Path | None:
        """This window's autosave file (it exists only while there is an unsaved edit)."""
        return None if self._autosaver is None else self._autosaver.path

    def _schedule_autosave(self) -> None:
        """Autosave a short while after the last change (debounced; at most ``autosave_max_wait_ms`` late)."""
        if self._autosaver is None or self.session is None:
            return
        if self._clean_on_disk and not self.session.modified:
            return  # exactly the project on disk
        now = time.monotonic()
        if not self._autosave_timer.isActive():
            self._autosave_first = now
        elif (now - self._autosave_first) * 1000 >= self.autosave_max_wait_ms:
            return  # a long drag: let the pending save happen
        self._autosave_timer.start(self.autosave_delay_ms)

    def autosave_now(self) -> bool:
        """Hand a snapshot of the edit to the autosave writer, which serialises and writes it on its
        own thread. On this thread it costs a copy of the state (``last_autosave_ms``: well under 1 ms)."""
        self._autosave_timer.stop()
        if self._autosaver is None or self.session is None or self.model is None:
            return False
        t0 = time.perf_counter()
        snap = copy.copy(self.session)         # the state is copied; directions are immutable values
        snap.state, snap.listeners = self.session.state.copy(), []
        model_path = self.model.path
        photo, face = self._source_photo or (None, 0)  # the photo whose face this latent is, if any

        def build() -> bytes:
            return recovery.recovery_bytes(snap.to_project_bytes(), model_path=model_path, photo=photo, face=face)

        replaces, self._recovered_from = self._recovered_from, None
        self._autosaver.submit(build, replaces=replaces)
        self.last_autosave_ms = (time.perf_counter() - t0) * 1000
        return True

    def _autosaved(self, path: str) -> None:
        self.autosaved.emit(path)

    def _autosave_failed(self, e: BaseException) -> None:
        self.statusBar().showMessage(f"Autosave failed ({e}); save the project to keep your edit", 8000)

    def _first_recovery_check(self) -> None:
        if not self._recovery_checked:
            self._recovery_checked = True
            self.check_recovery()

    def check_recovery(self) -> recovery.RecoveryInfo | None:
        """Look for an edit left by a window that did not close (crash, kill, power cut) and offer it
        (``ask_recover``). Returns the newest such edit, or None."""
        if self.recovery_folder is None or self.recover_mode == "ignore":
            return None
        found = recovery.find_recoverable(self.recovery_folder)
        if not found:
            return None
        info = found[0]
        answer = self.recover_mode if self.recover_mode != "ask" else self.ask_recover(info)
        if answer == "recover":
            self.recover(info)
        elif answer == "discard":
            recovery.remove(info.path)
        return info

    def ask_recover(self, info: recovery.RecoveryInfo) -> str:
        """'recover', 'discard' or 'later' (the dialog closed: asked again at the next start)."""
        photo = f" on {Path(info.photo).name}" if info.photo else ""
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved edit",
                          f"Recover unsaved edit{photo} from {info.when}?\n\nStyleStudio did not close "
                          "normally last time; the edit was autosaved.", QMessageBox.StandardButton.NoButton, self)
        rec = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        dis = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(rec)
        box.exec()
        clicked = box.clickedButton()
        return "recover" if clicked is rec else "discard" if clicked is dis else "later"

    def recover(self, info: recovery.RecoveryInfo, *, _retry: bool = True) -> None:
        """Restore an autosaved edit: the latent and every edit, and the photo when it still exists.
        An edit of another model loads that model first. The old autosave is removed once this
        window has autosaved the edit itself."""
        from studio.core.errors import ProjectError

        ident = None if self.model is None else self.model.identity()

        def job(ctx):
            try:
                return recovery.load(info, model=ident), ident is not None
            except ProjectError:
                if ident is None or not _retry:
                    raise
                return recovery.load(info), False  # made with another model: loaded below

        def done(r):
            session, matched = r
            if matched:
                self._apply_recovery(session, info)
            elif info.model_path and _retry:
                self._pending_recovery = info
                self.load_model(info.model_path)
            else:
                self.show_error("Cannot recover the edit", StudioError(
                    f"The unsaved edit was made with the model {info.model_path or '(unknown)'}, which cannot be "
                    f"loaded. Open that model and restart StyleStudio; the edit is kept in {info.path}."))

        self.jobs.submit(job, name="recover", on_done=done,
                         on_error=lambda e: self.show_error("Cannot recover the edit", e))

    def _apply_recovery(self, session: EditSession, info: recovery.RecoveryInfo) -> None:
        session._saved_version = -1  # not saved anywhere but in the autosave
        self.cancel_inversion()
        self._new_source_face()
        self.photo = self.aligned = None
        self.pasted_image = self.edit_image = None
        self.face_index = 0
        self._refresh_canvas()
        self._recovered_from = info.path
        self._set_session(session)
        self.autosave_now()  # ours replaces the old file
        self.statusBar().showMessage(f"Recovered the edit from {info.when}", 8000)
        if info.photo and Path(info.photo).is_file() and self.model is not None:
            profile, index = self.model.profile, info.face

            def job(ctx):
                photo = ws_ops.read_photo(info.photo, ctx=ctx)
                return photo, ws_ops.align(photo, min(index, max(0, len(photo.faces) - 1)), profile)

            def done(r):
                if self.session is session:
                    self._new_source_face()  # the recovered latent is of this photo's face
                    self.photo, self.aligned = r
                    self.face_index = index
                    self._source_photo = (str(Path(self.photo.path).resolve()), index)
                    self._refresh_canvas()
                    self._update_actions()
                    self.request_render()  # the final frame pastes the edit into the photo
                self.recovered.emit(str(info.path))

            def failed(e):
                self.statusBar().showMessage(f"Recovered the edit; its photo could not be reopened ({e})", 8000)
                self.recovered.emit(str(info.path))

            self.jobs.submit(job, name="recover photo", key="photo", on_done=done, on_error=failed)
        else:
            if info.photo:
                self.statusBar().showMessage(f"Recovered the edit; its photo {info.photo} is gone", 8000)
            self.recovered.emit(str(info.path))

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
        recent = self.settings.value("recent") or []
        self.recent = [str(r) for r in ([recent] if isinstance(recent, str) else recent)][:MAX_RECENT]
        self._fill_recent_menu()
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        st = self.settings.value("splitter")
        if st is not None:
            self.splitter.restoreState(st)
        keep = self.settings.value("keep_detail")
        if keep is not None:  # QSettings' ini files give "true" / "false" back as strings
            self.keep_detail.blockSignals(True)
            self.keep_detail.setChecked(str(keep).lower() in ("true", "1"))
            self.keep_detail.blockSignals(False)

    def closeEvent(self, e):  # noqa: N802 (Qt)
        if self.confirm_close and not self._closed and not self._may_close():
            e.ignore()
            return
        self.save_settings()
        self.shutdown()
        super().closeEvent(e)

    def has_unsaved_edit(self) -> bool:
        """An edit that no project file holds (it is autosaved, but the user has not saved it)."""
        return self.session is not None and self.model is not None and self.session.modified

    def _may_close(self) -> bool:
        """With an unsaved edit, ask: Save (the project is written before the window goes; a
        cancelled file dialog keeps the window open), Discard (no autosave is kept) or Cancel."""
        if not self.has_unsaved_edit():
            return True
        answer = self.ask_save_changes()
        if answer == "save":  # written here and now (a small file), so that a failure keeps the window
            path = self.ask_save_path("Save project", "edit.stylestudio", PROJECT_FILTER)
            if not path:
                return False
            # saves asked for earlier but still queued (behind an export, say) go first: written
            # after this one, an older version would replace it (same file) and count as the last save
            self.io_jobs.runner.wait_idle()
            self._write_queued_saves(keep_failed=True)
            sess, version = self.session, self.session.version
            try:
                _write_project(_project_path(path), sess.to_project_bytes())
            except StudioError as e:
                self.show_error("Cannot save the project", e)
                return False
            sess._saved_version = version
            return True
        if answer == "discard":
            self._discard_unsaved = True
            return True
        return False

    def ask_save_changes(self) -> str:
        """'save', 'discard' or 'cancel' (also when the dialog is closed)."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Save changes?",
                          "This edit has not been saved as a project. Save it before closing?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText("Discard closes without keeping the edit (no autosave is kept for recovery).")
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        clicked = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(clicked), "cancel")

    def save_settings(self) -> None:
        """Window layout and choices (method, device, refine steps, recent files) to QSettings."""
        if self.settings is None:
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        if self.method:
            self.settings.setValue("method", self.method)
        self.settings.setValue("device", self.device)
        self.settings.setValue("refine_steps", self.refine_steps.value())
        self.settings.setValue("recent", self.recent)
        self.settings.sync()

    def open_training(self):
        """Training ▸ Training monitor: the Training window; "Use this snapshot" loads into this editor."""
        if self.training_window is None:
            from studio.gui.training import TrainingWindow

            self.training_window = TrainingWindow(use_snapshot=self.load_model, parent=self)
        self.training_window.show()
        self.training_window.raise_()
        self.training_window.activateWindow()
        return self.training_window

    def _write_queued_saves(self, *, keep_failed: bool = False) -> None:
        """At close, once the I/O worker is idle: project saves its worker never started are written
        now, in order; those it wrote count as saved (their done-callbacks may not have run yet).
        ``keep_failed``: one that failed on its worker still gets its error box (the window may stay)."""
        saves, self._pending_saves = list(self._pending_saves.items()), {}
        for key, (write, sess, version) in saves:  # not tried yet (its worker never started it): now
            try:
                tried = self._saves_tried.get(key)
                if tried is None:
                    write()
                elif not tried:  # it failed on its worker: not tried twice; the autosave keeps the edit
                    log.error("a project save failed as the window closed; the edit stays in the autosave")
                    if keep_failed:
                        self._pending_saves[key] = (write, sess, version)
                    continue
                sess._saved_version = version
            except Exception as e:  # noqa: BLE001 - nothing left to show it in; the autosave keeps the edit
                log.error("saving the project at close failed: %s", e)

    def shutdown(self) -> None:
        """Write project saves still queued, cancel and stop every worker (idempotent). A clean
        close removes the autosave; one that leaves unsaved changes (or a failed save) keeps it, so
        the next start offers to recover the edit."""
        self._closed = True
        self._autosave_timer.stop()
        self.io_jobs.shutdown(cancel=False)  # saves and exports already asked for are written
        self._write_queued_saves()
        if self._autosaver is not None:
            unsaved = self.session is not None and self.session.modified and not self._discard_unsaved
            if unsaved:
                self.autosave_now()
            self._autosaver.close(discard=not unsaved)
        self.jobs.cancel_all()
        if self.training_window is not None:
            self.training_window.shutdown()
        if self.render_worker is not None:
            self.render_worker.close()
            self.render_worker = None
        self.jobs.shutdown()
