"""Where the embedded default model pack lives (``resources/pack`` beside or inside the package)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # .../studio
PACK_ROOTS = (_PKG / "resources", _PKG.parent / "resources")


def default_pack() -> Path | None:
    """The embedded default model pack's folder, if this installation has one."""
    for root in PACK_ROOTS:
        if (root / "pack" / "manifest.json").is_file():
            return root / "pack"
    return None
