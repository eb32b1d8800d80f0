"""Encoder + average latent + decoder: image in, W+ latents and the reconstruction out.

METHODS.md §2. For pSp / e4e: ``ws = encoder(x) + latent_avg`` (row by row), then
``img = face_pool(decoder.synthesis(ws, noise_mode='const'))``. For E2Style stage 1 does the same,
and each refinement stage k adds ``encoder.refine(k, x, face_pool(img_k))`` to ``ws`` before
decoding again. ``face_pool`` is AdaptiveAvgPool2d(256): exact 4x4 mean pooling of a 1024 image.

SAE (``kind='sae'``) is pSp with attention: the same path. CRG (``kind='crg'``) predicts z or w
(``encoder.config.space``): z goes through ``decoder.map`` (no latent_avg: ``start_from_latent_avg``
must be False); w rows are repeated to the decoder's num_ws if the encoder gives one [N, w_dim].

Images are NCHW in [-1, 1] (inputs) or raw synthesis output (not clamped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.core.nets.crg import CRGEncoder
from studio.core.nets.e2style import E2StyleEncoder

__all__ = ["KINDS", "EncoderPipeline", "EncoderPipelineConfig", "StageOutput"]

KINDS = ("psp", "e4e", "e2style", "sae", "crg")


@dataclass(frozen=True)
class EncoderPipelineConfig:
    kind: str  # one of KINDS: 'psp', 'e4e', 'e2style', 'sae', 'crg'
    start_from_latent_avg: bool = True  # add latent_avg to the encoder's codes
    out_size: int = 256  # side of the pooled output image


@dataclass
class StageOutput:
    """One E2Style stage: the latents fed to the decoder [N, num_ws, w_dim] and its pooled image."""

    ws: torch.Tensor
    img: torch.Tensor | None  # [N, 3, out_size, out_size]; None when not decoded


class EncoderPipeline(nn.Module):
    """Learning-based inversion: ``encode(x) -> ws``; ``forward(x) -> (img_out_size, ws)``.

    A container of two networks, so it cannot be rebuilt from ``config`` alone: the reader
    (:mod:`studio.core.formats.psp_pt`) builds ``encoder`` and ``decoder`` from their own configs.
    ``decoder`` is our StyleGAN2 ``Generator`` (``synthesis(ws, noise_mode='const')``); it may be
    None, in which case only the pSp / e4e ``encode`` and E2Style's stage-1 codes work.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | None,
        latent_avg: torch.Tensor | None,
        *,
        kind: str,
        start_from_latent_avg: bool = True,
        out_size: int = 256,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
        if kind == "e2style" and not isinstance(encoder, E2StyleEncoder):
            raise TypeError("kind='e2style' needs an E2StyleEncoder")
        if kind == "crg":
            if not isinstance(encoder, CRGEncoder):
                raise TypeError("kind='crg' needs a CRGEncoder")
            if encoder.config.space == "z" and start_from_latent_avg:
                raise ValueError("a CRG encoder in z space goes through the mapping network: "
                                 "set start_from_latent_avg=False")
        self.config = EncoderPipelineConfig(kind=kind, start_from_latent_avg=start_from_latent_avg, out_size=out_size)
        self.encoder = encoder
        self.decoder = decoder
        if start_from_latent_avg and latent_avg is None:
            raise ValueError("start_from_latent_avg needs a latent_avg")
        # [num_ws, w_dim] (or [w_dim], broadcast over rows); added row by row to the codes.
        self.register_buffer("latent_avg", None if latent_avg is None else latent_avg.detach().clone())
        self.face_pool = nn.AdaptiveAvgPool2d((out_size, out_size))

    # -- pieces ----------------------------------------------------------------------------

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's raw output [N, num_ws, w_dim] (E2Style: stage 1), without latent_avg."""
        return self.encoder(x)

    def _offset(self, codes: torch.Tensor) -> torch.Tensor:
        if not self.config.start_from_latent_avg:
            return codes
        return codes + self.latent_avg  # [N, num_ws, w_dim] + [num_ws, w_dim]

    def _to_ws(self, codes: torch.Tensor) -> torch.Tensor:
        """W+ [N, num_ws, w_dim] from the encoder's output (CRG: z -> decoder.map, w -> rows)."""
        if self.config.kind == "crg":
            if self.encoder.config.space == "z":  # [N, z_dim]
                if self.decoder is None:
                    raise RuntimeError("a CRG encoder in z space needs the decoder's mapping network")
                return self.decoder.map(codes)
            if codes.ndim == 2:  # one w [N, w_dim] for all rows
                if self.decoder is None:
                    raise RuntimeError("a CRG encoder giving one w needs the decoder to know num_ws")
                codes = codes.unsqueeze(1).repeat(1, self.decoder.num_ws, 1)
        return self._offset(codes)

    def decode(self, ws: torch.Tensor) -> torch.Tensor:
        """Pooled reconstruction [N, 3, out_size, out_size] of ws [N, num_ws, w_dim] (stored noise)."""
        if self.decoder is None:
            raise RuntimeError("this pipeline has no decoder")
        img = self.decoder.synthesis(ws, noise_mode="const")  # [N, 3, R, R]
        return self.face_pool(img)

    # -- E2Style ----------------------------------------------------------------------------

    def stage_outputs(self, x: torch.Tensor, stages: int | None = None, decode_last: bool = True) -> list[StageOutput]:
        """E2Style: latents and pooled image after each stage 1..stages (default: active stages).

        The last stage's image is decoded only if ``decode_last``. pSp / e4e give one stage.
        """
        if self.config.kind != "e2style":
            ws = self._to_ws(self.codes(x))
            return [StageOutput(ws, self.decode(ws) if decode_last else None)]
        enc: E2StyleEncoder = self.encoder  # type: ignore[assignment]
        n = enc.active_stages if stages is None else int(stages)
        if not 1 <= n <= enc.config.num_stages:
            raise ValueError(f"stages must be between 1 and {enc.config.num_stages}, got {n}")
        ws = self._offset(enc.first(x))  # [N, num_ws, w_dim]
        out: list[StageOutput] = []
        for k in range(1, n + 1):
            img = self.decode(ws) if (k < n or decode_last) else None
            out.append(StageOutput(ws, img))
            if k < n:
                assert img is not None
                ws = ws + enc.refine(k, x, img)
        return out

    # -- whole pipeline ---------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """W+ latents [N, num_ws, w_dim] for images x [N, C, 256, 256] in [-1, 1]."""
        return self.stage_outputs(x, decode_last=False)[-1].ws

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled reconstruction [N, 3, out_size, out_size], ws [N, num_ws, w_dim])."""
        last = self.stage_outputs(x)[-1]
        assert last.img is not None
        return last.img, last.ws
