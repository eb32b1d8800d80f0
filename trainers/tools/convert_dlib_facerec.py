"""Convert dlib's face recognition ResNet to a safetensors file for :mod:`studio.core.nets.facerec`.

    python -m trainers.tools.convert_dlib_facerec                       # -> resources/facerec/, float16
    python -m trainers.tools.convert_dlib_facerec --dat MODEL.dat --out W.safetensors --dtype float32

StyleStudio does not need this file: :func:`studio.core.nets.facerec.load_facerec` reads the
installed ``.dat`` directly (~0.2 s). It is for setups without ``face-recognition-models``, or to
pin the weights next to a trained model. The float16 file is 11 MB (5.6 M parameters), which is why
the app does not ship it in ``resources/`` (capped at 60 MB).

Source and licence
------------------
* Weights: ``dlib_face_recognition_resnet_model_v1.dat`` by Davis King, trained by him on ~3 M faces
  of 7485 identities (FaceScrub, VGG-Face and scraped images), 99.38% on LFW. Released into the
  **public domain** (README of https://github.com/davisking/dlib-models, commit
  fd81b6308a6a73d4ce08859eb2f4b628a21e27a2: "anyone can do whatever they want with these model
  files as I've released them into the public domain").
* Copy read: PyPI ``face-recognition-models==0.3.0`` (MIT, Adam Geitgey), a required dependency of
  StyleStudio; file sha256 ``55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30``.
* Format: dlib's serialisation (``dlib/serialize.h``, ``dlib/dnn/{core,layers,input}.h``, Boost
  licence); tensors are raw little-endian float32. Only the numbers are read, no code. The network
  definition is re-implemented in :mod:`studio.core.nets.facerec` from dlib's
  ``examples/dnn_face_recognition_ex.cpp``.
* Considered and not used: the TF.js port in ``@vladmandic/face-api`` / ``face-api.js`` (MIT). Its
  weights are an 8-bit quantised copy of the same dlib model (``face_recognition_model.bin``, 6.4 MB);
  the original float32 file is already installed, so converting the quantised copy would only add
  error.

The output holds :class:`studio.core.nets.facerec.FaceRecNet`'s state dict (dlib's ``affine``
layers folded into the convolutions) plus metadata: source file, its sha256, licence, dtype.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from studio.core.errors import StudioError
from studio.core.nets.facerec import (
    DAT_SHA256,
    WEIGHTS_FILE,
    FaceRecNet,
    _installed_dat,
    default_weight_dirs,
    read_dlib_dat,
)

LICENCE = ("public domain (Davis King, github.com/davisking/dlib-models); packaged by PyPI "
           "face-recognition-models 0.3.0 (MIT)")


def convert(dat: Path, out: Path, dtype: str = "float16") -> dict:
    """Write the safetensors file; returns the metadata written."""
    from safetensors.torch import save as st_save

    from studio.core.fileio import atomic_write_bytes

    sd, info = read_dlib_dat(dat)
    FaceRecNet().load_state_dict(sd)  # shapes check
    dt = {"float16": torch.float16, "float32": torch.float32}[dtype]
    tensors = {k: (v if k == "mean_rgb" else v.to(dt)).contiguous() for k, v in sd.items()}
    meta = {"format": "stylestudio-facerec", "network": "dlib_face_recognition_resnet_model_v1",
            "source_file": Path(info["file"]).name, "source_sha256": info["sha256"],
            "licence": LICENCE, "dtype": dtype}
    atomic_write_bytes(out, st_save(tensors, metadata=meta))
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainers.tools.convert_dlib_facerec", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dat", help="dlib_face_recognition_resnet_model_v1.dat (default: the installed one)")
    ap.add_argument("--out", help=f"output file (default: resources/facerec/{WEIGHTS_FILE})")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    a = ap.parse_args(argv)
    dat = Path(a.dat) if a.dat else _installed_dat()
    if dat is None:
        print("error: face-recognition-models is not installed; pass --dat", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else default_weight_dirs()[-1] / WEIGHTS_FILE
    try:
        meta = convert(dat, out, a.dtype)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if meta["source_sha256"] != DAT_SHA256:
        print(f"note: {dat} is not the face-recognition-models 0.3.0 file (sha256 {meta['source_sha256']})",
              file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {a.dtype}, from {dat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
