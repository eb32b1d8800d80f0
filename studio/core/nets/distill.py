"""The distilled style-mixing student (seed 002, METHODS.md §6): a pix2pixHD-style image-to-image net.

pix2pixHD's global generator (Wang et al. 2018), sized by a few numbers:

* ``stem``: reflection pad 3, 7x7 conv ``in_channels -> width``, InstanceNorm, ReLU;
* ``down``: ``downsamples`` 3x3 stride-2 convs, doubling the channels (capped at ``max_channels``);
* ``blocks``: ``blocks`` residual blocks (reflection pad 1, 3x3 conv, norm, ReLU, pad, conv, norm, + x);
* ``up``: ``downsamples`` 3x3 stride-2 transposed convs halving the channels;
* ``head``: reflection pad 3, 7x7 conv ``-> out_channels``, tanh.

Input [N, 6, S, S] = the content and style faces stacked on channels (content first), in [-1, 1];
output [N, 3, S, S] in (-1, 1), the mixed face. S must be a multiple of ``2 ** downsamples``.
``resolution`` records the side the student was trained at (the generator's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.irse import deterministic_construction

__all__ = ["NORMS", "DistillStudent", "DistillStudentConfig", "stack_inputs"]

NORMS = ("instance", "batch", "none")

# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillStudentConfig:
    resolution: int = 64        # side of the images the student was trained on (the generator's)
    in_channels: int = 6        # content RGB + style RGB
    out_channels: int = 3
    width: int = 32             # channels of the first conv (pix2pixHD's ngf; 64 in the paper)
    downsamples: int = 2        # stride-2 convs before the residual blocks (pix2pixHD: 4 at 512 px)
    blocks: int = 4             # residual blocks at the lowest resolution (pix2pixHD: 9)
    max_channels: int = 256     # cap on the doubling channel count
    norm: str = "instance"      # 'instance' (pix2pixHD), 'batch' or 'none'


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(c, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(c)
    return nn.Identity()


class ResnetBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padding (pix2pixHD)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DistillStudent(nn.Module):
    """[N, 6, S, S] (content, style) in [-1, 1] -> the mixed face [N, 3, S, S] in (-1, 1)."""

    def __init__(
        self,
        resolution: int = 64,
        in_channels: int = 6,
        out_channels: int = 3,
        width: int = 32,
        downsamples: int = 2,
        blocks: int = 4,
        max_channels: int = 256,
        norm: str = "instance",
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if width < 1 or downsamples < 0 or blocks < 0 or max_channels < 1:
            raise ValueError("width and max_channels must be >= 1, downsamples and blocks >= 0")
        if resolution % (2 ** downsamples):
            raise ValueError(f"resolution {resolution} is not a multiple of 2**downsamples = {2 ** downsamples}")
        self.config = DistillStudentConfig(int(resolution), int(in_channels), int(out_channels), int(width),
                                           int(downsamples), int(blocks), int(max_channels), str(norm))
        ch = [min(width * 2 ** i, max_channels) for i in range(downsamples + 1)]  # per resolution level
        with deterministic_construction():
            self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ch[0], 7), _norm(norm, ch[0]),
                                      nn.ReLU(inplace=True))
            down: list[nn.Module] = []
            for i in range(downsamples):
                down += [nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1), _norm(norm, ch[i + 1]),
                         nn.ReLU(inplace=True)]
            self.down = nn.Sequential(*down)
            self.blocks = nn.Sequential(*[ResnetBlock(ch[-1], norm) for _ in range(blocks)])
            up: list[nn.Module] = []
            for i in reversed(range(downsamples)):
                up += [nn.ConvTranspose2d(ch[i + 1], ch[i], 3, stride=2, padding=1, output_padding=1),
                       _norm(norm, ch[i]), nn.ReLU(inplace=True)]
            self.up = nn.Sequential(*up)
            self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ch[0], out_channels, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected [N, {c.in_channels}, S, S], got {list(x.shape)}")
        if x.shape[-1] % (2 ** c.downsamples) or x.shape[-2] % (2 ** c.downsamples):
            raise ValueError(f"image side {list(x.shape[-2:])} must be a multiple of {2 ** c.downsamples}")
        h = self.stem(x)            # [N, width, S, S]
        h = self.down(h)            # [N, C, S / 2**d, S / 2**d]
        h = self.blocks(h)
        h = self.up(h)              # [N, width, S, S]
        return self.head(h)         # [N, out_channels, S, S]

    def mix(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """content, style [N, 3, S, S] in [-1, 1] -> mixed [N, 3, S, S]."""
        return self(stack_inputs(content, style))


def stack_inputs(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] x 2 -> [N, 6, S, S], content channels first (the seed's 6-channel input)."""
    if content.shape != style.shape:
        raise ValueError(f"content {list(content.shape)} and style {list(style.shape)} differ in shape")
    return torch.cat([content, style], dim=1)
