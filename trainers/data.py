"""Training images: decoded once into a uint8 cache, held in memory, sharded with DistributedSampler.

Decoding is off the hot path: the first run over a folder writes ``<cache>/<key>.npy`` (N, 3, R, R)
and later runs (and every torchrun rank) memory-map it.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from trainers.common import UserError, atomic_write_bytes

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
CACHE_VERSION = 2


def list_images(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    return files


def utkface_duplicates(root: Path) -> set[str]:
    """Relative names (``images/...``) to drop: all but the first of each byte-identical group."""
    for d in (root, root.parent):
        f = d / "duplicates.csv"
        if f.is_file():
            drop, seen = set(), set()
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row["group"] in seen:
                        drop.add(Path(row["file"]).name)
                    seen.add(row["group"])
            return drop
    return set()


def is_heldout(name: str, fraction: float) -> bool:
    """A stable, name-based held-out split (the same on every machine and run)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return (h % 10_000) < fraction * 10_000


def _decode(path: Path, resolution: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        if w != h:  # centre crop to a square
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if s != resolution:
            im = im.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


@dataclass
class ImageSet:
    """uint8 images [N, 3, R, R] plus their file names."""

    images: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, idx, device=None) -> torch.Tensor:
        """Images at ``idx`` as float [-1, 1], [B, 3, R, R]."""
        x = torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(idx)]))
        return x.to(device=device, dtype=torch.float32) / 127.5 - 1


def load_images(root: str | Path, resolution: int, *, split: str = "train", heldout_fraction: float = 0.05,
                drop_duplicates: bool = True, cache_dir: str | Path | None = None,
                max_images: int | None = None) -> ImageSet:
    """All images under ``root`` (recursively) at ``resolution``, for ``split`` 'train' | 'heldout' | 'all'."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data: {root} is not a folder of images")
    files = list_images(root)
    if not files:
        raise UserError(f"--data: no images (jpg/png/webp/bmp) under {root}")
    if drop_duplicates:
        drop = utkface_duplicates(root)
        if drop:
            files = [f for f in files if f.name not in drop]
    if split != "all":
        keep = (lambda n: is_heldout(n, heldout_fraction)) if split == "heldout" else \
            (lambda n: not is_heldout(n, heldout_fraction))
        files = [f for f in files if keep(f.name)]
    if max_images:
        files = files[:max_images]
    names = [str(f.relative_to(root)) for f in files]
    key = hashlib.sha1(("\n".join(names) + f"|{resolution}|{CACHE_VERSION}|{root.resolve()}").encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "stylestudio" / "datasets"
    cpath = cache / f"{root.name}-{split}-{resolution}-{key}.npy"
    if cpath.is_file():
        try:
            arr = np.load(cpath, mmap_mode="r")
            if arr.shape == (len(names), 3, resolution, resolution):
                return ImageSet(arr, names)
        except (OSError, ValueError):
            pass
    log.info("decoding %d images from %s at %dpx (cached to %s)", len(files), root, resolution, cpath)
    arr = np.empty((len(files), 3, resolution, resolution), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            arr[i] = _decode(f, resolution)
        except OSError as e:
            raise UserError(f"--data: cannot decode {f}: {e}") from None
    try:
        import io

        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(cpath, buf.getvalue())
    except OSError as e:  # a read-only home is fine: just no cache
        log.warning("could not write the dataset cache %s: %s", cpath, e)
    return ImageSet(arr, names)


class BatchStream:
    """Endless local batches for this rank: DistributedSampler over epochs (shuffled, seeded).

    With W ranks and global batch B, rank r's batch k holds exactly the samples at global positions
    ``r, r+W, r+2W, ...`` of the single-process batch k (same permutation), so results match a
    one-process run with the same global batch. State (epoch, position) is resumable.
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world: int = 1, seed: int = 0):
        if global_batch % world:
            raise UserError(f"--batch {global_batch} must be divisible by the number of processes {world}")
        if n < global_batch:
            raise UserError(f"--batch {global_batch} is larger than the data set ({n} images)")
        self.local = global_batch // world
        self.sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.epoch = 0
        self.pos = 0
        self._indices: list[int] | None = None

    def _epoch_indices(self) -> list[int]:
        self.sampler.set_epoch(self.epoch)
        return list(iter(self.sampler))

    def next(self) -> list[int]:
        if self._indices is None:
            self._indices = self._epoch_indices()
        if self.pos + self.local > len(self._indices):
            self.epoch += 1
            self.pos = 0
            self._indices = self._epoch_indices()
        idx = self._indices[self.pos:self.pos + self.local]
        self.pos += self.local
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, d: dict) -> None:
        self.epoch, self.pos = int(d["epoch"]), int(d["pos"])
        self._indices = None
        if self.pos:
            self._indices = self._epoch_indices()
