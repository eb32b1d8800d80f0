"""Assemble the embedded default model pack (``resources/pack``) from what the pack's runs made.

    python -m trainers.pack.build_pack --generator trainers/pack/generator-resume.safetensors \\
        --profile trainers/pack/alignment-utkface.json --fd 11.69 --fd-floor 3.85 --out resources/pack

``--generator``: a compact GAN snapshot (its G_ema) or a StyleStudio network file. Weights are
stored as float16 (the app runs them in float32). The manifest carries the architecture, the
alignment profile, licence and training provenance (run config, kimg, FD-VGG16); encoders and
directions are added by their own trainers' ``--pack`` steps (``manifest['encoders']``,
``manifest['directions']``), distilled mixing students by ``--student`` (``manifest['students']``),
and all are kept when the generator is replaced.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from studio.core.align import get_profile
from studio.core.fileio import atomic_write_text
from studio.core.formats import ModelBundle, load_checkpoint, stylestudio_fmt
from studio.core.nets.stylegan2 import Generator

LICENCE = ("Trained by StyleStudio on UTKFace (https://susanqq.github.io/UTKFace/), which is available for "
           "non-commercial research purposes only; this model pack inherits that licence. The StyleStudio code "
           "is MIT-licensed.")


def generator_from(path: Path) -> tuple[Generator, dict]:
    """G_ema and its provenance from a compact snapshot or a StyleStudio network file."""
    from trainers.stylegan2 import COMPACT_FORMAT, read_compact

    try:
        meta, nets = read_compact(path)
    except Exception:  # noqa: BLE001 - not a compact snapshot: a network file
        meta = None
    if meta is not None and meta.get("format") == COMPACT_FORMAT:
        c = meta["config"]
        G = Generator(z_dim=c["z_dim"], w_dim=c["w_dim"], img_resolution=c["resolution"],
                      mapping_layers=c["mapping_layers"], channel_base=c["g_channel_base"],
                      channel_max=c["g_channel_max"])
        sd = G.state_dict()
        G.load_state_dict({**sd, **{k: v.to(sd[k].dtype) for k, v in nets["G_ema"].items()}})
        # g_ema_kimg: a compact whose G_ema was set to an earlier, better snapshot of the run
        prov = {"trainer": "trainers.stylegan2", "kimg": round(float(meta.get("g_ema_kimg", meta["cur_nimg"] / 1000)), 3),
                "config": c,
                "source_run": meta.get("source_run"), "fd_history": json.loads(meta.get("fd_history") or "[]")}
        return G.eval(), prov
    b = load_checkpoint(path)
    if b.generator is None:
        raise SystemExit(f"{path}: no generator in this file")
    return b.generator.eval(), dict(b.meta.get("provenance") or {})


def add_encoder(pack: Path, kind: str, checkpoint: Path, *, label: str | None = None,
                metrics: dict | None = None) -> Path:
    """Store ``checkpoint``'s encoder (a trainer's ``best.safetensors``) in the pack as
    ``encoder-<kind>.safetensors`` (float16) and list it in ``manifest['encoders']``."""
    import hashlib

    b = load_checkpoint(checkpoint)
    if b.encoder is None:
        raise SystemExit(f"{checkpoint}: no encoder in this file")
    pipe_kind = b.encoder.config.kind
    if pipe_kind != kind:
        raise SystemExit(f"{checkpoint}: holds a {pipe_kind} encoder, not {kind}")
    man_path = pack / "manifest.json"
    man = json.loads(man_path.read_text())
    if b.generator is not None and (b.generator.num_ws, b.generator.w_dim) != (man["num_ws"], man["w_dim"]):
        raise SystemExit(f"{checkpoint}: encoder made for another generator")
    prov = dict(b.meta.get("provenance") or {})
    if metrics is None:  # what the trainer measured when it kept this model
        metrics = {k: prov[k] for k in ("step", "kimg", "heldout_lpips") if k in prov}
    fpath = stylestudio_fmt.save_encoder(b.encoder, pack / f"encoder-{kind}.safetensors", half=True,
                                         provenance=prov)
    digest = hashlib.sha256(fpath.read_bytes()).hexdigest()
    man.setdefault("encoders", {})[kind] = {
        "file": fpath.name, "sha256": digest, "label": label or kind,
        "parameters": sum(p.numel() for p in b.encoder.encoder.parameters()),
        "source": checkpoint.name, "metrics": metrics or {}}
    atomic_write_text(man_path, json.dumps(man, indent=1) + "\n")
    return fpath


def add_student(pack: Path, checkpoint: Path, *, metrics: dict | None = None) -> Path:
    """Store a distilled style-mixing student (``trainers.distill``'s ``best.safetensors``) in the pack as
    ``student-<group>.safetensors`` (float16) and list it in ``manifest['students'][group]``."""
    import hashlib

    from studio.core.formats.stylestudio_fmt import load_student, save_student

    S, sman = load_student(checkpoint)
    info = sman["distill"]
    man_path = pack / "manifest.json"
    man = json.loads(man_path.read_text())
    if (info.get("num_ws"), info.get("resolution")) != (man["num_ws"], man["resolution"]):
        raise SystemExit(f"{checkpoint}: student distilled from another generator")
    fpath = save_student(S, pack / f"student-{info['group']}.safetensors", distill=info, half=True,
                         provenance=dict(sman.get("provenance") or {}), alignment_profile=man.get("alignment_profile"),
                         licence=man.get("licence"))
    man.setdefault("students", {})[info["group"]] = {
        "file": fpath.name, "sha256": hashlib.sha256(fpath.read_bytes()).hexdigest(),
        "crossover": info["crossover"], "parameters": sum(p.numel() for p in S.parameters()),
        "source": checkpoint.name, "metrics": metrics or {}}
    atomic_write_text(man_path, json.dumps(man, indent=1) + "\n")
    return fpath


def build(generator: Path, profile: Path, out: Path, *, fd: float | None = None, fd_floor: float | None = None,
          notes: str | None = None) -> Path:
    G, prov = generator_from(generator)
    prof = get_profile(profile)
    old = _old_manifest(out)
    prov.update({"dataset": "UTKFace aligned chips (../shared/data/utkface), duplicates dropped, 5% held out by "
                            "name hash", "source_file": generator.name})
    if fd is not None:
        prov["fd_vgg16"] = {"value": fd, "samples": 500, "psi": 1.0, "real_real_floor": fd_floor,
                            "against": "500 held-out UTKFace chips at the generator's resolution"}
    if notes:
        prov["notes"] = notes
    bundle = ModelBundle(format="stylestudio", path="", generator=G,
                         meta={"alignment_profile": prof.to_dict(), "licence": LICENCE, "provenance": prov})
    extra = {"pack": {"name": "StyleStudio default pack", "description": f"{G.img_resolution}-px faces (UTKFace)"}}
    for key in ("encoders", "directions", "students"):  # added by other steps; survive a new generator
        if key in old:
            extra[key] = old[key]
    stylestudio_fmt.save(bundle, out, extra_manifest=extra, half=True)
    return out


def _old_manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def main(argv=None) -> int:
    """Exit status 2 with one ``error:`` line for a bad file or number (no traceback)."""
    from studio.core.errors import StudioError

    try:
        with torch.no_grad():  # not set_grad_enabled(False): a caller in the same process keeps autograd
            return _main(argv)
    except (StudioError, OSError) as e:
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        print(f"error: {where}{(e.strerror if isinstance(e, OSError) else None) or e}", file=sys.stderr)
        return 2


def _main(argv) -> int:
    from trainers.common import UserError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, default=None, help="(re)build the pack around this generator")
    ap.add_argument("--encoder", action="append", default=[], metavar="KIND=CHECKPOINT",
                    help="add/replace an encoder from a trainer's best.safetensors (repeatable)")
    ap.add_argument("--student", action="append", default=[], metavar="CHECKPOINT",
                    help="add/replace a distilled style-mixing student (trainers.distill best.safetensors)")
    ap.add_argument("--profile", type=Path, default=Path(__file__).with_name("alignment-utkface.json"),
                    help="alignment profile JSON written into the manifest (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "resources" / "pack",
                    help="pack folder to write or update (default: the embedded pack)")
    ap.add_argument("--fd", type=float, default=None, help="measured FD-VGG16 of this generator (500 samples)")
    ap.add_argument("--fd-floor", type=float, default=None, help="FD-VGG16 between two disjoint 500-image real sets")
    ap.add_argument("--notes", default=None, help="free text stored in the manifest's provenance")
    a = ap.parse_args(argv)
    for flag, v in (("--fd", a.fd), ("--fd-floor", a.fd_floor)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{flag} must be a positive number (a measured FD-VGG16), got {v}")
    if a.out.exists() and not a.out.is_dir():
        raise UserError(f"--out {a.out}: that is a file; give the pack folder")
    out = a.out
    if a.generator is not None:
        build(a.generator, a.profile, a.out, fd=a.fd, fd_floor=a.fd_floor, notes=a.notes)
    for spec in a.encoder:
        kind, eq, ckpt = spec.partition("=")
        if not eq or not kind or not ckpt:
            raise UserError(f"--encoder {spec!r}: give KIND=CHECKPOINT, e.g. e2style=RUN/best.safetensors")
        print(f"added {add_encoder(a.out, kind, Path(ckpt))}")
    for ckpt in a.student:
        print(f"added {add_student(a.out, Path(ckpt))}")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
