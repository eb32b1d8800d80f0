"""benchmarks/report.py: runs each benchmark in its own process and writes one Markdown report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402


def test_run_one_reports_status_output_and_rss():
    status, out, err, wall, rss = report.run_one(
        [sys.executable, "-c", "import sys; b = bytearray(64 << 20); print('table'); sys.exit(3)"], 60)
    assert status == 3 and out.strip() == "table" and wall > 0
    assert rss > 64  # MB: the child's own high-water mark, not the parent's


def test_run_one_stops_a_hung_benchmark():
    status, *_ = report.run_one([sys.executable, "-c", "import time; time.sleep(60)"], 1.0)
    assert status == 124


def test_report_markdown(tmp_path, monkeypatch):
    ok = tmp_path / "ok.py"
    ok.write_text("print('| a | b |')\nprint('| 1 | 2 |')\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(2)\n")
    monkeypatch.setattr(report, "sections", lambda work: [
        report.Section("ok", "Fine bench", str(ok), ["--x"], [], "What it measures."),
        report.Section("bad", "Broken bench", str(bad), [], [], "Fails.")])
    out = tmp_path / "r.md"
    assert report.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "## Machine" in text and "logical cores" in text
    assert "| Fine bench | ok |" in text and "| Broken bench | failed (2) |" in text
    assert "| 1 | 2 |" in text and "boom" in text and "What it measures." in text


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown section"):
        report.main(["--only", "nope", "--out", str(tmp_path / "r.md")])
