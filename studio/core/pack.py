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


def training_summary(meta: dict) -> dict[str, object]:
    """How a model was trained, from a loaded bundle's ``meta['provenance']`` (a pack's manifest):
    trainer, kimg, dataset, FD-VGG16 (with its real-real floor) and preset; {} when unknown."""
    prov = meta.get("provenance") if isinstance(meta, dict) else None
    if not isinstance(prov, dict):
        return {}
    out: dict[str, object] = {k: prov[k] for k in ("trainer", "kimg", "dataset") if k in prov}
    fd = prov.get("fd_vgg16")
    if isinstance(fd, dict):
        out["fd_vgg16"] = (f"{fd.get('value')} ({fd.get('samples')} samples, psi {fd.get('psi')}; "
                           f"real-real floor {fd.get('real_real_floor')})")
    if isinstance(prov.get("config"), dict) and "cfg" in prov["config"]:
        out["preset"] = prov["config"]["cfg"]
    return out
