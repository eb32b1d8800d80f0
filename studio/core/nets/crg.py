"""CRG encoder: a VGG19-style conv net from a generated image back to its z (or w) (seed 003).

METHODS.md §2. The encoder is trained "cyclically" on the generator's own samples: draw z, render
G(z), minimise ``MSE(E(G(z)), z)`` (or against ``G.mapping(z)`` in W space). Architecture:

* ``features``: VGG19 blocks of 3x3 convs (``convs`` per block: 2, 2, 4, 4, 4) with ``channels``
  64, 128, 256, 512, 512, each conv followed by BatchNorm (``batch_norm``) and ReLU, each block by
  MaxPool2d(2) and spatial dropout (``nn.Dropout2d(dropout)``, 0.5; off in eval mode);
* ``pool``: AdaptiveAvgPool2d(``head_pool``), so any ``input_size`` works (64 px: 2x2 after 5 blocks);
* ``head``: flatten, Linear(C * head_pool^2 -> hidden), LeakyReLU(0.2), Linear(hidden -> out_dim)
  (no hidden layer when ``hidden`` = 0).

Output [N, out_dim], or [N, num_ws, out_dim] (``num_ws`` identical rows, as ``Generator.map``
repeats w) when ``num_ws`` > 0. ``space`` ('z' or 'w') records what the output means, so
:class:`~studio.core.nets.encoding.EncoderPipeline` knows whether it goes through ``G.mapping``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.irse import deterministic_construction

__all__ = ["SPACES", "CRGEncoder", "CRGEncoderConfig"]

SPACES = ("z", "w")

# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CRGEncoderConfig:
    input_size: int = 256  # side of the (generated) input image; any size >= 2**len(channels)
    in_channels: int = 3
    out_dim: int = 512  # z_dim (space 'z') or w_dim (space 'w')
    num_ws: int = 0  # 0: output [N, out_dim]; k > 0: [N, k, out_dim] (k copies)
    space: str = "z"  # 'z' (feed through G.mapping) or 'w'
    channels: tuple[int, ...] = (64, 128, 256, 512, 512)  # conv channels per block (VGG19)
    convs: tuple[int, ...] = (2, 2, 4, 4, 4)  # 3x3 convs per block (VGG19)
    batch_norm: bool = True  # BatchNorm after every conv (VGG19-BN)
    dropout: float = 0.5  # spatial dropout (Dropout2d) after every block
    head_pool: int = 2  # side of the adaptive average pool before the head
    hidden: int = 1024  # hidden units of the head (0: one linear layer)


class CRGEncoder(nn.Module):
    """x [N, in_channels, S, S] in [-1, 1] -> z [N, out_dim] or W+ copies [N, num_ws, out_dim]."""

    def __init__(
        self,
        input_size: int = 256,
        in_channels: int = 3,
        out_dim: int = 512,
        num_ws: int = 0,
        space: str = "z",
        channels: tuple[int, ...] = (64, 128, 256, 512, 512),
        convs: tuple[int, ...] = (2, 2, 4, 4, 4),
        batch_norm: bool = True,
        dropout: float = 0.5,
        head_pool: int = 2,
        hidden: int = 1024,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        convs = tuple(int(c) for c in convs)
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if len(channels) != len(convs) or not channels or min(convs) < 1:
            raise ValueError(f"channels {channels} and convs {convs} must be equally long, with >= 1 conv each")
        if input_size < 2 ** len(channels):
            raise ValueError(f"input_size {input_size} is too small for {len(channels)} pooling blocks")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = CRGEncoderConfig(input_size, in_channels, out_dim, int(num_ws), space, channels, convs,
                                       bool(batch_norm), float(dropout), head_pool, hidden)
        with deterministic_construction():
            layers: list[nn.Module] = []
            cin = in_channels
            for cout, n in zip(channels, convs):
                for _ in range(n):
                    layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm))
                    if batch_norm:
                        layers.append(nn.BatchNorm2d(cout))
                    layers.append(nn.ReLU(inplace=True))
                    cin = cout
                layers += [nn.MaxPool2d(2), nn.Dropout2d(dropout)]
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d((head_pool, head_pool))
            flat = cin * head_pool * head_pool
            head: list[nn.Module] = [nn.Flatten()]
            if hidden:
                head += [nn.Linear(flat, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, out_dim)]
            else:
                head.append(nn.Linear(flat, out_dim))
            self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, out_dim] (``num_ws`` = 0) or [N, num_ws, out_dim]."""
        v = self.head(self.pool(self.features(x)))  # [N, out_dim]
        if self.config.num_ws:
            return v.unsqueeze(1).repeat(1, self.config.num_ws, 1)  # [N, num_ws, out_dim]
        return v
