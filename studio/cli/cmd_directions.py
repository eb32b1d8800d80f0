"""``stylestudio directions MODEL --method sefa|ganspace|interfacegan ...``: find edit directions.

SeFa and GANSpace write a GANSpace-style ``.npz`` (components + names + layer ranges); InterFaceGAN
writes an InterFaceGAN ``.npy`` boundary ([1, w_dim]). Both load in ``stylestudio edit --directions``.
"""

from __future__ import annotations

import logging
import sys
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
    p.add_argument("--method", required=True, choices=["sefa", "ganspace", "interfacegan"],
                   help="sefa (closed form from the weights), ganspace (PCA of sampled w) or interfacegan "
                        "(linear SVM on labelled latents)")
    p.add_argument("--k", type=int, default=10, help="number of directions (sefa, ganspace; default 10)")
    p.add_argument("--layers", default=None, metavar="ROWS",
                   help="W+ rows: coarse, medium, fine or A-B inclusive (sefa: rows factorised and edited; "
                        "others: rows edited). Default: all")
    p.add_argument("--samples", type=int, default=20000, help="ganspace: w samples (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="ganspace sampling / interfacegan split seed")
    p.add_argument("--latents", help="interfacegan: latents .npy [N, w_dim] (or W+ with equal rows)")
    p.add_argument("--labels", help="interfacegan: labels .npy / .txt / .csv, one per latent (0/1 or scores)")
    p.add_argument("--name", default=None,
                   help="interfacegan: attribute name (default: the --out file name without _w_boundary.npy, "
                        "else the labels file name); `edit --directions FILE.npy` names it after the file")
    p.add_argument("--ratio", type=float, default=0.02,
                   help="interfacegan, continuous scores: keep the top/bottom fraction (at most 0.5; default 0.02), "
                        "or a count of samples per class when 1 or more")
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


OUT_SUFFIX = {"sefa": ".npz", "ganspace": ".npz", "interfacegan": ".npy"}


def _check_args(args) -> Path | None:
    """Validate the options that need no model (before any loading or sampling); the --out path or None."""
    import math

    from studio.cli.common import check_output
    from studio.cli.common import check_not_input

    if args.k < 1:
        raise StudioError("--k must be at least 1")
    if args.method == "ganspace" and args.samples < 2:
        raise StudioError("--samples must be at least 2")
    if args.method == "ganspace" and args.k > args.samples - 1:
        raise StudioError(f"--k {args.k} needs at least {args.k + 1} --samples ({args.samples} samples give at most "
                          f"{args.samples - 1} principal components); use more samples or a smaller --k")
    if args.method == "interfacegan":
        if not args.latents or not args.labels:
            raise StudioError("--method interfacegan needs --latents and --labels")
        if not math.isfinite(args.ratio) or args.ratio <= 0:
            raise StudioError(f"--ratio must be a positive number (a fraction below 1, or a count), got {args.ratio}")
    if args.out is None:
        return None
    out = Path(args.out)
    want = OUT_SUFFIX[args.method]
    if out.suffix.lower() != want:
        kind = "an InterFaceGAN boundary (.npy)" if want == ".npy" else "a GANSpace-style component archive (.npz)"
        raise StudioError(f"--out {out}: --method {args.method} writes {kind}; name the file "
                          f"{out.with_suffix(want).name if out.suffix else out.name + want}")
    check_output(out, folder=False)
    check_not_input(out, args.model, args.latents, args.labels)
    return out


def run(args) -> int:
    from studio.cli.cmd_edit import parse_rows
    from studio.cli.common import resolve_model
    from studio.core import directions as dirs
    from studio.core.formats import load_checkpoint

    out = _check_args(args)
    bundle = load_checkpoint(resolve_model(args.model))
    G = bundle.generator
    if G is None:
        raise StudioError(f"{bundle.path}: this file has no generator")
    G = G.eval()
    layers = parse_rows(args.layers, G.num_ws) if args.layers else None
    if args.method != "interfacegan" and args.k > G.w_dim:
        raise StudioError(f"--k {args.k} is more than this model's W has dimensions ({G.w_dim}); "
                          f"use --k {G.w_dim} or less")
    if args.method == "interfacegan":
        # edit --directions names a .npy boundary after its file (without _w_boundary), so the default
        # name and file agree; with --out and no --name the file name is the name.
        if args.name:
            name = args.name
        elif out is not None:
            name = _loaded_name(out)
        else:
            name = Path(args.labels).stem
        x = load_w_latents(args.latents, G.w_dim)
        y = load_labels(args.labels)
        d = dirs.interfacegan(x, y, name=name, layers=layers, ratio=args.ratio, seed=args.seed)
        out = dirs.save_interfacegan_npy(d, out or f"{name}_w_boundary.npy")
        acc = d.meta.get("val_accuracy")
        print(f"{name}: {d.meta['samples']} samples ({d.meta['labels']} labels), validation accuracy "
              f"{'n/a' if acc is None else f'{acc:.3f}'}")
        print(f"wrote {out}")
        loaded = dirs.load_interfacegan_npy(out, w_dim=G.w_dim).name  # what `edit --directions` will call it
        if loaded != name:
            print(f"note: a .npy boundary holds no name: `stylestudio edit --directions {out}` calls it "
                  f"{loaded!r} (from the file name), so use --direction {loaded}=AMOUNT, or name the file "
                  f"{name}_w_boundary.npy to keep {name!r}", file=sys.stderr)
        return 0
    if args.method == "sefa":
        found = dirs.sefa(G, layers=layers, k=args.k)
        key, label = "eigenvalue", "eigenvalue"
    else:
        found = dirs.ganspace(G, n_samples=args.samples, k=args.k, layers=layers, seed=args.seed)
        key, label = "variance_ratio", "variance ratio"
    rows = "all" if layers is None else f"{layers[0]}-{layers[1] - 1}"
    print(f"{'name':<8} {'rows':>6} {label:>15} {'range':>16}")
    for d in found:
        lo, hi = d.default_range
        print(f"{d.name:<8} {rows:>6} {d.meta[key]:>15.4g} {f'{lo:+.2f}..{hi:+.2f}':>16}")
    out = dirs.save_ganspace_npz(found, out or f"directions-{args.method}.npz")
    print(f"wrote {out}")
    return 0


def _loaded_name(path: Path) -> str:
    """The name ``edit --directions PATH`` gives an InterFaceGAN boundary: the file name without
    ``.npy`` and ``_w_boundary`` / ``_boundary`` (studio.core.directions.load_interfacegan_npy)."""
    name = Path(path).stem
    for suffix in ("_w_boundary", "_boundary"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name
