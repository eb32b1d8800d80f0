"""Inversion quality and speed: every method a model offers, on the same held-out aligned faces.

For each method (encoders, optimisation, hybrid) and face: MSE (images in [-1, 1]), LPIPS (VGG),
identity similarity (dlib descriptors of the aligned face vs the reconstruction; None where dlib
finds no face in the reconstruction) and seconds per face. Prints a table of means (identity: mean
over faces where it could be measured, plus how many) and writes a per-face CSV.

Faces: by default the held-out UTKFace chips (the trainer's 5% name-hash split), which are already
aligned the way the default pack's profile aligns photos; or ``--faces DIR`` of aligned faces.

    python benchmarks/bench_inversion.py                                 # the default pack, 10 faces
    python benchmarks/bench_inversion.py --n 20 --methods optimize,hybrid --steps 300
    python benchmarks/bench_inversion.py --model psp_ffhq.pt --faces aligned/ --csv out.csv
"""

from __future__ import annotations

import csv
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.cli.common import resolve_model  # noqa: E402
from studio.core.errors import StudioError  # noqa: E402
from studio.core.formats import load_checkpoint  # noqa: E402
from studio.core.inversion import METHODS, available_methods, bundle_encoders, make_inverter  # noqa: E402
from studio.core.projector import ProjectorConfig  # noqa: E402

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

UTKFACE_IMAGES = REPO.parent / "shared" / "data" / "utkface" / "images"
FACE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def heldout_faces(n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` held-out UTKFace chips (the trainer's 5% name-hash split) spread evenly over the
    name-sorted list: names start with the age, so the first n would all be babies."""
    from trainers.data import is_heldout

    root = UTKFACE_IMAGES
    if not root.is_dir():
        raise SystemExit(f"{root} not found: pass --faces DIR")
    files = sorted(p for p in root.iterdir() if is_heldout(p.name, 0.05))
    if n < len(files):
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, n).round()]
    return [(p.name, _load(p)) for p in files]


def folder_faces(d: Path, n: int) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in FACE_SUFFIXES)[:n]
    return [(p.name, _load(p)) for p in files]


def _load(p: Path) -> np.ndarray:
    from studio.core.imageio import load_image

    img, _ = load_image(p)
    return img


def identity(a: np.ndarray, b: np.ndarray) -> float | None:
    from PIL import Image

    from studio.core.errors import StudioError
    from studio.core.identity import identity_similarity

    # dlib's descriptor wants >= ~150 px faces: compare at 256 px
    a2 = np.asarray(Image.fromarray(a).resize((256, 256), Image.BICUBIC))
    b2 = np.asarray(Image.fromarray(b).resize((256, 256), Image.BICUBIC))
    try:
        return float(identity_similarity(a2, b2, aligned=True))
    except StudioError:
        return None


def measure(G, encoders: dict, methods: list[str], faces: list[tuple[str, np.ndarray]], *,
            cfg: ProjectorConfig | None = None, with_identity: bool = True) -> list[dict]:
    """Per method and face: MSE, LPIPS, identity (None: not measured / no face found) and seconds.
    ``cfg``: projector settings for the optimize / hybrid methods (None: their defaults)."""
    from PIL import Image

    rows = []
    for method in methods:
        inv = make_inverter(method, G, encoders, projector_config=cfg if method in ("optimize", "hybrid") else None)
        inv.invert(faces[0][1])  # warm-up (allocator, LPIPS weights)
        for name, img in faces:
            t0 = time.perf_counter()
            res = inv.invert(img)
            sec = time.perf_counter() - t0
            ident = None
            if with_identity:
                target = np.asarray(Image.fromarray(img).resize(res.reconstruction.shape[:2][::-1]))
                ident = identity(target, res.reconstruction)
            rows.append({"method": method, "face": name, "mse": res.metrics["mse"], "lpips": res.metrics["lpips"],
                         "identity": ident, "seconds": sec})
    return rows


def table(rows: list[dict], methods: list[str]) -> str:
    """Means per method (identity over the faces where it could be measured, with the count) and
    speed relative to the optimisation projector when it was measured."""
    lines = [f"{'method':<10} {'faces':>5} {'MSE':>8} {'LPIPS':>7} {'identity':>14} {'s/face':>8} {'x faster':>9}"]
    t_opt = np.mean([r["seconds"] for r in rows if r["method"] == "optimize"]) if "optimize" in methods else None
    for method in methods:
        rs = [r for r in rows if r["method"] == method]
        ids = [r["identity"] for r in rs if r["identity"] is not None]
        sec = float(np.mean([r["seconds"] for r in rs]))
        id_txt = f"{np.mean(ids):.3f} ({len(ids)}/{len(rs)})" if ids else "-"
        speed = f"{t_opt / sec:.0f}" if t_opt else "-"
        lines.append(f"{method:<10} {len(rs):>5} {np.mean([r['mse'] for r in rs]):>8.4f} "
                     f"{np.mean([r['lpips'] for r in rs]):>7.4f} {id_txt:>14} {sec:>8.3f} {speed:>9}")
    return "\n".join(lines)


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--model", default=None, help="model file or pack folder (default: the embedded pack)")
    ap.add_argument("--faces", type=Path, default=None,
                    help="folder of aligned faces (png/jpg/webp) (default: held-out UTKFace chips)")
    ap.add_argument("--n", type=_cli.int_at_least(1), default=10, help="number of faces")
    ap.add_argument("--methods", type=_cli.name_list(METHODS, "method"), default=None,
                    help=f"comma list out of {', '.join(METHODS)} (default: every method the model can run)")
    ap.add_argument("--steps", type=_cli.int_at_least(1), default=None,
                    help="optimisation steps of optimize / hybrid (default: the projector's)")
    ap.add_argument("--threads", type=_cli.int_at_least(0), default=0, help="torch threads (0: all cores)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N")
    ap.add_argument("--csv", type=Path, default=Path("bench_inversion.csv"), help="per-face rows written here")
    ap.add_argument("--no-identity", action="store_true",
                    help="skip the dlib identity similarity (faster; the column shows '-')")
    return ap


def check_args(ap, a) -> None:
    """Checks of the parsed arguments made before the model is loaded: an argparse error (exit 2)."""
    _cli.check_device(ap, a.device)
    if a.model is not None:
        _cli.check_path(ap, a.model, "--model", "pass a model file or pack folder")
    if a.faces is not None:
        _cli.check_image_dir(ap, a.faces, "--faces", suffixes=FACE_SUFFIXES)
    elif not UTKFACE_IMAGES.is_dir():
        ap.error(f"--faces: not given and the held-out UTKFace chips ({UTKFACE_IMAGES}) are not here; "
                 f"pass --faces DIR of aligned faces")
    _cli.check_out_file(ap, a.csv, "--csv")


def main(argv=None) -> None:
    ap = build_parser()
    a = ap.parse_args(argv)
    check_args(ap, a)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        bundle = load_checkpoint(resolve_model(a.model))
    except StudioError as e:
        ap.error(f"--model: {' '.join(str(e).split())}")
    G = bundle.generator.to(a.device).eval()
    encoders = {k: v.to(a.device) for k, v in bundle_encoders(bundle).items()}
    infos = available_methods(G, encoders)
    can = [m.name for m in infos if m.available]
    if a.methods:
        _cli.check_choices(ap, a.methods, can, "--methods", f"for {bundle.path}")
    methods = a.methods or can
    faces = folder_faces(a.faces, a.n) if a.faces else heldout_faces(a.n)
    cfg = None
    if a.steps is not None:
        cfg = dataclasses.replace(ProjectorConfig(), steps=a.steps)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {a.device}")
    print(f"# model {bundle.path} ({G.img_resolution} px, {G.num_ws}x{G.w_dim}), {len(faces)} faces")
    rows = measure(G, encoders, methods, faces, cfg=cfg, with_identity=not a.no_identity)
    a.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print()
    print(table(rows, methods))
    print(f"\nper-face rows: {a.csv}")


if __name__ == "__main__":
    main()
