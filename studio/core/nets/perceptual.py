"""ImageNet AlexNet / VGG16 feature stacks without torchvision (for LPIPS, FD-VGG16, projected D).

Layouts and indices are torchvision's ``features`` modules, so their state dicts
(``features.0.weight`` ...) load directly. Weights come from files (the fp16 copies in
``shared/data/lpips`` or the app's ``resources/``); nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from studio.core.errors import CheckpointError

# LPIPS v0.1 ScalingLayer: inputs RGB in [-1, 1]; the net sees (x - SHIFT) / SCALE.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

ALEX_SLICES = [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]        # relu1 .. relu5
ALEX_CHANNELS = [64, 192, 384, 256, 256]
VGG_SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]       # relu1_2 .. relu5_3
VGG_CHANNELS = [64, 128, 256, 512, 512]
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]

WEIGHT_FILES = {"alex": "alexnet_features_fp16.pth", "vgg": "vgg16_features_fp16.pth"}


def _alexnet_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    ]


def _vgg16_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return layers


def default_weight_dirs() -> list[Path]:
    """Where backbone weights are looked for: $STYLESTUDIO_LPIPS_DIR, the app's resources, shared/data."""
    here = Path(__file__).resolve()
    dirs = []
    if os.environ.get("STYLESTUDIO_LPIPS_DIR"):
        dirs.append(Path(os.environ["STYLESTUDIO_LPIPS_DIR"]))
    dirs += [here.parents[2] / "resources" / "lpips", here.parents[3] / "resources" / "lpips",
             here.parents[4] / "shared" / "data" / "lpips"]
    return dirs


def find_weights(net: str, weights_dir: str | Path | None = None) -> Path | list[Path]:
    """The backbone weights: the ``.pth`` of ``shared/data/lpips``, or the app's safetensors copy
    (``<stem>.safetensors``, shards ``<stem>.part<k>.safetensors`` that keep each file small, or the
    8-bit ``<net>_features_int8.safetensors`` of :func:`quantize_int8`). Full-precision weights win
    wherever they are (the first folder that has them, in that order), so a checkout next to
    ``shared/data`` measures with the original numbers; the 8-bit copy (the installed app's VGG16) is
    the fallback."""
    name = WEIGHT_FILES[net]
    stem = name.removesuffix(".pth")
    dirs = [Path(weights_dir)] if weights_dir else default_weight_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
        if (d / f"{stem}.safetensors").is_file():
            return d / f"{stem}.safetensors"
        shards = sorted(d.glob(f"{stem}.part*.safetensors"))
        if shards:
            return shards
    for d in dirs:
        q8 = d / f"{stem.removesuffix('_fp16')}_int8.safetensors"
        if q8.is_file():
            return q8
    raise CheckpointError(name, f"{net} backbone weights not found in {', '.join(map(str, dirs))}; "
                                "set STYLESTUDIO_LPIPS_DIR to the folder holding them")


def load_weight_files(path: Path | list[Path]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` (``weights_only``) or of one or more safetensors files, merged."""
    from safetensors.torch import load_file

    paths = path if isinstance(path, list) else [path]
    sd: dict[str, torch.Tensor] = {}
    for p in paths:
        try:
            sd.update(load_file(str(p)) if p.suffix == ".safetensors"
                      else torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 - any unreadable file: one clear error
            raise CheckpointError(p, f"cannot read backbone weights ({str(e)[:200]})") from None
    try:
        return dequantize_int8(sd)
    except ValueError as e:
        raise CheckpointError(paths[0], f"damaged 8-bit backbone weights ({e})") from None


SCALE_SUFFIX = ".int8_scale"


def quantize_int8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convolution weights [out, in, k, k] as symmetric per-output-channel int8 plus a float32 scale
    ``<key>.int8_scale`` [out] (``w ~= q * scale``, ``|w - q * scale| <= scale / 2``); other tensors
    (biases) kept as they are. VGG16's features go from 29 MB in float16 to 15 MB; LPIPS moves by
    about 0.1% on average (``tests/core/test_lpips.py`` pins the bound)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if v.dim() == 4:
            w = v.float()
            scale = (w.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
            out[k] = (w / scale.view(-1, 1, 1, 1)).round().clamp(-127, 127).to(torch.int8)
            out[k + SCALE_SUFFIX] = scale
        else:
            out[k] = v
    return out


def dequantize_int8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_int8` (float32 weights); a dict without int8 tensors comes back as is."""
    scales = {k.removesuffix(SCALE_SUFFIX): v for k, v in sd.items() if k.endswith(SCALE_SUFFIX)}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith(SCALE_SUFFIX):
            if k.removesuffix(SCALE_SUFFIX) not in sd:
                raise ValueError(f"{k} has no weight")
            continue
        if v.dtype == torch.int8:
            s = scales.get(k)
            if s is None or s.dim() != 1 or s.numel() != v.shape[0]:
                raise ValueError(f"{k} is int8 without a matching per-channel scale")
            out[k] = v.float() * s.float().view(-1, *([1] * (v.dim() - 1)))
        else:
            out[k] = v
    return out


class FeatureNet(nn.Module):
    """Frozen AlexNet or VGG16 ``features``; :meth:`taps` returns the five LPIPS levels.

    Input: RGB in [-1, 1], [N, 3, H, W] (any size >= 32); ``scale_input`` applies LPIPS' scaling.
    """

    def __init__(self, net: str = "vgg", weights: str | Path | None = None, *, load: bool = True):
        super().__init__()
        if net not in WEIGHT_FILES:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.features = nn.Sequential(*(_alexnet_layers() if net == "alex" else _vgg16_layers()))
        self.slices = ALEX_SLICES if net == "alex" else VGG_SLICES
        self.channels = ALEX_CHANNELS if net == "alex" else VGG_CHANNELS
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        if load:
            path = Path(weights) if weights and Path(weights).is_file() else find_weights(net, weights)
            sd = load_weight_files(path)
            try:
                self.features.load_state_dict({k.removeprefix("features."): v.float() for k, v in sd.items()})
            except RuntimeError as e:
                raise CheckpointError(path, f"not {net} feature weights ({str(e)[:200]})") from None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen, always eval (no dropout/BN anyway)
        return super().train(False)

    def taps(self, x: torch.Tensor, *, levels: int = 5, scale_input: bool = True) -> list[torch.Tensor]:
        """The first ``levels`` feature maps (relu outputs), shallow to deep."""
        if scale_input:
            x = (x - self.shift) / self.scale
        outs = []
        for a, b in self.slices[:levels]:
            for i in range(a, b):
                x = self.features[i](x)
            outs.append(x)
        return outs
