"""``stylestudio directions MODEL --method sefa|ganspace|interfacegan ...``: find edit directions.

SeFa and GANSpace write a GANSpace-style ``.npz`` (components + names + layer ranges); InterFaceGAN
writes an InterFaceGAN ``.npy`` boundary ([1, w_dim]). Both load in ``stylestudio edit --directions``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "directions", help="find edit directions (SeFa, GANSpace, InterFaceGAN)",
        description="SeFa: closed form from the style (affine) weights of the chosen W+ rows. GANSpace: PCA "
                    "of sampled w. InterFaceGAN: a linear SVM on labelled latents (--latents, --labels).")
    p.add_argument("model", nargs="?", default=None, help="model file (default: the embedded pack)")
    p.add_argument("--method", required=True, choices=["sefa", "ganspace", "interfacegan"])
    p.add_argument("--k", type=int, default=10, help="number of directions (sefa, ganspace; default 10)")
    p.add_argument("--layers", default=None, metavar="ROWS",
                   help="W+ rows: coarse, medium, fine or A-B inclusive (sefa: rows factorised and edited; "
                        "others: rows edited). Default: all")
    p.add_argument("--samples", type=int, default=20000, help="ganspace: w samples (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="ganspace sampling / interfacegan split seed")
    p.add_argument("--latents", help="interfacegan: latents .npy [N, w_dim] (or W+ with equal rows)")
    p.add_argument("--labels", help="interfacegan: labels .npy / .txt / .csv, one per latent (0/1 or scores)")
    p.add_argument("--name", default=None, help="interfacegan: attribute name (default: the labels file name)")
    p.add_argument("--ratio", type=float, default=0.02,
                   help="interfacegan, continuous scores: keep the top/bottom fraction (default 0.02)")
    p.add_argument("--out", default=None, help="output file (.npz for sefa/ganspace, .npy for interfacegan)")
    p.set_defaults(func=run)


def load_labels(path: str | Path) -> np.ndarray:
    """Labels [N] from .npy or a text file with one number per line (first column of a .csv)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            y = np.load(path, allow_pickle=False)
        else:
            y = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2, comments="#")
            y = y[:, 0]
    except FileNotFoundError:
        raise StudioError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise StudioError(f"{path}: cannot read labels ({e})") from None
    y = np.asarray(y)
    if y.dtype.kind not in "fiub":
        raise StudioError(f"{path}: labels must be numbers")
    return y.reshape(-1)


def load_w_latents(path: str | Path, w_dim: int) -> np.ndarray:
    """W latents [N, w_dim] from .npy ([N, w_dim], or W+ [N, num_ws, w_dim] whose rows are equal)."""
    from studio.cli.common import read_npy

    path = Path(path)
    a = read_npy(path, "array")
    if a.ndim == 3:
        if not np.array_equal(a, np.repeat(a[:, :1], a.shape[1], axis=1)):
            raise StudioError(f"{path}: W+ latents with different rows; InterFaceGAN needs W latents [N, w_dim]")
        a = a[:, 0]
    if a.ndim != 2 or a.shape[1] != w_dim:
        raise StudioError(f"{path}: latents of shape {list(a.shape)}; expected [N, {w_dim}] for this model")
    return a.astype(np.float64)


def run(args) -> int:
    from studio.cli.cmd_edit import parse_rows
    from studio.cli.common import resolve_model
    from studio.core import directions as dirs
    from studio.core.formats import load_checkpoint

    bundle = load_checkpoint(resolve_model(args.model))
    G = bundle.generator
    if G is None:
        raise StudioError(f"{bundle.path}: this file has no generator")
    G = G.eval()
    layers = parse_rows(args.layers, G.num_ws) if args.layers else None
    if args.k < 1:
        raise StudioError("--k must be at least 1")
    if args.method == "interfacegan":
        if not args.latents or not args.labels:
            raise StudioError("--method interfacegan needs --latents and --labels")
        x = load_w_latents(args.latents, G.w_dim)
        y = load_labels(args.labels)
        name = args.name or Path(args.labels).stem
        d = dirs.interfacegan(x, y, name=name, layers=layers, ratio=args.ratio, seed=args.seed)
        out = dirs.save_interfacegan_npy(d, args.out or f"{name}_w_boundary.npy")
        acc = d.meta.get("val_accuracy")
        print(f"{name}: {d.meta['samples']} samples ({d.meta['labels']} labels), validation accuracy "
              f"{'n/a' if acc is None else f'{acc:.3f}'}")
        print(f"wrote {out}")
        return 0
    if args.method == "sefa":
        found = dirs.sefa(G, layers=layers, k=args.k)
        key, label = "eigenvalue", "eigenvalue"
    else:
        if args.samples < 2:
            raise StudioError("--samples must be at least 2")
        found = dirs.ganspace(G, n_samples=args.samples, k=args.k, layers=layers, seed=args.seed)
        key, label = "variance_ratio", "variance ratio"
    rows = "all" if layers is None else f"{layers[0]}-{layers[1] - 1}"
    print(f"{'name':<8} {'rows':>6} {label:>15} {'range':>16}")
    for d in found:
        lo, hi = d.default_range
        print(f"{d.name:<8} {rows:>6} {d.meta[key]:>15.4g} {f'{lo:+.2f}..{hi:+.2f}':>16}")
    out = dirs.save_ganspace_npz(found, args.out or f"directions-{args.method}.npz")
    print(f"wrote {out}")
    return 0
