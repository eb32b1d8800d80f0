"""Run the benchmarks and write one Markdown report: the machine, then each benchmark's tables.

Every benchmark runs as its own process (so each start is cold and each has its own peak RSS, read
with ``os.wait4``); its printed tables go into the report verbatim, with the command line, the wall
time, the exit status and the peak RSS. A benchmark that fails is reported as failed (with the end
of its error output) and the report goes on.

    python benchmarks/report.py                         # quick sizes (~15-25 min on 2 CPU cores)
    python benchmarks/report.py --full                  # the benchmarks' own default sizes (hours on a CPU)
    python benchmarks/report.py --only startup,edit --out /tmp/report.md

Sections: align (face detection + landmarks + alignment speed), generator (synthesis speed), edit
(slider-step latency, render cache), gui (slider -> pixels through the real window), startup (cold
start to a usable window, peak RSS with the default pack while editing), inversion (every method's
quality and speed), training (generator trainer sec/kimg), abortion (E2Style abortion vs fixed N),
distill (one-pass mixing student vs inversion + generator), pack (the default pack against its
quality bars).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@dataclass
class Section:
    key: str
    title: str
    script: str
    quick: list[str]
    full: list[str]
    what: str


def sections(work: Path) -> list[Section]:
    w = str(work)
    return [
        Section("startup", "Start-up time and memory", "bench_startup.py", ["--runs", "3", "--edit"],
                ["--runs", "5", "--edit"],
                "Fresh process each run: time to a usable window, to the default pack loaded, and through "
                "opening a photo, inverting it and one slider edit; peak RSS of that whole process."),
        Section("align", "Face detection and alignment", "bench_align.py", ["--runs", "3"], [],
                "ms per step (median) of finding, landmarking and aligning the face of a 1 MP and a 12 MP photo; "
                "target < 150 ms for 1 MP."),
        Section("generator", "Generator synthesis", "bench_generator.py", ["--budget", "5"], [],
                "ms per image of the StyleGAN2 synthesis network (fused / non-fused modulation, channels_last, "
                "compile) per configuration and batch size."),
        Section("edit", "Edit latency", "bench_edit.py", ["--budget", "10"], [],
                "Slider-step latency with and without the per-layer render cache."),
        Section("gui", "Slider to pixels (GUI path)", "bench_gui_latency.py", ["--moves", "30", "--threads", "1"],
                ["--threads", "1"],
                "Through the real window (offscreen Qt): slider valueChanged to the canvas repainted, default pack."),
        Section("inversion", "Inversion", "bench_inversion.py",
                ["--n", "4", "--steps", "100", "--csv", f"{w}/inversion.csv"], ["--csv", f"{w}/inversion.csv"],
                "Held-out UTKFace chips: MSE / LPIPS / dlib identity / seconds per face for every method of the "
                "default pack (quick: 4 faces, projector 100 steps)."),
        Section("training", "Training throughput", "bench_train_gan.py",
                ["--cfgs", "cpu64", "--ds", "projected", "--procs", "1", "--steps", "4"], [],
                "Generator trainer sec/kimg."),
        Section("abortion", "Abortion method (E2Style, N = 3)", "bench_abortion.py",
                ["--steps", "60", "--n", "8", "--eval-every", "0", "--out", f"{w}/abortion"],
                ["--out", f"{w}/abortion"],
                "Abortion off vs relative vs absolute at the same step count: stage-passes, wall time, held-out "
                "MSE / LPIPS / ID (quick: 60 steps, 8 faces - too short for the verdict; use --full)."),
        Section("distill", "Distilled style mixing", "bench_distill.py",
                ["--triplets", "20", "--repeats", "5", "--out", f"{w}/distill"], ["--out", f"{w}/distill"],
                "Student ms/image vs inversion + mixing through the generator; student vs generator target "
                "LPIPS / SSIM on held-out triplets."),
        Section("pack", "Default pack quality", "bench_pack.py",
                ["--fd-n", "200", "--invert-n", "3", "--steps", "50", "--dir-n", "10", "--out", f"{w}/pack"],
                ["--out", f"{w}/pack"],
                "FD-VGG16 vs the real floor, dlib detection, inversion vs projector, direction Spearman "
                "(quick: smaller sets than the bars are defined on; use --full for the real numbers)."),
    ]


def machine() -> list[str]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores" + (f", {mem} RAM" if mem else ""),
            f"- GPU: {gpu}",
            f"- OS: {platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}",
            f"- load average at start: {', '.join(f'{x:.2f}' for x in load)}" if load else "- load average: n/a",
            f"- commit: {commit or 'unknown'}; date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}"]


def run_one(cmd: list[str], timeout: float) -> tuple[int, str, str, float, float]:
    """(exit status, stdout, stderr, wall seconds, peak RSS MB) of ``cmd`` (killed after ``timeout``)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=str(REPO), env=env, text=True, start_new_session=True)
        deadline = t0 + timeout
        status, ru = None, None
        while True:
            pid, st, r = os.wait4(p.pid, os.WNOHANG)
            if pid:
                status, ru = os.waitstatus_to_exitcode(st), r
                break
            if time.perf_counter() > deadline:
                os.killpg(p.pid, 9)
                _, st, r = os.wait4(p.pid, 0)
                status, ru = 124, r
                break
            time.sleep(0.2)
        p.returncode = status
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        return status, fo.read(), fe.read(), wall, ru.ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmark-report.md"), help="the Markdown report")
    ap.add_argument("--work", type=Path, default=None, help="folder for the benchmarks' own outputs (default: next to --out)")
    ap.add_argument("--only", default=None, help="comma list of sections (default: all)")
    ap.add_argument("--skip", default="", help="comma list of sections to leave out")
    ap.add_argument("--full", action="store_true", help="the benchmarks' default sizes instead of the quick ones")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark before it is stopped")
    a = ap.parse_args(argv)
    work = a.work or a.out.with_suffix("").parent / (a.out.stem + "-files")
    work.mkdir(parents=True, exist_ok=True)
    secs = sections(work.resolve())
    keys = [s.key for s in secs]
    only = [k.strip() for k in a.only.split(",")] if a.only else keys
    skip = {k.strip() for k in a.skip.split(",") if k.strip()}
    unknown = (set(only) | skip) - set(keys)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; known: {', '.join(keys)}")
    chosen = [s for s in secs if s.key in only and s.key not in skip]

    lines = ["# StyleStudio benchmark report", "", "## Machine", "", *machine(), "",
             f"Sizes: {'full (the benchmarks’ defaults)' if a.full else 'quick (see each command)'}.", ""]
    summary = ["| section | status | wall s | peak RSS MB |", "|---|---|---:|---:|"]
    body: list[str] = []
    for s in chosen:
        cmd = [sys.executable, str(BENCH / s.script), *(s.full if a.full else s.quick)]
        print(f"[report] {s.key}: {shlex.join(cmd[1:])}", flush=True)
        status, out, err, wall, rss = run_one(cmd, a.timeout)
        ok = "ok" if status == 0 else ("timed out" if status == 124 else f"failed ({status})")
        print(f"[report] {s.key}: {ok} in {wall:.0f} s, peak RSS {rss:.0f} MB", flush=True)
        summary.append(f"| {s.title} | {ok} | {wall:.0f} | {rss:.0f} |")
        body += [f"## {s.title}", "", s.what, "", f"`{shlex.join(['python', *cmd[1:]])}`".replace(str(REPO) + "/", ""),
                 "", f"{ok}; {wall:.0f} s wall; peak RSS {rss:.0f} MB", "", "```", out.rstrip() or "(no output)", "```", ""]
        if status != 0:
            body += ["Error output (last lines):", "", "```", "\n".join(err.strip().splitlines()[-25:]), "```", ""]
    text = "\n".join(lines + ["## Summary", "", *summary, "", *body])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"[report] wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
