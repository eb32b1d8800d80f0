"""Damaged direction files (InterFaceGAN .npy, GANSpace .npz, a pack's ``manifest['directions']``):
only :class:`DirectionError` escapes (module docstring of ``studio.core.directions``)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.directions import Direction, load_directions, load_pack_directions
from studio.core.errors import DirectionError
from tests.fuzz import seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import (
    json_text,
    mutated_bytes,
    mutated_json,
    npy_variants,
    zip_variants,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # zipfile: duplicate member names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("directions")


def _assert_directions(out, w_dim=seeds.W_DIM):
    assert isinstance(out, list)
    for d in out:
        assert isinstance(d, Direction) and d.vector.shape == (w_dim,) and np.isfinite(d.vector).all()


def _npz_member_mutator(b):
    return npy_variants(b) if b[:6] == b"\x93NUMPY" else mutated_bytes(b)


@st.composite
def npz_arrays(draw):
    """A GANSpace file written with numpy, but with odd arrays: names/layers/stdev of other dtypes
    and shapes, components of other shapes."""
    rng = np.random.default_rng(0)
    arrays = {"lat_comp": rng.standard_normal((2, 1, seeds.W_DIM)).astype(np.float32),
              "lat_stdev": np.ones(2, np.float32), "names": np.array(["a", "b"]),
              "layers": np.array([[0, 4], [-1, -1]])}
    key = draw(st.sampled_from(sorted(arrays) + ["act_comp"]))
    arrays[key] = draw(st.sampled_from([
        np.zeros(0), np.zeros((2,)), np.array([1, 2]), np.array(["x", "y"]), np.array([[1.5, np.nan], [2, 3]]),
        np.zeros((2, 1, seeds.W_DIM), np.complex64), np.zeros((3, 3)), np.array(5), np.array([b"a", b"b"]),
        np.full((2, 1, seeds.W_DIM), np.inf, np.float32), np.zeros((2, 1, seeds.W_DIM), bool), np.array([[9, 2], [0, 99]]),
        np.zeros((2, seeds.W_DIM), np.float16), np.array([1e300, -1e300]), np.array([[2**62, 2**63 - 1]]),
        np.zeros((0, 1, seeds.W_DIM), np.float32), np.zeros((2, 1, seeds.W_DIM), "datetime64[s]"),
    ]))
    if draw(st.booleans()):
        arrays.pop(draw(st.sampled_from(sorted(arrays))))
    return arrays


@fuzz_settings(130)
@given(data=st.data())
def test_direction_files(workdir, data):
    files = seeds.direction_seeds()
    suffix = data.draw(st.sampled_from(["npy", "npz"]), label="suffix")
    how = data.draw(st.sampled_from(["bytes", "header", "header", "arrays"]), label="how")
    seed = files[suffix]
    if how == "bytes":
        blob = data.draw(mutated_bytes(seed, splice_with=tuple(files.values())))
    elif suffix == "npy":
        blob = data.draw(npy_variants(seed)) if how == "header" else seed
    elif how == "header":
        blob = data.draw(zip_variants(seed, {r"\.npy$": _npz_member_mutator}))
    else:
        import io

        buf = io.BytesIO()
        np.savez(buf, **data.draw(npz_arrays()))
        blob = buf.getvalue()
    path = workdir / f"dirs.{suffix}"
    path.write_bytes(blob)
    num_ws = data.draw(st.sampled_from([None, seeds.NUM_WS]), label="num_ws")
    outcome, out = check(f"load_directions(.{suffix})",
                         lambda: load_directions(path, w_dim=seeds.W_DIM, num_ws=num_ws), (DirectionError,))
    if outcome == "accepted":
        _assert_directions(out)


@fuzz_settings(70)
@given(data=st.data())
def test_pack_directions(workdir, data):
    files = dict(seeds.pack_seed())
    man = json.loads(files["manifest.json"])
    how = data.draw(st.sampled_from(["entries", "entries", "manifest", "text", "file-rehashed"]), label="how")
    if how == "entries":
        man["directions"] = data.draw(mutated_json(man["directions"]))
    elif how == "manifest":
        man = data.draw(mutated_json({k: man[k] for k in ("directions", "w_dim", "num_ws")}))
    elif how == "file-rehashed":
        name = data.draw(st.sampled_from(["age.npy", "comps.npz"]))
        blob = data.draw(mutated_bytes(files[name]) if data.draw(st.booleans()) else
                         (npy_variants(files[name]) if name.endswith(".npy") else
                          zip_variants(files[name], {r"\.npy$": _npz_member_mutator})))
        files[name] = blob
        for e in man["directions"].values():
            if e["file"] == name:
                e["sha256"] = hashlib.sha256(blob).hexdigest()
    root = workdir / "pack"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name, blob in files.items():
        if name != "manifest.json":
            (root / name).write_bytes(blob)
    text = data.draw(json_text(man)) if how == "text" else json.dumps(man, allow_nan=True)
    (root / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    target = data.draw(st.sampled_from([root, root / "manifest.json"]), label="target")
    outcome, out = check("load_pack_directions", lambda: load_pack_directions(target), (DirectionError,))
    if outcome == "accepted":
        _assert_directions(out)
