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
    (``<stem>.safetensors``, or shards ``<stem>.part<k>.safetensors`` that keep each file small)."""
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
    return sd


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
