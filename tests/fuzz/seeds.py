"""Small *valid* files of every kind a loader reads; the fuzzers mutate them.

Each builder returns bytes (or a dict of file name -> bytes for folders) and is cached: seeds are
built once per session. Networks are tiny (16 px, w_dim 16) so a successful load costs milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import sys
import zipfile

import numpy as np
import torch

W_DIM = 16
RES = 16
NUM_WS = 6  # 2 * log2(16) - 2


@functools.cache
def tiny_generator():
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=W_DIM, w_dim=W_DIM, img_resolution=RES, mapping_layers=2, channel_base=256,
                  channel_max=16).eval()
    G.mapping.w_avg.normal_()
    return G


# ----------------------------------------------------------------------------
# Images


@functools.cache
def image_seeds() -> dict[str, bytes]:
    """A 24x20 photo-like RGB image in every format the app opens (plus RGBA PNG, 16-bit PNG,
    palette GIF with transparency, EXIF-rotated JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    out = {}
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 80}), ("BMP", {}), ("GIF", {}), ("TIFF", {}),
                    ("WEBP", {"quality": 80}), ("PPM", {})):
        b = io.BytesIO()
        im.save(b, format=fmt, **kw)
        out[fmt.lower()] = b.getvalue()
    b = io.BytesIO()
    im.convert("RGBA").save(b, format="PNG")
    out["png-rgba"] = b.getvalue()
    b = io.BytesIO()
    Image.fromarray((rng.random((20, 24)) * 65535).astype(np.uint16)).save(b, format="PNG")
    out["png-16bit"] = b.getvalue()
    b = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(b, format="JPEG", exif=exif.tobytes())
    out["jpeg-exif"] = b.getvalue()
    b = io.BytesIO()
    im.save(b, format="GIF", save_all=True, append_images=[im.rotate(90)], transparency=0)
    out["gif-anim"] = b.getvalue()
    return out


# ----------------------------------------------------------------------------
# StyleStudio format


def _bundle():
    from studio.core.formats.base import ModelBundle

    return ModelBundle(format="stylestudio", path="", generator=tiny_generator(), meta={"licence": "test"})


@functools.cache
def safetensors_seed() -> bytes:
    import tempfile
    from pathlib import Path

    from studio.core.formats import stylestudio_fmt

    with tempfile.TemporaryDirectory() as d:
        p = stylestudio_fmt.save(_bundle(), Path(d) / "tiny.safetensors")
        return p.read_bytes()


@functools.cache
def pack_seed() -> dict[str, bytes]:
    """A model pack folder: manifest.json, generator.safetensors and two pack directions."""
    import tempfile
    from pathlib import Path

    from studio.core import directions as dirs
    from studio.core.formats import stylestudio_fmt

    with tempfile.TemporaryDirectory() as d:
        root = stylestudio_fmt.save(_bundle(), Path(d) / "pack")
        rng = np.random.default_rng(1)
        a = dirs.Direction("age", rng.standard_normal(W_DIM), layers=(0, 4))
        b = dirs.Direction("pc0", rng.standard_normal(W_DIM))
        dirs.save_interfacegan_npy(a, root / "age.npy")
        dirs.save_ganspace_npz([a, b], root / "comps.npz")
        man = json.loads((root / "manifest.json").read_text())
        sha = lambda n: hashlib.sha256((root / n).read_bytes()).hexdigest()
        man["directions"] = {
            "age": {"file": "age.npy", "name": "Age", "layers": [0, 4], "range": [-3, 3], "sha256": sha("age.npy")},
            "pc0": {"file": "comps.npz", "index": 1, "method": "ganspace", "sha256": sha("comps.npz")},
        }
        (root / "manifest.json").write_text(json.dumps(man, indent=1))
        return {p.name: p.read_bytes() for p in root.iterdir()}


# ----------------------------------------------------------------------------
# rosinality and pSp / e4e / E2Style (torch.save zip files)


def rosinality_state() -> dict[str, torch.Tensor]:
    """The tiny generator under rosinality's names (the loader accepts our shapes for them)."""
    from studio.core.formats.rosinality_pt import rosinality_name_table
    from studio.core.nets import ops

    G = tiny_generator()
    ours = G.state_dict()
    num_convs = 2 * (int(np.log2(RES)) - 2)
    table = rosinality_name_table(num_convs, G.config.mapping_layers)
    sd = {k: ours[dst].clone() for k, (dst, _) in table.items()}
    kernel = ops.setup_filter((1, 3, 3, 1)) * 4
    sd["convs.0.conv.blur.kernel"] = kernel.clone()
    sd["to_rgbs.0.upsample.kernel"] = kernel.clone()
    return sd


def torch_bytes(obj) -> bytes:
    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


@functools.cache
def rosinality_seed() -> bytes:
    import argparse

    G = tiny_generator()
    return torch_bytes({"g_ema": rosinality_state(), "latent_avg": G.mapping.w_avg.clone(),
                        "args": argparse.Namespace(size=RES, lr_mlp=0.01, n_mlp=2)})


#: opts of each encoder family (the official keys that tell the families apart).
PSP_OPTS = {
    "psp": {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "output_size": RES, "n_styles": NUM_WS,
            "start_from_latent_avg": True, "learn_in_w": False},
    "e4e": {"encoder_type": "Encoder4Editing", "input_nc": 3, "stylegan_size": RES, "start_from_latent_avg": True,
            "progressive_start": 20000, "delta_norm": 2},
    "e2style": {"input_nc": 3, "training_stage": 2, "stylegan_size": RES, "start_from_latent_avg": True},
}


def _expanded(t: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """A tensor of ``t``'s shape and dtype backed by one element (torch.save stores 1 value)."""
    return torch.full((), value, dtype=t.dtype).expand(t.shape) if t.ndim else torch.full((), value, dtype=t.dtype)


@functools.cache
def psp_family_seeds() -> dict[str, bytes]:
    """Complete pSp / e4e / E2Style checkpoints in the official layout (IR-SE50 encoder, 16 px
    rosinality decoder with w_dim 512). Every encoder tensor is a zero-stride view of one value, so
    a file of ~30M parameters is ~3 MB and the loader still checks (and materialises) them all."""
    from studio.core.formats import psp_pt
    from studio.core.formats.rosinality_pt import rosinality_name_table
    from studio.core.nets import ops
    from studio.core.nets.e2style import E2StyleEncoder
    from studio.core.nets.psp import Encoder4Editing, GradualStyleEncoder
    from studio.core.nets.stylegan2 import Generator

    with torch.device("meta"):
        G = Generator(z_dim=512, w_dim=512, img_resolution=RES, mapping_layers=2, channel_base=256, channel_max=16)
        nets = {"psp": GradualStyleEncoder(n_styles=NUM_WS, num_layers=50, mode="ir_se", in_channels=3),
                "e4e": Encoder4Editing(n_styles=NUM_WS, num_layers=50, mode="ir_se", in_channels=3),
                "e2style": E2StyleEncoder(num_stages=2, refine_in_channels=6, head_rows=(2, 2, 2), pool=1,
                                          w_dim=512, num_layers=50, mode="ir_se", in_channels=3)}
    ours = G.state_dict(keep_vars=True)
    table = rosinality_name_table(2 * (int(np.log2(RES)) - 2), 2)
    # The decoder is stored for real (~0.6M values): the loader refuses a generator whose tensors hold
    # less than half the values their shapes describe (zero-stride views), the encoder has no such check.
    dec = {f"decoder.{k}": torch.full(ours[dst].shape, 0.01) for k, (dst, _) in table.items()}
    kernel = ops.setup_filter((1, 3, 3, 1)) * 4
    dec["decoder.convs.0.conv.blur.kernel"] = kernel.clone()
    la = torch.full((NUM_WS, 512), 0.1)
    out = {}
    for kind, net in nets.items():
        sd = dict(dec)
        for k, t in net.state_dict(keep_vars=True).items():
            sd[psp_pt.to_official(kind, f"encoder.{k}")] = _expanded(t, 1.0 if k.endswith("running_var") else 0.0)
        out[kind] = torch_bytes({"state_dict": sd, "opts": dict(PSP_OPTS[kind]), "latent_avg": la.clone()})
    return out


# ----------------------------------------------------------------------------
# NVIDIA network pickle (built with a stand-in for torch_utils.persistence)


class _Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _reconstruct_persistent_obj(meta):  # pickled by reference under NVIDIA's module name
    return meta


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


def pickle_with_persistence(obj, protocol: int = 4) -> bytes:
    sys.modules.setdefault("torch_utils", type(sys)("torch_utils"))
    mod = type(sys)("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["torch_utils.persistence"] = mod
    try:
        return pickle.dumps(obj, protocol=protocol)
    finally:
        sys.modules.pop("torch_utils.persistence", None)


def nvidia_record(G) -> _Persistent:
    cfg = G.config
    init = {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "img_resolution": cfg.img_resolution,
            "img_channels": cfg.img_channels,
            "mapping_kwargs": {"num_layers": cfg.mapping_layers},
            "synthesis_kwargs": {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                 "num_fp16_res": 0, "conv_clamp": None}}
    params = {k: v.detach().clone() for k, v in G.state_dict().items()}
    return _Persistent({"type": "class", "version": 6, "module_src": "raise SystemExit('never run')\n",
                        "class_name": "training.networks.Generator",
                        "state": {"_init_kwargs": init, "_parameters": params, "_buffers": {}, "_modules": {},
                                  "training": False}})


@functools.cache
def nvidia_seed() -> bytes:
    rec = nvidia_record(tiny_generator())
    return pickle_with_persistence({"G": rec, "D": None, "G_ema": rec, "augment_pipe": None,
                                    "training_set_kwargs": {"resolution": RES, "xflip": False}})


# ----------------------------------------------------------------------------
# Directions, projects, metrics


@functools.cache
def direction_seeds() -> dict[str, bytes]:
    files = pack_seed()
    return {"npy": files["age.npy"], "npz": files["comps.npz"]}


@functools.cache
def project_seed() -> bytes:
    from studio.core.directions import Direction
    from studio.engine.session import EditSession

    G = tiny_generator()
    rng = np.random.default_rng(2)
    s = EditSession.for_generator(G, rng.standard_normal((NUM_WS, W_DIM)).astype(np.float32))
    s.add_direction(Direction("age", rng.standard_normal(W_DIM), layers=(0, 4)), 1.5)
    s.add_direction(Direction("pc0", rng.standard_normal(W_DIM)), -0.5)
    s.set_reference(rng.standard_normal((NUM_WS, W_DIM)).astype(np.float32))
    s.set_mix_strength("coarse", 0.5)
    s.set_truncation(0.7)
    return s.to_project_bytes()


def model_identity():
    from studio.engine.session import ModelIdentity

    return ModelIdentity.from_generator(tiny_generator())


@functools.cache
def metrics_seed() -> bytes:
    lines = [{"event": "start", "step": 0, "kimg": 0.0, "world_size": 1, "time": 1.0},
             {"step": 10, "kimg": 0.32, "loss/G": 1.25, "loss/D": 0.5, "sec_per_kimg": 3.2, "time": 2.0},
             {"event": "eval", "step": 20, "kimg": 0.64, "fd_vgg16": 123.4, "kid": 0.01, "time": 3.0},
             {"event": "end", "reason": "done", "step": 20, "kimg": 0.64, "time": 4.0}]
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def zip_members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i, zf.read(i.filename)) for i in zf.infolist()]
