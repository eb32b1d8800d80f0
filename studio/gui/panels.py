"""Side panels of the main window that are more than a few widgets: style mixing.

Views only: a panel shows what it is given (``show_mixer``) and emits signals for user actions; the
main window turns those into :class:`~studio.engine.session.EditSession` commands and jobs.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.latent import resolution_of_ws_index as row_resolution
from studio.gui.widgets import GroupSlider, ImageView

GROUP_HINTS = {
    "coarse": ("Coarse", "pose, face shape, hair style"),
    "medium": ("Medium", "facial features, hair, eyes open/closed"),
    "fine": ("Fine", "colours, skin and hair texture, lighting"),
}




class MixingPanel(QGroupBox):
    """Style mixing: the reference face (from a photo or a seed, shown as a thumbnail), coarse /
    medium / fine strengths, and per-layer strengths in advanced mode.

    Signals: ``photo_requested()``, ``seed_requested(int)``, ``clear_requested()``, ``cancel_requested()``,
    ``strength_moved(group, value, dragging)``, ``layer_moved(row, value, dragging)``,
    ``per_layer_toggled(bool)``, ``released()``, ``fast_mix_requested()`` (the "Fast mix with a photo
    (distilled)" button, which needs only an aligned face, not an inverted one: see :meth:`set_parts`).
    """

    photo_requested = Signal()
    fast_mix_requested = Signal()
    seed_requested = Signal(int)
    clear_requested = Signal()
    cancel_requested = Signal()
    strength_moved = Signal(str, float, bool)
    layer_moved = Signal(int, float, bool)
    per_layer_toggled = Signal(bool)
    released = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Style mixing", parent)
        self.setToolTip("Take the coarse, medium or fine styles of another face")
        outer = QVBoxLayout(self)
        self.controls = QWidget()  # everything that needs an edit session (an inverted or random face)
        lay = QVBoxLayout(self.controls)
        lay.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.controls)
        self.fast_button = QPushButton("Fast mix with a photo (distilled)…")
        self.fast_button.clicked.connect(self.fast_mix_requested)
        outer.addWidget(self.fast_button)
        self.set_fast_mix(None, "Load a model pack with a distilled mixing student")

        top = QHBoxLayout()
        self.thumb = ImageView("no\nreference")
        self.thumb.setMinimumSize(QSize(88, 88))
        self.thumb.setFixedSize(QSize(88, 88))
        self.thumb.setToolTip("The reference face whose styles are mixed in")
        top.addWidget(self.thumb)
        col = QVBoxLayout()
        self.caption = QLabel("No reference face")
        self.caption.setWordWrap(True)
        col.addWidget(self.caption)
        self.photo_button = QPushButton("From photo…")
        self.photo_button.setToolTip("Invert a face of another photo (with the chosen method) and use it as "
                                     "the reference")
        self.photo_button.clicked.connect(self.photo_requested)
        col.addWidget(self.photo_button)
        sh = QHBoxLayout()
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seed of the random reference face")
        self.seed_button = QPushButton("Random")
        self.seed_button.setToolTip("Use the random face of this seed as the reference")
        self.seed_button.clicked.connect(lambda: self.seed_requested.emit(self.seed_spin.value()))
        sh.addWidget(self.seed_spin, 1)
        sh.addWidget(self.seed_button)
        col.addLayout(sh)
        bh = QHBoxLayout()
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove the reference (no mixing)")
        self.clear_button.clicked.connect(self.clear_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop inverting the reference photo")
        self.cancel_button.clicked.connect(self.cancel_requested)
        bh.addWidget(self.clear_button)
        bh.addWidget(self.cancel_button)
        col.addLayout(bh)
        top.addLayout(col, 1)
        lay.addLayout(top)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumHeight(12)
        self.progress.setTextVisible(False)
        lay.addWidget(self.progress)
        self.set_busy(False)

        self.groups: dict[str, GroupSlider] = {}
        for g, (label, hint) in GROUP_HINTS.items():
            s = GroupSlider(g, label, f"{label} styles from the reference ({hint}): 0 = yours, 1 = the reference's")
            s.moved.connect(lambda key, v, d: self.strength_moved.emit(key, v, d))
            s.released.connect(lambda _k: self.released.emit())
            self.groups[g] = s
            lay.addWidget(s)

        self.per_layer_check = QCheckBox("Per-layer strengths (advanced)")
        self.per_layer_check.setToolTip("Set the strength of each W+ row instead of the three groups")
        self.per_layer_check.toggled.connect(self._toggled)
        lay.addWidget(self.per_layer_check)
        self.layer_box = QWidget()
        self.layer_grid = QGridLayout(self.layer_box)
        self.layer_grid.setContentsMargins(0, 0, 0, 0)
        self.layer_grid.setVerticalSpacing(0)
        self.layers: list[GroupSlider] = []
        lay.addWidget(self.layer_box)
        self.layer_box.setVisible(False)

    # -- model -> view ----------------------------------------------------------------------------

    def set_rows(self, num_ws: int, groups: dict[str, tuple[int, int]], resolution: int) -> None:
        """Label the groups with their W+ rows and build one slider per row (advanced mode);
        ``resolution``: the model's output size (the last row styles its final toRGB)."""
        for g, s in self.groups.items():
            a, b = groups[g]
            label, hint = GROUP_HINTS[g]
            s.label.setText(f"{label} ({a}–{b - 1})" if b > a else f"{label} (none)")
            s.setEnabled(b > a)
            s.setToolTip(f"W+ rows {a}-{b - 1}: {hint}" if b > a else "this model has no rows in this group")
        for s in self.layers:
            s.setParent(None)
            s.deleteLater()
        self.layers = []
        for i in range(num_ws):
            res = min(row_resolution(i), resolution)
            s = GroupSlider(i, f"row {i} ({res} px)", f"Strength of W+ row {i} (styles the {res}-px layers) "
                                                      "from the reference")
            s.moved.connect(lambda key, v, d: self.layer_moved.emit(int(key), v, d))
            s.released.connect(lambda _k: self.released.emit())
            self.layer_grid.addWidget(s, i, 0)
            self.layers.append(s)

    def show_mixer(self, mixer) -> None:
        """Show a :class:`~studio.engine.mixing.StyleMixer`'s settings (no signals)."""
        for g, s in self.groups.items():
            s.set_value(mixer.strengths.get(g, 0.0))
        per = mixer.per_layer is not None
        if self.per_layer_check.isChecked() != per:
            self.per_layer_check.blockSignals(True)
            self.per_layer_check.setChecked(per)
            self.per_layer_check.blockSignals(False)
            self.layer_box.setVisible(per)
            for g in self.groups.values():
                g.setVisible(not per)
        rows = mixer.row_strengths()
        for i, s in enumerate(self.layers[: len(rows)]):
            s.set_value(float(rows[i]))
        self.clear_button.setEnabled(mixer.reference is not None)

    def set_parts(self, session: bool) -> None:
        """Enable the reference / strength controls (they need an edit session)."""
        self.controls.setEnabled(session)

    def set_fast_mix(self, group: str | None, why_not: str | None = None) -> None:
        """The fast-mix button: shown when the model has a student (``group``: what it mixes); enabled
        unless ``why_not`` (the reason, shown as its tooltip)."""
        self.fast_button.setVisible(group is not None)
        self.fast_button.setEnabled(why_not is None)
        self.fast_button.setToolTip(
            why_not if why_not is not None else
            f"Mix this face with the styles of a face of another photo in one pass of the model's distilled "
            f"student ({group or 'its'} styles from the photo; no inversion, a preview of the result)")

    def set_thumbnail(self, img: np.ndarray | None, caption: str) -> None:
        self.thumb.set_array(img)
        self.caption.setText(caption)

    def set_busy(self, busy: bool, value: int = 0) -> None:
        self.progress.setVisible(busy)
        self.progress.setValue(value)
        self.cancel_button.setVisible(busy)
        self.photo_button.setEnabled(not busy)

    def _toggled(self, on: bool) -> None:
        self.layer_box.setVisible(on)
        for g in self.groups.values():
            g.setVisible(not on)
        self.per_layer_toggled.emit(on)


class FastMixDialog(QDialog):
    """A fast (distilled) mix: content / style / mixed thumbnails, the student's group and the time.

    ``result``: a :class:`~studio.engine.workspace.FastMixResult`. Signal: ``export_requested()``."""

    export_requested = Signal()

    def __init__(self, result, parent: QWidget | None = None, *, caption: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Fast mix (distilled)")
        self.result = result
        lay = QVBoxLayout(self)
        grid = QGridLayout()
        self.views: dict[str, ImageView] = {}
        for i, (key, label) in enumerate((("content", "Your face"), ("style", "Style photo"), ("mixed", "Mixed"))):
            v = ImageView()
            v.setMinimumSize(QSize(160, 160))
            v.set_array(getattr(result, key))
            grid.addWidget(QLabel(label), 0, i)
            grid.addWidget(v, 1, i)
            self.views[key] = v
        lay.addLayout(grid)
        group = result.group or "unknown"
        self.info = QLabel(f"{caption}Student: {group} styles from the photo · "
                           f"{result.seconds * 1000:.0f} ms · {result.mixed.shape[1]}×{result.mixed.shape[0]} px")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        bb = QDialogButtonBox()
        self.export_button = bb.addButton("Export…", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setToolTip("Save the mixed face as PNG or JPEG")
        self.export_button.clicked.connect(self.export_requested)
        self.close_button = bb.addButton(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
