"""A run refused before its first step (bad --data, ...) leaves no numbered run folder behind."""

from __future__ import annotations

import logging

from trainers.common import discard_unstarted_run, log_to_run_dir, open_run_dir


def test_refused_runs_leave_no_folder(tmp_path, capsys):
    from trainers.stylegan2 import main

    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "runs"), "--kimg", "1"]) == 2
    assert "is not a folder of images" in capsys.readouterr().err
    assert not any((tmp_path / "runs").glob("0*"))


def test_only_empty_runs_are_discarded(tmp_path):
    run = open_run_dir(tmp_path, "x", {"a": 1})
    handler = log_to_run_dir(run)
    assert discard_unstarted_run(run, handler) and not run.exists()
    assert handler not in logging.getLogger().handlers
    kept = open_run_dir(tmp_path, "y", {"a": 1})
    (kept / "metrics.jsonl").write_text("{}\n")
    assert not discard_unstarted_run(kept) and (kept / "config.json").is_file()
    (kept / "metrics.jsonl").unlink()
    (kept / "snapshots").mkdir()
    (kept / "snapshots" / "s.safetensors").write_bytes(b"x")
    assert not discard_unstarted_run(kept) and kept.is_dir()
