"""pSp ``GradualStyleEncoder`` and e4e ``Encoder4Editing``: IR-SE-50 + feature pyramid -> W+ codes.

METHODS.md §2. Both share one layout (so their checkpoints have identical keys and shapes):

* backbone ``input_layer`` + ``body`` (:mod:`studio.core.nets.irse`); taps after the last unit
  of stages 2, 3, 4 (body indices 6, 20, 23 for depth 50): c1 [N,128,64,64], c2 [N,256,32,32],
  c3 [N,512,16,16] for a 256x256 input;
* pyramid p2 = up(c3) + latlayer1(c2) [N,512,32,32], p1 = up(p2) + latlayer2(c1) [N,512,64,64]
  (bilinear, align_corners=True);
* ``styles[i]`` = :class:`GradualStyleBlock` heads: styles 0-2 read c3, 3-6 read p2, 7-end read p1.

pSp: ``codes[:, i] = styles[i](features_i)``. e4e: ``codes[:, 0] = w0 = styles[0](c3)`` and
``codes[:, i] = w0 + styles[i](features_i)`` for i >= 1 (the inference stage: all deltas on).
Neither adds the average latent; see :class:`studio.core.nets.encoding.EncoderPipeline`.

Light variants (:mod:`studio.core.nets.light`): ``backbone='resnet'`` (``num_layers`` 10/18/34,
``width`` w) taps its stages 2-4 the same way (c1 [N,2w,S/4], c2 [N,4w,S/8], c3 [N,8w,S/16] for an
``input_size`` S); the pyramid then has 8w channels and the heads give ``w_dim`` values each. The
defaults (``backbone='ir'``, 256 px, ``w_dim`` 512) are the official architecture, keys unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from studio.core.nets.irse import deterministic_construction
from studio.core.nets.light import backbone_spec, make_backbone

__all__ = ["EqualLinear", "GradualStyleBlock", "PSPEncoderConfig", "GradualStyleEncoder", "Encoder4Editing"]

COARSE_END = 3  # styles [0, 3) read the 16x16 map
MIDDLE_END = 7  # styles [3, 7) read the 32x32 map; the rest the 64x64 map

# ----------------------------------------------------------------------------


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer: y = x @ (W / sqrt(in) * lr_mul)^T + b * lr_mul.

    ``weight`` [out, in] and ``bias`` [out] are stored unscaled, as in rosinality's StyleGAN2.
    """

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.bias_init = float(bias_init)

    @torch.no_grad()
    def reset_parameters_from(self, generator: torch.Generator) -> None:
        self.weight.normal_(generator=generator).div_(self.lr_mul)
        self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, in] -> [N, out]
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) x [Conv3x3 stride 2 + LeakyReLU(0.01)] to 1x1, then EqualLinear.

    [N, in_c, spatial, spatial] -> [N, out_c].
    """

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        self.spatial = spatial
        num_pools = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # [N, out_c, 1, 1]
        x = x.view(-1, self.out_c)
        return self.linear(x)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=True) resize of x to y's size, plus y."""
    _, _, h, w = y.shape
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True) + y


def head_spatial(i: int, input_size: int = 256) -> int:
    """Input size of style head i: S/16 (coarse), S/8 (medium) or S/4 (fine); 16/32/64 for S = 256."""
    return input_size // (16 if i < COARSE_END else 8 if i < MIDDLE_END else 4)


def check_input_size(input_size: int) -> int:
    """The encoder input side: a power of two >= 16 (each head halves its map down to 1x1)."""
    if input_size < 16 or input_size & (input_size - 1):
        raise ValueError(f"input_size must be a power of two >= 16, got {input_size}")
    return int(input_size)


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PSPEncoderConfig:
    n_styles: int = 18  # W+ rows = 2*log2(decoder resolution) - 2
    num_layers: int = 50  # IR backbone depth: 50, 100 or 152
    mode: str = "ir_se"  # 'ir' or 'ir_se'
    in_channels: int = 3  # input image channels (opts['input_nc'])
    backbone: str = "ir"  # 'ir' (IR / IR-SE, official) or 'resnet' (light BasicBlocks, depth 10/18/34)
    width: int = 64  # first-stage channels of a 'resnet' backbone (IR: always 64)
    input_size: int = 256  # side of the input image (heads read S/16, S/8, S/4 maps)
    w_dim: int = 512  # values per W+ row


class _PyramidEncoder(nn.Module):
    """Backbone + FPN + style heads shared by pSp and e4e; ``forward`` gives codes [N, n_styles, w_dim]."""

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
    ):
        super().__init__()
        self.config = PSPEncoderConfig(n_styles=n_styles, num_layers=num_layers, mode=mode, in_channels=in_channels,
                                       backbone=backbone, width=width, input_size=check_input_size(input_size),
                                       w_dim=w_dim)
        spec = backbone_spec(backbone, num_layers, width)
        c1_ch, c2_ch, c3_ch = spec.stage_channels[1:]  # 128, 256, 512 for IR
        with deterministic_construction():
            self.input_layer, self.body = make_backbone(backbone, num_layers, mode, in_channels, width)
            self.styles = nn.ModuleList(
                [GradualStyleBlock(c3_ch, w_dim, head_spatial(i, input_size)) for i in range(n_styles)]
            )
            self.latlayer1 = nn.Conv2d(c2_ch, c3_ch, kernel_size=1, stride=1, padding=0)
            self.latlayer2 = nn.Conv2d(c1_ch, c3_ch, kernel_size=1, stride=1, padding=0)
        # Official code taps indices 6, 20, 23 (depth 50): the ends of stages 2, 3 and 4.
        self._taps = spec.stage_ends[1:]

    @property
    def pyramid_channels(self) -> int:
        """Channels of the three pyramid maps (512 for IR)."""
        return self.latlayer1.out_channels

    def backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """c1 [N,128,H/4,W/4], c2 [N,256,H/8,W/8], c3 [N,512,H/16,W/16] for x [N, in_channels, H, W] (IR)."""
        x = self.input_layer(x)
        i1, i2, i3 = self._taps
        c1 = c2 = c3 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == i1:
                c1 = x
            elif i == i2:
                c2 = x
            elif i == i3:
                c3 = x
        assert c1 is not None and c2 is not None and c3 is not None
        return c1, c2, c3


class GradualStyleEncoder(_PyramidEncoder):
    """pSp encoder: x [N, in_channels, S, S] in [-1, 1] (S = input_size) -> codes [N, n_styles, w_dim]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.backbone(x)
        n = self.config.n_styles
        latents = [self.styles[j](c3) for j in range(min(COARSE_END, n))]
        p2 = _upsample_add(c3, self.latlayer1(c2))  # [N, 512, 32, 32] (IR, 256 px)
        latents += [self.styles[j](p2) for j in range(COARSE_END, min(MIDDLE_END, n))]
        p1 = _upsample_add(p2, self.latlayer2(c1))  # [N, 512, 64, 64]
        latents += [self.styles[j](p1) for j in range(MIDDLE_END, n)]
        return torch.stack(latents, dim=1)  # [N, n_styles, w_dim]


class Encoder4Editing(_PyramidEncoder):
    """e4e encoder (inference stage): codes[:, 0] = w0, codes[:, i] = w0 + delta_i; [N, n_styles, w_dim]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.backbone(x)
        w0 = self.styles[0](c3)  # [N, w_dim]
        rows = [w0]
        features = c3
        p2 = None
        for i in range(1, self.config.n_styles):
            if i == COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))  # [N, 512, 32, 32]
                features = p2
            elif i == MIDDLE_END:
                assert p2 is not None
                features = _upsample_add(p2, self.latlayer2(c1))  # [N, 512, 64, 64]
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)  # [N, n_styles, w_dim]
