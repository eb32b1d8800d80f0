"""StyleGAN2 generator and discriminator in plain PyTorch (METHODS.md §1).

One architecture covers NVIDIA stylegan2-ada-pytorch and rosinality models: the module tree and
parameter names follow NVIDIA's (``mapping.fc0``, ``synthesis.b4.conv1.affine``, ...), and
:mod:`studio.core.formats.rosinality_pt` maps rosinality's names onto it. The fixed FIR filters are
non-persistent buffers (never read from files). Channels per resolution are
``min(channel_base // res, channel_max)``; rosinality's ``channel_multiplier`` m equals
``channel_base = 16384 * m`` with ``channel_max = 512``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from studio.core.nets import ops

# ----------------------------------------------------------------------------
# Configs (frozen; ``type(net)(**asdict(net.config))`` rebuilds a network).


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 512                 # input latent size
    w_dim: int = 512                 # intermediate latent size
    img_resolution: int = 256        # output resolution (power of two >= 4)
    img_channels: int = 3            # RGB
    mapping_layers: int = 8          # fully connected layers in the mapping network
    mapping_lr_mul: float = 0.01     # equalized-lr multiplier of the mapping layers
    w_avg_beta: float = 0.995        # decay of the tracked w_avg (training only)
    channel_base: int = 32768        # channels = min(channel_base // res, channel_max)
    channel_max: int = 512
    conv_clamp: float | None = None  # clamp of conv outputs (NVIDIA ADA configs use 256)
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)


@dataclass(frozen=True)
class DiscriminatorConfig:
    img_resolution: int = 256
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    mbstd_group_size: int | None = 4  # minibatch-stddev group size (None = whole batch)
    mbstd_num_channels: int = 1
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)


def channels_for(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


def num_ws_for(img_resolution: int) -> int:
    """W+ length: one per conv plus the last toRGB (18 at 1024, 14 at 256, 10 at 64)."""
    return 2 * int(math.log2(img_resolution)) - 2


def _check_resolution(res: int) -> int:
    log2 = int(round(math.log2(res))) if res > 0 else 0
    if res < 4 or 2**log2 != res:
        raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
    return log2


# ----------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer: y = act(x @ (W * lr/sqrt(in))^T + b * lr)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = float(lr_multiplier / np.sqrt(in_features))
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim] (pixel norm, then equalized-lr FC layers with lrelu)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))  # [N, z_dim]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x  # [N, w_dim]

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor) -> None:
        """Track the average w during training (EMA with ``w_avg_beta``)."""
        self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))


def modulated_conv2d(
    x: torch.Tensor,          # [N, C_in, H, W]
    weight: torch.Tensor,     # [C_out, C_in, kh, kw]
    styles: torch.Tensor,     # [N, C_in]
    *,
    noise: torch.Tensor | None = None,  # broadcastable to the output
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution. ``fused`` uses one grouped conv (per-sample weights);
    otherwise the activations are scaled before and after a shared conv (cheaper for training)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    dcoefs = None
    if not fused:
        if demodulate:
            # sum_{i,k} (w_oik s_i)^2 = (s^2 @ sum_k w_oik^2): no [N, O, I, k, k] tensor (training path).
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = ops.conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = ops.conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional x2 upsampling), noise, bias, lrelu (clamped)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *,
                 kernel_size: int = 3, up: int = 1, conv_clamp: float | None = None,
                 resample_filter: torch.Tensor):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up = resolution, up
        self.padding = kernel_size // 2
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", resample_filter.clone(), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, noise_mode: str = "const",
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                fused: bool = True) -> torch.Tensor:
        styles = self.affine(w)  # [N, C_in]
        n = x.shape[0]
        if noise is not None:  # explicit noise map [N or 1, 1, res, res] (projector)
            noise = noise * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode == "random":
            r = self.resolution
            noise = torch.randn([n, 1, r, r], device=x.device, generator=generator) * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=fused)
        return ops.bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation, plus bias (clamped)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = float(1 / np.sqrt(in_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [const |] conv0(up) conv1, torgb; RGB skip summed."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, *, conv_clamp: float | None, resample_filter: torch.Tensor):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", resample_filter.clone(), persistent=False)
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        conv_clamp=conv_clamp, resample_filter=resample_filter)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, *,
                noise_mode: str = "const", noises: list | None = None,
                generator: torch.Generator | None = None, fused: bool = True):
        # ws: [N, num_conv + num_torgb, w_dim]
        kw = dict(noise_mode=noise_mode, generator=generator, fused=fused)
        k = 0
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, ws[:, 0], noise=None if noises is None else noises[0], **kw)
            k = 1
        else:
            x = self.conv0(x, ws[:, 0], noise=None if noises is None else noises[0], **kw)
            x = self.conv1(x, ws[:, 1], noise=None if noises is None else noises[1], **kw)
            k = 2
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, k], fused=fused)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] -> image [N, C, R, R] (values around [-1, 1], not clamped)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, *, channel_base: int,
                 channel_max: int, conv_clamp: float | None, resample_filter: tuple[int, ...]):
        super().__init__()
        log2 = _check_resolution(img_resolution)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.channels = {r: channels_for(r, channel_base, channel_max) for r in self.block_resolutions}
        f = ops.setup_filter(resample_filter)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, self.channels[res], w_dim, res, img_channels,
                                   conv_clamp=conv_clamp, resample_filter=f)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def block_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Split W+ into the slices each block reads (a toRGB reuses the next conv's w)."""
        out, idx = [], 0
        for block in self.blocks():
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    def noise_layers(self) -> list[SynthesisLayer]:
        """The noise-carrying layers in W+ order (one per conv)."""
        layers = []
        for block in self.blocks():
            if block.in_channels != 0:
                layers.append(block.conv0)
            layers.append(block.conv1)
        return layers

    def forward(self, ws: torch.Tensor, *, noise_mode: str = "const", noises: list | None = None,
                generator: torch.Generator | None = None, fused: bool = True) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        k = 0
        for block, bws in zip(self.blocks(), self.block_ws(ws)):
            nb = None
            if noises is not None:
                nb = noises[k: k + block.num_conv]
            k += block.num_conv
            x, img = block(x, img, bws, noise_mode=noise_mode, noises=nb, generator=generator, fused=fused)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator (skip architecture): ``mapping`` z -> W+, ``synthesis`` W+ -> image."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 256,
                 img_channels: int = 3, mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995, channel_base: int = 32768, channel_max: int = 512,
                 conv_clamp: float | None = None, resample_filter: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.config = GeneratorConfig(z_dim, w_dim, img_resolution, img_channels, mapping_layers,
                                      mapping_lr_mul, w_avg_beta, channel_base, channel_max,
                                      conv_clamp, tuple(resample_filter))
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base=channel_base,
                                          channel_max=channel_max, conv_clamp=conv_clamp,
                                          resample_filter=tuple(resample_filter))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_lr_mul, w_avg_beta)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def img_resolution(self) -> int:
        return self.config.img_resolution

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def map(self, z: torch.Tensor, *, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z [N, z_dim] -> W+ [N, num_ws, w_dim] with truncation (psi, first ``cutoff`` layers)."""
        w = self.mapping(z)
        ws = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        return truncate(ws, self.mapping.w_avg, psi, cutoff)

    def forward(self, z: torch.Tensor, *, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "const", generator: torch.Generator | None = None) -> torch.Tensor:
        return self.synthesis(self.map(z, psi=psi, cutoff=cutoff), noise_mode=noise_mode, generator=generator)

    def sample_z(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
        """Standard-normal z [n, z_dim]; ``seed`` gives NVIDIA's convention (numpy RandomState(seed).randn)."""
        if seed is not None:
            z = np.random.RandomState(seed).randn(n, self.z_dim)
            return torch.from_numpy(z).to(torch.float32).to(device)
        return torch.randn([n, self.z_dim], generator=generator, device=device)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
    """Truncation trick: ``w_avg + psi * (w - w_avg)`` on rows ``[:cutoff]`` (all rows if None)."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


# ----------------------------------------------------------------------------
# Discriminator (residual, minibatch stddev)


class Conv2dLayer(nn.Module):
    """Equalized-lr conv with optional x2 down/upsampling, bias, activation, clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 conv_clamp: float | None = None, resample_filter: torch.Tensor):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", resample_filter.clone(), persistent=False)
        self.weight_gain = float(1 / np.sqrt(in_channels * kernel_size**2))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = ops.conv2d_resample(x, w.to(x.dtype), self.resample_filter, up=self.up, down=self.down,
                                padding=self.padding)
        default_gain = ops.SQRT2 if self.activation in ("lrelu", "relu") else 1.0
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, act=self.activation, gain=default_gain * gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: [fromrgb], conv0, conv1(down), skip 1x1(down); sum scaled by sqrt(0.5)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int, *,
                 conv_clamp: float | None, resample_filter: torch.Tensor):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", resample_filter.clone(), persistent=False)
        f = resample_filter
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu",
                                       conv_clamp=conv_clamp, resample_filter=f)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu",
                                 conv_clamp=conv_clamp, resample_filter=f)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 conv_clamp=conv_clamp, resample_filter=f)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=f)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=float(np.sqrt(0.5)))
        x = self.conv0(x)
        x = self.conv1(x, gain=float(np.sqrt(0.5)))
        return y + x


def minibatch_stddev(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group feature stddev as extra channel(s): [N, C, H, W] -> [N, C+F, H, W]."""
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size is not None else n
    if n % g != 0:
        raise ValueError(f"batch size {n} must be divisible by the mbstd group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)     # [G, n, F, c, H, W]
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])                 # [n, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, resolution: int, *, mbstd_group_size: int | None,
                 mbstd_num_channels: int, conv_clamp: float | None, resample_filter: torch.Tensor):
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)  # [N, 1]


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: image [N, C, R, R] -> logits [N, 1]."""

    def __init__(self, img_resolution: int = 256, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None,
                 mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 resample_filter: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.config = DiscriminatorConfig(img_resolution, img_channels, channel_base, channel_max,
                                          conv_clamp, mbstd_group_size, mbstd_num_channels,
                                          tuple(resample_filter))
        log2 = _check_resolution(img_resolution)
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        ch = {r: channels_for(r, channel_base, channel_max) for r in self.block_resolutions + [4]}
        f = ops.setup_filter(resample_filter)
        for res in self.block_resolutions:
            in_ch = ch[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch[res], ch[res // 2], img_channels,
                                                        conv_clamp=conv_clamp, resample_filter=f))
        self.b4 = DiscriminatorEpilogue(ch[4], 4, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp,
                                        resample_filter=f)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)


def config_dict(net: nn.Module) -> dict:
    """JSON-able constructor kwargs of a network (tuples become lists)."""
    d = asdict(net.config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
