"""Distilled style mixing (seed 002, METHODS.md §6): the student against the generator it distils.

On held-out triplets (seeds from ``trainers.distill_data.HELDOUT_SEED_START``, which training and
validation never draw) the generator renders content, style and the mixed target; the table gives

* quality: LPIPS (VGG), SSIM and L1 of the student's output against the target, and of the slow
  path (invert content and style with the model's fastest encoder, mix W+, synthesise) against it;
* speed: ms per image (batch 1, median) of the student and of inversion + mixing through the
  generator, and their ratio;

and writes ``grid.png`` (rows: content, style, generator target, student, inversion + mixing) and
``results.json`` into ``--out``.

    python benchmarks/bench_distill.py --student runs/00001-distill-pack-medium-small/best.safetensors
    python benchmarks/bench_distill.py --student S.safetensors --triplets 50 --out /tmp/bench-distill
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from studio.core.distill import fastest_encoder, find_student, load_student, ssim
from studio.core.errors import StudioError
from studio.core.formats import load_checkpoint
from studio.core.inversion import ENCODER_METHODS, bundle_encoders
from trainers.distill_data import HELDOUT_SEED_START, heldout_seeds, render_seed_triplets

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli


def _median_ms(fn, repeats: int) -> float:
    with torch.inference_mode():
        fn()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--student", help="student file (default: the model pack's)")
    ap.add_argument("--model", help="teacher model (default: the student's teacher if a path, else the embedded pack)")
    ap.add_argument("--method", choices=ENCODER_METHODS, metavar="ENCODER",
                    help=f"encoder of the inversion path, one of {', '.join(ENCODER_METHODS)} "
                         "(default: the fastest the model has)")
    ap.add_argument("--triplets", type=_cli.int_at_least(1), default=200, help="held-out triplets (default 200)")
    ap.add_argument("--seed-start", type=_cli.int_in_range(0, 2 ** 62), default=HELDOUT_SEED_START,
                    help="first held-out seed (seeds below the default are the ones training and validation draw)")
    ap.add_argument("--grid", type=_cli.int_at_least(1), default=8, help="triplets shown in grid.png")
    ap.add_argument("--repeats", type=_cli.int_at_least(1), default=20, help="timed calls per path (batch 1)")
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default="bench-distill", help="folder for grid.png and results.json")
    return ap


def check_args(ap, args) -> None:
    """Checks of the parsed arguments made before any model is loaded: an argparse error (exit 2)."""
    if args.student is not None:
        _cli.check_file(ap, args.student, "--student", "pass a student file (a distill run's best.safetensors)")
    if args.model is not None:
        _cli.check_path(ap, args.model, "--model", "pass a model file or pack folder")
    _cli.check_out_dir(ap, args.out, "--out")


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    check_args(ap, args)
    torch.set_num_threads(args.threads)
    from studio.core.lpips import LPIPS
    from studio.core.pack import default_pack
    from studio.core.projector import lpips_input
    from studio.core.tensors import make_grid, to_uint8

    student_path = args.student or find_student(default_pack())
    if student_path is None:
        print("error: no --student and the model pack lists none", file=sys.stderr)
        return 2
    try:
        mixer = load_student(student_path)
    except (StudioError, KeyError, ValueError) as e:
        ap.error(f"--student: {student_path} is not a usable student file ({' '.join(str(e).split())})")
    teacher = args.model or (mixer.info.get("teacher") if Path(str(mixer.info.get("teacher"))).exists() else None)
    teacher = teacher or default_pack()
    try:
        bundle = load_checkpoint(teacher)
    except StudioError as e:
        ap.error(f"{'--model' if args.model else 'the student teacher ' + str(teacher)}: {' '.join(str(e).split())}")
    G = bundle.generator.eval()
    cross = int(mixer.info["crossover"])
    if G.num_ws != mixer.info.get("num_ws") or G.img_resolution != mixer.resolution:
        print(f"error: the student was distilled from a {mixer.info.get('num_ws')}-row, {mixer.resolution}-px "
              f"generator; {teacher} has {G.num_ws} rows at {G.img_resolution} px", file=sys.stderr)
        return 2
    encoders = bundle_encoders(bundle)
    if args.method is not None:
        _cli.check_choices(ap, [args.method], sorted(encoders), "--method", f"no such encoder in {teacher}")
    method = args.method or fastest_encoder(encoders)
    inv = None
    if method is not None:
        from studio.core.distill import InversionMixer

        inv = InversionMixer(G, encoders[method], cross, method=method)
    n = args.triplets
    cs, ss = heldout_seeds(n, args.seed_start)
    lp = LPIPS("vgg").eval()
    rows = {"student": [], "inversion": []}
    grid_rows = None
    t0 = time.time()
    for i in range(0, n, 25):
        tr = render_seed_triplets(G, cs[i:i + 25], ss[i:i + 25], cross, float(mixer.info.get("psi", 1.0)))
        outs = {"student": mixer.mix_tensor(tr.content, tr.style)}
        if inv is not None:
            outs["inversion"] = inv.mix_tensor(tr.content, tr.style)
        with torch.no_grad():
            for k, y in outs.items():
                rows[k].append(np.stack([
                    lp(lpips_input(y), lpips_input(tr.target)).numpy(), ssim(y, tr.target).numpy(),
                    (y - tr.target).abs().mean(dim=(1, 2, 3)).numpy()], 1))
        if grid_rows is None:
            g = min(args.grid, len(tr.content))
            grid_rows = [tr.content[:g], tr.style[:g], tr.target[:g], outs["student"][:g]]
            if "inversion" in outs:
                grid_rows.append(outs["inversion"][:g])
        print(f"  {min(i + 25, n)}/{n} triplets ({time.time() - t0:.0f} s)", file=sys.stderr)
    quality = {}
    for k, r in rows.items():
        if r:
            a = np.concatenate(r)
            quality[k] = {"lpips": float(a[:, 0].mean()), "lpips_median": float(np.median(a[:, 0])),
                          "ssim": float(a[:, 1].mean()), "l1": float(a[:, 2].mean())}

    # Speed, batch 1: the student vs encode both + mix + synthesise (and synthesis alone).
    tr = render_seed_triplets(G, cs[:1], ss[:1], cross)
    speed = {"student_ms": _median_ms(lambda: mixer.mix_tensor(tr.content, tr.style), args.repeats)}
    if inv is not None:
        speed["inversion_mix_ms"] = _median_ms(lambda: inv.mix_tensor(tr.content, tr.style), args.repeats)
        speed["speedup"] = speed["inversion_mix_ms"] / speed["student_ms"]
    ws = G.map(torch.randn(1, G.z_dim))
    speed["synthesis_only_ms"] = _median_ms(lambda: G.synthesis(ws, noise_mode="const"), args.repeats)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    grid = make_grid(to_uint8(torch.cat(grid_rows)), cols=len(grid_rows[0]))
    Image.fromarray(grid).save(out / "grid.png")
    params = sum(p.numel() for p in mixer.student.parameters())
    res = {"student": str(student_path), "teacher": str(teacher), "group": mixer.group, "crossover": cross,
           "triplets": n, "seed_start": args.seed_start, "inversion_method": method, "student_params": params,
           "quality": quality, "speed": speed, "threads": args.threads, "torch": torch.__version__,
           "machine": f"{platform.machine()} {os.cpu_count()} cpus", "grid": str((out / 'grid.png').resolve()),
           "grid_rows": ["content", "style", "generator target", "student"] + (["inversion + mixing"] if inv else [])}
    (out / "results.json").write_text(json.dumps(res, indent=1))

    print(f"\nstyle mixing at '{mixer.group}' (crossover row {cross}), {n} held-out triplets "
          f"(seeds {args.seed_start}..), {G.img_resolution} px, {args.threads} thread(s)")
    print(f"{'path':<28}{'LPIPS':>8}{'SSIM':>8}{'L1':>8}{'ms/image':>10}")
    print(f"{'student (' + f'{params / 1e6:.2f}M params)':<28}{quality['student']['lpips']:>8.3f}"
          f"{quality['student']['ssim']:>8.3f}{quality['student']['l1']:>8.3f}{speed['student_ms']:>10.1f}")
    if inv is not None:
        print(f"{method + ' inversion + G mixing':<28}{quality['inversion']['lpips']:>8.3f}"
              f"{quality['inversion']['ssim']:>8.3f}{quality['inversion']['l1']:>8.3f}{speed['inversion_mix_ms']:>10.1f}")
        print(f"speed-up of the student: {speed['speedup']:.1f}x")
    print(f"(generator synthesis alone, latents known: {speed['synthesis_only_ms']:.1f} ms)")
    print(f"grid: {out / 'grid.png'}  results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
