"""Damaged ``.stylestudio`` projects: ``EditSession.load`` reopens them or raises
:class:`ProjectError` (module docstring of ``studio.engine.session``), within the time limit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import ProjectError
from studio.engine.session import EditSession
from tests.fuzz import seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import (
    json_text,
    mutated_bytes,
    mutated_json,
    npy_variants,
    zip_build,
    zip_variants,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # zipfile: duplicate member names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("projects")


def _members() -> list[tuple[str, bytes]]:
    return [(i.filename, b) for i, b in seeds.zip_members(seeds.project_seed())]


def _json_member(b: bytes):
    return json_text(json.loads(b)).map(lambda t: t.encode("utf-8", "surrogateescape"))


@fuzz_settings(130)
@given(data=st.data())
def test_project_files(workdir, data):
    seed = seeds.project_seed()
    how = data.draw(st.sampled_from(["bytes", "zip", "zip", "json", "json", "array"]), label="how")
    if how == "bytes":
        blob = data.draw(mutated_bytes(seed))
    elif how == "zip":
        blob = data.draw(zip_variants(seed, {r"\.npy$": npy_variants, r"\.json$": _json_member}))
    elif how == "json":
        members = _members()
        meta = json.loads(dict(members)["project.json"])
        new = json.dumps(data.draw(mutated_json(meta)), allow_nan=True).encode()
        blob = zip_build([(n, new if n == "project.json" else b) for n, b in members])
    else:  # a well-formed array of another shape / dtype in place of one member
        import io

        members = _members()
        name = data.draw(st.sampled_from([n for n, _ in members if n.endswith(".npy")]))
        a = data.draw(st.sampled_from([np.zeros((6, 16), np.float64), np.zeros((1, 6, 16), np.float32),
                                       np.zeros((0, 16), np.float32), np.zeros((6, 15), np.float32),
                                       np.full((6, 16), np.nan, np.float32), np.zeros((2**16,), np.float32),
                                       np.zeros((6, 16), np.int32), np.array("text"), np.zeros((3, 16), np.float32),
                                       np.full((6, 16), np.inf, np.float32)]))
        b = io.BytesIO()
        np.save(b, a)
        blob = zip_build([(n, b.getvalue() if n == name else m) for n, m in members])
    path = workdir / "edit.stylestudio"
    path.write_bytes(blob)
    model = data.draw(st.sampled_from([None, seeds.model_identity()]), label="model")
    outcome, sess = check("EditSession.load", lambda: EditSession.load(path, model=model), (ProjectError,))
    if outcome == "accepted":
        ws = sess.ws()  # a reopened project must be usable
        assert tuple(ws.shape) == (sess.num_ws, sess.w_dim)
