"""E2Style encoders: a first stage and N-1 refinement stages, each an IR-SE backbone with light heads.

METHODS.md §2. One stage (official ``BackboneEncoderFirstStage`` / ``BackboneEncoderRefineStage``):

* ``input_layer`` + ``body`` (:mod:`studio.core.nets.irse`), depth 50;
* three heads = BatchNorm, AdaptiveAvgPool2d(7x7), flatten, Linear -> rows x 512, reading the body
  after unit 20 (``output_layer_3``, 256 ch, 9 rows), unit 6 (``output_layer_4``, 128 ch, 5 rows)
  and unit 2 (``output_layer_5``, 64 ch, 4 rows);
* output ``cat([layer_3, layer_4, layer_5], dim=1)`` = [N, 18, 512]. Body units 21-23 exist (the
  official checkpoints store them) but are never run.

Light variant (:mod:`studio.core.nets.light`): ``backbone='resnet'`` (``num_layers`` 10/18/34,
``width`` w) builds only the first three stages (w, 2w, 4w channels) and the heads read their ends
the same way; e.g. 64 px, ``pool=4``, ``head_rows=(5, 3, 2)``, ``w_dim=256`` for a 64-px generator.

The first stage reads the image x [N, 3, 256, 256]; refinement stage k reads
``cat(x, face_pool(img_k))`` [N, 6, 256, 256] and predicts a W+ residual. The loop that runs the
decoder between stages is :class:`studio.core.nets.encoding.EncoderPipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.irse import deterministic_construction
from studio.core.nets.light import backbone_spec, make_stem, make_units

__all__ = ["E2StyleStage", "E2StyleStageConfig", "E2StyleEncoder", "E2StyleEncoderConfig"]

# ----------------------------------------------------------------------------


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, ...] -> [N, prod(...)]
        return x.view(x.size(0), -1)


def _head(channels: int, rows: int, pool: int, w_dim: int) -> nn.Sequential:
    """BN, AdaptiveAvgPool2d(pool), flatten, Linear(channels*pool^2 -> rows*w_dim)."""
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.AdaptiveAvgPool2d((pool, pool)),
        _Flatten(),
        nn.Linear(channels * pool * pool, w_dim * rows),
    )


@dataclass(frozen=True)
class E2StyleStageConfig:
    in_channels: int = 3  # 3 for the first stage, 6 (image + previous reconstruction) for refinement
    num_layers: int = 50  # IR backbone depth
    mode: str = "ir_se"  # 'ir' or 'ir_se'
    head_rows: tuple[int, int, int] = (9, 5, 4)  # W+ rows from output_layer_3 / _4 / _5 (coarse first)
    pool: int = 7  # side of the adaptive average pool in each head
    w_dim: int = 512
    backbone: str = "ir"  # 'ir' (IR / IR-SE, official) or 'resnet' (light BasicBlocks, depth 10/18/34)
    width: int = 64  # first-stage channels of a 'resnet' backbone (IR: always 64)


class E2StyleStage(nn.Module):
    """One E2Style stage: x [N, in_channels, H, W] -> codes [N, sum(head_rows), w_dim]."""

    def __init__(
        self,
        in_channels: int = 3,
        num_layers: int = 50,
        mode: str = "ir_se",
        head_rows: tuple[int, int, int] = (9, 5, 4),
        pool: int = 7,
        w_dim: int = 512,
        backbone: str = "ir",
        width: int = 64,
    ):
        super().__init__()
        head_rows = tuple(int(r) for r in head_rows)  # type: ignore[assignment]
        self.config = E2StyleStageConfig(in_channels, num_layers, mode, head_rows, pool, w_dim, backbone, width)
        spec = backbone_spec(backbone, num_layers, width)
        # Heads read the ends of stages 1, 2, 3 (units 2, 6, 20 for depth 50).
        self._tap5, self._tap4, self._tap3 = spec.stage_ends[:3]
        ch5, ch4, ch3 = spec.stage_channels[:3]
        with deterministic_construction():
            self.input_layer = make_stem(backbone, in_channels, width)
            self.output_layer_3 = _head(ch3, head_rows[0], pool, w_dim)
            self.output_layer_4 = _head(ch4, head_rows[1], pool, w_dim)
            self.output_layer_5 = _head(ch5, head_rows[2], pool, w_dim)
            self.body = make_units(backbone, num_layers, mode, width, stages=3)

    @property
    def n_styles(self) -> int:
        return sum(self.config.head_rows)

    def forward(self, x: torch.Tensor, prev_img: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [N, n_styles, w_dim]; refinement stages take ``prev_img`` [N, 3, H, W] (pooled to x's size)."""
        if prev_img is not None:
            x = torch.cat((x, prev_img), dim=1)  # [N, 6, H, W]
        r3, r4, r5 = self.config.head_rows
        w_dim = self.config.w_dim
        x = self.input_layer(x)
        parts: dict[int, torch.Tensor] = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self._tap5:
                parts[5] = self.output_layer_5(x).view(-1, r5, w_dim)
            elif i == self._tap4:
                parts[4] = self.output_layer_4(x).view(-1, r4, w_dim)
            elif i == self._tap3:
                parts[3] = self.output_layer_3(x).view(-1, r3, w_dim)
                break  # the remaining units do not contribute
        return torch.cat((parts[3], parts[4], parts[5]), dim=1)


# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class E2StyleEncoderConfig:
    num_stages: int = 1  # 1 first stage + (num_stages - 1) refinement stages
    in_channels: int = 3
    refine_in_channels: int = 6
    num_layers: int = 50
    mode: str = "ir_se"
    head_rows: tuple[int, int, int] = (9, 5, 4)
    pool: int = 7
    w_dim: int = 512
    backbone: str = "ir"
    width: int = 64
    input_size: int = 256  # side of the images it was trained on (the heads pool adaptively)


class E2StyleEncoder(nn.Module):
    """All stages of an E2Style model. ``stages[0]`` is the first stage, ``stages[k]`` refinement k.

    ``active_stages`` (1..num_stages, default all) is how many stages inference runs; set it with
    :meth:`set_active_stages`. It is a run-time choice, not part of the architecture (``config``).
    """

    def __init__(
        self,
        num_stages: int = 1,
        in_channels: int = 3,
        refine_in_channels: int = 6,
        num_layers: int = 50,
        mode: str = "ir_se",
        head_rows: tuple[int, int, int] = (9, 5, 4),
        pool: int = 7,
        w_dim: int = 512,
        backbone: str = "ir",
        width: int = 64,
        input_size: int = 256,
    ):
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        head_rows = tuple(int(r) for r in head_rows)  # type: ignore[assignment]
        self.config = E2StyleEncoderConfig(
            num_stages, in_channels, refine_in_channels, num_layers, mode, head_rows, pool, w_dim, backbone, width,
            input_size,
        )
        common = dict(num_layers=num_layers, mode=mode, head_rows=head_rows, pool=pool, w_dim=w_dim,
                      backbone=backbone, width=width)
        self.stages = nn.ModuleList(
            [
                E2StyleStage(in_channels=in_channels if k == 0 else refine_in_channels, **common)
                for k in range(num_stages)
            ]
        )
        self.active_stages = num_stages

    @property
    def n_styles(self) -> int:
        return sum(self.config.head_rows)

    def set_active_stages(self, n: int) -> None:
        """Run stages 1..n at inference (1 <= n <= num_stages)."""
        if not 1 <= int(n) <= self.config.num_stages:
            raise ValueError(f"stage must be between 1 and {self.config.num_stages}, got {n}")
        self.active_stages = int(n)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-1 codes [N, n_styles, w_dim] (without the average latent)."""
        return self.stages[0](x)

    def refine(self, k: int, x: torch.Tensor, prev_img: torch.Tensor) -> torch.Tensor:
        """Residual [N, n_styles, w_dim] of refinement stage k >= 1, given the previous pooled image."""
        if not 1 <= k < self.config.num_stages:
            raise IndexError(f"refinement stage {k} does not exist (num_stages={self.config.num_stages})")
        return self.stages[k](x, prev_img)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-1 codes only; the multi-stage loop needs a decoder (see EncoderPipeline)."""
        return self.first(x)
