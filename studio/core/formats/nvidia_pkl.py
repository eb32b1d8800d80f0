"""NVIDIA stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``), read safely.

The official files pickle each network through ``torch_utils.persistence``, embedding the source
code of the network module, which a normal ``pickle.load`` would execute. We use an allow-list
unpickler instead: only the handful of globals such files need are resolved (each to a harmless
stand-in), ``module_src`` is ignored, and our own modules are rebuilt from ``class_name``,
``_init_kwargs`` and the tensors. Any other global (``os.system``, ``builtins.eval``, ...) is refused
before anything runs. ``G_ema`` (not ``G``) is the generator.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.errors import CheckpointError
from studio.core.formats.base import NVIDIA_PKL, ModelBundle, build_network, check_network_size, stylegan2_values
from studio.core.nets import ops
from studio.core.nets.stylegan2 import Discriminator, Generator

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# The allow-list unpickler


class PersistentStub:
    """What ``torch_utils.persistence`` pickled: a class name plus the module ``__dict__``."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise pickle.UnpicklingError("unexpected persistent-object record")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state = meta.get("state") or {}  # module_src is deliberately dropped

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name})"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _reconstruct_persistent_obj(meta):
    return PersistentStub(meta)


def _load_storage_from_bytes(b: bytes):
    # torch's own ``_load_from_bytes`` calls torch.load without weights_only; never use it.
    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "pickle protocol" chatter from torch
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype, data=None):
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object-dtype numpy scalars are not allowed")
    if data is None:
        return dtype.type(0)
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    return torch.nn.Parameter(data, requires_grad)


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return torch.nn.Parameter(data, requires_grad)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}
for _name in ("float32", "float16", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _name)] = getattr(torch, _name)
# numpy >= 1.25 pickles dtypes as numpy.dtypes.Float64DType etc.
for _name in dir(getattr(np, "dtypes", object())):
    if _name.endswith("DType") and _name not in ("ObjectDType", "VoidDType"):
        _ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in the allow-list; everything else raises UnpicklingError."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in network pickles")


def restricted_load(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


# ----------------------------------------------------------------------------
# Stub tree -> flat state dict


def _flatten(stub: PersistentStub, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    st = stub.state
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = t.detach()
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentStub):
            raise ValueError(f"sub-module {prefix}{name} is not a persistent network module")
        out.update(_flatten(child, f"{prefix}{name}."))
    return out


# persistence stores the bare class name; the module is only identifiable from the (ignored) source.
_G_CLASSES = {"Generator", "training.networks.Generator", "training.networks_stylegan2.Generator"}
_D_CLASSES = {"Discriminator", "training.networks.Discriminator", "training.networks_stylegan2.Discriminator"}
_SG3_HINTS = {"magnitude_ema_beta", "num_critical", "first_cutoff", "first_stopband", "margin_size"}


def _kw(stub: PersistentStub) -> dict:
    kw = stub.state.get("_init_kwargs")
    if not isinstance(kw, dict):
        raise ValueError(f"{stub.class_name} has no _init_kwargs")
    return dict(kw)


def _pop_known(path, where: str, d: dict, allowed: dict[str, Any]) -> dict:
    """Take the known keys (value == allowed[k] if allowed[k] is not None); unknown keys are errors."""
    d = dict(d or {})
    out = {}
    for k, v in d.items():
        if k not in allowed:
            raise CheckpointError(path, f"{where}: unsupported option {k}={v!r} (StyleStudio reads "
                                        "StyleGAN2-ADA networks with the default architecture)")
        want = allowed[k]
        if want is not None and not callable(want) and v != want:
            raise CheckpointError(path, f"{where}: unsupported {k}={v!r} (only {want!r} is supported)")
        out[k] = v
    return out


def generator_from_nvidia(path, stub: PersistentStub) -> Generator:
    if stub.class_name not in _G_CLASSES:
        raise CheckpointError(path, f"G_ema is a {stub.class_name}, expected a StyleGAN2 Generator")
    kw = _kw(stub)
    if _SG3_HINTS & set(kw.get("synthesis_kwargs") or {}):
        raise CheckpointError(path, "this is a StyleGAN3 network; StyleStudio reads StyleGAN2(-ADA) networks")
    kw = _pop_known(path, "G", kw, {"z_dim": None, "c_dim": 0, "w_dim": None, "img_resolution": None,
                                    "img_channels": None, "mapping_kwargs": None, "synthesis_kwargs": None})
    m = _pop_known(path, "G.mapping_kwargs", kw.get("mapping_kwargs"), {
        "num_layers": None, "lr_multiplier": None, "w_avg_beta": None, "activation": "lrelu",
        "embed_features": None, "layer_features": None})
    if m.get("embed_features") is not None or m.get("layer_features") is not None:
        raise CheckpointError(path, "G.mapping_kwargs: custom embed/layer features are not supported")
    s = _pop_known(path, "G.synthesis_kwargs", kw.get("synthesis_kwargs"), {
        "channel_base": None, "channel_max": None, "num_fp16_res": None, "conv_clamp": None,
        "architecture": "skip", "resample_filter": None, "use_noise": True, "fused_modconv_default": None,
        "kernel_size": 3, "use_fp16": None, "fp16_channels_last": None, "channels_last": None})
    taps = tuple(int(v) for v in s.get("resample_filter", (1, 3, 3, 1)))
    if taps != (1, 3, 3, 1):
        raise CheckpointError(path, f"resample_filter {taps} is not supported (expected [1, 3, 3, 1])")
    args = dict(
        z_dim=int(kw["z_dim"]), w_dim=int(kw["w_dim"]), img_resolution=int(kw["img_resolution"]),
        img_channels=int(kw["img_channels"]), mapping_layers=int(m.get("num_layers", 8)),
        mapping_lr_mul=float(m.get("lr_multiplier", 0.01)), w_avg_beta=float(m.get("w_avg_beta", 0.995)),
        channel_base=int(s.get("channel_base", 32768)), channel_max=int(s.get("channel_max", 512)),
        conv_clamp=None if s.get("conv_clamp") is None else float(s["conv_clamp"]),
    )
    check_network_size(path, "G_ema", stylegan2_values("Generator", args), _flatten(stub).values())
    return build_network(path, "G_ema", lambda: Generator(**args))


def discriminator_from_nvidia(path, stub: PersistentStub) -> Discriminator:
    if stub.class_name not in _D_CLASSES:
        raise CheckpointError(path, f"D is a {stub.class_name}, expected a StyleGAN2 Discriminator")
    kw = _pop_known(path, "D", _kw(stub), {
        "c_dim": 0, "img_resolution": None, "img_channels": None, "architecture": "resnet",
        "channel_base": None, "channel_max": None, "num_fp16_res": None, "conv_clamp": None,
        "cmap_dim": None, "block_kwargs": None, "mapping_kwargs": None, "epilogue_kwargs": None})
    _pop_known(path, "D.block_kwargs", kw.get("block_kwargs"), {"activation": "lrelu", "freeze_layers": None,
                                                               "fp16_channels_last": None})
    e = _pop_known(path, "D.epilogue_kwargs", kw.get("epilogue_kwargs"), {
        "mbstd_group_size": None, "mbstd_num_channels": None, "activation": "lrelu"})
    args = dict(
        img_resolution=int(kw["img_resolution"]), img_channels=int(kw["img_channels"]),
        channel_base=int(kw.get("channel_base", 32768)), channel_max=int(kw.get("channel_max", 512)),
        conv_clamp=None if kw.get("conv_clamp") is None else float(kw["conv_clamp"]),
        mbstd_group_size=e.get("mbstd_group_size", 4), mbstd_num_channels=int(e.get("mbstd_num_channels", 1)),
    )
    check_network_size(path, "D", stylegan2_values("Discriminator", args), _flatten(stub).values())
    return build_network(path, "D", lambda: Discriminator(**args))


def load_nvidia_state(path, net: torch.nn.Module, src: dict[str, torch.Tensor], what: str) -> None:
    """Copy NVIDIA-named tensors into ``net`` (our names equal NVIDIA's); FIR filters are checked."""
    ours = net.state_dict()
    ref_filter = ops.setup_filter((1, 3, 3, 1))
    new = {}
    for key, t in src.items():
        if key.endswith("resample_filter"):
            if t.shape != ref_filter.shape or not torch.allclose(t.float(), ref_filter, atol=1e-7):
                shown = t.tolist() if t.numel() <= 16 else f"of shape {list(t.shape)}"  # never list 2**31 values
                raise CheckpointError(path, f"{what}.{key}: unexpected FIR filter {shown}")
            continue
        if key not in ours:
            raise CheckpointError(path, f"{what}: unexpected tensor {key} {list(t.shape)}")
        if tuple(t.shape) != tuple(ours[key].shape):
            raise CheckpointError(path, f"{what}.{key}: shape {list(t.shape)}, expected {list(ours[key].shape)}")
        new[key] = t.to(ours[key].dtype)
    missing = sorted(set(ours) - set(new))
    if missing:
        raise CheckpointError(path, f"{what}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    net.load_state_dict(new, strict=True)


# ----------------------------------------------------------------------------

#: What odd values in a pickled record raise on their way to our constructors.
_BAD_VALUE = (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError, RuntimeError)


def load(path: str | Path, *, detect_only: bool = False) -> ModelBundle:
    """Read an NVIDIA network pickle into our Generator (from G_ema) and Discriminator."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file: {e.strerror or e}") from None
    try:
        obj = restricted_load(data)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if msg.startswith("refused global"):
            raise CheckpointError(
                path, f"unsafe network pickle: it {msg} that a StyleGAN2 snapshot never needs; "
                      "nothing from it was run. Only load files from sources you trust.") from None
        raise CheckpointError(path, f"not a readable network pickle (truncated or corrupt?): {msg}") from None
    except Exception as e:  # truncated data raises EOFError, ValueError, struct errors, ...
        raise CheckpointError(path, f"not a readable network pickle (truncated or corrupt?): "
                                    f"{type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(obj, dict) or "G_ema" not in obj:
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(path, f"expected an NVIDIA snapshot dict with 'G_ema', found {keys}")
    g_stub = obj["G_ema"]
    if not isinstance(g_stub, PersistentStub):
        raise CheckpointError(path, "G_ema is not a persistent network module")
    bundle = ModelBundle(format=NVIDIA_PKL, path=str(path))
    if detect_only:
        return bundle
    try:
        G = generator_from_nvidia(path, g_stub)
        load_nvidia_state(path, G, _flatten(g_stub), "G_ema")
    except _BAD_VALUE as e:  # odd types/values in _init_kwargs or the state (the file's fault)
        raise CheckpointError(path, f"G_ema: {type(e).__name__}: {str(e)[:200]}") from None
    G.eval().requires_grad_(False)
    bundle.generator = G
    bundle.w_avg = G.mapping.w_avg.clone()
    d_stub = obj.get("D")
    if isinstance(d_stub, PersistentStub):
        try:
            D = discriminator_from_nvidia(path, d_stub)
            load_nvidia_state(path, D, _flatten(d_stub), "D")
            bundle.discriminator = D.eval().requires_grad_(False)
        except (CheckpointError, *_BAD_VALUE) as e:
            bundle.notes.append(f"discriminator not loaded ({e}); the generator is unaffected")
    tsk = obj.get("training_set_kwargs")
    bundle.meta = {"source": "NVIDIA stylegan2-ada-pytorch pickle",
                   "training_set_kwargs": _jsonable(tsk) if isinstance(tsk, dict) else None,
                   "G_init_kwargs": _jsonable(_kw(g_stub))}
    return bundle


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)
