"""Autosave files and crash recovery without Qt: the file is a project plus recovery.json, dead writers
are told from live ones (pid reuse included), the writer thread never leaves a partial file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from studio.core.directions import Direction
from studio.engine import recovery
from studio.engine.session import EditSession, ModelIdentity


def _session(seed=0) -> EditSession:
    rng = np.random.default_rng(seed)
    ident = ModelIdentity("stylestudio", "/models/tiny.safetensors", "ab" * 32, 6, 8, 32)
    s = EditSession(rng.standard_normal((6, 8)).astype(np.float32), w_avg=rng.standard_normal(8).astype(np.float32),
                    model=ident)
    s.add_direction(Direction("age", rng.standard_normal(8).astype(np.float32), layers=(0, 4)))
    s.set_amount("age", 1.25)
    s.set_truncation(0.7)
    s.set_reference(rng.standard_normal((6, 8)).astype(np.float32))
    s.set_mix_strength("coarse", 0.5)
    return s


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write(folder, pid, t=1000.0, **kw):
    data = recovery.recovery_bytes(_session().to_project_bytes(), pid=pid, now=t, **kw)
    path = folder / f"{recovery.PREFIX}{pid}-1{recovery.SUFFIX}"
    path.write_bytes(data)
    return path


def test_autosave_is_a_project_with_recovery_info(tmp_path):
    s = _session()
    path = tmp_path / "a.stylestudio"
    path.write_bytes(recovery.recovery_bytes(s.to_project_bytes(), model_path="/m.safetensors",
                                             photo="/photos/x.jpg", face=2, pid=123, now=1e9))
    info = recovery.read_info(path)
    assert (info.pid, info.time, info.model_path, info.photo, info.face) == (123, 1e9, "/m.safetensors",
                                                                              "/photos/x.jpg", 2)
    back = recovery.load(info, model=s.model)
    assert np.array_equal(back.state.source, s.state.source) and np.array_equal(back.ws(), s.ws())
    assert back.amount("age") == 1.25 and back.state.psi == 0.7
    assert np.array_equal(back.mixer.reference, s.mixer.reference)
    assert EditSession.load(path).amount("age") == 1.25  # an ordinary project for every other reader


def test_find_recoverable_only_dead_writers_newest_first(tmp_path):
    dead = _dead_pid()
    _write(tmp_path, os.getpid())                # this (live) process: another window's edit
    old = _write(tmp_path, dead, t=1000.0)
    new = tmp_path / f"{recovery.PREFIX}{dead}-2{recovery.SUFFIX}"
    new.write_bytes(recovery.recovery_bytes(_session(1).to_project_bytes(), pid=dead, now=2000.0))
    found = recovery.find_recoverable(tmp_path)
    assert [i.path for i in found] == [new, old]
    assert recovery.find_recoverable(tmp_path / "missing") == [] and recovery.find_recoverable(None) == []


def test_damaged_and_half_written_files_of_dead_writers_are_cleaned(tmp_path):
    dead = _dead_pid()
    bad = tmp_path / f"{recovery.PREFIX}{dead}-1{recovery.SUFFIX}"
    bad.write_bytes(b"PK\x03\x04 not really")
    tmp = tmp_path / f".{recovery.PREFIX}{dead}-1{recovery.SUFFIX}.x1y2.tmp"
    tmp.write_bytes(b"partial")
    mine = tmp_path / f".{recovery.PREFIX}{os.getpid()}-7{recovery.SUFFIX}.x1y2.tmp"
    mine.write_bytes(b"in flight")
    assert recovery.find_recoverable(tmp_path) == []
    assert not bad.exists() and not tmp.exists() and mine.exists()


def test_a_reused_pid_is_not_the_writer():
    pid = os.getpid()
    start = recovery.process_start(pid)
    assert recovery.process_alive(pid) and recovery.process_alive(pid, start)
    if start is None:
        pytest.skip("no /proc: process start times unknown")
    assert not recovery.process_alive(pid, start + 1)
    assert not recovery.process_alive(_dead_pid())


def test_autosaver_writes_latest_and_discards(tmp_path):
    saved = []
    a = recovery.Autosaver(tmp_path / "rec", on_saved=saved.append)
    assert a.path.name.startswith(f"{recovery.PREFIX}{os.getpid()}-")
    for i in range(20):  # latest wins
        a.submit(recovery.recovery_bytes(_session().to_project_bytes(), face=i))
    assert a.flush(10)
    assert recovery.read_info(a.path).face == 19 and saved and saved[-1] == a.path
    other = _write(tmp_path, _dead_pid())
    a.submit(recovery.recovery_bytes(_session().to_project_bytes()), replaces=other)
    a.flush(10)
    assert not other.exists() and a.exists
    a.discard(wait=True)
    assert not a.exists
    a.submit(recovery.recovery_bytes(_session().to_project_bytes()))
    a.close(discard=True)
    assert not a.exists and not list((tmp_path / "rec").iterdir())
    a.submit(b"after close")  # ignored
    time.sleep(0.05)
    assert not a.exists


def test_kill_while_autosaving_leaves_a_whole_file(tmp_path):
    """SIGKILL a process that autosaves in a loop at random moments: the file on disk always loads,
    is one of the states written, and is offered for recovery."""
    projects = []
    for k, alpha in enumerate((1.25, -2.0)):
        s = _session()
        s.set_amount("age", alpha)
        projects.append(tmp_path / f"p{k}.bin")
        for i in range(40 * k):  # a larger second state
            s.add_direction(Direction(f"d{i}", np.random.default_rng(i).standard_normal(8).astype(np.float32)))
        projects[-1].write_bytes(s.to_project_bytes())
    code = ("import sys\n"
            "from studio.engine import recovery\n"
            "a = recovery.Autosaver(sys.argv[1])\n"
            "ps = [open(p, 'rb').read() for p in sys.argv[2:]]\n"
            "print(a.path, flush=True)\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1\n"
            "    a.submit(recovery.recovery_bytes(ps[i % 2], face=i))\n"
            "    a.flush()\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    rng = np.random.default_rng()
    folder = tmp_path / "rec"
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", code, str(folder), *map(str, projects)], stdout=subprocess.PIPE,
                             text=True, env=env)
        try:
            path = p.stdout.readline().strip()
            time.sleep(0.2 + 0.3 * rng.random())
        finally:
            p.kill()
            p.wait()
        info = recovery.read_info(path)
        assert info.face > 0 and recovery.load(info).amount("age") == (1.25, -2.0)[info.face % 2]
        assert [i.path.name for i in recovery.find_recoverable(folder)] == [os.path.basename(path)]
        recovery.remove(path)
    assert not list(folder.iterdir())  # half-written temp files of the dead writers are cleaned


def test_recovery_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(recovery.ENV_DIR, raising=False)
    assert recovery.recovery_dir() is None and recovery.recovery_dir(tmp_path) == tmp_path
    monkeypatch.setenv(recovery.ENV_DIR, str(tmp_path / "x"))
    assert recovery.recovery_dir(tmp_path) == tmp_path / "x"


def test_not_an_autosave(tmp_path):
    p = tmp_path / "plain.stylestudio"
    p.write_bytes(_session().to_project_bytes())
    with pytest.raises(ValueError, match="not an autosave"):
        recovery.read_info(p)
    with zipfile.ZipFile(tmp_path / "z.stylestudio", "w") as zf:
        zf.writestr(recovery.MEMBER, '{"format": "other"}')
    with pytest.raises(ValueError, match="wrong format"):
        recovery.read_info(tmp_path / "z.stylestudio")
