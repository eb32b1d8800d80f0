"""``stylestudio info FILE``: what a model file is (format, resolution, num_ws, parameters)."""

from __future__ import annotations

import json
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.formats import load_checkpoint
from studio.core.formats.stylestudio_fmt import MANIFEST, read_manifest
from studio.core.latent import layer_groups
from studio.core.pack import training_summary


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a model file (any supported format)",
                       description="Detect a model file's format from its content and describe it.")
    p.add_argument("file", nargs="?", default=None,
                   help="model file or pack directory (default: the embedded default pack)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def describe(bundle) -> dict:
    out: dict = {"file": bundle.path, "format": bundle.format}
    nets = {"generator": bundle.generator, "discriminator": bundle.discriminator}
    if bundle.encoder is not None:
        nets["encoder"] = getattr(bundle.encoder, "encoder", bundle.encoder)
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items() if n is not None}
    G = bundle.generator
    if G is not None:
        out.update(resolution=G.img_resolution, num_ws=G.num_ws, z_dim=G.z_dim, w_dim=G.w_dim,
                   layer_groups={k: f"{a}-{b - 1}" if b > a else "-" for k, (a, b) in layer_groups(G.num_ws).items()},
                   channels={str(r): c for r, c in G.synthesis.channels.items()})
    out["parameters"] = params
    out["parameters_total"] = sum(params.values())
    if bundle.encoder is not None:
        kind = getattr(getattr(bundle.encoder, "config", None), "kind", None)  # an EncoderPipeline's
        out["encoder"] = bundle.meta.get("encoder_kind") or kind or bundle.format
    for key in ("licence", "alignment_profile"):
        if key in bundle.meta:
            out[key] = bundle.meta[key]
    training = training_summary(bundle.meta)
    if training:
        out["training"] = training
    man = bundle.meta.get("manifest") or {}
    for key in ("encoders", "directions"):
        if isinstance(man.get(key), dict) and man[key]:
            out[key] = ", ".join(sorted(man[key]))
    if bundle.notes:
        out["notes"] = bundle.notes
    return out


def pack_member(path) -> tuple[Path, str] | None:
    """(pack folder, what the file is there) when ``path`` is a file that the ``manifest.json`` beside it
    lists (a pack's generator, encoder, student or direction file), else None."""
    path = Path(path)
    if not path.is_file() or path.name == MANIFEST:
        return None
    try:
        man = read_manifest(path.parent)
    except (StudioError, OSError):
        return None
    sections = {"networks": "{} network", "encoders": "{} encoder", "students": "{} student",
                "directions": "{} direction"}
    for key, role in sections.items():
        section = man.get(key)
        items = section.items() if isinstance(section, dict) else enumerate(section) if isinstance(section, list) else ()
        for name, entry in items:
            if isinstance(entry, dict) and entry.get("file") == path.name:
                return path.parent, role.format(name)
    if isinstance(man.get("extra"), dict) and man["extra"].get("file") == path.name:
        return path.parent, "extra tensors"
    return None


def run(args) -> int:
    from studio.cli.common import resolve_model

    path = resolve_model(args.file)
    member = pack_member(path)
    try:
        bundle = load_checkpoint(path)
    except StudioError as e:
        if member is None:
            raise
        folder, role = member
        raise StudioError(f"{path} is the {role} file of the model pack {folder}, not a model on its own; point at "
                          f"the pack folder {folder} instead (stylestudio info {folder})") from e
    d = describe(bundle)
    if member is not None:
        folder, role = member
        d.setdefault("notes", [])
        d["notes"] = [*d["notes"], f"this is the {role} file of the model pack {folder}; use the pack folder "
                                   f"({folder}) as the model"]
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    width = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b:,}" if isinstance(b, int) else f"{a}: {b}" for a, b in v.items())
        elif isinstance(v, list):
            v = "; ".join(map(str, v))
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"{k:<{width}}  {v}")
    return 0
