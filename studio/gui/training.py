"""The Training window: start a trainer (generator, encoder with the abortion method, CRG,
distillation) from a form of its CLI flags, or attach to a run directory, and watch it live.

A view only: runs are separate processes (:class:`QProcess`; never in the GUI process), their
output goes to the log pane; everything shown comes from the run directory through
:class:`studio.engine.training.RunModel`, polled on a :class:`QTimer` (incremental reads of
``metrics.jsonl``, a few KiB per tick). Stop sends SIGTERM (the trainer writes a snapshot and logs
its end; a few seconds later the button offers Kill, SIGKILL, for a trainer that does not stop),
Resume relaunches with ``--resume RUN_DIR``, "Use this snapshot" hands the run's
``best.safetensors`` (or newest snapshot) to the editor through the ``use_snapshot`` callback.

The abortion-progress panel (METHODS.md §4) draws the abortion signal with every check marked
(coloured by ``abort_count``), the aborts as vertical lines, ``abort_count`` as a bar against the
patience, one lane per stage (active, or aborted at its step), the table of abort events and the
stage-passes saved against a fixed-N run.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QProcess,
    QProcessEnvironment,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.engine import training as tr
from studio.gui.compat import install_none_guard
from studio.gui.widgets import open_message_box

log = logging.getLogger(__name__)

POLL_MS = 500
MAX_LOG_LINES = 5000
STAGE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
ACTIVE = QColor("#3a9d4a")
ABORTED = QColor("#c8c8c8")


#: A run not started here that logged no end and nothing for this long (and for several of its own
#: record intervals) is shown as stopped, not running: killed, or its machine went down.
STALE_S = 300.0
#: Seconds after Stop before the button offers Kill (a double click on Stop must not kill the trainer
#: before it could write its snapshot).
KILL_DELAY_S = 5.0
RESUME_TIP = "Relaunch the run with --resume RUN_DIR"
#: End reasons after which --resume only ends the run again (its target was reached).
FINISHED = ("done", "early_stop")
SNAPSHOT_TIP = "Open the run's best.safetensors (or newest snapshot) in the editor"
#: Trainers whose finished run can go on to a larger target: the flag a --resume takes for it, the
#: config field it sets, and its type.
EXTEND = {"gan": ("--kimg", "kimg", float), "encoder": ("--steps", "steps", int), "crg": ("--steps", "steps", int),
          "distill": ("--steps", "steps", int)}


def ended_text(reason: str) -> str:
    """A run's end reason (``metrics.jsonl``'s ``end`` record) in words."""
    m = re.fullmatch(r"signal (\d+)", reason)
    if m:
        return "stopped (" + {"2": "Ctrl-C", "15": "SIGTERM"}.get(m.group(1), f"signal {m.group(1)}") + ")"
    return {"done": "finished", "early_stop": "finished (validation stopped improving)",
            "max_steps": "stopped at --max-steps", "time_budget": "stopped at --time-budget",
            "stopped": "stopped"}.get(reason, f"ended: {reason}")


def error_line(log: str) -> str | None:
    """The last error a trainer printed: ``error: ...`` (its own checks) or argparse's
    ``prog: error: ...`` (a flag it does not know or a value of the wrong type)."""
    for ln in reversed(log.splitlines()):
        m = re.match(r"(?:error|[^\s:][^:]*?: error): (.+)", ln)
        if m:
            return m.group(1).strip()
    return None


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "–"
    s = round(s)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _plot(title: str, left: str) -> pg.PlotWidget:
    w = pg.PlotWidget(background="w")
    w.setTitle(title, color="#222", size="10pt")
    w.setLabel("bottom", "step", color="#222")
    w.setLabel("left", left, color="#222")
    w.showGrid(x=True, y=True, alpha=0.25)
    w.getAxis("left").enableAutoSIPrefix(False)  # "400 (x0.001)" reads worse than 0.4
    for ax in ("left", "bottom"):
        w.getAxis(ax).setPen(pg.mkPen("#555"))
        w.getAxis(ax).setTextPen(pg.mkPen("#333"))
    w.setMinimumHeight(170)
    w.setClipToView(True)  # long runs: draw only what is in view, at most a few points per pixel
    w.setDownsampling(auto=True, mode="peak")
    return w


# ----------------------------------------------------------------------------


class StageLanes(QWidget):
    """One horizontal lane per stage: green while active, grey from the step it was aborted."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lanes: list[tr.StageLane] = []
        self.step = 0
        self.setMinimumHeight(60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_lanes(self, lanes: list[tr.StageLane], step: int) -> None:
        self.lanes, self.step = list(lanes), step
        self.setFixedHeight(max(1, len(lanes)) * 24 + 6)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(300, max(1, len(self.lanes)) * 24 + 6)

    def paintEvent(self, e):  # noqa: N802 (Qt)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        label_w, h = 62, 20
        width = max(10, self.width() - label_w - 4)
        total = max(self.step, 1)
        if not self.lanes:
            p.setPen(QColor("#777"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no run")
            return
        for i, lane in enumerate(self.lanes):
            y = 3 + i * 24
            p.setPen(QColor("#222"))
            p.drawText(QRectF(0, y, label_w - 4, h), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                       f"stage {lane.stage}")
            x0 = label_w
            cut = width if lane.aborted_at is None else width * min(1.0, lane.aborted_at / total)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(ACTIVE)
            p.drawRoundedRect(QRectF(x0, y, cut, h), 3, 3)
            if lane.aborted_at is not None:
                p.setBrush(QBrush(ABORTED, Qt.BrushStyle.SolidPattern))
                p.drawRoundedRect(QRectF(x0 + cut, y, max(0.0, width - cut), h), 3, 3)
                p.setPen(QPen(QColor("#b22222"), 2))
                p.drawLine(int(x0 + cut), y - 1, int(x0 + cut), y + h + 1)
            p.setPen(QColor("white") if lane.aborted_at is None else QColor("#333"))
            text = "active" if lane.aborted_at is None else f"aborted at step {lane.aborted_at}"
            tx = x0 + 6 if lane.aborted_at is None else min(x0 + cut + 6, x0 + width - 150)
            if lane.aborted_at is not None and cut > width - 150:
                p.setPen(QColor("white"))
                tx = x0 + 6
            p.drawText(QRectF(tx, y, 200, h), Qt.AlignmentFlag.AlignVCenter, text)
        p.end()


class SampleView(QLabel):
    """The latest sample grid, scaled to fit (reloaded only when the file changes)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.path: Path | None = None
        self._stamp = None
        self._image: QImage | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(220, 120))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("QLabel { background: #202020; color: #a0a0a0; }")
        self.setText("no sample grid yet")

    def show_path(self, path: Path | None) -> bool:
        """Show ``path`` if it is new or changed; True when the image was (re)loaded."""
        if path is None:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        img = QImage(str(path))
        if img.isNull():
            return False  # being written: next tick
        self._stamp, self.path, self._image = stamp, path, img
        self.setToolTip(str(path))
        self._refresh()
        return True

    def image(self) -> QImage | None:
        return self._image

    def clear_image(self) -> None:
        """Back to the empty state (another run, or none, is shown)."""
        self._stamp, self.path, self._image = None, None, None
        self.clear()
        self.setToolTip("")
        self.setText("no sample grid yet")

    def _refresh(self) -> None:
        if self._image is None:
            return
        pm = QPixmap.fromImage(self._image)
        self.setPixmap(pm.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, e):  # noqa: N802 (Qt)
        super().resizeEvent(e)
        self._refresh()


# ----------------------------------------------------------------------------


class TrainerForm(QWidget):
    """The flags of one trainer as a form (:class:`studio.engine.training.TrainerSpec`)."""

    changed = Signal()

    def __init__(self, spec: tr.TrainerSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.inputs: dict[str, QWidget] = {}
        self.form = QFormLayout(self)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setContentsMargins(0, 0, 0, 0)
        for fs in spec.flags:
            w = self._input(fs)
            self.inputs[fs.key] = w
            label = QLabel(fs.label)
            label.setToolTip(f"{fs.flag}" + (f": {fs.tip}" if fs.tip else ""))
            self.form.addRow(label, w)
        self._update_visibility()

    def _input(self, fs: tr.FlagSpec) -> QWidget:
        tip = f"{fs.flag}" + (f": {fs.tip}" if fs.tip else "")
        if fs.kind == "choice":
            w = QComboBox()
            if fs.default is None:
                w.addItem("(default)", None)
            for c in fs.choices:
                w.addItem(str(c), c)
            if fs.default is not None:
                w.setCurrentIndex(max(0, w.findData(fs.default)))
            w.currentIndexChanged.connect(lambda _i: self._changed())
            w.setToolTip(tip)
            return w
        if fs.kind == "switch":
            w = QCheckBox()
            w.setChecked(bool(fs.default))
            w.toggled.connect(lambda _b: self._changed())
            w.setToolTip(tip)
            return w
        edit = QLineEdit("" if fs.default is None else str(fs.default))
        edit.setPlaceholderText("default")
        edit.setToolTip(tip)
        edit.textChanged.connect(lambda _t: self.changed.emit())
        if fs.kind not in ("path", "dir"):
            return edit
        box = QWidget()
        lay = QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(edit, 1)
        b = QToolButton()
        b.setText("…")
        b.clicked.connect(lambda _=False, e=edit, k=fs.kind: self._browse(e, k))
        lay.addWidget(b)
        box.edit = edit  # type: ignore[attr-defined]
        return box

    def _browse(self, edit: QLineEdit, kind: str) -> None:
        if kind == "dir":
            p = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        else:
            p, _ = QFileDialog.getOpenFileName(self, "Choose a file", edit.text())
        if p:
            edit.setText(p)

    def _changed(self) -> None:
        self._update_visibility()
        self.changed.emit()

    def _update_visibility(self) -> None:
        shown = {fs.key for fs in tr.visible_flags(self.spec, self.values(raw=True))}
        for fs in self.spec.flags:
            self.form.setRowVisible(self.inputs[fs.key], fs.key in shown)

    def _edit(self, key: str) -> QLineEdit | None:
        w = self.inputs[key]
        return getattr(w, "edit", w) if not isinstance(w, (QComboBox, QCheckBox)) else None

    def values(self, raw: bool = False) -> dict:
        """Option values (typed; '' / None where the trainer's default applies)."""
        out = {}
        for fs in self.spec.flags:
            w = self.inputs[fs.key]
            if isinstance(w, QComboBox):
                out[fs.key] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[fs.key] = w.isChecked()
            else:
                text = self._edit(fs.key).text().strip()
                out[fs.key] = text if raw else _typed(fs, text)
        return out

    def set_value(self, key: str, value) -> None:
        key = key.replace("-", "_")
        w = self.inputs[key]
        if isinstance(w, QComboBox):
            i = w.findData(value)
            if i < 0:
                i = w.findText(str(value))
            if i < 0:
                raise ValueError(f"{value!r} is not a choice of --{key.replace('_', '-')}")
            w.setCurrentIndex(i)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        else:
            self._edit(key).setText("" if value is None else str(value))


def _typed(fs: tr.FlagSpec, text: str):
    if text == "":
        return None
    try:
        if fs.kind == "int":
            return int(text)
        if fs.kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"{fs.flag}: {text!r} is not a{'n integer' if fs.kind == 'int' else ' number'}") from None
    return text


# ----------------------------------------------------------------------------


class TrainingWindow(QMainWindow):
    """``use_snapshot(path)``: load a model file into the editor (the main window's ``load_model``).
    ``poll_ms``: how often the run directory is read."""

    updated = Signal()                 # the run model changed and the views were redrawn
    run_attached = Signal(str)         # run directory
    process_started = Signal()
    process_finished = Signal(int)     # exit code
    snapshot_used = Signal(str)
    message_shown = Signal(str, str, str)

    def __init__(self, *, use_snapshot: Callable[[Path], None] | None = None, poll_ms: int = POLL_MS,
                 parent: QWidget | None = None):
        super().__init__(parent)
        install_none_guard()
        self.setWindowTitle("StyleStudio – Training")
        self.use_snapshot_cb = use_snapshot
        self.model: tr.RunModel | None = None
        self.process: QProcess | None = None
        self._brushes: dict = {}             # (abort count, patience) -> brush of the check dots
        self._stop_requested = False        # Stop pressed for the running process
        self._kill_requested = False        # ... and pressed again (Kill): SIGKILL sent
        self._stop_time = 0.0               # time.monotonic() of Stop
        self._exited_run: Path | None = None  # the run whose trainer (started here) has exited
        # The run the trainer started here writes (None until it announces it): usually self.model,
        # but another run may be shown meanwhile.
        self._proc_model: tr.RunModel | None = None
        self._state_pin: tuple[tr.RunModel, int] | None = None  # the state _finished wrote, for that version
        self.messages: list[tuple[str, str, str]] = []
        self._log_tail = ""                 # recent process output (run-directory discovery)
        self._out_before: set[str] | None = None
        self._out_dir: Path | None = None
        self._launched_trainer: str | None = None
        self._log_file: tr.TextTailer | None = None
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._drawn_version = -1
        self._build_ui()
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._update_buttons()

    # -- UI -------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        central = QWidget()
        self.setCentralWidget(central)
        root = QHBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 6)

        # Left: the form and the buttons.
        left = QWidget()
        left.setFixedWidth(340)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        self.trainer_combo = QComboBox()
        for name, spec in tr.TRAINERS.items():
            self.trainer_combo.addItem(spec.label, name)
        lv.addWidget(QLabel("<b>Trainer</b>"))
        lv.addWidget(self.trainer_combo)
        self.forms: dict[str, TrainerForm] = {}
        self.stack = QStackedWidget()
        for name, spec in tr.TRAINERS.items():
            self.forms[name] = TrainerForm(spec)
            self.stack.addWidget(self.forms[name])
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.stack)
        lv.addWidget(scroll, 1)
        self.trainer_combo.currentIndexChanged.connect(lambda i: self.stack.setCurrentIndex(i))
        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("more flags, e.g. --lambda-l2 2")
        self.extra_edit.setToolTip("Extra command-line flags passed to the trainer as written")
        lv.addWidget(self.extra_edit)
        grid = QGridLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start the trainer in its own process")
        self.start_button.clicked.connect(lambda: self.start())
        self.attach_button = QPushButton("Attach…")
        self.attach_button.setToolTip("Watch an existing run directory (also one started from a terminal)")
        self.attach_button.clicked.connect(self.attach_dialog)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("SIGTERM: the trainer writes a snapshot and exits")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(RESUME_TIP)
        self.resume_button.clicked.connect(self.resume)
        self.snapshot_button = QPushButton("Use this snapshot")
        self.snapshot_button.setToolTip(SNAPSHOT_TIP)
        self.snapshot_button.clicked.connect(self.use_snapshot)
        grid.addWidget(self.start_button, 0, 0)
        grid.addWidget(self.attach_button, 0, 1)
        grid.addWidget(self.stop_button, 1, 0)
        grid.addWidget(self.resume_button, 1, 1)
        grid.addWidget(self.snapshot_button, 2, 0, 1, 2)
        lv.addLayout(grid)
        root.addWidget(left)

        # Right: status line, curves + samples, abortion panel, log.
        right = QSplitter(Qt.Orientation.Vertical)
        root.addWidget(right, 1)

        top = QWidget()
        tv = QVBoxLayout(top)
        tv.setContentsMargins(0, 0, 0, 0)
        self.run_label = QLabel("No run. Start one, or attach to a run directory.")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_label.setStyleSheet("QLabel { font-weight: bold; }")
        tv.addWidget(self.run_label)
        stats = QHBoxLayout()
        self.step_label = QLabel("step –")
        self.speed_label = QLabel("– s/step")
        self.eta_label = QLabel("ETA –")
        self.state_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("–")
        for w in (self.step_label, self.speed_label, self.eta_label, self.state_label):
            w.setMinimumWidth(110)
            stats.addWidget(w)
        stats.addWidget(self.progress_bar, 1)
        tv.addLayout(stats)
        row = QSplitter(Qt.Orientation.Horizontal)
        self.loss_plot = _plot("Training losses", "loss")
        self.loss_plot.addLegend(offset=(-10, 10), labelTextColor="#222", brush=pg.mkBrush(255, 255, 255, 200))
        self.log_y = QCheckBox("log scale")
        self.log_y.toggled.connect(lambda on: self.loss_plot.setLogMode(y=on))
        lp = QWidget()
        lpl = QVBoxLayout(lp)
        lpl.setContentsMargins(0, 0, 0, 0)
        lpl.addWidget(self.loss_plot, 1)
        lpl.addWidget(self.log_y)
        row.addWidget(lp)
        sample_box = QGroupBox("Latest samples")
        sbl = QVBoxLayout(sample_box)
        sbl.setContentsMargins(4, 4, 4, 4)
        self.sample_view = SampleView()
        sbl.addWidget(self.sample_view)
        row.addWidget(sample_box)
        row.setSizes([640, 360])
        tv.addWidget(row, 1)
        right.addWidget(top)

        self.abort_box = QGroupBox("Abortion progress")
        ab = QHBoxLayout(self.abort_box)
        self.signal_plot = _plot("Abortion signal (checks marked)", "signal")
        for plot in (self.loss_plot, self.signal_plot):  # long runs: draw what a pixel column can show
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
        self.signal_curve = self.signal_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=2))
        self.check_points = pg.ScatterPlotItem(size=8, pen=pg.mkPen("#333", width=0.5))
        self.signal_plot.addItem(self.check_points)
        self._abort_lines: list[pg.InfiniteLine] = []
        self._threshold_line: pg.InfiniteLine | None = None
        ab.addWidget(self.signal_plot, 3)
        side = QWidget()
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 0, 0)
        self.count_label = QLabel("abort_count")
        sv.addWidget(self.count_label)
        self.count_bar = QProgressBar()
        self.count_bar.setRange(0, 10)
        self.count_bar.setFormat("%v / %m (patience)")
        sv.addWidget(self.count_bar)
        sv.addWidget(QLabel("Stages"))
        self.lanes = StageLanes()
        sv.addWidget(self.lanes)
        self.saved_label = QLabel("compute saved vs fixed N: –")
        self.saved_label.setWordWrap(True)
        sv.addWidget(self.saved_label)
        self.saved_bar = QProgressBar()
        self.saved_bar.setRange(0, 1000)
        self.saved_bar.setFormat("–")
        sv.addWidget(self.saved_bar)
        self.abort_table = QTableWidget(0, 3)
        self.abort_table.setHorizontalHeaderLabels(["step", "dropped", "left"])
        for col, tip in enumerate(("training step of the abort", "the stage dropped", "stages still active")):
            self.abort_table.horizontalHeaderItem(col).setToolTip(tip)
        self.abort_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.abort_table.verticalHeader().setVisible(False)
        self.abort_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.abort_table.setMinimumHeight(80)
        sv.addWidget(self.abort_table, 1)
        ab.addWidget(side, 2)
        right.addWidget(self.abort_box)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        f = QFont("monospace")
        f.setStyleHint(QFont.StyleHint.TypeWriter)
        f.setPointSize(8)
        self.log_view.setFont(f)
        self.log_view.setPlaceholderText("Trainer output (stdout and stderr) appears here.")
        right.addWidget(self.log_view)
        right.setSizes([380, 330, 150])
        self.resize(1400, 950)

    # -- messages -------------------------------------------------------------------------------

    def show_message(self, kind: str, title: str, text: str) -> None:
        self.messages.append((kind, title, text))
        open_message_box(self, kind, title, text)
        self.message_shown.emit(kind, title, text)

    def append_log(self, text: str) -> None:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.log_view.moveCursor(self.log_view.textCursor().MoveOperation.End)
        self.log_view.insertPlainText(text)
        self.log_view.moveCursor(self.log_view.textCursor().MoveOperation.End)
        self._log_tail = (self._log_tail + text)[-65536:]

    # -- the form -------------------------------------------------------------------------------

    @property
    def trainer(self) -> str:
        return self.trainer_combo.currentData()

    def set_trainer(self, name: str) -> None:
        self.trainer_combo.setCurrentIndex(self.trainer_combo.findData(name))

    def set_option(self, key: str, value) -> None:
        self.forms[self.trainer].set_value(key, value)

    def options(self) -> dict:
        return self.forms[self.trainer].values()

    def command(self) -> list[str]:
        """The command line Start runs (raises ValueError naming a bad flag)."""
        opts = self.options()
        out = opts.get("out")
        if out:
            opts["out"] = str(Path(out).expanduser().resolve())
        text = self.extra_edit.text()
        try:
            extra = shlex.split(text)
        except ValueError as e:  # an unbalanced quote
            raise ValueError(f"more flags: {e} in {text.strip()!r}; close the quotes (or leave them out)") from None
        return tr.build_command(self.trainer, opts, extra=extra)

    # -- processes ------------------------------------------------------------------------------

    @property
    def process_running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self) -> bool:
        """Start the trainer of the form in a new process; the new run directory is attached once it appears."""
        if self.process_running:
            self.show_message("warning", "A run is going", "Stop the running trainer first.")
            return False
        try:
            cmd = self.command()
        except ValueError as e:
            self.show_message("error", "Cannot start the trainer", str(e))
            return False
        opts = self.options()
        self._out_dir = Path(opts.get("out") or tr.DEFAULT_RUNS).expanduser().resolve()
        try:
            self._out_before = {p.name for p in self._out_dir.iterdir()} if self._out_dir.is_dir() else set()
        except OSError:  # unreadable: the trainer says so (it cannot create its run there either)
            self._out_before = set()
        self._launched_trainer = self.trainer
        self.detach("Waiting for the run directory…")
        self._launch(cmd)
        return True

    def resume(self) -> bool:
        """Relaunch the attached run with ``--resume RUN_DIR``."""
        if self.model is None or self.model.run_dir is None:
            self.show_message("warning", "No run", "Attach to a run directory (or start one) first.")
            return False
        if self.process_running:
            self.show_message("warning", "A run is going", "Stop the running trainer before resuming.")
            return False
        run_dir = self.model.run_dir
        extra: list[str] = []
        if self.model.ended in FINISHED:
            if not _extendable(self.model):
                self.show_message("info", "Nothing to resume", _finished_text(self.model))
                return False
            flag, key, kind = EXTEND[self.model.trainer]
            target = self.ask_target(self.model)
            if target is None:
                return False
            done = self.model.kimg if key == "kimg" else self.model.step
            if not target > (done or 0):
                self.show_message("warning", "Train longer",
                                  f"{run_dir.name} is already at {done:g} {key}; give a larger {flag} than that.")
                return False
            extra = [flag, repr(float(target)) if kind is float else str(int(target))]
        if not (run_dir / "config.json").is_file():
            self.show_message("warning", "Nothing to resume",
                              f"{run_dir} is gone or has no config.json (a run refused at its start is removed); "
                              "fix the settings and press Start.")
            self.detach(f"No run ({run_dir.name} is gone)")
            return False
        own_exited = self._exited_run == run_dir  # this window's trainer of this run has exited: not alive
        if (not own_exited and self.model.running and self.model.last_time
                and time.time() - self.model.last_time < 30):
            self.show_message("warning", "The run looks alive",
                              f"{run_dir.name} logged no end and wrote {time.time() - self.model.last_time:.0f} s ago; "
                              "stop it where it runs (Ctrl-C / kill -TERM) before resuming it here.")
            return False
        try:
            cmd = tr.resume_command(run_dir, self.model.trainer, extra=extra)
        except ValueError as e:
            self.show_message("error", "Cannot resume", str(e))
            return False
        self._out_before = None
        self._launch(cmd)
        self._proc_model = self.model
        return True

    def ask_target(self, m: tr.RunModel) -> float | None:
        """The new target of a finished run (Train longer…): twice the old one offered; None: cancelled."""
        from PySide6.QtWidgets import QInputDialog

        flag, key, kind = EXTEND[m.trainer]
        old = m.config.get(key)
        old = float(old) if isinstance(old, (int, float)) and not isinstance(old, bool) else None
        label = f"{m.run_dir.name} finished at {old:g} {key}. Train on to {flag} (larger):" if old else \
            f"Train {m.run_dir.name} on to {flag}:"
        start = 2 * old if old else 1
        if kind is float:
            v, ok = QInputDialog.getDouble(self, "Train longer", label, start, 0.001, 1e7, 3)
        else:
            v, ok = QInputDialog.getInt(self, "Train longer", label, int(start), 1, 10 ** 9)
        return v if ok else None

    def _launch(self, cmd: list[str]) -> None:
        p = QProcess(self)
        p.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        env = QProcessEnvironment()
        for k, v in tr.trainer_env().items():
            env.insert(k, v)
        p.setProcessEnvironment(env)
        p.setWorkingDirectory(os.getcwd())
        p.readyReadStandardOutput.connect(self._read_output)
        p.finished.connect(self._finished)
        p.errorOccurred.connect(self._process_error)
        self.process = p
        self._stop_requested = self._kill_requested = False
        self._exited_run = None
        self._proc_model = None
        self._log_file = None  # its output comes through the process now
        self._log_tail = ""
        self.append_log(f"$ {shlex.join(cmd)}\n")
        p.start(cmd[0], cmd[1:])
        self.state_label.setText("starting…")
        self.process_started.emit()
        self._update_buttons()

    def _read_output(self) -> None:
        p = self.sender() if isinstance(self.sender(), QProcess) else self.process
        if p is None:
            return
        data = bytes(p.readAllStandardOutput()).decode("utf-8", "replace")
        if data:
            self.append_log(data)

    def _finished(self, code: int, status) -> None:
        self._read_output()
        crashed = status == QProcess.ExitStatus.CrashExit
        self.append_log(f"[trainer exited with code {code}{' (crashed)' if crashed else ''}]\n")
        self.poll()
        pm = self._proc_model  # the run this trainer wrote (another one may be on screen)
        shown = pm is self.model
        ended = pm.ended if pm is not None else None
        stopped = self._stop_requested and (code != 0 or crashed)  # Stop (SIGTERM) before its handler was in
        if pm is not None:
            self._exited_run = pm.run_dir
        gone = pm is not None and not pm.run_dir.is_dir()  # refused at its start: the trainer removed it
        announced = pm.run_dir if pm is not None else tr.run_dir_from_log(self._log_tail)
        if ended:
            text = ended_text(ended) + (f" (exit {code})" if code or crashed else "")
        elif self._kill_requested:
            text = "killed: no snapshot at the end (Resume continues from the last one)"
        elif stopped:
            text = ("stopped before training began" if pm is None or pm.latest_snapshot() is None
                    else f"stopped ({code})")
        else:
            text = f"{'crashed' if crashed else 'exited'} ({code})"
        if (code != 0 or crashed) and not ended and not stopped and not self._kill_requested:
            error = error_line(self._log_tail)
            where = ("It exited before creating a run directory" if announced is None
                     else f"It refused to start (it removed its run directory {announced.name})"
                     if not announced.is_dir() else f"It stopped without ending {announced.name}")
            self.show_message("error", "The trainer failed",
                              f"{where}; " + (f"it said:\n\n{error}" if error else
                                              "the log pane shows why.\n\n" + self._log_tail[-800:]))
        self._out_before = None  # a run that appears in the runs folder from now on is not this trainer's
        self._proc_model = None
        if shown:
            if pm is None:
                self.run_label.setText("No run: the trainer " + ("was stopped" if stopped or self._kill_requested
                                                                 else "exited") + " before creating a run directory")
            elif gone:
                self.detach()
                self.run_label.setText("No run (the trainer removed the run it refused to start)")
            self.state_label.setText(text)
            if self.model is not None:
                self.eta_label.setText("ETA –")
                self._state_pin = (self.model, self.model.version)
        else:
            self.append_log(f"[{pm.run_dir.name if pm is not None else 'the trainer'}: {text}]\n")
        self._update_buttons()
        self.process_finished.emit(int(code))

    def _process_error(self, err) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            self.show_message("error", "Cannot start the trainer", f"{self.process.program()}: failed to start")
            self._out_before = None
            if self._proc_model is None and self.model is None:
                self.run_label.setText("No run: the trainer failed to start")
            if self._proc_model is self.model:
                self.state_label.setText("failed to start")
            self._proc_model = None
            self._update_buttons()

    def stop(self) -> None:
        """SIGTERM to the trainer started here (it snapshots, logs its end and exits); pressed again
        while that trainer has not exited yet (a long step or evaluation), SIGKILL."""
        if not self.process_running:
            return
        if self._stop_requested:
            if time.monotonic() - self._stop_time < KILL_DELAY_S:
                return  # the second click of a double click
            self._kill_requested = True
            self.append_log("[kill: SIGKILL sent; no snapshot is written, Resume continues from the last one]\n")
            self._set_state_of_process("killing…")
            self.process.kill()
            return
        self._stop_requested = True
        self._stop_time = time.monotonic()
        self.append_log("[stop: SIGTERM sent; the trainer writes a snapshot]\n")
        self._set_state_of_process("stopping…")
        self.process.terminate()
        self._update_buttons()
        QTimer.singleShot(int(KILL_DELAY_S * 1000) + 50, self._update_buttons)  # then Stop becomes Kill

    def _set_state_of_process(self, text: str) -> None:
        if self._proc_model is self.model:
            self.state_label.setText(text)

    # -- run directories ------------------------------------------------------------------------

    def attach_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Attach to a run directory", str(self._out_dir or tr.DEFAULT_RUNS))
        if d:
            self.attach(d)

    def attach(self, run_dir: str | Path) -> bool:
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").is_file() and not (run_dir / "metrics.jsonl").is_file():
            self.show_message("error", "Not a run directory",
                              f"{run_dir} has no config.json or metrics.jsonl (trainers write runs/00012-<name>/).")
            return False
        self.model = tr.RunModel(run_dir)
        # A run started elsewhere (terminal, torchrun): its log.txt goes to the log pane.
        self._log_file = None if self.process_running else tr.TextTailer(run_dir / "log.txt")
        if self._log_file is not None:
            self.append_log(f"[attached to {run_dir}; showing its log.txt]\n")
        if self._proc_model is not None and _same_path(self._proc_model.run_dir, run_dir):
            self._proc_model = self.model  # back to the run the trainer started here writes
        self._drawn_version = -1
        self._reset_views()
        self.run_label.setText(self._run_label_text())
        self.run_label.setToolTip(str(run_dir))
        self.poll()
        self.run_attached.emit(str(run_dir))
        self._update_buttons()
        return True

    def detach(self, text: str = "No run. Start one, or attach to a run directory.") -> None:
        self.model = None
        self._reset_views()
        self.run_label.setText(text)
        self.run_label.setToolTip("")
        self._update_buttons()

    def _run_label_text(self) -> str:
        m = self.model
        d = m.run_dir
        text = f"{d.name}  ({m.trainer or 'unknown trainer'})   {d.parent}"
        return text if d.is_dir() else f"{d.name}: the run folder is gone (deleted or moved)   {d.parent}"

    def _discover_run(self) -> None:
        """After Start: attach to the run directory the trainer announces (or that appears in --out);
        if another run is shown meanwhile, it stays on screen and the new one is followed aside."""
        if self._proc_model is not None or self._out_before is None or self._out_dir is None:
            return
        found = tr.run_dir_from_log(self._log_tail)
        if found is not None and not found.is_absolute():
            found = Path(os.getcwd()) / found
        if found is None or not found.is_dir():
            new = tr.new_run_dirs(self._out_dir, self._out_before)
            found = new[-1] if new else None
        if found is not None:
            self._out_before = None
            if self.model is None:
                self.attach(found)
                self._proc_model = self.model
            else:
                self._proc_model = tr.RunModel(found)
                self._proc_model.poll()
                self.append_log(f"[the trainer writes {found}; Attach… it to watch it here]\n")
                self._update_buttons()

    # -- polling and drawing ----------------------------------------------------------------------

    def poll(self) -> None:
        """One timer tick: read what the run appended and redraw what changed."""
        self._discover_run()
        if self._proc_model is not None and self._proc_model is not self.model:
            self._proc_model.poll()  # the trainer started here, while another run is shown
        m = self.model
        if m is None:
            return
        m.poll()
        if self._log_file is not None:
            text, restarted = self._log_file.poll()
            if restarted:
                self.append_log("[log.txt was replaced: reading it again]\n")
            if text:
                self.append_log(text)
        if m.version != self._drawn_version:
            self._drawn_version = m.version
            self._draw()
            self.updated.emit()
        self._refresh_state()
        label = self._run_label_text()
        if label != self.run_label.text():
            self.run_label.setText(label)
        self.sample_view.show_path(m.latest_sample())
        self._update_buttons()

    def _idle_seconds(self, m: tr.RunModel) -> float | None:
        """How long ago a run that logged no end wrote its last record, when that is too long for a
        live run (its own record interval included); None while it looks alive."""
        if m.ended or m.last_time is None:
            return None
        idle = time.time() - m.last_time
        every = m.config.get("log_every")
        every = every if isinstance(every, int) and every > 0 else 10
        return idle if idle > max(STALE_S, 5 * (m.sec_per_step or 0.0) * every) else None

    def _refresh_state(self) -> None:
        """The state and ETA of the run shown (every tick: a run elsewhere may go quiet)."""
        m = self.model
        own = self.process_running and self._proc_model is m
        if own and self._stop_requested:
            return  # "stopping…" / "killing…" until the trainer has exited
        if self._state_pin is not None and self._state_pin == (m, m.version):
            return  # what _finished said about the exit of the trainer started here
        self._state_pin = None
        exited_here = self._exited_run is not None and _same_path(self._exited_run, m.run_dir)
        idle = None if own or exited_here else self._idle_seconds(m)
        if not m.run_dir.is_dir():
            text = "run folder gone"
        elif m.ended:
            text = ended_text(m.ended)
        elif not m.sessions:
            text = "starting…" if own else "no records yet"
        elif idle is not None:
            text = f"no end logged; last record {fmt_duration(idle)} ago (stopped or killed?)"
        elif exited_here:
            text = "not running (its trainer exited)"
        else:
            last = m.sessions[-1]
            text = "running" if last["event"] == "start" else f"resumed at {last['step']}"
        if text != self.state_label.text():
            self.state_label.setText(text)
        live = not m.ended and bool(m.sessions) and idle is None and not exited_here and m.run_dir.is_dir()
        eta = f"ETA {fmt_duration(m.eta_seconds)}" if live else "ETA –"
        if eta != self.eta_label.text():
            self.eta_label.setText(eta)

    def _reset_views(self) -> None:
        for c in self._curves.values():
            self.loss_plot.removeItem(c)
        self._curves.clear()
        if self.loss_plot.plotItem.legend is not None:
            self.loss_plot.plotItem.legend.clear()
        self.signal_curve.setData([], [])
        self.check_points.setData([])
        for ln in self._abort_lines:
            self.signal_plot.removeItem(ln)
        self._abort_lines.clear()
        if self._threshold_line is not None:
            self.signal_plot.removeItem(self._threshold_line)
            self._threshold_line = None
        self.abort_table.setRowCount(0)
        self.lanes.set_lanes([], 0)
        self.step_label.setText("step –")
        self.speed_label.setText("– s/step")
        self.eta_label.setText("ETA –")
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("–")
        self.saved_label.setText("compute saved vs fixed N: –")
        self.saved_bar.setValue(0)
        self.saved_bar.setFormat("–")
        self.count_bar.setRange(0, 10)
        self.count_bar.reset()
        self.count_bar.setStyleSheet("")
        self.count_label.setText("abort_count")
        self.abort_box.setTitle("Abortion progress")
        self.abort_box.setEnabled(True)
        self.abort_box.setVisible(True)
        self.state_label.setText("")
        self._state_pin = None
        self.sample_view.clear_image()
        for plot in (self.loss_plot, self.signal_plot):  # not the axes of the run shown before
            plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            plot.enableAutoRange()

    def _count_brush(self, count: int, patience: int):
        key = (count, patience)
        b = self._brushes.get(key)
        if b is None:
            b = self._brushes[key] = pg.mkBrush(_count_colour(count / patience))
        return b

    def _draw(self) -> None:
        m = self.model
        # Loss curves.
        for i, key in enumerate(m.loss_terms):
            pts = m.curves[key]
            c = self._curves.get(key)
            if c is None:
                colour = STAGE_COLOURS[i % len(STAGE_COLOURS)]
                c = self.loss_plot.plot([], [], pen=pg.mkPen(colour, width=2 if key == "loss_total" else 1.3),
                                        name=key.removeprefix("loss_") or key)
                self._curves[key] = c
            a = np.asarray(pts, float).reshape(-1, 2)
            c.setData(a[:, 0], a[:, 1])
        for key in set(self._curves) - set(m.loss_terms):
            self._curves[key].setData([], [])
        # Status line.
        target = m.target_steps
        self.step_label.setText(f"step {m.step}" + (f" / {target}" if target else "")
                                + (f"  ({m.kimg:.2f} kimg)" if m.trainer == "gan" else ""))
        if m.sec_per_step is not None:
            self.speed_label.setText(f"{m.sec_per_step:.3f} s/step"
                                     + (f" ({m.sec_per_kimg:.0f} s/kimg)" if m.sec_per_kimg is not None else ""))
        elif m.sec_per_kimg is not None:
            self.speed_label.setText(f"{m.sec_per_kimg:.0f} s/kimg")
        prog = m.progress
        if prog is not None:
            self.progress_bar.setValue(int(prog * 1000))
            self.progress_bar.setFormat(f"{prog * 100:.1f} %")
        # Abortion panel.
        is_abort = m.num_stages > 1 or bool(m.checks)
        self.abort_box.setEnabled(is_abort)
        self.abort_box.setVisible(is_abort or m.trainer in (None, "encoder"))  # not for GAN / CRG / distill runs
        mode = m.abort_mode or "–"
        self.abort_box.setTitle(f"Abortion progress  (mode {mode}, {m.num_stages} stages, "
                                f"{m.active_stages} active, {len(m.checks)} checks)" if is_abort
                                else "Abortion progress (this run has one stage)")
        xs = np.fromiter((c.step for c in m.checks), float, len(m.checks))
        ys = np.fromiter((c.signal for c in m.checks), float, len(m.checks))
        self.signal_curve.setData(xs, ys)
        # the dots: at most MAX_CHECK_DOTS (evenly thinned, the latest always kept), and one brush
        # object per colour, so that a long run's redraw does not render a symbol per check
        pat = m.patience or 10
        keep = _thin(len(m.checks), MAX_CHECK_DOTS)
        brushes = [self._count_brush(m.checks[i].abort_count, pat) for i in keep]
        self.check_points.setData(x=xs[keep], y=ys[keep], brush=brushes)
        for ln in self._abort_lines:
            self.signal_plot.removeItem(ln)
        self._abort_lines = []
        for i, a in enumerate(m.aborts):
            # Labels at staggered heights so that close aborts stay readable.
            ln = pg.InfiniteLine(pos=a.step, angle=90, pen=pg.mkPen("#b22222", width=1.5, style=Qt.PenStyle.DashLine),
                                 label=f"stage {a.dropped_stage} off", labelOpts={
                                     "position": 0.93 - 0.09 * (i % 3), "color": "#b22222",
                                     "fill": pg.mkBrush(255, 255, 255, 220)})
            self.signal_plot.addItem(ln)
            self._abort_lines.append(ln)
        thr = m.abort_threshold if m.abort_mode == "absolute" else None
        if thr is not None and self._threshold_line is None:
            self._threshold_line = pg.InfiniteLine(pos=thr, angle=0, pen=pg.mkPen("#888", style=Qt.PenStyle.DotLine),
                                                   label=f"threshold {thr:g}", labelOpts={"color": "#555",
                                                                                          "position": 0.12})
            self.signal_plot.addItem(self._threshold_line)
        self.count_bar.setMaximum(pat)
        self.count_bar.setValue(min(m.abort_count, pat))
        self.count_bar.setStyleSheet(
            f"QProgressBar::chunk {{ background: {_count_colour(m.abort_count / pat).name()}; }}")
        floor = m.active_stages <= int(m.config.get("min_stages") or 1)
        self.count_label.setText(f"abort_count {m.abort_count} of patience {pat}"
                                 + (f" (last signal {m.checks[-1].signal:.4g})" if m.checks else "")
                                 + ("; min stages reached, no more aborts" if floor and m.aborts else ""))
        self.count_label.setWordWrap(True)
        self.lanes.set_lanes(m.stage_lanes(), m.step)
        c = m.compute()
        if c["fixed"]:
            self.saved_label.setText(f"compute saved vs fixed N={m.num_stages}: {int(c['saved'])} of "
                                     f"{int(c['fixed'])} stage-passes ({c['saved_fraction'] * 100:.1f} %)")
            self.saved_bar.setValue(int(c["saved_fraction"] * 1000))
            self.saved_bar.setFormat(f"{c['saved_fraction'] * 100:.1f} % saved")
        self.abort_table.setRowCount(len(m.aborts))
        for i, a in enumerate(m.aborts):
            for j, v in enumerate((a.step, a.dropped_stage, a.active_stages)):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.abort_table.setItem(i, j, item)

    def _update_buttons(self) -> None:
        running = self.process_running
        m = self.model
        self.start_button.setEnabled(not running)
        kill = running and self._stop_requested
        self.stop_button.setEnabled(running and (not kill or time.monotonic() - self._stop_time >= KILL_DELAY_S))
        self.stop_button.setText("Kill" if kill else "Stop")
        pm = self._proc_model
        whose = f" (the trainer of {pm.run_dir.name})" if running and pm is not None else ""
        self.stop_button.setToolTip(
            f"SIGKILL{whose}: it has not stopped yet; no snapshot is written, Resume continues from the last one"
            if kill else f"SIGTERM{whose}: the trainer writes a snapshot and exits")
        finished = m is not None and m.ended in FINISHED
        longer = finished and _extendable(m)
        self.resume_button.setEnabled(not running and m is not None and m.trainer is not None
                                      and (not finished or longer) and (m.run_dir / "config.json").is_file())
        self.resume_button.setText("Train longer…" if longer else "Resume")
        self.resume_button.setToolTip(
            f"Continue this finished run to a larger {EXTEND[m.trainer][0]} (--resume RUN_DIR {EXTEND[m.trainer][0]} N)"
            if longer else _finished_text(m) if finished else RESUME_TIP)
        loadable = m is not None and m.trainer in tr.TRAINERS and tr.TRAINERS[m.trainer].loads_in_editor
        self.snapshot_button.setEnabled(loadable and self.use_snapshot_cb is not None
                                        and m.latest_snapshot() is not None)
        if m is not None and m.trainer == "distill":
            self.snapshot_button.setToolTip("A distilled student is not an editor model: use it with "
                                            "`stylestudio mix --student` or build_pack --student")
        else:
            self.snapshot_button.setToolTip(SNAPSHOT_TIP)

    # -- snapshots --------------------------------------------------------------------------------

    def use_snapshot(self) -> Path | None:
        """Hand the run's best (or newest) model file to the editor."""
        m = self.model
        path = m.latest_snapshot() if m is not None else None
        if path is None:
            self.show_message("warning", "No snapshot yet", "The run has written no snapshot yet "
                              "(snapshots come every --snapshot-every steps and when it stops).")
            return None
        if self.use_snapshot_cb is not None:
            self.use_snapshot_cb(path)
        self.snapshot_used.emit(str(path))
        return path

    # -- closing ----------------------------------------------------------------------------------

    def shutdown(self, wait_ms: int = 60000) -> None:
        """Stop polling; a trainer started here is stopped with SIGTERM (it snapshots) and waited for
        (idempotent; the application calls it when it quits)."""
        self.timer.stop()
        if self.process_running:
            self.append_log("[closing: SIGTERM sent]\n")
            self.process.terminate()
            if not self.process.waitForFinished(wait_ms):
                self.process.kill()
                self.process.waitForFinished(5000)

    def closeEvent(self, e):  # noqa: N802 (Qt)
        # Closing the window only hides it while a run started here goes on (reopen it from the
        # editor's Training menu); the run is stopped (with its snapshot) when the application quits.
        if not self.process_running:
            self.timer.stop()
        super().closeEvent(e)

    def showEvent(self, e):  # noqa: N802 (Qt)
        if not self.timer.isActive():
            self.timer.start()
        super().showEvent(e)


MAX_CHECK_DOTS = 2000


def _extendable(m: tr.RunModel) -> bool:
    """A run that reached its target (not one stopped early by its validation) of a trainer whose
    --resume takes a larger one."""
    return m.ended == "done" and m.trainer in EXTEND


def _finished_text(m: tr.RunModel) -> str:
    target = "--kimg" if m.trainer == "gan" else "--steps"
    return (f"{m.run_dir.name} has {ended_text(m.ended)}: resuming it would only end it again. Start a new run, "
            f"or continue this one from a terminal with a larger {target} where its trainer takes one "
            f"(python -m trainers.<name> --resume RUN_DIR {target} N).")


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a == b or a.resolve() == b.resolve()
    except OSError:
        return False


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` items, evenly spread, the last one included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _count_colour(frac: float) -> QColor:
    """Green (count 0) to red (count = patience)."""
    frac = max(0.0, min(1.0, frac))
    return QColor(int(60 + 180 * frac), int(160 - 110 * frac), 60)
