"""Pure-PyTorch versions of StyleGAN2's custom ops (no C++/CUDA extensions).

``upfirdn2d`` (upsample, pad, FIR filter, downsample), ``bias_act`` (bias + activation + gain +
clamp) and ``conv2d_resample`` (convolution fused with up/downsampling), with the exact
semantics of NVIDIA's reference (``impl='ref'``) code paths, which rosinality's ops equal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)

# ----------------------------------------------------------------------------


def setup_filter(taps=(1, 3, 3, 1), *, normalize: bool = True, device=None) -> torch.Tensor:
    """A 2-D separable FIR filter [k, k] from 1-D taps (outer product), normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    if f.ndim == 1:
        f = f.ger(f)
    if normalize:
        f = f / f.sum()
    return f


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), filter, downsample.

    x: [N, C, H, W]; f: [kh, kw] (applied as a true convolution, i.e. flipped, like the reference).
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    f = f.flip([0, 1])
    weight = f[None, None].repeat(c, 1, 1, 1)  # [C, 1, kh, kw] depthwise
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """x2 upsampling with FIR filter f (the skip generator's RGB path)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    alpha: float = 0.2,
) -> torch.Tensor:
    """x + b (over dim 1), then activation ('linear' | 'lrelu' | 'relu'), times gain, clamped.

    The default gain is sqrt(2) for lrelu/relu and 1 for linear, as in the reference.
    """
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
        default_gain = SQRT2
    elif act == "relu":
        x = F.relu(x)
        default_gain = SQRT2
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unknown activation {act!r}")
    g = default_gain if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    *,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution (cross-correlation, like ``F.conv2d``) with x2 up- or downsampling.

    Upsampling: transposed stride-2 convolution, then the FIR filter (gain up^2).
    Downsampling: FIR filter, then a strided convolution (1x1 kernels filter first as well).
    x: [N, C_in*groups..., H, W]; w: [C_out, C_in/groups, kh, kw].
    """
    assert not (up > 1 and down > 1)
    out_ch, in_per_group, kh, kw = w.shape
    p = padding
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=p, groups=groups)
    fw = f.shape[-1]
    if up > 1:
        px0 = p + (fw + up - 1) // 2 - (kw - 1)
        px1 = p + (fw - up) // 2 - (kw - up)
        if kw == 1 and kh == 1:
            x = F.conv2d(x, w, groups=groups)
            p0, p1 = p + (fw + up - 1) // 2, p + (fw - up) // 2
            return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
        # Transposed conv wants [C_in, C_out/groups, kh, kw].
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        pt = max(min(-px0, -px1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=pt, groups=groups)
        return upfirdn2d(x, f, padding=(px0 + pt, px1 + pt, px0 + pt, px1 + pt), gain=up * up)
    # down > 1
    p0 = p + (fw - down + 1) // 2
    p1 = p + (fw - down) // 2
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return F.conv2d(x, w, stride=down, groups=groups)
