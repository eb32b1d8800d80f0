"""Fuzz suite settings: every test here is marked ``fuzz``; a memory cap turns a runaway allocation
into a MemoryError instead of an OOM kill; the session ends with the number of cases per loader."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from tests.fuzz.harness import SCALE, STATS

#: Extra address space a fuzz case may take on top of what the process already maps.
MEMORY_HEADROOM = 6 << 30


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fuzz)


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(autouse=True)
def _memory_cap():
    """RLIMIT_AS = current size + 6 GiB while a fuzz test runs (restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = _vm_size()
    if not vm:
        yield
        return
    cap = vm + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not STATS:
        return
    tr = terminalreporter
    tr.section(f"fuzz cases per loader (STYLESTUDIO_FUZZ_SCALE={SCALE:g})")
    tr.write_line(f"{'loader':34} {'cases':>6} {'accepted':>9} {'refused':>8} {'unexpected':>11} {'slowest ms':>11}")
    total = {"cases": 0, "accepted": 0, "refused": 0, "unexpected": 0}
    for name in sorted(STATS):
        s = STATS[name]
        tr.write_line(f"{name:34} {s['cases']:6d} {s['accepted']:9d} {s['refused']:8d} {s['unexpected']:11d} "
                      f"{s['slowest_ms']:11d}")
        for k in total:
            total[k] += s[k]
    tr.write_line(f"{'total':34} {total['cases']:6d} {total['accepted']:9d} {total['refused']:8d} "
                  f"{total['unexpected']:11d}")
    out = os.environ.get("STYLESTUDIO_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps({"scale": SCALE, "loaders": {k: dict(v) for k, v in STATS.items()},
                                         "total": total}, indent=1) + "\n")
