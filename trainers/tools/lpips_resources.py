"""Write the LPIPS weights the app needs at run time into ``resources/lpips`` (from ``../shared/data/lpips``).

    python -m trainers.tools.lpips_resources                    # -> resources/lpips
    python -m trainers.tools.lpips_resources --src DIR --out DIR --vgg fp16

* AlexNet features: float16 safetensors as in the source (4.9 MB);
* VGG16 features: per-output-channel int8 (:func:`studio.core.nets.perceptual.quantize_int8`, 15 MB in
  one file) - or with ``--vgg fp16`` the float16 tensors (29 MB) in two shards under 20 MB each;
* the two linear heads (``lpips_v0.1_*_lin.pth``, a few kB) copied byte for byte.

Older copies of the VGG16 weights in ``--out`` (the other format, or surplus shards) are removed
once the new copy is written, so the loader cannot pick a stale one. Every file is written atomically. Only tensors are read (``weights_only``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from studio.core.fileio import atomic_write_bytes
from studio.core.nets.perceptual import WEIGHT_FILES, load_weight_files, quantize_int8

REPO = Path(__file__).resolve().parents[2]
HEADS = ("lpips_v0.1_alex_lin.pth", "lpips_v0.1_vgg_lin.pth")
SHARD_BYTES = 16_000_000


def _save(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))


def write(src: Path, out: Path, *, vgg: str = "int8") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    alex = torch.load(src / WEIGHT_FILES["alex"], map_location="cpu", weights_only=True)
    written.append(out / "alexnet_features_fp16.safetensors")
    _save(alex, written[-1], {"source": WEIGHT_FILES["alex"], "dtype": "float16"})

    sd = load_weight_files(src / WEIGHT_FILES["vgg"])
    stale = {*out.glob("vgg16_features_fp16.part*.safetensors"), out / "vgg16_features_fp16.safetensors",
             out / "vgg16_features_int8.safetensors"}
    if vgg == "int8":
        written.append(out / "vgg16_features_int8.safetensors")
        _save(quantize_int8(sd), written[-1], {"source": WEIGHT_FILES["vgg"],
                                               "dtype": "int8 per output channel (weights), float16 (biases)"})
    else:
        shard: dict[str, torch.Tensor] = {}
        size = 0
        shards = []
        for k in sorted(sd, key=lambda k: int(k.split(".")[1])):
            nbytes = sd[k].numel() * 2
            if shard and size + nbytes > SHARD_BYTES:
                shards.append(shard)
                shard, size = {}, 0
            shard[k] = sd[k].half()
            size += nbytes
        if shard:
            shards.append(shard)
        for i, part in enumerate(shards, 1):
            written.append(out / f"vgg16_features_fp16.part{i}.safetensors")
            _save(part, written[-1], {"source": WEIGHT_FILES["vgg"], "dtype": "float16"})
    for old in stale - set(written):  # only once the new copy is complete
        old.unlink(missing_ok=True)
    for name in HEADS:
        atomic_write_bytes(out / name, (src / name).read_bytes())
        written.append(out / name)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainers.tools.lpips_resources", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "lpips")
    ap.add_argument("--out", type=Path, default=REPO / "resources" / "lpips")
    ap.add_argument("--vgg", choices=("int8", "fp16"), default="int8")
    args = ap.parse_args(argv)
    for p in write(args.src, args.out, vgg=args.vgg):
        print(f"{p}  {p.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
