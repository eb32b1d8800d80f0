"""A discriminator on frozen pretrained features (after Projected GAN, Sauer et al. 2021).

The image is resized to ``input_size`` and run through the frozen ImageNet AlexNet or VGG16 from
``studio.core.nets.perceptual``; a small trainable head (1x1 projection, strided 4x4 convs, spectral
norm) on each of several feature levels outputs a map of patch logits. Gradients flow through the
frozen network to G. Used with the hinge loss and no R1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from studio.core.nets.perceptual import FeatureNet


@dataclass(frozen=True)
class ProjectedDConfig:
    img_resolution: int = 64
    backbone: str = "alex"            # 'alex' | 'vgg'
    levels: tuple[int, ...] = (0, 1, 2, 3)
    width: int = 64                   # channels of each head
    input_size: int = 128             # the backbone sees images resized to this
    weights_dir: str | None = None    # backbone weights folder (default: resources / shared data)


def _spatial_after(backbone: str, input_size: int, level: int) -> int:
    x = torch.zeros(1, 3, input_size, input_size)
    net = FeatureNet(backbone, load=False)
    return net.taps(x, levels=level + 1)[-1].shape[-1]


class ProjectedDiscriminator(nn.Module):
    """image [N, 3, R, R] in [-1, 1] -> patch logits [N, K] (all levels concatenated)."""

    def __init__(self, img_resolution: int = 64, backbone: str = "alex", levels: tuple[int, ...] = (0, 1, 2, 3),
                 width: int = 64, input_size: int = 128, weights_dir: str | None = None):
        super().__init__()
        self.config = ProjectedDConfig(img_resolution, backbone, tuple(levels), width, input_size, weights_dir)
        self.features = FeatureNet(backbone, weights_dir)
        self.levels = tuple(levels)
        heads = []
        for lv in self.levels:
            c = self.features.channels[lv]
            s = _spatial_after(backbone, input_size, lv)
            layers: list[nn.Module] = [spectral_norm(nn.Conv2d(c, width, 1)), nn.LeakyReLU(0.2)]
            while s > 4:
                layers += [spectral_norm(nn.Conv2d(width, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
                s = math.floor((s + 2 - 4) / 2 + 1)
            layers += [spectral_norm(nn.Conv2d(width, 1, 1))]
            heads.append(nn.Sequential(*layers))
        self.heads = nn.ModuleList(heads)

    def trainable_parameters(self):
        return self.heads.parameters()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] != self.config.input_size:
            img = F.interpolate(img, size=(self.config.input_size,) * 2, mode="bilinear", align_corners=False)
        taps = self.features.taps(img, levels=max(self.levels) + 1)
        outs = [head(taps[lv]).flatten(1) for lv, head in zip(self.levels, self.heads)]
        return torch.cat(outs, dim=1)


def config_dict(d: ProjectedDiscriminator) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(d.config).items()}
