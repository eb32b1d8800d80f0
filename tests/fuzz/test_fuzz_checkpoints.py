"""Every checkpoint format, damaged: only :class:`CheckpointError` may escape ``load_checkpoint``
(README: "A file that is truncated, corrupt, of another kind, or that asks to run code is refused
with one CheckpointError"), each case within the time limit."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import CheckpointError
from studio.core.formats import load_checkpoint, stylestudio_fmt
from tests.fuzz import seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import (
    json_text,
    mutated_bytes,
    mutated_json,
    safetensors_variants,
    zip_variants,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # zipfile duplicate names, torch's chatter about odd files


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


def _load(path):
    return load_checkpoint(path)


def _all_seeds() -> tuple[bytes, ...]:
    return (seeds.safetensors_seed(), seeds.rosinality_seed(), seeds.nvidia_seed())


# ----------------------------------------------------------------------------
# Structural damage to tensor dicts (then saved in the official container)

ODD_VALUES = [None, 0, 1.5, "x", [1, 2], {"a": 1}, (1,), True]


@st.composite
def odd_tensor(draw, like: torch.Tensor | None):
    how = draw(st.sampled_from(["shape", "shape", "dtype", "value", "empty", "scalar", "nan", "big"]))
    if how == "shape" or like is None:
        shape = draw(st.lists(st.integers(0, 40), min_size=0, max_size=3))  # <= 64k values, stored for real
        return torch.zeros(shape)
    if how == "dtype":
        dt = draw(st.sampled_from([torch.int64, torch.uint8, torch.bool, torch.float16, torch.float64,
                                   torch.complex64, torch.bfloat16, torch.int8]))
        return torch.zeros(like.shape, dtype=dt)
    if how == "value":
        return draw(st.sampled_from(ODD_VALUES))
    if how == "empty":
        return torch.zeros(0)
    if how == "scalar":
        return torch.tensor(3.0)
    if how == "nan":
        return torch.full(like.shape, float("nan"))
    # a zero-stride view claiming a huge shape (costs nothing to store)
    return torch.zeros(()).expand(draw(st.sampled_from([(2**20, 2**12), (2**31,), (1, 2**16, 2**15)])))


@st.composite
def mutated_state(draw, sd: dict):
    sd = dict(sd)
    keys = sorted(sd)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "replace", "replace", "add", "rename"]))
        k = draw(st.sampled_from(keys))
        if op == "drop":
            sd.pop(k, None)
        elif op == "replace":
            sd[k] = draw(odd_tensor(sd.get(k) if isinstance(sd.get(k), torch.Tensor) else None))
        elif op == "add":
            sd[draw(st.sampled_from([k + ".extra", "unknown", "convs.99.conv.weight", "style.0.weight", "",
                                     "noises.noise_99", "encoder.styles.99.x", "decoder.style.9.weight"]))] = torch.zeros(2)
        else:
            v = sd.pop(k, None)
            sd[draw(st.sampled_from([k.upper(), k + "x", "x" + k, k.replace(".", "_"), k.split(".")[-1]]))] = v
    return sd


def _save(path, obj) -> None:
    path.write_bytes(seeds.torch_bytes(obj))


# ----------------------------------------------------------------------------
# StyleStudio single-file safetensors


@fuzz_settings(110)
@given(data=st.data())
def test_stylestudio_safetensors(workdir, data):
    seed = seeds.safetensors_seed()
    how = data.draw(st.sampled_from(["bytes", "header", "header"]), label="how")
    blob = data.draw(mutated_bytes(seed, splice_with=_all_seeds()) if how == "bytes" else safetensors_variants(seed))
    path = workdir / "model.safetensors"
    path.write_bytes(blob)
    check("load_checkpoint(.safetensors)", lambda: _load(path), (CheckpointError,))


# ----------------------------------------------------------------------------
# StyleStudio pack folder (manifest.json + safetensors, sha256-checked)


@fuzz_settings(90)
@given(data=st.data())
def test_stylestudio_pack(workdir, data):
    files = dict(seeds.pack_seed())
    man = json.loads(files["manifest.json"])
    root = workdir / "pack"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    how = data.draw(st.sampled_from(["manifest", "manifest", "text", "weights", "weights-rehashed", "missing"]),
                    label="how")
    if how == "manifest":
        files["manifest.json"] = json.dumps(data.draw(mutated_json(man)), allow_nan=True).encode()
    elif how == "text":
        files["manifest.json"] = data.draw(json_text(man)).encode("utf-8", "surrogateescape")
    elif how.startswith("weights"):
        blob = data.draw(st.one_of(mutated_bytes(files["generator.safetensors"]),
                                   safetensors_variants(files["generator.safetensors"])))
        files["generator.safetensors"] = blob
        if how == "weights-rehashed":  # the attacker also fixes the hash: the parser must cope
            man["networks"]["generator"]["sha256"] = hashlib.sha256(blob).hexdigest()
            files["manifest.json"] = json.dumps(man).encode()
    else:
        del files[data.draw(st.sampled_from(sorted(files)))]
    for name, blob in files.items():
        (root / name).write_bytes(blob)
    target = data.draw(st.sampled_from([root, root / "manifest.json"]), label="target")
    check("load_checkpoint(pack folder)", lambda: _load(target), (CheckpointError,))
    check("stylestudio_fmt.read_manifest", lambda: stylestudio_fmt.read_manifest(root), (CheckpointError,))


# ----------------------------------------------------------------------------
# rosinality .pt (torch zip)


@fuzz_settings(100)
@given(data=st.data())
def test_rosinality_pt(workdir, data):
    import argparse

    seed = seeds.rosinality_seed()
    how = data.draw(st.sampled_from(["bytes", "zip", "zip", "state", "state", "top"]), label="how")
    path = workdir / "rosinality.pt"
    if how == "bytes":
        path.write_bytes(data.draw(mutated_bytes(seed, splice_with=_all_seeds())))
    elif how == "zip":
        path.write_bytes(data.draw(zip_variants(seed, {r"data\.pkl$": lambda b: mutated_bytes(b, max_ops=2)})))
    elif how == "state":
        _save(path, {"g_ema": data.draw(mutated_state(seeds.rosinality_state())),
                     "latent_avg": seeds.tiny_generator().mapping.w_avg.clone()})
    else:
        obj = {"g_ema": seeds.rosinality_state(), "latent_avg": seeds.tiny_generator().mapping.w_avg.clone(),
               "args": argparse.Namespace(lr_mlp=0.01)}
        key = data.draw(st.sampled_from(["g_ema", "latent_avg", "args"]))
        obj[key] = data.draw(st.one_of(st.sampled_from(ODD_VALUES), odd_tensor(torch.zeros(seeds.W_DIM)),
                                       st.just(argparse.Namespace(lr_mlp=data.draw(st.sampled_from(
                                           ["x", None, -1.0, float("inf"), [1]]))))))
        if data.draw(st.booleans()):
            obj["g"] = obj.pop("g_ema")
        _save(path, obj)
    check("load_checkpoint(rosinality .pt)", lambda: _load(path), (CheckpointError,))


# ----------------------------------------------------------------------------
# pSp / e4e / E2Style .pt (complete official layouts, zero-stride tensors)


@pytest.mark.parametrize("kind", ["psp", "e4e", "e2style"])
@fuzz_settings(7)  # a complete IR-SE50 encoder takes ~1 s to check and build
@given(data=st.data())
def test_psp_family_pt(workdir, kind, data):
    seed = seeds.psp_family_seeds()[kind]
    how = data.draw(st.sampled_from(["opts", "opts", "state", "latent_avg", "zip", "bytes"]), label="how")
    path = workdir / f"{kind}.pt"
    if how in ("bytes", "zip"):
        path.write_bytes(data.draw(mutated_bytes(seed) if how == "bytes" else
                                   zip_variants(seed, {r"data\.pkl$": lambda b: mutated_bytes(b, max_ops=2)})))
    else:
        obj = torch.load(__import__("io").BytesIO(seed), weights_only=True)
        if how == "opts":
            obj["opts"] = data.draw(mutated_json(obj["opts"]))
        elif how == "state":
            obj["state_dict"] = data.draw(mutated_state(obj["state_dict"]))
        else:
            obj["latent_avg"] = data.draw(odd_tensor(obj["latent_avg"]))
        _save(path, obj)
    check(f"load_checkpoint({kind} .pt)", lambda: _load(path), (CheckpointError,))


# ----------------------------------------------------------------------------
# NVIDIA network pickle (through the allow-list unpickler)


@fuzz_settings(95)
@given(data=st.data())
def test_nvidia_pkl(workdir, data):
    seed = seeds.nvidia_seed()
    how = data.draw(st.sampled_from(["bytes", "bytes", "kwargs", "params", "record"]), label="how")
    path = workdir / "network-snapshot.pkl"
    if how == "bytes":
        path.write_bytes(data.draw(mutated_bytes(seed, splice_with=_all_seeds())))
    else:
        rec = seeds.nvidia_record(seeds.tiny_generator())
        meta = dict(rec.meta, state=dict(rec.meta["state"]))
        if how == "kwargs":
            meta["state"]["_init_kwargs"] = data.draw(mutated_json(meta["state"]["_init_kwargs"]))
        elif how == "params":
            meta["state"]["_parameters"] = data.draw(mutated_state(meta["state"]["_parameters"]))
        else:
            key = data.draw(st.sampled_from(["type", "class_name", "state", "version"]))
            meta[key] = data.draw(st.sampled_from([None, "class", "Discriminator", 7, {}, [], {"_modules": {"x": 1}},
                                                   {"_parameters": [1]}, "training.networks.Generator"]))
        rec = seeds._Persistent(meta)
        path.write_bytes(seeds.pickle_with_persistence({"G_ema": rec, "D": data.draw(st.sampled_from([None, rec, 1]))}))
    check("load_checkpoint(NVIDIA .pkl)", lambda: _load(path), (CheckpointError,))
