"""The inputs the fuzzers found that escaped as undocumented exceptions (or cost minutes), one
test each, so the fixes stay fixed even if the generated cases change."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import torch

from studio.core.directions import load_directions, load_pack_directions
from studio.core.errors import CheckpointError, DirectionError, ProjectError
from studio.core.formats import load_checkpoint
from studio.engine.session import EditSession
from tests.fuzz import seeds
from tests.fuzz.mutate import _patch_all, zip_build
from trainers.common import MetricsLog

pytestmark = pytest.mark.filterwarnings("ignore")


def _pack(tmp_path, edit=None):
    root = tmp_path / "pack"
    root.mkdir(exist_ok=True)
    for name, blob in seeds.pack_seed().items():
        (root / name).write_bytes(blob)
    if edit is not None:
        man = json.loads((root / "manifest.json").read_text())
        edit(man)
        (root / "manifest.json").write_text(json.dumps(man))
    return root


# ----------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("config", [
    {"resample_filter": [10**400]},                                  # OverflowError in setup_filter
    {"img_resolution": 2**14, "channel_base": 2**40, "channel_max": 2**20},  # terabytes
    {"z_dim": 2**31},
    {"img_resolution": "16"},
])
def test_pack_config_that_cannot_be_built_is_refused_quickly(tmp_path, config):
    root = _pack(tmp_path, lambda m: m["networks"]["generator"]["config"].update(config))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="generator"):
        load_checkpoint(root)
    assert time.perf_counter() - t0 < 5


def test_pack_network_entry_that_is_not_an_object(tmp_path):
    root = _pack(tmp_path, lambda m: m["networks"].update(generator=None))
    with pytest.raises(CheckpointError, match="file name"):
        load_checkpoint(root)


def test_deeply_nested_manifest(tmp_path):
    root = _pack(tmp_path)
    (root / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(root)


def _nvidia(tmp_path, **init):
    rec = seeds.nvidia_record(seeds.tiny_generator())
    rec.meta["state"]["_init_kwargs"].update(init)
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(seeds.pickle_with_persistence({"G_ema": rec}))
    return path


@pytest.mark.parametrize("init", [
    {"img_resolution": 2**14, "synthesis_kwargs": {"channel_base": 2**30, "channel_max": 2**20}},  # was minutes
    {"z_dim": 2**40},
    {"synthesis_kwargs": 5},                                          # TypeError
    {"z_dim": None},                                                  # TypeError
    {"mapping_kwargs": [1, 2]},                                       # ValueError from dict()
])
def test_nvidia_kwargs_that_cannot_be_built(tmp_path, init):
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="G_ema|G\\."):
        load_checkpoint(_nvidia(tmp_path, **init))
    assert time.perf_counter() - t0 < 5


def test_rosinality_odd_args(tmp_path):
    base = {"g_ema": seeds.rosinality_state(), "latent_avg": seeds.tiny_generator().mapping.w_avg.clone()}
    path = tmp_path / "r.pt"
    path.write_bytes(seeds.torch_bytes(dict(base, args="x")))      # vars('x') raised TypeError
    assert load_checkpoint(path).format == "rosinality"
    import argparse

    path.write_bytes(seeds.torch_bytes(dict(base, args=argparse.Namespace(lr_mlp="x"))))
    with pytest.raises(CheckpointError, match="lr_mlp"):
        load_checkpoint(path)


def test_rosinality_huge_style_dim_from_a_zero_stride_tensor(tmp_path):
    sd = seeds.rosinality_state()
    sd["style.1.weight"] = torch.zeros(()).expand(16, 2**31)
    path = tmp_path / "r.pt"
    path.write_bytes(seeds.torch_bytes({"g_ema": sd}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5


def test_psp_opts_with_an_infinite_number(tmp_path):
    obj = torch.load(io.BytesIO(seeds.psp_family_seeds()["psp"]), weights_only=True)
    obj["opts"]["n_styles"] = float("inf")                           # OverflowError
    path = tmp_path / "p.pt"
    path.write_bytes(seeds.torch_bytes(obj))
    with pytest.raises(CheckpointError, match="malformed psp"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------
# Directions


def test_empty_and_garbled_npy(tmp_path):
    p = tmp_path / "d.npy"
    for blob in (b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False( 'shape': (1, 16), }"):
        p.write_bytes(blob)                                            # EOFError, SyntaxError
        with pytest.raises(DirectionError):
            load_directions(p, w_dim=seeds.W_DIM)


def _npz(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    base = {"lat_comp": np.random.default_rng(0).standard_normal((2, 1, seeds.W_DIM)).astype(np.float32)}
    np.savez(p, **{**base, **arrays})
    return p


@pytest.mark.parametrize("arrays", [
    {"layers": np.array([1, 2, 3])},                                   # IndexError on a scalar
    {"layers": np.array([["a", "b"], ["c", "d"]])},                    # TypeError str >= int
    {"lat_stdev": np.array(["x", "y"])},                               # ValueError
    {"lat_comp": np.zeros((0, 1, seeds.W_DIM), np.float32)},           # reshape of 0 components
])
def test_npz_with_odd_arrays(tmp_path, arrays):
    with pytest.raises(DirectionError):
        load_directions(_npz(tmp_path, **arrays), w_dim=seeds.W_DIM)


def test_npz_damaged_zip_and_bomb(tmp_path):
    good = seeds.direction_seeds()["npz"]
    p = tmp_path / "d.npz"
    for blob in (_patch_all(good, b"PK\x01\x02", 16, "<I", 0xDEADBEEF),   # BadZipFile (CRC)
                 good[:4],                                                  # BadZipFile
                 zip_build([("lat_comp.npy", b"\x00" * (80 << 20))], compression=zipfile.ZIP_DEFLATED)):
        p.write_bytes(blob)
        with pytest.raises(DirectionError):
            load_directions(p, w_dim=seeds.W_DIM)


def test_pack_direction_range_that_is_an_object(tmp_path):
    root = _pack(tmp_path, lambda m: m["directions"]["age"].update(range={"a": 1}))   # KeyError: 0
    with pytest.raises(DirectionError, match="range"):
        load_pack_directions(root)


# ----------------------------------------------------------------------------
# Projects


def _project(tmp_path, blob):
    p = tmp_path / "edit.stylestudio"
    p.write_bytes(blob)
    return p


@pytest.mark.parametrize("patch", [
    (b"PK\x03\x04", 8, 99, b"PK\x01\x02", 10),    # NotImplementedError: compression method
    (b"PK\x03\x04", 6, 1, b"PK\x01\x02", 8),       # RuntimeError: encrypted
])
def test_project_zip_headers(tmp_path, patch):
    local, off, value, central, coff = patch
    blob = _patch_all(_patch_all(seeds.project_seed(), local, off, "<H", value), central, coff, "<H", value)
    with pytest.raises(ProjectError):
        EditSession.load(_project(tmp_path, blob))


def _set_direction_field(key, value):
    def edit(meta):
        meta["directions"][0][key] = value
    return edit


@pytest.mark.parametrize("edit", [
    {"version": "x"}, {"version": [1]}, {"mix": 5}, {"directions": [5]}, {"cutoff": 1e400},
    # QA, session 25: these opened and then broke the window half-way (OverflowError in a slider,
    # psi 1e300 overflowing float32) or left a NaN amount / an infinite slider range in the session
    {"psi": 1e300}, {"psi": float("nan")}, {"psi": float("inf")},
    _set_direction_field("alpha", 1e30), _set_direction_field("alpha", float("nan")),
    _set_direction_field("default_range", [float("-inf"), float("inf")]),
    _set_direction_field("default_range", [float("nan"), 1.0]),
    {"mix": {"has_reference": True, "strengths": {"coarse": float("nan")}}},
])
def test_project_json_values(tmp_path, edit):
    members = [(i.filename, b) for i, b in seeds.zip_members(seeds.project_seed())]
    meta = json.loads(dict(members)["project.json"])
    if callable(edit):
        edit(meta)
    else:
        meta.update(edit)
    blob = zip_build([(n, json.dumps(meta).encode() if n == "project.json" else b) for n, b in members])
    with pytest.raises(ProjectError):
        EditSession.load(_project(tmp_path, blob))


def test_project_member_shapes_and_sizes(tmp_path):
    members = [(i.filename, b) for i, b in seeds.zip_members(seeds.project_seed())]
    b = io.BytesIO()
    np.save(b, np.zeros((0, seeds.W_DIM), np.float32))
    for name, data in (("w_avg.npy", b.getvalue()), ("source.npy", b""), ("extra.npy", b"\x00" * (65 << 20))):
        blob = zip_build([(n, m) for n, m in members if n != name] + [(name, data)],
                         compression=zipfile.ZIP_DEFLATED)
        with pytest.raises(ProjectError):
            EditSession.load(_project(tmp_path, blob))


# ----------------------------------------------------------------------------
# metrics.jsonl


def test_torn_metrics_line_then_resume(tmp_path):
    from studio.engine.training import MetricsTailer

    p = tmp_path / "metrics.jsonl"
    p.write_bytes(seeds.metrics_seed() + b'{"step": 30, "loss/G": 1.')
    m = MetricsLog(p)
    m.write(event="resume", step=30)
    m.close()
    recs, _ = MetricsTailer(p).poll()
    assert [r["step"] for r in recs] == [0, 10, 20, 20, 30] and recs[-1]["event"] == "resume"


@pytest.mark.parametrize("metrics,config", [
    (b"[" * 100000 + b"\n", None),                                       # RecursionError in the tailer
    (b'{"step": 1e999}\n{"event": "start", "step": NaN}\n', None),       # int(inf) / int(nan)
    (b'{"event": "start", "step": 0, "num_stages": 1e12}\n', None),       # a 1e12-lane list
    (b"", {"train": {"arch": "e2style", "stages": 10**12}}),             # same from config.json
    (b"", {"train": {"arch": "e2style", "stages": "x"}}),                # ValueError
    (b"", {"train": 5, "argv": 7}),                                      # dict(5), iterating 7
    (b"", "[" * 100000),                                                 # RecursionError in read_config
])
def test_training_monitor_damaged_run(tmp_path, metrics, config):
    from studio.engine.training import RunModel

    (tmp_path / "metrics.jsonl").write_bytes(metrics)
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    m = RunModel(tmp_path)
    m.poll()
    assert len(m.stage_lanes()) <= 64 and m.num_stages >= 1
    m.compute()


def test_rosinality_shape_that_describes_a_huge_generator(tmp_path):
    """1024-channel convs (zero-stride views, a few bytes in the file) made the loader build (and
    randomly initialise) a 60M-value generator before the shape checks refused the file."""
    sd = seeds.rosinality_state()
    for k in ("conv1.conv.weight", "convs.1.conv.weight", "convs.3.conv.weight"):
        sd[k] = torch.zeros(()).expand(16, 1024, 3, 3)
    path = tmp_path / "r.pt"
    path.write_bytes(seeds.torch_bytes({"g_ema": sd}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("kind", ["psp", "e4e", "e2style"])
def test_psp_family_seeds_load(tmp_path, kind):
    """The fuzzers' seeds are valid (else every case would only test a refusal)."""
    path = tmp_path / "x.pt"
    path.write_bytes(seeds.psp_family_seeds()[kind])
    assert load_checkpoint(path).format == kind


def test_other_seeds_load(tmp_path):
    for name, blob in (("a.safetensors", seeds.safetensors_seed()), ("b.pt", seeds.rosinality_seed()),
                       ("c.pkl", seeds.nvidia_seed())):
        (tmp_path / name).write_bytes(blob)
        assert load_checkpoint(tmp_path / name).generator is not None


def test_huge_blur_kernel_is_not_printed(tmp_path):
    """The error message listed every value of a wrong blur kernel: 2**31 of them (MemoryError)."""
    sd = seeds.rosinality_state()
    sd["convs.0.conv.blur.kernel"] = torch.zeros(()).expand(2**31)
    path = tmp_path / "r.pt"
    path.write_bytes(seeds.torch_bytes({"g_ema": sd, "latent_avg": seeds.tiny_generator().mapping.w_avg.clone()}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="blur kernel of shape"):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------
# Special files (QA, session 25): opening a FIFO blocks until something writes to it


@pytest.mark.parametrize("suffix, load, error", [
    (".pt", load_checkpoint, CheckpointError),
    (".stylestudio", EditSession.load, ProjectError),
    (".npy", lambda p: load_directions(p, w_dim=seeds.W_DIM), DirectionError),
])
def test_a_named_pipe_is_refused_not_waited_on(tmp_path, suffix, load, error):
    import os

    fifo = tmp_path / f"model{suffix}"
    os.mkfifo(fifo)
    t = time.time()
    with pytest.raises(error, match="named pipe"):
        load(fifo)
    assert time.time() - t < 5
