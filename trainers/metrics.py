"""Quality metrics that need no network access.

``FD-VGG16``: the Fréchet distance between Gaussian fits of ImageNet-VGG16 features (relu5_3,
global average pooled, 512-d; images resized to 128 px) of real and generated images. It is *not*
Inception FID and its values are not comparable with published FIDs. ``KID-VGG16``: the unbiased
polynomial-kernel MMD on the same features (x1000 in logs). ``PPL-W``: perceptual path length in W
with LPIPS-VGG (full paths, epsilon 1e-4, 1st-99th percentile mean).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.nets.perceptual import FeatureNet

log = logging.getLogger(__name__)

FEATURE_SIZE = 128


class VGGFeatures:
    """Pooled VGG16 relu5_3 features [N, 512] (float64 numpy) for images in [-1, 1]."""

    def __init__(self, device=None, weights_dir=None, size: int = FEATURE_SIZE):
        self.net = FeatureNet("vgg", weights_dir).to(device or "cpu")
        self.device = device or torch.device("cpu")
        self.size = size

    @torch.inference_mode()
    def __call__(self, imgs: torch.Tensor, batch: int = 50) -> np.ndarray:
        out = []
        for i in range(0, len(imgs), batch):
            x = imgs[i:i + batch].to(self.device, torch.float32).clamp(-1, 1)
            if x.shape[-1] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=x.shape[-1] > self.size)
            f = self.net.taps(x)[-1].mean(dim=[2, 3])
            out.append(f.double().cpu().numpy())
        return np.concatenate(out)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    import scipy.linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = np.real(covmean)
    return float(np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * covmean))


def kernel_inception_distance(f1: np.ndarray, f2: np.ndarray, *, num_subsets: int = 50, max_subset: int = 500,
                              seed: int = 0) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""
    n = f1.shape[1]
    m = min(len(f1), len(f2), max_subset)
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = f2[rng.choice(len(f2), m, replace=False)]
        y = f1[rng.choice(len(f1), m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


@torch.inference_mode()
def generate(G, n: int, *, psi: float = 1.0, seed: int = 123, batch: int = 50, device=None) -> torch.Tensor:
    """n images from G at truncation psi with const noise, seeded."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        k = min(batch, n - i)
        z = torch.randn([k, G.z_dim], generator=gen).to(device or "cpu")
        out.append(G.synthesis(G.map(z, psi=psi), noise_mode="const").cpu())
    return torch.cat(out)


class FDEvaluator:
    """FD-VGG16 / KID-VGG16 of a generator against a fixed real set (real features cached)."""

    def __init__(self, real_images: torch.Tensor, *, device=None, weights_dir=None):
        self.features = VGGFeatures(device, weights_dir)
        self.real = self.features(real_images)
        self.n = len(real_images)

    def __call__(self, G, *, psi: float = 1.0, seed: int = 123) -> dict[str, float]:
        fake = self.features(generate(G, self.n, psi=psi, seed=seed, device=self.features.device))
        return {"fd_vgg16": frechet_distance(self.real, fake), "kid_vgg16_x1000": 1000 * kernel_inception_distance(self.real, fake)}


@torch.inference_mode()
def ppl_w(G, lpips, *, n: int = 200, eps: float = 1e-4, seed: int = 7, batch: int = 25, device=None) -> float:
    """Perceptual path length in W (full paths), LPIPS-VGG at >= 64 px, mean over the 1-99th percentiles."""
    gen = torch.Generator().manual_seed(seed)
    dist = []
    for i in range(0, n, batch):
        k = min(batch, n - i)
        z = torch.randn([2 * k, G.z_dim], generator=gen).to(device or "cpu")
        t = torch.rand([k, 1, 1], generator=gen).to(device or "cpu")
        ws = G.map(z)
        w0, w1 = ws[:k], ws[k:]
        wt0 = torch.lerp(w0, w1, t)
        wt1 = torch.lerp(w0, w1, t + eps)
        img = G.synthesis(torch.cat([wt0, wt1]), noise_mode="const")
        if img.shape[-1] < 64:
            img = F.interpolate(img, size=(64, 64), mode="bilinear", align_corners=False)
        d = lpips(img[:k], img[k:]) / eps**2
        dist.append(d.cpu().double().numpy())
    d = np.concatenate(dist)
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
