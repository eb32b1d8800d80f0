"""Malicious pickles in every place a loader meets one: refused with the loader's documented error,
and the marker file the payload would create never appears."""

from __future__ import annotations

import io
import pickle
import shutil
import time
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import CheckpointError, DirectionError, ProjectError
from tests.fuzz import evil, seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import npy_split, zip_build

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evil")


def _wait_for(marker, seconds=2.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if marker.exists():
            return True
        time.sleep(0.02)
    return marker.exists()


def _clear(marker):
    if marker.is_dir():
        shutil.rmtree(marker)
    else:
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize("name", sorted(evil.payloads("M")))
def test_payloads_are_live(name, tmp_path):
    """The test has teeth: a plain unpickler runs every payload (each protocol that can hold it)."""
    marker = tmp_path / "PWNED"
    call = evil.payloads(str(marker))[name]
    for proto in ((0, 2) if call.module == "__builtin__" else (0, 2, 4)):  # py2 names: protocols < 3 only
        for style in ("reduce", "inst", "obj"):
            blob = evil.dumps(evil.Raw(evil.payload_bytes(evil.with_style(call, style), proto, proto >= 4)), proto)
            try:
                pickle.loads(blob)
            except Exception:  # noqa: BLE001 - e.g. the payload's return value; the side effect counts
                pass
            assert _wait_for(marker), f"{name} proto {proto} {style} did not run"
            _clear(marker)


def _torch_zip_with(data_pkl: bytes) -> bytes:
    members = [(i.filename, b) for i, b in seeds.zip_members(seeds.rosinality_seed())]
    return zip_build([(n, data_pkl if n.endswith("/data.pkl") else b) for n, b in members])


def _npy_object(pkl: bytes) -> bytes:
    pre, header, _ = npy_split(seeds.direction_seeds()["npy"])
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (-(len(pre) + len(header) + 1) % 64) + "\n"
    return pre[:8] + len(header).to_bytes(2, "little") + header.encode("latin1") + pkl


def _load_checkpoint(path):
    from studio.core.formats import load_checkpoint

    return load_checkpoint(path)


def _nvidia(path):
    from studio.core.formats import nvidia_pkl

    return nvidia_pkl.load(path)


def _safe_torch_load(path):
    from studio.core.formats import safe_torch_load

    return safe_torch_load(path)


PICKLE_LOADERS = {"load_checkpoint": _load_checkpoint, "nvidia_pkl.load": _nvidia, "safe_torch_load": _safe_torch_load}


@st.composite
def evil_cases(draw, marker: str):
    name = draw(st.sampled_from(sorted(evil.payloads(marker))))
    call = evil.with_style(evil.payloads(marker)[name], draw(st.sampled_from(["reduce", "inst", "obj"])))
    proto = draw(st.sampled_from([0, 1, 2, 3, 4, 5]))
    stack = draw(st.booleans())
    kind = draw(st.sampled_from(evil.CONTAINERS))
    blob = evil.container(kind, evil.payload_bytes(call, proto, stack), proto, stack)
    return f"{name}/{call.style}/p{proto}{'/stack' if stack else ''}/{kind}", blob


@fuzz_settings(130)
@given(data=st.data())
def test_malicious_pickles_in_model_files(workdir, data):
    marker = workdir / "PWNED"
    label, blob = data.draw(evil_cases(str(marker)), label="case")
    where = data.draw(st.sampled_from(["pickle", "pickle", "torch-zip"]), label="file")
    loader = data.draw(st.sampled_from(sorted(PICKLE_LOADERS) if where == "pickle"
                                       else ["load_checkpoint", "safe_torch_load"]), label="loader")
    path = workdir / ("evil.pkl" if where == "pickle" else "evil.pt")
    path.write_bytes(blob if where == "pickle" else _torch_zip_with(blob))
    outcome, _ = check(f"pickle:{loader}", lambda: PICKLE_LOADERS[loader](path), (CheckpointError,), marker=marker)
    assert outcome == "refused", f"{label} in a {where} was accepted by {loader}"


@fuzz_settings(50)
@given(data=st.data())
def test_malicious_pickles_in_arrays(workdir, data):
    """Object arrays (.npy / .npz members / project members) carrying a pickle are refused."""
    from studio.core.directions import load_directions
    from studio.engine.session import EditSession

    marker = workdir / "PWNED"
    _, blob = data.draw(evil_cases(str(marker)), label="case")
    npy = _npy_object(blob)
    target = data.draw(st.sampled_from(["npy", "npz", "project"]), label="target")
    if target == "npy":
        path = workdir / "evil.npy"
        path.write_bytes(npy)
        check("pickle:load_directions(.npy)", lambda: load_directions(path, w_dim=seeds.W_DIM), (DirectionError,),
              marker=marker)
    elif target == "npz":
        path = workdir / "evil.npz"
        members = [(i.filename, b) for i, b in seeds.zip_members(seeds.direction_seeds()["npz"])]
        path.write_bytes(zip_build([(n, npy if n == "lat_comp.npy" else b) for n, b in members],
                                   compression=zipfile.ZIP_DEFLATED))
        check("pickle:load_directions(.npz)", lambda: load_directions(path, w_dim=seeds.W_DIM), (DirectionError,),
              marker=marker)
    else:
        path = workdir / "evil.stylestudio"
        members = [(i.filename, b) for i, b in seeds.zip_members(seeds.project_seed())]
        victim = data.draw(st.sampled_from([n for n, _ in members if n.endswith(".npy")]), label="member")
        path.write_bytes(zip_build([(n, npy if n == victim else b) for n, b in members]))
        check("pickle:EditSession.load", lambda: EditSession.load(path), (ProjectError,), marker=marker)


def test_no_payload_ran_at_all(workdir):
    """After every case (Popen/os.popen payloads would act asynchronously): still no marker."""
    assert not _wait_for(workdir / "PWNED", 1.0)


def test_pickle_reader_ignores_io_objects():
    """Sanity: the payload builder really produces a pickle the C unpickler parses."""
    blob = evil.dumps({"a": [1, 2, (3, "x")]}, 4, True)
    assert pickle.load(io.BytesIO(blob)) == {"a": [1, 2, (3, "x")]}
