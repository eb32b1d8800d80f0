"""IR / IR-SE ResNet backbones (ArcFace-style "improved residual" units), as used by pSp, e4e and E2Style.

The layout follows the public ``models/encoders/helpers.py`` of pixel2style2pixel so that official
checkpoints map onto it one to one (METHODS.md §2):

* ``input_layer`` = Conv3x3(in_channels, 64, bias=False), BatchNorm2d(64), PReLU(64)   (stride 1)
* ``body`` = bottleneck units in four stages; the first unit of each stage has stride 2.
  depth 50: (64->64 x3), (64->128 x4), (128->256 x14), (256->512 x3) = 24 units; a 256x256
  input gives maps of 128, 64, 32 and 16 pixels after the stages.

Each unit: ``res_layer`` = BN, Conv3x3(stride 1, no bias), PReLU, Conv3x3(stride, no bias), BN
[, SE(depth, 16)]; ``shortcut_layer`` = MaxPool2d(1, stride) when the channel count is unchanged,
else Conv1x1(stride, no bias) + BN. Output = res + shortcut.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "UnitSpec",
    "unit_specs",
    "stage_ends",
    "SEModule",
    "BottleneckIR",
    "IRBackbone",
    "IRBackboneConfig",
    "deterministic_construction",
    "init_weights",
]

# Units per stage for each supported depth (channels 64, 128, 256, 512).
_STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_STAGE_CHANNELS = ((64, 64), (64, 128), (128, 256), (256, 512))
MODES = ("ir", "ir_se")

# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitSpec:
    """One bottleneck unit: input channels, output channels, stride of its second conv."""

    in_channels: int
    depth: int
    stride: int


def unit_specs(num_layers: int) -> list[UnitSpec]:
    """The body's units in order, for depth 50, 100 or 152."""
    if num_layers not in _STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(_STAGE_UNITS)}, got {num_layers}")
    specs: list[UnitSpec] = []
    for (cin, depth), n in zip(_STAGE_CHANNELS, _STAGE_UNITS[num_layers]):
        specs.append(UnitSpec(cin, depth, 2))
        specs += [UnitSpec(depth, depth, 1) for _ in range(n - 1)]
    return specs


def stage_ends(num_layers: int) -> tuple[int, int, int, int]:
    """Body indices of the last unit of each stage (depth 50: 2, 6, 20, 23)."""
    ends, total = [], 0
    for n in _STAGE_UNITS[num_layers]:
        total += n
        ends.append(total - 1)
    return tuple(ends)  # type: ignore[return-value]


def num_layers_from_units(num_units: int) -> int | None:
    """The depth (50/100/152) whose body has ``num_units`` units, or None."""
    for depth, units in _STAGE_UNITS.items():
        if sum(units) == num_units:
            return depth
    return None


# ----------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_construction() -> Iterator[None]:
    """Build layers without touching the global RNG: PyTorch's default init draws from a fixed seed.

    Callers who want a particular random init call :func:`init_weights` with their own
    ``torch.Generator``; checkpoint readers overwrite every tensor anyway (and may build on the
    ``meta`` device, where no init runs at all).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        yield


@torch.no_grad()
def init_weights(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise ``module`` in place like PyTorch's defaults, drawing only from ``generator``.

    Conv2d / Linear: kaiming-uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in)) biases;
    BatchNorm: weight 1, bias 0, running stats reset; PReLU: 0.25; modules with their own
    ``reset_parameters_from(generator)`` (e.g. equalised linear layers) handle themselves.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)  # = gain * sqrt(3 / fan_in) with a = sqrt(5)
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, nn.PReLU):
            m.weight.fill_(0.25)
        elif hasattr(m, "reset_parameters_from"):
            m.reset_parameters_from(generator)
    return module


# ----------------------------------------------------------------------------


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean_hw(x))))), 1x1 convs without bias."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, C, H, W]
        s = self.avg_pool(x)  # [N, C, 1, 1]
        s = self.sigmoid(self.fc2(self.relu(self.fc1(s))))
        return x * s


class BottleneckIR(nn.Module):
    """One IR (``se=False``) or IR-SE (``se=True``) unit; [N, in, H, W] -> [N, depth, H/s, W/s]."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_layer(x)
        res = self.res_layer(x)
        return res + shortcut


def make_input_layer(in_channels: int) -> nn.Sequential:
    """Conv3x3(in_channels, 64, stride 1, no bias), BN(64), PReLU(64)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, (3, 3), 1, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.PReLU(64),
    )


def make_body(num_layers: int, mode: str) -> nn.Sequential:
    """The body units (24 for depth 50) as one ``nn.Sequential``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    se = mode == "ir_se"
    return nn.Sequential(*[BottleneckIR(s.in_channels, s.depth, s.stride, se=se) for s in unit_specs(num_layers)])


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IRBackboneConfig:
    num_layers: int = 50  # 50, 100 or 152
    mode: str = "ir_se"  # 'ir' or 'ir_se'
    in_channels: int = 3  # input image channels


class IRBackbone(nn.Module):
    """input_layer + body; ``forward`` returns the maps after the requested body indices.

    For depth 50 and a 256x256 input, ``features(x, taps=(6, 20, 23))`` gives
    [N,128,64,64], [N,256,32,32], [N,512,16,16].
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", in_channels: int = 3):
        super().__init__()
        self.config = IRBackboneConfig(num_layers=num_layers, mode=mode, in_channels=in_channels)
        with deterministic_construction():
            self.input_layer = make_input_layer(in_channels)
            self.body = make_body(num_layers, mode)

    def features(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Body outputs after each index in ``taps`` (ascending); stops after the last one."""
        x = self.input_layer(x)  # [N, 64, H, W]
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
        """The final body map, [N, 512, H/16, W/16]."""
        return self.body(self.input_layer(x))
