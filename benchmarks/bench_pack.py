"""The default model pack, measured against issue 6's bars: generator, encoders, directions.

1. Generator: FD-VGG16 of ``--fd-n`` samples at psi 1 against as many held-out UTKFace chips, next
   to the floor (FD between a seeded sample of training chips and the same held-out chips), each
   the mean over ``--fd-draws`` independent draws of the chips and samples (draw 0 alone is
   ``--fd-draws 1``); and
   the fraction of psi-0.7 samples in which dlib's face detector finds a face (a grid is written).
2. Encoders: per inversion method of the pack (its encoders, the optimisation projector, hybrid),
   held-out MSE / LPIPS (VGG) / identity similarity (dlib) / seconds per face on the same chips
   (``bench_inversion``'s measurement), and each encoder's LPIPS and speed relative to the projector.
3. Directions: per attribute direction (age, gender, smile, mouth open), the Spearman correlation
   between alpha in [-3, 3] and an independent measurement, averaged over ``--dir-n`` held-out chips
   inverted with ``--dir-method``: age and gender from linear probes on VGG16 features trained on
   UTKFace's labels (``trainers/pack/labeller-utkface-64px.npz``, made by
   ``python -m trainers.pack.directions``), smile / mouth open from dlib landmarks (mouth width,
   inner-lip aspect ratio); plus dlib identity at |alpha| = 1 (fraction of same-person pairs).

    python benchmarks/bench_pack.py                       # everything, ~20 min on 2 CPU cores
    python benchmarks/bench_pack.py --only encoders --invert-n 4 --steps 100
    python benchmarks/bench_pack.py --model my_pack/ --out /tmp/bench-pack

Bars (issue 6): FD <= 2.5x the floor; fast encoder LPIPS <= 1.5x the projector's at >= 50x its
speed; Spearman >= 0.8 for age, gender and smile with identity kept on most faces. Each is printed
with "ok" / "NOT MET". ``--out``: a JSON of every number and the psi-0.7 grid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _cli  # noqa: E402
import bench_inversion  # noqa: E402

from studio.cli.common import resolve_model  # noqa: E402
from studio.core.errors import StudioError  # noqa: E402
from studio.core.formats import load_checkpoint  # noqa: E402
from studio.core.inversion import (  # noqa: E402
    ENCODER_METHODS,
    METHODS,
    available_methods,
    bundle_encoders,
    make_inverter,
)
from studio.core.projector import ProjectorConfig  # noqa: E402

UTKFACE = REPO.parent / "shared" / "data" / "utkface"
LABELLER = REPO / "trainers" / "pack" / "labeller-utkface-64px.npz"
FD_BAR, LPIPS_BAR, SPEED_BAR, SPEARMAN_BAR = 2.5, 1.5, 50.0, 0.8
ATTRIBUTE_BARS = ("age", "gender", "smile")   # mouth_open is measured too, without a bar
SECTIONS = ("generator", "encoders", "directions")
FAST_ENCODERS = ("e2style", "psp", "e4e", "sae", "crg")  # --dir-method's default: the first the model has


def _verdict(ok: bool) -> str:
    return "ok" if ok else "NOT MET"


def bench_generator(G, *, n: int, seed: int, out: Path | None, data: Path, draws: int = 1) -> dict:
    """FD / KID / floor over ``draws`` independent draws, and dlib detection at psi 0.7.

    Draw d samples its held-out and training chips with ``RandomState(seed + d)`` and generates
    with seed ``seed + 123 + d`` (draw 0 is the single-draw protocol). FD of 500 samples moves by
    a few percent from one draw to the next, so the verdict is on the mean FD over the mean floor.
    """
    from trainers.data import load_images
    from trainers.metrics import VGGFeatures, frechet_distance, generate, kernel_inception_distance
    from trainers.pack.directions import landmarks_of, save_grid

    t0 = time.perf_counter()
    res = G.img_resolution
    held = load_images(data, res, split="heldout")
    train = load_images(data, res, split="train")
    if len(held) < n:
        raise SystemExit(f"error: --fd-n {n}: only {len(held)} held-out chips in {data}; "
                         f"pass --fd-n {len(held)} or less")
    feats = VGGFeatures()
    fds, kids, floors = [], [], []
    for d in range(draws):
        rng = np.random.RandomState(seed + d)
        held_idx = np.sort(rng.choice(len(held), n, replace=False))
        train_idx = np.sort(rng.choice(len(train), n, replace=False))
        real = feats(held.batch(held_idx))
        floors.append(frechet_distance(real, feats(train.batch(train_idx))))
        fake = feats(generate(G, n, psi=1.0, seed=seed + 123 + d))
        fds.append(frechet_distance(real, fake))
        kids.append(1000 * kernel_inception_distance(real, fake))
    faces = generate(G, 100, psi=0.7, seed=seed + 7)
    detected = float(np.isfinite(landmarks_of(faces)).all(axis=(1, 2)).mean())
    grid = None
    if out is not None:
        grid = str(save_grid(faces[:48], 8, out / "samples-psi0.7.png"))
    fd, floor = float(np.mean(fds)), float(np.mean(floors))
    r = {"fd_vgg16": fd, "kid_vgg16_x1000": float(np.mean(kids)), "floor": floor, "ratio": fd / floor,
         "draws": draws, "fd_draws": fds, "floor_draws": floors, "ratio_draws": [f / g for f, g in zip(fds, floors)],
         "n": n, "detected_psi0.7": detected, "detected_of": len(faces), "grid": grid,
         "seconds": time.perf_counter() - t0}
    return r


def bench_encoders(G, encoders: dict, *, n: int, steps: int | None, identity: bool) -> dict:
    infos = available_methods(G, encoders)
    methods = [m.name for m in infos if m.available]
    faces = bench_inversion.heldout_faces(n)
    cfg = None if steps is None else dataclasses.replace(ProjectorConfig(), steps=steps)
    rows = bench_inversion.measure(G, encoders, methods, faces, cfg=cfg, with_identity=identity)
    per = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        ids = [r["identity"] for r in rs if r["identity"] is not None]
        per[m] = {"faces": len(rs), "mse": float(np.mean([r["mse"] for r in rs])),
                  "lpips": float(np.mean([r["lpips"] for r in rs])),
                  "identity": float(np.mean(ids)) if ids else None, "identity_faces": len(ids),
                  "seconds": float(np.mean([r["seconds"] for r in rs]))}
    if "optimize" in per:
        for m in methods:
            if m in ENCODER_METHODS:
                per[m]["lpips_vs_projector"] = per[m]["lpips"] / per["optimize"]["lpips"]
                per[m]["speedup_vs_projector"] = per["optimize"]["seconds"] / per[m]["seconds"]
    return {"methods": per, "table": bench_inversion.table(rows, methods),
            "steps": steps or ProjectorConfig().steps}


def invert_heldout(G, encoders: dict, method: str, n: int, steps: int | None) -> tuple[torch.Tensor, float]:
    """W+ latents [n, num_ws, w_dim] of n held-out chips inverted with ``method``, and mean LPIPS."""
    cfg = None if steps is None else dataclasses.replace(ProjectorConfig(), steps=steps)
    inv = make_inverter(method, G, encoders, projector_config=cfg if method in ("optimize", "hybrid") else None)
    ws, lp = [], []
    for _, img in bench_inversion.heldout_faces(n):
        r = inv.invert(img)
        ws.append(r.latent_wplus.float().reshape(G.num_ws, G.w_dim))
        lp.append(r.metrics["lpips"])
    return torch.stack(ws), float(np.mean(lp))


def bench_directions(G, bundle, encoders: dict, *, n: int, method: str, steps: int | None, labeller: Path) -> dict:
    from studio.core.directions import load_pack_directions
    from trainers.pack.directions import MEASURES, FaceFeatures, Labeller, measure_directions

    if not labeller.is_file():
        raise SystemExit(f"{labeller} not found: make it with `python -m trainers.pack.directions` "
                         f"(its labeller-*.npz in --work) or pass --labeller")
    lab = Labeller.from_file(labeller)
    dirs = [d for d in load_pack_directions(bundle) if d.meta.get("key") in MEASURES]
    if not dirs:
        return {"note": "the model lists no age / gender / smile / mouth-open directions"}
    t0 = time.perf_counter()
    ws, lp = invert_heldout(G, encoders, method, n, steps)
    items = [SimpleNamespace(key=d.meta["key"], direction=d) for d in dirs]
    with torch.inference_mode():
        res = measure_directions(G, items, ws, lab, FaceFeatures(), tag="held-out")
    return {"faces": n, "method": method, "inversion_lpips": lp, "labeller": lab.metrics.get("heldout"),
            "per_direction": res, "seconds": time.perf_counter() - t0}


def print_report(r: dict) -> None:
    g = r.get("generator")
    if g:
        print("\n## Generator")
        k = g.get("draws", 1)
        each = (lambda key: "" if k == 1 else
                f"   mean of {k} draws ({' '.join(f'{x:.3f}' for x in g[key])}; sd {np.std(g[key], ddof=1):.3f})")
        print(f"{'FD-VGG16 (psi 1)':<28} {g['fd_vgg16']:>8.3f}   ({g['n']} samples vs {g['n']} held-out chips)"
              + each("fd_draws"))
        print(f"{'floor (train vs held-out)':<28} {g['floor']:>8.3f}" + each("floor_draws"))
        print(f"{'ratio':<28} {g['ratio']:>8.2f}x  bar <= {FD_BAR}x: {_verdict(g['ratio'] <= FD_BAR)}"
              + ("" if k == 1 else f"   (per draw {' '.join(f'{x:.2f}x' for x in g['ratio_draws'])})"))
        print(f"{'KID-VGG16 x1000':<28} {g['kid_vgg16_x1000']:>8.3f}")
        print(f"{'dlib finds a face (psi 0.7)':<28} {100 * g['detected_psi0.7']:>7.0f}%  of {g['detected_of']} samples"
              + (f"; grid {g['grid']}" if g["grid"] else ""))
    e = r.get("encoders")
    if e:
        print(f"\n## Inversion (held-out chips; projector {e['steps']} steps)")
        print(e["table"])
        for m, v in e["methods"].items():
            if "lpips_vs_projector" in v:
                ok = v["lpips_vs_projector"] <= LPIPS_BAR and v["speedup_vs_projector"] >= SPEED_BAR
                print(f"{m}: LPIPS {v['lpips_vs_projector']:.2f}x the projector's at {v['speedup_vs_projector']:.0f}x "
                      f"its speed; bar <= {LPIPS_BAR}x at >= {SPEED_BAR:.0f}x: {_verdict(ok)}")
    d = r.get("directions")
    if d and "per_direction" in d:
        print(f"\n## Directions ({d['faces']} held-out chips inverted with {d['method']}, "
              f"inversion LPIPS {d['inversion_lpips']:.3f}; alpha in [-3, 3])")
        print(f"{'direction':<11} {'measure':<44} {'Spearman':>8} {'>=0.8':>6} {'id cos':>7} {'same':>6}  side effects")
        for key, v in d["per_direction"].items():
            side = ", ".join(f"{k} {x:+.2f}" for k, x in (v.get("side_effects") or {}).items() if x is not None)
            bar = ""
            if key in ATTRIBUTE_BARS:
                ok = (v["spearman"] or 0) >= SPEARMAN_BAR and (v.get("same_person") or 0) > 0.5
                bar = f"  [{_verdict(ok)}]"
            sp = v.get("same_person")
            print(f"{key:<11} {v['measure'][:44]:<44} {v['spearman']:>8.3f} {100 * v['spearman_ge_0_8']:>5.0f}% "
                  f"{v.get('identity_cos') or float('nan'):>7.3f} {'-' if sp is None else f'{100 * sp:.0f}%':>6}  {side}{bar}")
    elif d:
        print(f"\n## Directions\n{d['note']}")


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--model", default=None, help="model file or pack folder (default: the embedded pack)")
    ap.add_argument("--only", type=_cli.name_list(SECTIONS, "section"), default=",".join(SECTIONS),
                    help=f"comma list of sections: {', '.join(SECTIONS)}")
    ap.add_argument("--data", type=Path, default=UTKFACE,
                    help="UTKFace folder of the generator section's FD sets (held-out split = the trainer's; "
                         "the encoders and directions sections always use the held-out chips of the shared UTKFace)")
    ap.add_argument("--fd-n", type=_cli.int_at_least(2, "FD and KID need at least 2 samples per side"), default=500,
                    help="samples / chips per FD set")
    ap.add_argument("--fd-draws", type=_cli.int_at_least(1), default=4,
                    help="independent draws of the FD sets and samples; FD, KID and the floor are their means "
                         "(one draw of 500 moves by a few percent)")
    ap.add_argument("--invert-n", type=_cli.int_at_least(1), default=8, help="held-out chips for the inversion table")
    ap.add_argument("--steps", type=_cli.int_at_least(1), default=None,
                    help="projector steps of optimize / hybrid (default: the projector's)")
    ap.add_argument("--dir-n", type=_cli.int_at_least(1), default=50,
                    help="held-out chips for the direction measurement")
    ap.add_argument("--dir-method", default=None, choices=list(METHODS), metavar="METHOD",
                    help=f"inversion for those chips, one of {', '.join(METHODS)} "
                         f"(default: the first encoder the model has of {', '.join(FAST_ENCODERS)}, else optimize)")
    ap.add_argument("--labeller", type=Path, default=LABELLER,
                    help="age / gender probes for the directions section (made by python -m trainers.pack.directions)")
    ap.add_argument("--no-identity", action="store_true", help="skip dlib identity in the inversion table")
    ap.add_argument("--threads", type=_cli.int_at_least(0), default=0, help="torch threads (0: all cores)")
    ap.add_argument("--seed", type=_cli.int_in_range(0, 2 ** 32 - 1 - 123), default=0,
                    help="seed of the FD sets' sampling and of the generated faces")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for report.json and the sample grid (default: none, the report is only printed)")
    return ap


def heldout_upper_bound(data: Path) -> int:
    """Images under ``data`` in the trainer's held-out split, before its duplicate removal (cheap: names only)."""
    from trainers.data import is_heldout, list_images

    return sum(is_heldout(p.name, 0.05) for p in list_images(data))


def check_args(ap, a) -> None:
    """Checks of the parsed arguments made before the model is loaded: an argparse error (exit 2)."""
    if a.model is not None:
        _cli.check_path(ap, a.model, "--model", "pass a model file or pack folder")
    if "directions" in a.only:
        _cli.check_file(ap, a.labeller, "--labeller",
                        "make it with `python -m trainers.pack.directions` (its labeller-*.npz) or pass --labeller")
    if a.out is not None:
        _cli.check_out_dir(ap, a.out, "--out")
    if a.seed + a.fd_draws - 1 > 2 ** 32 - 1 - 123:
        ap.error(f"--seed {a.seed} with --fd-draws {a.fd_draws}: the draws' seeds run past 2**32 - 124; pass a smaller --seed")
    if "generator" in a.only:
        _cli.check_image_dir(ap, a.data, "--data", recursive=True, hint="pass --data UTKFACE_FOLDER")
        held = heldout_upper_bound(a.data)
        if held < a.fd_n:
            ap.error(f"--fd-n {a.fd_n}: {a.data} has only {held} held-out images; pass --fd-n {held} or less")
    if {"encoders", "directions"} & set(a.only) and not bench_inversion.UTKFACE_IMAGES.is_dir():
        ap.error(f"--only: the encoders and directions sections need the held-out UTKFace chips in "
                 f"{bench_inversion.UTKFACE_IMAGES}; pass --only generator")


def main(argv=None) -> None:
    ap = build_parser()
    a = ap.parse_args(argv)
    check_args(ap, a)
    if a.threads:
        torch.set_num_threads(a.threads)
    sections = set(a.only)
    try:
        bundle = load_checkpoint(resolve_model(a.model))
    except StudioError as e:
        ap.error(f"--model: {' '.join(str(e).split())}")
    G = bundle.generator.eval()
    encoders = bundle_encoders(bundle)
    method = a.dir_method
    if method is None:
        fast = [m for m in FAST_ENCODERS if m in encoders]
        method = fast[0] if fast else "optimize"
    elif "directions" in sections:
        _cli.check_choices(ap, [method], [m.name for m in available_methods(G, encoders) if m.available],
                           "--dir-method", f"for {bundle.path}")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"# model {bundle.path} ({G.img_resolution} px, {G.num_ws}x{G.w_dim}); encoders: {', '.join(encoders) or 'none'}")
    report: dict = {"model": str(bundle.path)}
    if "generator" in sections:
        with torch.inference_mode():
            report["generator"] = bench_generator(G, n=a.fd_n, seed=a.seed, out=a.out, data=a.data,
                                                  draws=a.fd_draws)
    if "encoders" in sections:
        report["encoders"] = bench_encoders(G, encoders, n=a.invert_n, steps=a.steps, identity=not a.no_identity)
    if "directions" in sections:
        report["directions"] = bench_directions(G, bundle, encoders, n=a.dir_n, method=method, steps=a.steps,
                                                labeller=a.labeller)
    print_report(report)
    if a.out is not None:
        (a.out / "report.json").write_text(json.dumps(report, indent=1, default=float))
        print(f"\nreport: {a.out / 'report.json'}")


if __name__ == "__main__":
    main()
