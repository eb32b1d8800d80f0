"""Runs one fuzz case: the loader must return or raise one of its documented errors, within a time
limit, without creating the marker file a malicious payload would create. Counts every case per
loader for the session summary (``tests/fuzz/conftest.py``)."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

#: Multiplies every fuzzer's example count (``STYLESTUDIO_FUZZ_SCALE=5`` for a longer local run).
SCALE = float(os.environ.get("STYLESTUDIO_FUZZ_SCALE", "1"))
#: Seconds one case may take (a loader that hangs fails the test instead of stalling CI).
TIME_LIMIT = float(os.environ.get("STYLESTUDIO_FUZZ_TIME_LIMIT", "20"))

#: loader -> Counter(cases, accepted, refused, unexpected, slowest_ms)
STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def fuzz_settings(n: int, **kw):
    """Deterministic hypothesis settings for ``n`` examples (times STYLESTUDIO_FUZZ_SCALE)."""
    # No "explain" phase: it traces every line, making a 2 s load take 20+ s (a false timeout).
    phases = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
    return settings(max_examples=max(1, round(n * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False, phases=phases, **kw)


class FuzzTimeout(BaseException):
    """Raised by the alarm inside a hung loader (a BaseException, so ``except Exception`` in a
    loader cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def _alarm(signum, frame):
        raise FuzzTimeout(f"case took longer than {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(loader: str, fn, allowed: tuple[type[BaseException], ...], *, marker: Path | None = None,
          limit: float | None = None):
    """Run ``fn()``; return ("accepted", result) or ("refused", exc). Anything else fails the test."""
    limit = TIME_LIMIT if limit is None else limit
    stats = STATS[loader]
    stats["cases"] += 1
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            try:
                out = ("accepted", fn())
            except allowed as e:
                out = ("refused", e)
    except BaseException:
        stats["unexpected"] += 1
        raise
    finally:
        ms = (time.perf_counter() - t0) * 1000
        stats["slowest_ms"] = max(stats["slowest_ms"], round(ms))
    stats[out[0]] += 1
    assert ms <= limit * 1000, f"{loader}: case took {ms:.0f} ms (limit {limit:.0f} s)"
    if marker is not None:
        assert not marker.exists(), f"{loader}: a payload ran (marker {marker} exists)"
    return out
