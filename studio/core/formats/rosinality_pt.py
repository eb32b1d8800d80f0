"""rosinality/stylegan2-pytorch generators (``{'g_ema', 'latent_avg'}`` or training checkpoints).

One name table maps rosinality's module names onto ours; the fixed blur/upsample kernels are
checked, not loaded. Also used for the decoders inside pSp / e4e / E2Style checkpoints.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from studio.core.errors import CheckpointError
from studio.core.formats.base import ROSINALITY, ModelBundle, build_network, check_network_size, stylegan2_values
from studio.core.nets import ops
from studio.core.nets.stylegan2 import Generator, channels_for

log = logging.getLogger(__name__)

LATENT_AVG_SAMPLES = 10_000
LATENT_AVG_SEED = 0


def _conv_name(c: int) -> str:
    """rosinality ``convs.{c}`` -> our ``synthesis.b{res}.conv{0|1}``."""
    return f"synthesis.b{2 ** (c // 2 + 3)}.conv{c % 2}"


def _noise_name(j: int) -> str:
    """rosinality ``noises.noise_{j}`` -> the layer that owns it."""
    return "synthesis.b4.conv1" if j == 0 else _conv_name(j - 1)


def rosinality_name_table(num_convs: int, n_mlp: int) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """rosinality key -> (our key, our shape or None = same shape after squeezing leading 1s)."""
    t: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for i in range(n_mlp):
        t[f"style.{i + 1}.weight"] = (f"mapping.fc{i}.weight", None)
        t[f"style.{i + 1}.bias"] = (f"mapping.fc{i}.bias", None)
    t["input.input"] = ("synthesis.b4.const", None)

    def styled(src: str, dst: str):
        t[f"{src}.conv.weight"] = (f"{dst}.weight", None)
        t[f"{src}.conv.modulation.weight"] = (f"{dst}.affine.weight", None)
        t[f"{src}.conv.modulation.bias"] = (f"{dst}.affine.bias", None)
        t[f"{src}.noise.weight"] = (f"{dst}.noise_strength", ())
        t[f"{src}.activate.bias"] = (f"{dst}.bias", None)

    def torgb(src: str, dst: str):
        t[f"{src}.conv.weight"] = (f"{dst}.weight", None)
        t[f"{src}.conv.modulation.weight"] = (f"{dst}.affine.weight", None)
        t[f"{src}.conv.modulation.bias"] = (f"{dst}.affine.bias", None)
        t[f"{src}.bias"] = (f"{dst}.bias", None)

    styled("conv1", "synthesis.b4.conv1")
    torgb("to_rgb1", "synthesis.b4.torgb")
    for c in range(num_convs):
        styled(f"convs.{c}", _conv_name(c))
    for p in range(num_convs // 2):
        torgb(f"to_rgbs.{p}", f"synthesis.b{2 ** (p + 3)}.torgb")
    for j in range(num_convs + 1):
        t[f"noises.noise_{j}"] = (f"{_noise_name(j)}.noise_const", None)
    return t


_KERNEL_KEY = re.compile(r"^(convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel)$")


def _infer_config(path, state: Mapping[str, torch.Tensor]) -> dict:
    try:
        conv_ids = {int(m.group(1)) for k in state if (m := re.match(r"^convs\.(\d+)\.conv\.weight$", k))}
        n_mlp = len({k for k in state if re.match(r"^style\.\d+\.weight$", k)})
        num_convs = len(conv_ids)
        if num_convs == 0 or num_convs % 2 or conv_ids != set(range(num_convs)) or n_mlp == 0:
            raise KeyError("convs/style layers")
        size = 2 ** (num_convs // 2 + 2)
        style_dim = int(state["style.1.weight"].shape[1])
        channels = {4: int(state["conv1.conv.weight"].shape[1])}
        for c in range(1, num_convs, 2):
            channels[2 ** (c // 2 + 3)] = int(state[f"convs.{c}.conv.weight"].shape[1])
    except (KeyError, IndexError, AttributeError) as e:
        raise CheckpointError(path, f"not a rosinality StyleGAN2 generator state (missing {e})") from None
    # Express rosinality's channel table as NVIDIA's (channel_base, channel_max).
    channel_max = max(channels.values())
    channel_base = max(c * r for r, c in channels.items() if c < channel_max) if min(channels.values()) < channel_max \
        else channel_max * size
    if any(channels_for(r, channel_base, channel_max) != c for r, c in channels.items()):
        raise CheckpointError(path, f"unsupported channel layout {channels} (cannot be expressed as "
                                    "min(channel_base / res, channel_max))")
    return dict(z_dim=style_dim, w_dim=style_dim, img_resolution=size, mapping_layers=n_mlp,
                channel_base=channel_base, channel_max=channel_max, num_convs=num_convs)


def generator_from_rosinality(state: Mapping[str, torch.Tensor], *, path=None,
                              lr_mlp: float = 0.01, what: str = "g_ema") -> Generator:
    """Build our Generator from a rosinality generator state dict (prefix already stripped).

    Every key must be known, every tensor's shape must match, and the fixed FIR kernels must be the
    standard [1, 3, 3, 1] ones. ``mapping.w_avg`` is left at zero (see :func:`from_checkpoint`).
    """
    cfg = _infer_config(path, state)
    num_convs = cfg.pop("num_convs")
    check_network_size(path, what, stylegan2_values("Generator", cfg), state.values())
    G = build_network(path, what, lambda: Generator(**cfg, mapping_lr_mul=lr_mlp))
    table = rosinality_name_table(num_convs, cfg["mapping_layers"])
    ours = G.state_dict()
    kernel = ops.setup_filter((1, 3, 3, 1)) * 4
    new: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(path, f"{what}.{key} is not a tensor")
        if _KERNEL_KEY.match(key):
            if tuple(t.shape) != (4, 4) or not torch.allclose(t.float(), kernel, atol=1e-6):
                shown = t.tolist() if t.numel() <= 16 else f"of shape {list(t.shape)}"  # never list 2**31 values
                raise CheckpointError(path, f"{what}.{key}: unsupported blur kernel {shown}")
            continue
        if key not in table:
            raise CheckpointError(path, f"{what}: unexpected tensor {key} {list(t.shape)}")
        dst, _ = table[key]
        want = tuple(ours[dst].shape)
        if t.numel() != math.prod(want) or tuple(s for s in t.shape if s != 1) != tuple(s for s in want if s != 1):
            raise CheckpointError(path, f"{what}.{key}: shape {list(t.shape)}, expected {list(want)} "
                                        f"(for {dst})")
        new[dst] = t.detach().reshape(want).to(torch.float32)
    missing = [k for k, (dst, _) in table.items() if dst not in new]
    if missing:
        raise CheckpointError(path, f"{what}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    new["mapping.w_avg"] = torch.zeros(cfg["w_dim"])
    G.load_state_dict(new, strict=True)
    return G.eval().requires_grad_(False)


@torch.no_grad()
def estimate_w_avg(G: Generator, n: int = LATENT_AVG_SAMPLES, seed: int = LATENT_AVG_SEED) -> torch.Tensor:
    """Mean of mapping(z) over ``n`` seeded standard-normal z (rosinality's ``mean_latent``)."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < n:
        k = min(2048, n - done)
        z = torch.randn([k, G.z_dim], generator=gen)
        total += G.mapping(z).to(torch.float64).sum(0)
        done += k
    return (total / n).to(torch.float32)


def from_checkpoint(path: str | Path, obj: dict, *, detect_only: bool = False) -> ModelBundle:
    """A rosinality checkpoint dict (already loaded with weights_only=True)."""
    bundle = ModelBundle(format=ROSINALITY, path=str(path))
    key = "g_ema" if "g_ema" in obj else "g"
    state = obj[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(path, f"'{key}' is not a state dict")
    if detect_only:
        return bundle
    args = obj.get("args")
    try:
        lr_mlp = float(getattr(args, "lr_mlp", 0.01) if args is not None else 0.01)
    except (TypeError, ValueError):
        raise CheckpointError(path, f"args.lr_mlp is not a number ({getattr(args, 'lr_mlp', None)!r})") from None
    G = generator_from_rosinality(state, path=path, lr_mlp=lr_mlp, what=key)
    if key == "g":
        bundle.notes.append("no 'g_ema' in the file: using the non-averaged generator 'g'")
    la = obj.get("latent_avg")
    if isinstance(la, torch.Tensor) and la.numel() >= G.w_dim:
        la = la.detach().to(torch.float32)
        if la.ndim == 2:  # (num_ws, w_dim) copies
            la = la[0]
        if tuple(la.shape) != (G.w_dim,):
            raise CheckpointError(path, f"latent_avg has shape {list(obj['latent_avg'].shape)}, "
                                        f"expected [{G.w_dim}]")
        G.mapping.w_avg.copy_(la)
    else:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        bundle.notes.append(f"the file has no latent_avg: computed it as the mean of {LATENT_AVG_SAMPLES} "
                            f"mapped z (seed {LATENT_AVG_SEED})")
    bundle.generator = G
    bundle.w_avg = G.mapping.w_avg.clone()
    if "d" in obj:
        bundle.notes.append("rosinality discriminator 'd' not loaded (only the generator is used)")
    bundle.meta = {"source": "rosinality stylegan2-pytorch checkpoint", "generator_key": key}
    if args is not None:
        fields = getattr(args, "__dict__", None)
        bundle.meta["args"] = {k: v for k, v in (fields if isinstance(fields, dict) else {}).items()
                               if isinstance(v, (str, int, float, bool))}
    return bundle
