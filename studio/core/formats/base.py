"""Shared pieces of the checkpoint readers: the bundle type, safe torch loading, format detection."""

from __future__ import annotations

import io
import logging
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.core.errors import CheckpointError
from studio.core.fileio import not_a_regular_file

log = logging.getLogger(__name__)

# Format names (what `stylestudio info` prints).
NVIDIA_PKL = "nvidia-pkl"
ROSINALITY = "rosinality"
PSP = "psp"
E4E = "e4e"
E2STYLE = "e2style"
STYLESTUDIO = "stylestudio"


@dataclass
class ModelBundle:
    """What a checkpoint holds, as our own networks.

    ``w_avg`` is the generator's average latent [w_dim]. Encoder checkpoints also carry
    ``latent_avg`` [num_ws, w_dim] (added row by row to the encoder's codes) and an ``encoder``.
    """

    format: str
    path: str
    generator: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None
    w_avg: torch.Tensor | None = None
    encoder: torch.nn.Module | None = None
    latent_avg: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # provenance, options, licence, ...
    notes: list[str] = field(default_factory=list)  # things the user should know ("latent_avg computed")

    @property
    def resolution(self) -> int | None:
        g = self.generator
        return None if g is None else int(g.config.img_resolution)

    @property
    def num_ws(self) -> int | None:
        g = self.generator
        return None if g is None else int(g.num_ws)


#: Largest network a model file may ask us to build, in values (parameters + buffers). The official
#: 1024 px StyleGAN2 generator has 30M, its discriminator 29M; a file asking for more is refused
#: before anything is allocated (a few changed numbers must not cost gigabytes or minutes).
MAX_NETWORK_VALUES = 250_000_000


def stylegan2_values(kind: str, cfg: dict) -> int:
    """Upper bound on the values of our StyleGAN2 ``Generator`` / ``Discriminator`` built from
    ``cfg`` (constructor kwargs), computed without building it. Raises TypeError / ValueError for
    values of the wrong type."""
    import math

    def num(key, default):
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key}={v!r} is not a number")
        return int(v)

    res = num("img_resolution", 256)
    if res < 4 or res > 1 << 16 or res & (res - 1):
        raise ValueError(f"img_resolution must be a power of two from 4 to 65536, got {res}")
    base, cmax, img_c = num("channel_base", 32768), num("channel_max", 512), num("img_channels", 3)
    if min(base, cmax, img_c) < 1:
        raise ValueError("channel_base, channel_max and img_channels must be positive")
    ch = {r: min(base // r, cmax) for r in (2**i for i in range(2, int(math.log2(res)) + 1))}
    total = 0
    if kind == "Generator":
        z, w, layers = num("z_dim", 512), num("w_dim", 512), num("mapping_layers", 8)
        if min(z, w, layers) < 1 or layers > 1024:
            raise ValueError("z_dim, w_dim and mapping_layers must be positive")
        total += (max(z, w) + 1) * w * layers + w
        for r, c in ch.items():
            cin = ch.get(r // 2, c)
            total += 9 * (cin * c + c * c) + (w + 2) * (cin + 2 * c + img_c) + 2 * r * r + 16 * c + 4 * img_c
    else:
        for r, c in ch.items():
            cin = ch.get(r // 2, c)
            total += 10 * c * cin + 9 * c * c + (img_c + 2) * c + 4 * c + 1
        c4 = ch[4]
        total += 25 * c4 * (c4 + 1) + 2 * c4 + 2
    return total


def check_network_size(path, what: str, values: int, tensors=None) -> None:
    """Refuse a network of more than MAX_NETWORK_VALUES values, or (given the file's ``tensors``)
    one the file holds less than half the data for: a few shapes (or settings) that describe a huge
    network the other tensors cannot fill are damage, found before anything is allocated."""
    if values > MAX_NETWORK_VALUES:
        raise CheckpointError(path, f"{what}: the file describes a network of {values:,} values, more than "
                                    f"StyleStudio loads ({MAX_NETWORK_VALUES:,}); the file is damaged or not a "
                                    "StyleGAN2 model")
    if tensors is not None:
        # Values actually stored: a zero-stride (expanded) tensor claims a big shape on one stored value.
        have = sum(min(t.numel(), t.untyped_storage().nbytes() // max(t.element_size(), 1))
                   for t in tensors if isinstance(t, torch.Tensor))
        if have < values // 2:
            raise CheckpointError(path, f"{what}: the tensors hold {have:,} values, but their shapes describe a "
                                        f"network of about {values:,}; the file is damaged")


def build_network(path, what: str, factory):
    """``factory()`` (a network constructor fed with a file's settings); anything it raises, an odd
    value's TypeError, OverflowError, AssertionError or an allocation failure, is the file's fault
    and becomes a :class:`CheckpointError`."""
    try:
        return factory()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - constructors validate with many types (and MemoryError)
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CheckpointError(path, f"{what}: cannot build the network from the file's settings "
                                    f"({type(e).__name__}: {detail})") from None


def _torch_detail(text: str) -> str:
    """The line of torch's weights-only error that says what went wrong (its message is mostly a
    paragraph about the PyTorch 2.6 default change), else its first line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:
        if "unsupported global" in ln.lower() or ln.startswith(("Unsupported operand", "Trying to load")):
            return ln
    for i, ln in enumerate(lines):
        if ln.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else ""


def _load_error(path, exc: BaseException) -> CheckpointError:
    msg = _torch_detail(str(exc)) or type(exc).__name__
    if isinstance(exc, pickle.UnpicklingError) and "global" in msg.lower():
        return CheckpointError(
            path,
            "the file contains Python objects that a plain weights file never needs, so it was not "
            f"loaded (it could run code). Re-save only the tensors, or convert it. Detail: {msg[:300]}",
        )
    return CheckpointError(path, f"not a readable PyTorch checkpoint (truncated or corrupt?): {msg[:300]}")


def _extra_safe_globals() -> list:
    """Plain-data types that real checkpoints carry besides tensors (rosinality's argparse
    ``Namespace``, numpy scalars in pSp/e4e training state). None of them can run code."""
    import argparse

    import numpy as np

    out: list = [argparse.Namespace, np.dtype]
    try:
        from numpy._core.multiarray import scalar  # numpy 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    if scalar is not None:
        out += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    for name in dir(getattr(np, "dtypes", object())):
        if name.endswith("DType") and name not in ("ObjectDType", "VoidDType"):
            out.append(getattr(np.dtypes, name))
    return out


_EXTRA_SAFE_GLOBALS = _extra_safe_globals()


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU; every failure becomes one :class:`CheckpointError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file: {e.strerror or e}") from None
    if not data:
        raise CheckpointError(path, "the file is empty")
    try:
        with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4" chatter
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (RuntimeError, UnpicklingError, EOFError, ...)
        raise _load_error(path, e) from None


def _sniff(path: Path) -> str:
    """Cheap content-based guess: 'safetensors', 'manifest', 'torch-zip', 'pickle' or 'unknown'."""
    special = not_a_regular_file(path)
    if special:
        raise CheckpointError(path, special)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(path, "the file is empty")
    if head.lstrip()[:1] == b"{":
        return "manifest"
    if len(head) >= 8:
        n = int.from_bytes(head[:8], "little")
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":  # pickle protocol 2+ (NVIDIA .pkl, legacy torch.save)
        return "pickle"
    return "unknown"


def detect_format(path: str | Path) -> str:
    """The checkpoint format, from the file's content (never its name)."""
    return load_checkpoint(path, detect_only=True).format


def load_checkpoint(path: str | Path, *, detect_only: bool = False) -> ModelBundle:
    """Read any supported model file into a :class:`ModelBundle`.

    Raises :class:`CheckpointError` for anything else (wrong format, truncated, unsafe pickle).
    """
    path = Path(path)
    if path.is_dir():
        from studio.core.formats import stylestudio_fmt

        return stylestudio_fmt.load(path, detect_only=detect_only)
    kind = _sniff(path)
    if kind in ("manifest", "safetensors"):
        from studio.core.formats import stylestudio_fmt

        return stylestudio_fmt.load(path, detect_only=detect_only)
    if kind == "pickle" and _looks_like_nvidia_pickle(path):
        from studio.core.formats import nvidia_pkl

        return nvidia_pkl.load(path, detect_only=detect_only)
    if kind in ("torch-zip", "pickle"):
        obj = safe_torch_load(path)
        return _from_torch_object(path, obj, detect_only=detect_only)
    raise CheckpointError(
        path,
        "unrecognised model file. Supported: NVIDIA StyleGAN2(-ADA) .pkl, rosinality .pt, "
        "pSp / e4e / E2Style .pt, and StyleStudio packs (manifest.json + .safetensors).",
    )


def _looks_like_nvidia_pickle(path: Path) -> bool:
    """A plain pickle (not torch's legacy format) that mentions NVIDIA's persistence module."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    if zipfile.is_zipfile(path):
        return False
    return b"torch_utils.persistence" in head or b"_reconstruct_persistent_obj" in head or b"G_ema" in head


def _from_torch_object(path: Path, obj: Any, *, detect_only: bool) -> ModelBundle:
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(obj).__name__}")
    keys = set(obj)
    if "state_dict" in keys and isinstance(obj.get("opts"), dict | None):
        from studio.core.formats import psp_pt

        return psp_pt.from_checkpoint(path, obj, detect_only=detect_only)
    if "g_ema" in keys or "g" in keys:
        from studio.core.formats import rosinality_pt

        return rosinality_pt.from_checkpoint(path, obj, detect_only=detect_only)
    raise CheckpointError(
        path,
        "a PyTorch file, but not a known StyleGAN2 checkpoint: expected 'g_ema' (rosinality) or "
        f"'state_dict' + 'opts' (pSp / e4e / E2Style); found keys {sorted(map(str, keys))[:8]}",
    )
