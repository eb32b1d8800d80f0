"""Move the pack's training images to a machine that cannot read ../shared (e.g. a lent GPU box).

``pack``: the decoded training split at R px (duplicates already dropped) as JPEG mosaics of 16x16
tiles in one .npz (tiles align with JPEG blocks, so no tile bleeds into another; 4:4:4 chroma).
``unpack``: back to one lossless PNG per image under OUT/images, keeping the original file names
(the trainer's held-out split is a hash of the name, so the split is unchanged).

    python -m trainers.pack.pack_data pack ../shared/data/utkface/images 64 .gpu/utk64.npz --quality 90
    python -m trainers.pack.pack_data unpack .gpu/utk64.npz /tmp/utk
"""

from __future__ import annotations

import argparse
import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from studio.core.fileio import atomic_save_npz, atomic_write_bytes

TILES = 16


def pack(src: str, resolution: int, out: str, quality: int = 90, max_images: int | None = None,
         heldout: int = 0) -> None:
    """``max_images``: an evenly spaced subset of the training split (names sort by age, so a prefix
    would be biased); ``heldout``: also that many held-out images, evenly spaced, so that a trainer's
    held-out evaluation works on the unpacked folder (the split is a hash of the name)."""
    from PIL import Image

    from trainers.data import load_images

    ds = load_images(Path(src), resolution, split="train")
    imgs, names = np.asarray(ds.images), [Path(n).name for n in ds.names]
    if max_images is not None and max_images < len(imgs):
        keep = np.linspace(0, len(imgs) - 1, max_images).round().astype(int)
        imgs, names = imgs[keep], [names[i] for i in keep]
    if heldout > 0:
        held = load_images(Path(src), resolution, split="heldout")
        keep = np.linspace(0, len(held) - 1, min(heldout, len(held))).round().astype(int)
        imgs = np.concatenate([imgs, np.asarray(held.images)[keep]])
        names += [Path(held.names[i]).name for i in keep]
    imgs = imgs.transpose(0, 2, 3, 1)
    r, t = resolution, TILES
    blobs = []
    for s in range(0, len(imgs), t * t):
        tile = np.zeros((t * t, r, r, 3), np.uint8)
        chunk = imgs[s:s + t * t]
        tile[:len(chunk)] = chunk
        mosaic = tile.reshape(t, t, r, r, 3).transpose(0, 2, 1, 3, 4).reshape(t * r, t * r, 3)
        buf = io.BytesIO()
        Image.fromarray(mosaic).save(buf, format="JPEG", quality=quality, subsampling=0)
        blobs.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out = out if str(out).endswith(".npz") else f"{out}.npz"  # what np.savez(path) would have written
    atomic_save_npz(out, data=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets, n=len(imgs),
                    resolution=r, names=np.array(names))
    print(f"{out}: {len(imgs)} images, {offsets[-1] / 1e6:.1f} MB")


def _unpack_mosaic(args) -> int:
    blob, names, r, outdir = args
    from PIL import Image

    mosaic = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    t = TILES
    tiles = mosaic.reshape(t, r, t, r, 3).transpose(0, 2, 1, 3, 4).reshape(t * t, r, r, 3)
    for name, img in zip(names, tiles):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        atomic_write_bytes(Path(outdir) / name, buf.getvalue())  # PNG bytes; readers go by content, not suffix
    return len(names)


def unpack(src: str, out: str) -> None:
    z = np.load(src)
    data, off, names, r = z["data"], z["offsets"], list(z["names"]), int(z["resolution"])
    outdir = Path(out) / "images"
    outdir.mkdir(parents=True, exist_ok=True)
    per = TILES * TILES
    jobs = [(data[off[i]:off[i + 1]].tobytes(), names[i * per:(i + 1) * per], r, str(outdir))
            for i in range(len(off) - 1)]
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as ex:
        n = sum(ex.map(_unpack_mosaic, jobs))
    print(f"{outdir}: {n} images")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack a folder of chips into JPEG mosaics (.npz)")
    p.add_argument("src", help="folder of face chips (the train / held-out split of trainers.data)")
    p.add_argument("resolution", type=int, help="side the chips are resized to")
    p.add_argument("out", help="the .npz to write")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default %(default)s)")
    p.add_argument("--max-images", type=int, help="an evenly spaced subset of the training split")
    p.add_argument("--heldout", type=int, default=0, help="also this many held-out images (for evaluations)")
    u = sub.add_parser("unpack", help="write a packed .npz back out as PNG files")
    u.add_argument("src", help="the .npz written by pack")
    u.add_argument("out", help="folder; the images go into its images/ subfolder")
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        pack(a.src, a.resolution, a.out, a.quality, a.max_images, a.heldout)
    else:
        unpack(a.src, a.out)


if __name__ == "__main__":
    main()
