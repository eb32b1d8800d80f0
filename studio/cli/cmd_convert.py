"""``stylestudio convert IN OUT``: any supported checkpoint -> StyleStudio format."""

from __future__ import annotations

from pathlib import Path

from studio.core.formats import load_checkpoint
from studio.core.formats import stylestudio_fmt


def register(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a checkpoint to StyleStudio's safetensors format",
        description="Read any supported model file (format detected from content) and write it as "
                    "safetensors + JSON manifest: OUT ending in .safetensors = one file, else a directory.")
    p.add_argument("input", help="NVIDIA .pkl, rosinality / pSp / e4e / E2Style .pt, or a StyleStudio model")
    p.add_argument("output", help="OUT.safetensors (single file) or a directory")
    p.add_argument("--no-discriminator", action="store_true", help="leave the discriminator out (smaller)")
    p.add_argument("--licence", default=None, help="licence text to record in the manifest")
    p.set_defaults(func=run)


def run(args) -> int:
    bundle = load_checkpoint(args.input)
    if args.no_discriminator:
        bundle.discriminator = None
    if args.licence:
        bundle.meta["licence"] = args.licence
    out = stylestudio_fmt.save(bundle, Path(args.output))
    for note in bundle.notes:
        print(f"note: {note}")
    print(f"wrote {out} ({bundle.format} -> {stylestudio_fmt.FORMAT_NAME})")
    return 0
