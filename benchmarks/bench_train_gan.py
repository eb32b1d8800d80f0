"""Generator-trainer throughput: sec/kimg and peak RSS for the CPU presets, residual vs projected D,
one process (all cores) vs torchrun with 2 processes (1 thread each).

    python benchmarks/bench_train_gan.py                      # cpu64 + cpu128, both Ds, 1 and 2 procs
    python benchmarks/bench_train_gan.py --cfgs cpu64 --steps 12 --data ../shared/data/utkface/images

Each cell runs the real trainer (``python -m trainers.stylegan2``) for a few warm-up steps plus
``--steps`` timed steps and reads sec/kimg from its metrics.jsonl (logged every step here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
        spk = sorted(x["sec_per_kimg"] for x in steps_recs)
        rss = max(x["rss_mb"] for x in steps_recs)
        return {"sec_per_kimg": spk[len(spk) // 2], "rss_mb": rss, "steps": len(spk)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfgs", default="cpu64,cpu128")
    ap.add_argument("--ds", default="residual,projected")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "stylestudio" / "datasets"))
    args = ap.parse_args()
    print(f"# bench_train_gan: {os.cpu_count()} cores, data {args.data}")
    print("| cfg | D | processes | sec/kimg (median) | peak RSS MB (rank 0) | timed steps |")
    print("|---|---|---|---|---|---|")
    for cfg in args.cfgs.split(","):
        for d in args.ds.split(","):
            for procs in map(int, args.procs.split(",")):
                r = run_cell(cfg, d, procs, args.steps, args.data, args.cache)
                if "error" in r:
                    print(f"| {cfg} | {d} | {procs} | error: {r['error'][:80]} | | |", flush=True)
                else:
                    print(f"| {cfg} | {d} | {procs} | {r['sec_per_kimg']:.1f} | {r['rss_mb']:.0f} | {r['steps']} |", flush=True)


if __name__ == "__main__":
    main()
