"""Generator-trainer throughput: sec/kimg and peak RSS for the CPU presets, residual vs projected D,
one process (all cores) vs torchrun with 2 processes (1 thread each).

    python benchmarks/bench_train_gan.py                      # cpu64 + cpu128, both Ds, 1 and 2 procs
    python benchmarks/bench_train_gan.py --cfgs cpu64 --steps 12 --data ../shared/data/utkface/images

Each cell runs the real trainer (``python -m trainers.stylegan2``) for a few warm-up steps plus
``--steps`` timed steps and reads sec/kimg from its metrics.jsonl (logged every step here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

DISCRIMINATORS = ("residual", "projected")


def run_cell(cfg: str, d: str, procs: int, steps: int, data: str, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "trainers.stylegan2", "--data", data, "--cfg", cfg, "--discriminator", d, "--out", tmp,
                "--max-steps", str(steps + 3), "--log-every", "1", "--fd-samples", "0", "--metrics-every-kimg", "0",
                "--sample-every-kimg", "0", "--snapshot-every-kimg", "0", "--no-tqdm", "--data-cache", cache]
        if procs == 1:
            cmd = [sys.executable, *args, "--threads", str(os.cpu_count())]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *args,
                   "--threads", str(max(1, os.cpu_count() // procs))]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
        recs = [json.loads(x) for f in Path(tmp).glob("*/metrics.jsonl") for x in f.read_text().splitlines() if x.strip()]
        steps_recs = [x for x in recs if "sec_per_kimg" in x][3:]  # drop warm-up
        if not steps_recs:
            return {"error": f"no timed steps in the trainer's metrics.jsonl ({len(recs)} records)"}
        spk = sorted(x["sec_per_kimg"] for x in steps_recs)
        rss = max(x["rss_mb"] for x in steps_recs)
        return {"sec_per_kimg": spk[len(spk) // 2], "rss_mb": rss, "steps": len(spk)}


def preset_list(text: str) -> list[str]:
    """--cfgs: a comma list of the trainer's --cfg presets (read from trainers.stylegan2, so they stay in step)."""
    from trainers.stylegan2 import PRESETS

    return _cli.name_list(sorted(PRESETS), "preset")(text)


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--cfgs", type=preset_list, default="cpu64,cpu128",
                    help="comma list of trainer presets (the --cfg choices of python -m trainers.stylegan2)")
    ap.add_argument("--ds", type=_cli.name_list(DISCRIMINATORS, "discriminator"), default=",".join(DISCRIMINATORS),
                    help=f"comma list of discriminators: {', '.join(DISCRIMINATORS)}")
    ap.add_argument("--procs", type=_cli.int_list(1), default="1,2",
                    help="comma list of process counts: 1 = one process with all cores as threads, "
                         "N > 1 = torchrun with N processes sharing the cores")
    ap.add_argument("--steps", type=_cli.int_at_least(1), default=8,
                    help="timed training steps per cell (after 3 warm-up steps)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"),
                    help="folder of face images the trainer reads")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "stylestudio" / "datasets"),
                    help="the trainer's decoded-dataset cache folder (--data-cache)")
    return ap


def check_args(ap, args) -> None:
    """Checks of the parsed arguments made before any trainer starts: an argparse error (exit 2)."""
    _cli.check_image_dir(ap, args.data, "--data", recursive=True)
    _cli.check_out_dir(ap, args.cache, "--cache")


def main(argv=None) -> None:
    ap = build_parser()
    args = ap.parse_args(argv)
    check_args(ap, args)
    print(f"# bench_train_gan: {os.cpu_count()} cores, data {args.data}")
    print("| cfg | D | processes | sec/kimg (median) | peak RSS MB (rank 0) | timed steps |")
    print("|---|---|---|---|---|---|")
    for cfg in args.cfgs:
        for d in args.ds:
            for procs in args.procs:
                r = run_cell(cfg, d, procs, args.steps, args.data, args.cache)
                if "error" in r:
                    print(f"| {cfg} | {d} | {procs} | error: {r['error'][:80]} | | |", flush=True)
                else:
                    print(f"| {cfg} | {d} | {procs} | {r['sec_per_kimg']:.1f} | {r['rss_mb']:.0f} | {r['steps']} |", flush=True)


if __name__ == "__main__":
    main()
