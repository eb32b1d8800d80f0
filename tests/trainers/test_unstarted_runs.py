"""A run refused before its first step (bad --data, ...) leaves no numbered run folder behind."""

from __future__ import annotations

import logging

import pytest

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


def _faces(tmp_path):
    import numpy as np
    from PIL import Image

    d = tmp_path / "faces"
    d.mkdir()
    for i in range(8):
        Image.fromarray(np.full((32, 32, 3), 30 * i, np.uint8)).save(d / f"{i}.png")
    return d



@pytest.mark.parametrize("trainer, args, flag", [
    ("stylegan2", ["--lr-g", "nan"], "--lr-g"),
    ("stylegan2", ["--lr-d", "-1"], "--lr-d"),
    ("stylegan2", ["--kimg", "0"], "--kimg"),
    ("stylegan2", ["--kimg", "inf"], "--kimg"),
    ("encoder", ["--lr", "nan"], "--lr"),
    ("encoder", ["--steps", "0"], "--steps"),
    ("encoder", ["--max-steps", "-1"], "--max-steps"),
    ("crg", ["--lr", "nan"], "--lr"),
    ("distill", ["--lr", "-0.5"], "--lr"),
    ("stylegan2", ["--log-every", "0"], "--log-every"),
    ("stylegan2", ["--max-images", "-1"], "--max-images"),
    ("stylegan2", ["--max-steps", "0"], "--max-steps"),
    ("encoder", ["--log-every", "0"], "--log-every"),
    ("crg", ["--max-steps", "-1"], "--max-steps"),
    ("distill", ["--max-steps", "0"], "--max-steps"),
])
def test_nonsense_numbers_are_one_error_line(trainer, args, flag, tmp_path, capsys):
    """NaN, infinite, zero or negative rates and lengths: an error naming the flag (not torch's
    ValueError deep in the optimiser, nor a run that 'finishes' at step 0) and no run folder."""
    import importlib

    main = importlib.import_module(f"trainers.{trainer}").main
    faces = str(_faces(tmp_path))
    base = {"stylegan2": ["--cfg", "tiny", "--data", faces], "encoder": ["--data", faces], "crg": [],
            "distill": []}[trainer]
    assert main([*base, *args, "--out", str(tmp_path / "runs"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} must be a positive number" in err and "Traceback" not in err
    assert not any((tmp_path / "runs").glob("0*"))


@pytest.mark.parametrize("trainer", ["stylegan2", "encoder", "crg", "distill"])
def test_negative_threads_are_one_error_line(trainer, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"trainers.{trainer}").main
    faces = str(_faces(tmp_path))
    base = {"stylegan2": ["--cfg", "tiny", "--data", faces], "encoder": ["--data", faces], "crg": [], "distill": []}[trainer]
    assert main([*base, "--out", str(tmp_path / "runs"), "--threads", "-1"]) == 2
    err = capsys.readouterr().err
    assert "error: --threads must be 0 (all cores) or a positive number, got -1" in err and "Traceback" not in err
    assert not any((tmp_path / "runs").glob("0*"))


def test_out_that_is_a_file_says_what_to_do(tmp_path, capsys):
    from trainers.stylegan2 import main

    blocker = tmp_path / "runs"
    blocker.write_text("x")
    assert main(["--cfg", "tiny", "--data", str(_faces(tmp_path)), "--out", str(blocker), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "File exists" not in err


def test_stylestudio_train_says_where_the_run_goes(tmp_path, caplog):
    """`stylestudio train` sets the app's WARNING logging first; the trainer still reports its run
    directory (on stderr and in log.txt)."""
    from studio.cli import main

    out = tmp_path / "runs"
    rc = main(["train", "gan", "--cfg", "tiny", "--data", str(_faces(tmp_path)), "--out", str(out), "--threads",
               "1", "--max-steps", "1", "--fd-samples", "0", "--metrics-every-kimg", "0", "--no-tqdm"])
    assert rc == 0
    run = next(out.glob("0*"))
    assert any("run directory" in r.getMessage() and str(run) in r.getMessage() for r in caplog.records)
    assert "run directory" in (run / "log.txt").read_text()


@pytest.mark.parametrize("args, says", [
    (["--generator", "{notes}"], "unrecognised model file"),
    (["--encoder", "{notes}"], "give KIND=CHECKPOINT"),
    (["--encoder", "psp={notes}"], "unrecognised model file"),
    (["--fd", "nan"], "--fd must be a positive number"),
    (["--out", "{notes}"], "that is a file"),
])
def test_build_pack_refuses_with_one_line(args, says, tmp_path, capsys):
    from trainers.pack.build_pack import main

    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    argv = [a.replace("{notes}", str(notes)) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "pack")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err


@pytest.mark.parametrize("args, says", [
    (["--generator", "{trunc}"], "truncated"),
    (["--out", "{dir}"], "is a folder"),
    (["--psi", "nan"], "--psi must be in (0, 1]"),
])
def test_distill_data_refuses_with_one_line(args, says, tmp_path, capsys):
    from trainers.distill_data import main

    trunc = tmp_path / "g.safetensors"
    trunc.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    argv = [a.replace("{trunc}", str(trunc)).replace("{dir}", str(tmp_path)) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "t.npz")]
    assert main([*argv, "--count", "2", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and ".tmp" not in err


_WRITERS = [(["/x/trainers/encoder.py", "--arch", "e2style"], "trainers.encoder"),
             (["/opt/bin/stylestudio", "train", "gan", "--kimg", "1"], "trainers.stylegan2"),
             (["/x/trainers/distill.py"], "trainers.distill")]


@pytest.mark.parametrize("module, writer_argv, writer", [
    (m, a, w) for a, w in _WRITERS for m in ("trainers.crg", "trainers.encoder", "trainers.distill", "trainers.stylegan2")
    if m != w])
def test_resuming_another_trainers_run_names_it(tmp_path, capsys, module, writer_argv, writer):
    """--resume on a run of another trainer says whose run it is and the command that continues it."""
    import importlib
    import json

    run = tmp_path / "00000-x"
    run.mkdir()
    train = {"encoder": {"arch": "e2style", "abort": "relative"}, "stylegan2": {"kimg": 1, "cfg": "tiny"},
             "distill": {"group": "medium", "lambda_feat": 10.0}}[writer.split(".")[1]]
    train["no_such_field_anywhere"] = 1
    (run / "config.json").write_text(json.dumps({"train": train, "argv": writer_argv}))
    assert importlib.import_module(module).main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"is a run of {writer}" in err and f"python -m {writer} --resume {run}" in err
    assert "Traceback" not in err
