"""Light ResNet backbones (BasicBlocks + BatchNorm) for encoders of small generators, and presets.

METHODS.md §2. The official pSp / e4e / E2Style encoders read 256x256 images with IR-SE-50 (23M
backbone parameters). For a 64-px generator with ~10 W+ rows that is an order of magnitude more
than needed, so :class:`~studio.core.nets.psp.GradualStyleEncoder`, ``Encoder4Editing``,
:class:`~studio.core.nets.e2style.E2StyleEncoder` and :class:`~studio.core.nets.sae.SAEEncoder` take
``backbone='resnet'`` (default ``'ir'``, the official layout) with ``num_layers`` 10, 18 or 34 and a
``width``. The layout mirrors the IR backbone so the encoders tap it the same way:

* ``input_layer`` = Conv3x3(in_channels, width, stride 1, no bias), BN, ReLU;
* ``body`` = BasicBlock units in four stages of width, 2w, 4w, 8w channels; the first unit of each
  stage has stride 2 (depth 18: 2 units per stage). A 64x64 input gives maps of 32, 16, 8 and 4 px,
  i.e. the same 1/2, 1/4, 1/8, 1/16 ratios as IR-SE-50 at 256 px.

BasicBlock: ``res_layer`` = Conv3x3(stride), BN, ReLU, Conv3x3, BN [, SE(depth, min(16, depth/2))];
``shortcut_layer`` = identity when shape is unchanged, else Conv1x1(stride, no bias) + BN;
output = ReLU(res + shortcut).

:func:`light_encoder` builds the small presets (64 px, 10 rows of 256 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.irse import (
    MODES,
    SEModule,
    deterministic_construction,
    make_body,
    make_input_layer,
    stage_ends,
    unit_specs,
)

__all__ = [
    "BACKBONES",
    "RESNET_DEPTHS",
    "BackboneSpec",
    "BasicBlock",
    "ResNetBackbone",
    "ResNetBackboneConfig",
    "backbone_spec",
    "e2style_head_rows",
    "light_encoder",
    "make_backbone",
    "make_stem",
    "make_units",
]

BACKBONES = ("ir", "resnet")
# BasicBlock units per stage for each supported depth (channels w, 2w, 4w, 8w).
RESNET_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

# ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic unit; [N, in_channels, H, W] -> [N, depth, H/stride, W/stride]."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool = False):
        super().__init__()
        if in_channels == depth and stride == 1:
            self.shortcut_layer: nn.Module = nn.Identity()
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.ReLU(inplace=True),
            nn.Conv2d(depth, depth, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:  # reduction 16, or less for narrow units so that the bottleneck keeps >= 2 channels
            layers.append(SEModule(depth, min(16, max(depth // 2, 1))))
        self.res_layer = nn.Sequential(*layers)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.res_layer(x) + self.shortcut_layer(x))


def _resnet_units(num_layers: int, width: int, stages: int) -> list[tuple[int, int, int]]:
    if num_layers not in RESNET_DEPTHS:
        raise ValueError(f"a resnet backbone needs num_layers in {sorted(RESNET_DEPTHS)}, got {num_layers}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    units, cin = [], width
    for s, n in enumerate(RESNET_DEPTHS[num_layers][:stages]):
        depth = width << s
        units.append((cin, depth, 2))
        units += [(depth, depth, 1)] * (n - 1)
        cin = depth
    return units


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """Where an encoder taps its backbone: body index of each stage's last unit, and its channels."""

    stage_ends: tuple[int, ...]
    stage_channels: tuple[int, ...]


def backbone_spec(backbone: str, num_layers: int, width: int = 64) -> BackboneSpec:
    """Stage ends / channels of the 4-stage body (IR-SE-50: (2, 6, 20, 23), (64, 128, 256, 512))."""
    if backbone == "ir":
        specs = unit_specs(num_layers)
        ends = stage_ends(num_layers)
        return BackboneSpec(tuple(ends), tuple(specs[e].depth for e in ends))
    if backbone == "resnet":
        _resnet_units(num_layers, width, 4)  # validates
        ends, total = [], 0
        for n in RESNET_DEPTHS[num_layers]:
            total += n
            ends.append(total - 1)
        return BackboneSpec(tuple(ends), tuple(width << s for s in range(4)))
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def make_stem(backbone: str, in_channels: int, width: int = 64) -> nn.Sequential:
    """The backbone's ``input_layer``: Conv3x3(in_channels, width, stride 1, no bias), BN, PReLU (IR) / ReLU."""
    if backbone == "ir":
        if width != 64:
            raise ValueError(f"the IR backbone has a fixed width of 64, got width={width}")
        return make_input_layer(in_channels)
    if backbone == "resnet":
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        return nn.Sequential(
            nn.Conv2d(in_channels, width, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def make_units(backbone: str, num_layers: int, mode: str, width: int = 64, stages: int = 4) -> nn.Sequential:
    """The backbone's ``body``; ``mode='ir_se'`` adds SE to every unit.

    ``backbone='ir'`` is the official IR / IR-SE layout (all 4 stages are built, as official
    checkpoints store them); ``'resnet'`` builds only the first ``stages``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backbone == "ir":
        return make_body(num_layers, mode)
    if backbone == "resnet":
        se = mode == "ir_se"
        return nn.Sequential(*[BasicBlock(c, d, s, se=se) for c, d, s in _resnet_units(num_layers, width, stages)])
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def make_backbone(
    backbone: str, num_layers: int, mode: str, in_channels: int, width: int = 64, stages: int = 4
) -> tuple[nn.Sequential, nn.Sequential]:
    """(input_layer, body): :func:`make_stem` then :func:`make_units`."""
    return make_stem(backbone, in_channels, width), make_units(backbone, num_layers, mode, width, stages)


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetBackboneConfig:
    num_layers: int = 18  # 10, 18 or 34
    width: int = 64  # channels of the first stage (then 2w, 4w, 8w)
    mode: str = "ir"  # 'ir' (plain units) or 'ir_se' (squeeze-excitation in every unit)
    in_channels: int = 3


class ResNetBackbone(nn.Module):
    """input_layer + body on their own; ``features(x, taps)`` like :class:`~studio.core.nets.irse.IRBackbone`.

    For depth 18, width 32 and a 64x64 input, ``features(x, taps=(1, 3, 5, 7))`` gives
    [N,32,32,32], [N,64,16,16], [N,128,8,8], [N,256,4,4].
    """

    def __init__(self, num_layers: int = 18, width: int = 64, mode: str = "ir", in_channels: int = 3):
        super().__init__()
        self.config = ResNetBackboneConfig(num_layers=num_layers, width=width, mode=mode, in_channels=in_channels)
        with deterministic_construction():
            self.input_layer, self.body = make_backbone("resnet", num_layers, mode, in_channels, width)

    def features(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Body outputs after each index in ``taps`` (ascending); stops after the last one."""
        x = self.input_layer(x)  # [N, width, H, W]
        out: list[torch.Tensor] = []
        last = max(taps)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in taps:
                out.append(x)
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The final body map, [N, 8*width, H/16, W/16]."""
        return self.body(self.input_layer(x))


# ----------------------------------------------------------------------------


def e2style_head_rows(num_ws: int) -> tuple[int, int, int]:
    """Rows of the three E2Style heads (deepest first) for ``num_ws`` rows: 18 -> (9, 5, 4), 10 -> (5, 3, 2)."""
    if num_ws < 3:
        raise ValueError(f"E2Style needs at least 3 W+ rows, got {num_ws}")
    r5 = max(1, round(num_ws * 4 / 18))
    r4 = max(1, round(num_ws * 5 / 18))
    return (num_ws - r4 - r5, r4, r5)


def light_encoder(
    arch: str,
    *,
    num_ws: int = 10,
    w_dim: int = 256,
    input_size: int = 64,
    width: int = 32,
    num_layers: int = 18,
    mode: str = "ir",
    **kwargs,
) -> nn.Module:
    """A small encoder for a ``input_size``-px generator with ``num_ws`` x ``w_dim`` W+.

    ``arch``: 'psp' (GradualStyleEncoder), 'e4e' (Encoder4Editing), 'sae' (SAEEncoder) or
    'e2style' (E2StyleEncoder; ``kwargs`` may set ``num_stages``, ``pool``); all on a ResNet-
    ``num_layers`` backbone of ``width``. 'crg' gives a CRGEncoder with its VGG19 defaults
    (``kwargs`` as in its constructor; output ``w_dim`` in W space, ``num_ws`` copies; ``width``,
    ``num_layers`` and ``mode`` do not apply). The input of every preset is ``input_size`` px.
    """
    if arch in ("psp", "e4e", "sae"):
        from studio.core.nets.psp import Encoder4Editing, GradualStyleEncoder
        from studio.core.nets.sae import SAEEncoder

        cls = {"psp": GradualStyleEncoder, "e4e": Encoder4Editing, "sae": SAEEncoder}[arch]
        return cls(n_styles=num_ws, num_layers=num_layers, mode=mode, backbone="resnet", width=width,
                   input_size=input_size, w_dim=w_dim, **kwargs)
    if arch == "e2style":
        from studio.core.nets.e2style import E2StyleEncoder

        kwargs.setdefault("pool", 4)
        return E2StyleEncoder(num_layers=num_layers, mode=mode, backbone="resnet", width=width,
                              head_rows=e2style_head_rows(num_ws), w_dim=w_dim, input_size=input_size, **kwargs)
    if arch == "crg":
        from studio.core.nets.crg import CRGEncoder

        kwargs.setdefault("space", "w")
        return CRGEncoder(input_size=input_size, out_dim=w_dim, num_ws=num_ws, **kwargs)
    raise ValueError(f"arch must be 'psp', 'e4e', 'sae', 'e2style' or 'crg', got {arch!r}")
