"""Small views: an image canvas, a direction slider, a strength slider, the face picker and image conversion."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

SLIDER_STEPS_PER_UNIT = 100
LABEL_WIDTH = 150  # px; longer direction names are elided (full name in the tooltip)


def to_qimage(arr: np.ndarray) -> QImage:
    """(H, W, 3) uint8 -> a QImage that owns a copy of the pixels."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView(QLabel):
    """Shows one RGB array scaled to fit (aspect kept); ``array`` is what it shows."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.array: np.ndarray | None = None
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(200, 200))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("QLabel { background: #202020; color: #a0a0a0; }")
        self.setText(placeholder)

    def set_array(self, arr: np.ndarray | None) -> None:
        self.array = None if arr is None else np.asarray(arr)
        self._image = None if arr is None else to_qimage(arr)
        self._refresh()

    def image(self) -> QImage | None:
        return self._image

    def _refresh(self) -> None:
        if self._image is None:
            self.setPixmap(QPixmap())
            self.setText(self._placeholder)
            return
        pm = QPixmap.fromImage(self._image)
        size = self.size()
        if pm.width() > size.width() or pm.height() > size.height() or pm.width() * 2 <= size.width():
            pm = pm.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(pm)

    def resizeEvent(self, e):  # noqa: N802 (Qt)
        super().resizeEvent(e)
        if self._image is not None:
            self._refresh()


class DirectionSlider(QWidget):
    """One direction: name, slider over its range, value, reset, and (advanced) the W+ rows it edits.
    Emits ``moved(name, alpha, dragging)`` while moving, ``released(name)`` when the drag ends and
    ``span_changed(name, start, stop)`` (half-open rows) when the layer range is edited."""

    moved = Signal(str, float, bool)
    released = Signal(str)
    span_changed = Signal(str, int, int)

    def __init__(self, name: str, label: str, lo: float, hi: float, tooltip: str = "", *,
                 num_ws: int = 0, span: tuple[int, int] | None = None, parent=None):
        super().__init__(parent)
        self.name = name
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        lay = QHBoxLayout()
        lay.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(lay)
        self.label = QLabel()
        self.label.setFixedWidth(LABEL_WIDTH)
        self.label.setText(self.label.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight, LABEL_WIDTH))
        self.label.setToolTip(tooltip or label)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(lo * SLIDER_STEPS_PER_UNIT), round(hi * SLIDER_STEPS_PER_UNIT))
        self.slider.setValue(0)
        self.slider.setToolTip(tooltip or f"{label}: {lo:+g} to {hi:+g} (W units)")
        self.value_label = QLabel("+0.00")
        self.value_label.setMinimumWidth(44)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.reset_button = QToolButton()
        self.reset_button.setText("⟲")
        self.reset_button.setToolTip(f"Reset {label} to 0")
        for w in (self.label, self.slider, self.value_label, self.reset_button):
            lay.addWidget(w)
        self.slider.valueChanged.connect(self._changed)
        self.slider.sliderReleased.connect(lambda: self.released.emit(self.name))
        self.reset_button.clicked.connect(self._reset)

        # advanced: the W+ rows the direction edits (first/last, inclusive in the view)
        self.span_row = QWidget()
        sr = QHBoxLayout(self.span_row)
        sr.setContentsMargins(12, 0, 0, 2)
        self.span_first, self.span_last = QSpinBox(), QSpinBox()
        n = max(1, num_ws)
        for sb in (self.span_first, self.span_last):
            sb.setRange(0, n - 1)
            sb.setToolTip("W+ rows the direction changes: low rows = pose and shape, high rows = colour "
                          "and texture")
        sr.addWidget(QLabel("layers"))
        sr.addWidget(self.span_first)
        sr.addWidget(QLabel("to"))
        sr.addWidget(self.span_last)
        sr.addStretch(1)
        outer.addWidget(self.span_row)
        self.span_row.setVisible(False)
        self.set_span(span if span is not None else (0, n))
        self.span_first.valueChanged.connect(self._span_edited)
        self.span_last.valueChanged.connect(self._span_edited)

    @property
    def alpha(self) -> float:
        return self.slider.value() / SLIDER_STEPS_PER_UNIT

    @property
    def span(self) -> tuple[int, int]:
        return self.span_first.value(), self.span_last.value() + 1

    def set_alpha(self, alpha: float) -> None:
        """Show ``alpha`` without emitting ``moved`` (model -> view)."""
        self.slider.blockSignals(True)
        self.slider.setValue(round(alpha * SLIDER_STEPS_PER_UNIT))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{alpha:+.2f}")

    def set_span(self, span: tuple[int, int]) -> None:
        """Show the half-open row range ``span`` without emitting ``span_changed``."""
        for sb, v in ((self.span_first, span[0]), (self.span_last, span[1] - 1)):
            sb.blockSignals(True)
            sb.setValue(int(v))
            sb.blockSignals(False)

    def set_advanced(self, on: bool) -> None:
        self.span_row.setVisible(on)

    def _reset(self) -> None:
        if self.slider.value() != 0:
            self.slider.setValue(0)
            self.released.emit(self.name)

    def _changed(self, v: int) -> None:
        a = v / SLIDER_STEPS_PER_UNIT
        self.value_label.setText(f"{a:+.2f}")
        self.moved.emit(self.name, a, self.slider.isSliderDown())

    def _span_edited(self, _v: int = 0) -> None:
        a, b = self.span
        if b <= a:  # keep a non-empty range: move the other end
            if self.sender() is self.span_first:
                self.set_span((a, a + 1))
            else:
                self.set_span((b - 1, b))
            a, b = self.span
        self.span_changed.emit(self.name, a, b)


class GroupSlider(QWidget):
    """A 0-1 strength slider with a label and a value readout. Emits ``moved(key, value, dragging)``
    and ``released(key)``."""

    moved = Signal(object, float, bool)
    released = Signal(object)

    def __init__(self, key, label: str, tooltip: str = "", parent=None):
        super().__init__(parent)
        self.key = key
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(label)
        self.label.setMinimumWidth(90)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS_PER_UNIT)
        self.value_label = QLabel("0.00")
        self.value_label.setMinimumWidth(34)
        if tooltip:
            for w in (self.label, self.slider):
                w.setToolTip(tooltip)
        for w in (self.label, self.slider, self.value_label):
            lay.addWidget(w)
        self.slider.valueChanged.connect(self._changed)
        self.slider.sliderReleased.connect(lambda: self.released.emit(self.key))

    @property
    def value(self) -> float:
        return self.slider.value() / SLIDER_STEPS_PER_UNIT

    def set_value(self, v: float) -> None:
        """Show ``v`` without emitting ``moved`` (model -> view)."""
        if self.slider.value() == round(v * SLIDER_STEPS_PER_UNIT):
            return
        self.slider.blockSignals(True)
        self.slider.setValue(round(v * SLIDER_STEPS_PER_UNIT))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{v:.2f}")

    def _changed(self, v: int) -> None:
        x = v / SLIDER_STEPS_PER_UNIT
        self.value_label.setText(f"{x:.2f}")
        self.moved.emit(self.key, x, self.slider.isSliderDown())


class FacePickerDialog(QDialog):
    """Pick one of several faces (thumbnails, best first). ``chosen`` is the index or None."""

    def __init__(self, thumbnails: list[np.ndarray], parent=None, *, weak: list[bool] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Several faces found")
        self.chosen: int | None = None
        weak = list(weak) if weak is not None else [False] * len(thumbnails)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("This photo has several faces. Click the one to edit (the most confident "
                             "detection is first)."))
        grid = QGridLayout()
        for i, th in enumerate(thumbnails):
            b = QToolButton()
            b.setIcon(QPixmap.fromImage(to_qimage(th)))
            b.setIconSize(QSize(th.shape[1], th.shape[0]))
            b.setText(f"Face {i + 1}" + (" (unsure)" if weak[i] else ""))
            if weak[i]:
                b.setToolTip("A weak detection: perhaps not a face, or a face seen badly")
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.clicked.connect(lambda _=False, i=i: self._pick(i))
            grid.addWidget(b, i // 4, i % 4)
        lay.addLayout(grid)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def _pick(self, i: int) -> None:
        self.chosen = i
        self.accept()


def open_message_box(parent, kind: str, title: str, text: str) -> None:
    """A non-blocking, window-modal message box; ``kind`` is 'error', 'warning' or 'info'."""
    from PySide6.QtWidgets import QMessageBox

    icon = {"error": QMessageBox.Icon.Critical, "warning": QMessageBox.Icon.Warning}.get(
        kind, QMessageBox.Icon.Information)
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()

