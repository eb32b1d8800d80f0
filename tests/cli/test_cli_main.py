"""The ``stylestudio`` entry point: files to open in the app, devices, file-system errors."""

from __future__ import annotations

import pytest
import torch

from studio.cli import _display_problem, _files_to_open, build_parser, main
from studio.core.errors import StudioError
from studio.core.tensors import pick_device


def test_files_named_without_a_command_are_opened_in_the_app(tmp_path, monkeypatch):
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"x")
    parser = build_parser()
    assert _files_to_open(parser, [str(photo)]) == [str(photo)]
    assert _files_to_open(parser, ["-v", str(photo)]) == [str(photo)]
    assert _files_to_open(parser, ["info", str(photo)]) == []
    assert _files_to_open(parser, ["--smoke-test", "out.png"]) == []     # an option's value, not a file
    with pytest.raises(SystemExit):                                      # neither a command nor a file
        _files_to_open(parser, [str(tmp_path / "missing.jpg")])

    opened = []
    monkeypatch.setattr("studio.cli._launch_app", lambda parser, smoke_test=None, files=None: opened.append(files) or 0)
    assert main([str(photo)]) == 0 and opened == [[str(photo)]]


def test_no_display_is_a_message_not_an_abort(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    assert "no display" in _display_problem()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert _display_problem() is None
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert _display_problem() is None


def test_devices_are_checked():
    assert pick_device("cpu") == torch.device("cpu") and pick_device(" CPU ") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda") and pick_device(None).type in ("cpu", "cuda")
    with pytest.raises(StudioError, match="unknown device"):
        pick_device("banana")
    with pytest.raises(StudioError, match="not supported"):
        pick_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(StudioError, match="CUDA is not available"):
            pick_device("cuda")
    else:
        with pytest.raises(StudioError, match="only"):
            pick_device(f"cuda:{torch.cuda.device_count()}")


def test_device_and_file_system_errors_are_one_line(tmp_path, capsys):
    assert main(["generate", "--seeds", "0", "--device", "banana", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'banana'" in err and "Traceback" not in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "--seeds", "0", "--device", "cpu", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylestudio generate: error:") and "Traceback" not in err and len(err.splitlines()) == 1
