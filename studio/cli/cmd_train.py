"""``stylestudio train gan|encoder|crg|distill ARGS``: run a trainer (the same as ``python -m trainers.<name>``)."""

from __future__ import annotations

import argparse
import importlib

TRAINERS = {
    "gan": ("trainers.stylegan2", "StyleGAN2 generator (see `stylestudio train gan --help`)"),
    "encoder": ("trainers.encoder", "pSp / e4e / E2Style (with abortion) / SAE encoder for a frozen generator"),
    "crg": ("trainers.crg", "CRG encoder, trained on the generator's own samples"),
    "distill": ("trainers.distill", "one-pass style-mixing student (pix2pixHD) distilled from the generator"),
}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a generator or an encoder",
                       description="Run a StyleStudio trainer; arguments after the trainer name go to it.")
    p.add_argument("trainer", choices=sorted(TRAINERS), help="; ".join(f"{k}: {v[1]}" for k, v in TRAINERS.items()))
    p.add_argument("args", nargs=argparse.REMAINDER, help="trainer arguments")
    p.set_defaults(func=run)


def run(args) -> int:
    module = importlib.import_module(TRAINERS[args.trainer][0])
    return int(module.main(args.args) or 0)
