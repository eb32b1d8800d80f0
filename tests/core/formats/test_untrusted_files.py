"""Model files are untrusted: crafted pickles are refused with no side effect, and truncated,
random or wrong files give one CheckpointError (never a crash or a hang)."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.formats import load_checkpoint
from studio.core.formats import nvidia_pkl

# ----------------------------------------------------------------------------
# Crafted pickles. Each payload would create MARKER if it ever ran.


def _payloads(marker: Path) -> dict[str, bytes]:
    m = str(marker)
    cmd = f"touch {m}"
    code = f"open({m!r}, 'w').write('pwned')"

    class OsSystem:
        def __reduce__(self):
            return (os.system, (cmd,))

    class Eval:
        def __reduce__(self):
            return (eval, (code,))

    class Exec:
        def __reduce__(self):
            return (exec, (code,))

    class Popen:
        def __reduce__(self):
            return (subprocess.Popen, (["touch", m],))

    def persistent(payload):
        """A G_ema record shaped like NVIDIA's, with the payload hidden deep inside its state."""
        return _Persistent({"type": "class", "version": 6, "module_src": "x", "class_name": "Generator",
                            "state": {"_init_kwargs": {"z_dim": 4}, "_modules": {"deep": [{"x": (1, payload)}]}}})

    out = {
        "os.system": pickle.dumps({"G_ema": OsSystem()}),
        "builtins.eval": pickle.dumps({"G_ema": Eval()}),
        "builtins.exec": pickle.dumps({"G_ema": Exec()}),
        "subprocess.Popen": pickle.dumps({"G_ema": Popen()}),
        "unknown-class": pickle.dumps({"G_ema": _Unknown()}),
        "nested-global": pickle.dumps({"training_set_kwargs": {}, "G_ema": persistent(OsSystem())}),
        "module_src-exec": _module_src_pickle(code),
        "storage-bytes": _storage_payload(OsSystem()),
    }
    return out


class _Unknown:
    """A class a network pickle never references (its module is this test file)."""

    def __reduce__(self):
        return (_Unknown, ())


class _Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_fake_reconstruct, (self.meta,))


def _fake_reconstruct(meta):  # pickled by reference under NVIDIA's name (see _rename)
    return meta


_fake_reconstruct.__module__ = "torch_utils.persistence"
_fake_reconstruct.__qualname__ = "_reconstruct_persistent_obj"
_fake_reconstruct.__name__ = "_reconstruct_persistent_obj"


def _module_src_pickle(code: str) -> bytes:
    """A genuine-looking record whose embedded source would run code when exec'd (official loader)."""
    meta = {"type": "class", "version": 6, "module_src": code + "\nclass Generator: pass\n",
            "class_name": "Generator", "state": {"_init_kwargs": {"bogus": 1}}}
    return pickle.dumps({"G_ema": _Persistent(meta)})


def _storage_payload(evil) -> bytes:
    """torch.storage._load_from_bytes with a malicious inner pickle (torch's own would unpickle it)."""
    inner = pickle.dumps(evil)

    class Storage:
        def __reduce__(self):
            import torch.storage

            return (torch.storage._load_from_bytes, (inner,))

    return pickle.dumps({"G_ema": Storage()})


def _with_persistence_module(fn):
    sys.modules.setdefault("torch_utils", type(sys)("torch_utils"))
    mod = type(sys)("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _fake_reconstruct
    sys.modules["torch_utils.persistence"] = mod
    try:
        return fn()
    finally:
        sys.modules.pop("torch_utils.persistence", None)


@pytest.fixture()
def payloads(tmp_path):
    marker = tmp_path / "PWNED"
    data = _with_persistence_module(lambda: _payloads(marker))
    return marker, data


def test_at_least_six_payloads_reference_forbidden_globals(payloads):
    _, data = payloads
    assert len(data) >= 6
    for name, blob in data.items():
        ops = {op.name for op, _, _ in pickletools.genops(blob)}
        assert ops & {"GLOBAL", "STACK_GLOBAL"}, name


def test_payloads_are_live(payloads, tmp_path):
    """Sanity check that the test has teeth: a plain unpickler runs the payload."""
    marker, data = payloads
    pickle.loads(data["os.system"])
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("loader", ["nvidia", "auto"])
def test_malicious_pickles_are_refused_without_side_effects(payloads, tmp_path, loader):
    marker, data = payloads
    for name, blob in data.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as ei:
            if loader == "nvidia":
                nvidia_pkl.load(path)
            else:
                load_checkpoint(path)
        assert str(path) in str(ei.value), name
        assert not marker.exists(), f"payload {name} ran"


def test_refusal_names_the_global(payloads, tmp_path):
    _, data = payloads
    path = tmp_path / "evil.pkl"
    path.write_bytes(data["os.system"])
    with pytest.raises(CheckpointError, match=r"refused global (posix|os|nt)\.system"):
        nvidia_pkl.load(path)


def test_malicious_torch_zip_is_refused(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.pt"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="could run code|not loaded"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_pickle_that_is_merely_corrupt_is_not_called_unsafe(tmp_path):
    """Bytes after a pickle header that the weights-only unpickler cannot parse are a damaged file, not
    a file that 'could run code'; the message is torch's one relevant line, not its paragraph."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04" + bytes(range(149, 255)) * 4)
    with pytest.raises(CheckpointError, match=r"truncated or corrupt\?\): Unsupported operand") as e:
        load_checkpoint(path)
    assert "could run code" not in str(e.value) and "PyTorch 2.6" not in str(e.value)


# ----------------------------------------------------------------------------
# Truncated, random and wrong files


def _nvidia_fixture() -> Path | None:
    from tests.conftest import FIXTURES

    p = FIXTURES / "nvidia_stylegan2_ada_small" / "network-snapshot-000000.pkl"
    return p if p.exists() else None


def _good_files(tmp_path) -> dict[str, bytes]:
    from studio.core.formats import stylestudio_fmt
    from studio.core.formats.base import ModelBundle
    from studio.core.nets.stylegan2 import Generator

    G = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=32)
    out = {}
    st = tmp_path / "tiny.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), st)
    out["stylestudio"] = st.read_bytes()
    buf = io.BytesIO()
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, buf)
    out["torch-zip"] = buf.getvalue()
    nv = _nvidia_fixture()
    if nv is not None:
        out["nvidia"] = nv.read_bytes()
    return out


@pytest.mark.parametrize("fraction", [0.0001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files(tmp_path, fraction):
    for name, blob in _good_files(tmp_path).items():
        path = tmp_path / f"trunc_{name}"
        path.write_bytes(blob[: max(1, int(len(blob) * fraction))])
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(path)
        assert str(path) in str(ei.value)
        if name == "stylestudio" and fraction > 0.01:  # says what to do, not only what is wrong
            assert "again" in str(ei.value), str(ei.value)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    import random

    rng = random.Random(seed)
    for head in (b"", b"\x80\x04", b"PK\x03\x04", b"{", b"\x10\x00\x00\x00\x00\x00\x00\x00{"):
        path = tmp_path / f"rand{seed}"
        path.write_bytes(head + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4096))))
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_wrong_formats(tmp_path):
    cases = {
        "empty.pt": b"",
        "image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        "text.pkl": b"hello world\n",
        "list.pt": None,
        "json.json": b'{"format": "something-else", "networks": {}}',
    }
    for name, blob in cases.items():
        path = tmp_path / name
        if blob is None:
            torch.save([torch.zeros(3)], path)
        else:
            path.write_bytes(blob)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read|missing|No such"):
        load_checkpoint(tmp_path / "does-not-exist.pt")
    pure_pickle = tmp_path / "dict.pkl"
    pure_pickle.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(pure_pickle)
