"""LPIPS v0.1 (Zhang et al. 2018) without torchvision: our AlexNet/VGG16 feature stacks plus the
official linear heads (``lpips/weights/v0.1/{alex,vgg}.pth`` from the ``lpips`` package, or the
verbatim copies next to the backbone weights)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from studio.core.errors import CheckpointError
from studio.core.nets.perceptual import FeatureNet, default_weight_dirs


def find_head(net: str, weights_dir: str | Path | None = None) -> Path:
    """The LPIPS v0.1 linear-head file for ``net`` ('alex' | 'vgg')."""
    dirs = [Path(weights_dir)] if weights_dir else default_weight_dirs()
    for d in dirs:
        p = d / f"lpips_v0.1_{net}_lin.pth"
        if p.is_file():
            return p
    spec = importlib.util.find_spec("lpips")  # located without importing it (it imports torchvision)
    if spec and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
        if p.is_file():
            return p
    raise CheckpointError(f"lpips_v0.1_{net}_lin.pth", "LPIPS linear head not found; install `lpips --no-deps` "
                                                      "or set STYLESTUDIO_LPIPS_DIR")


class LPIPS(nn.Module):
    """Perceptual distance between images in [-1, 1]: ``forward(a, b) -> [N]`` (0 for identical)."""

    def __init__(self, net: str = "vgg", weights_dir: str | Path | None = None):
        super().__init__()
        self.features = FeatureNet(net, weights_dir)
        head = torch.load(find_head(net, weights_dir), map_location="cpu", weights_only=True)
        self.lins = nn.ParameterList([nn.Parameter(head[f"lin{k}.model.1.weight"].float(), requires_grad=False)
                                      for k in range(5)])  # each [1, C, 1, 1]
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, spatial: bool = False) -> torch.Tensor:
        fa, fb = self.features.taps(a), self.features.taps(b)
        total = 0
        for x, y, w in zip(fa, fb, self.lins):
            x = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            d = F.conv2d((x - y).square(), w)  # [N, 1, h, w]
            if spatial:
                d = F.interpolate(d, size=a.shape[2:], mode="bilinear", align_corners=False)
                total = total + d
            else:
                total = total + d.mean(dim=[2, 3], keepdim=True)
        return total if spatial else total.flatten()
