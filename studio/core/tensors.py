"""Small conversions shared by the CLI, the engine and the trainers (no I/O)."""

from __future__ import annotations

import math

import numpy as np
import torch


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 on the CPU (clamped, rounded)."""
    x = (img.detach().float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_grid(imgs: np.ndarray, cols: int | None = None) -> np.ndarray:
    """[N, H, W, C] -> one [rows*H, cols*W, C] image (row-major, black where empty)."""
    n, h, w, c = imgs.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=imgs.dtype)
    for i, im in enumerate(imgs):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = im
    return grid


def pick_device(name: str | torch.device | None) -> torch.device:
    """'auto' / None -> CUDA when present, else CPU; 'cpu', 'cuda' or 'cuda:N' as given, checked.

    Raises :class:`~studio.core.errors.StudioError` for an unknown name or a GPU this PyTorch cannot use.
    """
    from studio.core.errors import StudioError

    if name is None or str(name).strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(name).strip().lower())
    except (RuntimeError, ValueError):
        raise StudioError(f"unknown device {str(name)!r}: use auto, cpu or cuda (cuda:N for GPU N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise StudioError(f"device {str(name)!r} is not supported: use auto, cpu or cuda (cuda:N for GPU N)")
    if not torch.cuda.is_available():
        raise StudioError(f"device {str(name)!r}: CUDA is not available here (a CPU-only PyTorch, or no "
                          f"NVIDIA GPU and driver); use the CPU (device cpu or auto)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise StudioError(f"device {str(name)!r}: there are only {torch.cuda.device_count()} CUDA device(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return dev
