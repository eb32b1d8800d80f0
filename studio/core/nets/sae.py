"""SAE: the pSp encoder with CBAM attention in its feature pyramid (seed 001; METHODS.md §2).

CBAM (Woo et al. 2018), on a map F [N, C, H, W]:

* channel attention ``Mc(F) = sigmoid(MLP(avgpool_hw(F)) + MLP(maxpool_hw(F)))`` [N, C, 1, 1], one
  MLP shared by both descriptors (Linear C -> C/r, ReLU, Linear C/r -> C; r = ``reduction``, 16);
  ``F' = Mc(F) * F``;
* spatial attention ``Ms(F') = sigmoid(conv7x7([mean_c(F'); max_c(F')]))`` [N, 1, H, W] (one 7x7
  conv, 2 -> 1 channels, no bias); ``F'' = Ms(F') * F'``.

:class:`SAEEncoder` is :class:`~studio.core.nets.psp.GradualStyleEncoder` (same backbone options,
keys and heads) with one CBAM per pyramid level, in the top-down path, before the heads:

* f_coarse = CBAM_0(c3)                          [N, C, S/16, S/16]  -> styles 0-2
* f_medium = CBAM_1(up(f_coarse) + latlayer1(c2)) [N, C, S/8,  S/8 ]  -> styles 3-6
* f_fine   = CBAM_2(up(f_medium) + latlayer2(c1)) [N, C, S/4,  S/4 ]  -> styles 7-end

(C = pyramid channels: 512 for IR-SE-50, 8*width for a ResNet backbone; S = ``input_size``.) These
CBAM-refined maps F'' are what the attention loss compares between x and G(E(x)):
``lambda_att * attention_loss(F''(x), F''(G(E(x))))``. Codes exclude the average latent, as pSp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.irse import deterministic_construction
from studio.core.nets.psp import COARSE_END, MIDDLE_END, _PyramidEncoder, _upsample_add

__all__ = ["CBAM", "ChannelAttention", "SAEEncoder", "SAEEncoderConfig", "SpatialAttention", "attention_loss"]

# ----------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    """Mc(F) = sigmoid(mlp(avg_hw F) + mlp(max_hw F)); F [N, C, H, W] -> weights [N, C, 1, 1]."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3)))  # [N, C]
        mx = self.mlp(x.amax(dim=(2, 3)))  # [N, C]
        return torch.sigmoid(avg + mx)[:, :, None, None]  # [N, C, 1, 1]


class SpatialAttention(nn.Module):
    """Ms(F) = sigmoid(conv_k([mean_c F; max_c F])); F [N, C, H, W] -> weights [N, 1, H, W]."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # [N, 2, H, W]
        return torch.sigmoid(self.conv(desc))  # [N, 1, H, W]


class CBAM(nn.Module):
    """F'' = Ms(F') * F' with F' = Mc(F) * F; shape-preserving, [N, C, H, W]."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x) * x  # F'
        return self.spatial(x) * x  # F''


def attention_loss(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over pyramid levels of the mean squared difference of CBAM-refined maps (a scalar)."""
    if len(feats_a) != len(feats_b) or not feats_a:
        raise ValueError("attention_loss needs two equally long, non-empty lists of feature maps")
    return torch.stack([(a - b).square().mean() for a, b in zip(feats_a, feats_b)]).mean()


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SAEEncoderConfig:
    n_styles: int = 18  # W+ rows
    num_layers: int = 50  # backbone depth: IR 50/100/152, ResNet 10/18/34
    mode: str = "ir_se"  # 'ir' or 'ir_se' (squeeze-excitation in every unit)
    in_channels: int = 3
    backbone: str = "ir"  # 'ir' (IR-SE, as pSp) or 'resnet' (light)
    width: int = 64  # first-stage channels of a 'resnet' backbone
    input_size: int = 256  # side of the input image
    w_dim: int = 512  # values per W+ row
    reduction: int = 16  # CBAM channel-MLP reduction
    kernel_size: int = 7  # CBAM spatial conv size


class SAEEncoder(_PyramidEncoder):
    """x [N, in_channels, S, S] in [-1, 1] -> codes [N, n_styles, w_dim] (+ the three F'' maps)."""

    def __init__(
        self,
        n_styles: int = 18,
        num_layers: int = 50,
        mode: str = "ir_se",
        in_channels: int = 3,
        backbone: str = "ir",
        width: int = 64,
        input_size: int = 256,
        w_dim: int = 512,
        reduction: int = 16,
        kernel_size: int = 7,
    ):
        super().__init__(n_styles=n_styles, num_layers=num_layers, mode=mode, in_channels=in_channels,
                         backbone=backbone, width=width, input_size=input_size, w_dim=w_dim)
        self.config = SAEEncoderConfig(n_styles, num_layers, mode, in_channels, backbone, width, input_size,
                                       w_dim, reduction, kernel_size)  # type: ignore[assignment]
        with deterministic_construction():
            # One CBAM per pyramid level: 0 coarse (S/16), 1 medium (S/8), 2 fine (S/4).
            self.cbam = nn.ModuleList([CBAM(self.pyramid_channels, reduction, kernel_size) for _ in range(3)])

    def feature_shapes(self, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """Shapes of the F'' maps that :meth:`attention_features` returns (coarse, medium, fine)."""
        c, s = self.pyramid_channels, self.config.input_size
        return [(batch, c, s // 16, s // 16), (batch, c, s // 8, s // 8), (batch, c, s // 4, s // 4)]

    def attention_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The CBAM-refined pyramid [F''_coarse, F''_medium, F''_fine] (see :meth:`feature_shapes`)."""
        c1, c2, c3 = self.backbone(x)
        f3 = self.cbam[0](c3)  # [N, C, S/16, S/16]
        f2 = self.cbam[1](_upsample_add(f3, self.latlayer1(c2)))  # [N, C, S/8, S/8]
        f1 = self.cbam[2](_upsample_add(f2, self.latlayer2(c1)))  # [N, C, S/4, S/4]
        return [f3, f2, f1]

    def codes_from_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The style heads on [F''_coarse, F''_medium, F''_fine]: codes [N, n_styles, w_dim]."""
        n = self.config.n_styles
        level = [0 if i < COARSE_END else 1 if i < MIDDLE_END else 2 for i in range(n)]
        return torch.stack([self.styles[i](feats[level[i]]) for i in range(n)], dim=1)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """codes [N, n_styles, w_dim]; with ``return_features`` also the three F'' maps."""
        feats = self.attention_features(x)
        codes = self.codes_from_features(feats)
        return (codes, feats) if return_features else codes
