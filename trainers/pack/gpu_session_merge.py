"""Join an encoder file that ``gpu_session.sh`` brought back without its generator (``E_*.safetensors``,
perhaps in ``.part-NN`` pieces) with the generator tensors of a model file of the same pack, giving
a model file that ``load_checkpoint`` and ``build_pack --encoder`` read.

    python -m trainers.pack.gpu_session_merge /work/.device/1/E_wn0.005.safetensors \\
        /work/runs/00007-e2style-pack-vgg/best.safetensors /work/runs/gpu-s18/e2style-wn0.005.safetensors

The generator donor must be a model file trained against the same pack generator (any encoder run's
``best.safetensors``): the generator's tensors are copied, the encoder's and the metadata are the
returned file's.
"""

from __future__ import annotations

import argparse
import glob
import io
import json

from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from studio.core.fileio import atomic_write_bytes


def read_parts(path: str) -> bytes:
    """The file's bytes, or its ``.part-NN`` pieces joined in order."""
    parts = sorted(glob.glob(glob.escape(path) + ".part-*"))
    if not parts:
        with open(path, "rb") as f:
            return f.read()
    buf = io.BytesIO()
    for p in parts:
        with open(p, "rb") as f:
            buf.write(f.read())
    return buf.getvalue()


def merge(returned: str, donor: str, out: str) -> None:
    raw = read_parts(returned)
    tensors = load_bytes(raw)
    n = int.from_bytes(raw[:8], "little")  # the safetensors header, for the metadata
    meta = json.loads(raw[8:8 + n]).get("__metadata__")
    if any(k.startswith("generator/") for k in tensors):
        raise SystemExit(f"{returned} already holds a generator")
    with safe_open(donor, "pt") as f:
        gen = {k: f.get_tensor(k) for k in f.keys() if k.startswith("generator/")}  # noqa: SIM118 (not a dict)
    if not gen:
        raise SystemExit(f"{donor} holds no generator tensors")
    atomic_write_bytes(out, save_bytes({**gen, **tensors}, meta))
    print(f"{out}: {len(tensors)} encoder tensors + {len(gen)} generator tensors from {donor}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("returned", help="encoder file returned by a GPU session (no generator tensors)")
    ap.add_argument("donor", help="any encoder checkpoint trained against the same generator")
    ap.add_argument("out", help="merged checkpoint to write")
    a = ap.parse_args(argv)
    merge(a.returned, a.donor, a.out)


if __name__ == "__main__":
    main()
