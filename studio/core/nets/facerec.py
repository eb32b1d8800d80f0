"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in pure PyTorch.

Why this network: the identity loss of the encoder trainer needs a *differentiable* face
recognition network, and StyleStudio already depends on dlib's (``face-recognition-models``) for
its ID metric (:mod:`studio.core.identity`). dlib itself cannot give gradients, so this module
re-implements the network and reads the very same ``.dat`` file: given the same 150x150 chip, the
descriptors agree with dlib's to float rounding (cosine 1.000000, largest difference 4.5e-7 over 10
CelebA-HQ and 40 UTKFace faces; ``tests/core/test_facerec.py``), so the identity loss optimises the
quantity the ID metric reports.

The weights are the public-domain model file by Davis King (README of
https://github.com/davisking/dlib-models: "anyone can do whatever they want with these model
files as I've released them into the public domain"), as packaged by the MIT-licensed PyPI
package ``face-recognition-models==0.3.0``. The TF.js port of the same network in the MIT-licensed
``@vladmandic/face-api`` / ``face-api.js`` (``src/faceRecognitionNet``) served as a cross-check of
the layer order (same 5,614,592 parameters before folding); its weights are an 8-bit quantised
copy of dlib's and are not used.

Architecture (dlib's ``dnn_face_recognition_ex.cpp``, "ResNet-34 with a few layers removed and
half the filters"; 29 convolutions, 5.6 M parameters):

* input: a 150x150 RGB face chip (``dlib.get_face_chip(img, shape, size=150, padding=0.25)``),
  ``(pixel - mean_rgb) / 256`` with ``mean_rgb`` = (122.782, 117.001, 104.298) (read from the file);
* ``conv 7x7/2 (32, no padding) - affine - relu - max_pool 3x3/2 (no padding)``: 150 -> 72 -> 35;
* residual units ``relu(x + affine(conv3x3(relu(affine(conv3x3/s(x))))))``: 3 x 32 ch at 35 px;
  then [down 64, 3 x 64], [down 128, 2 x 128], [down 256, 2 x 256], [down 256]. A *down* unit's
  first conv has stride 2 and no padding, its shortcut is ``avg_pool 2x2/2`` of ``x``; where the
  two differ in size (channels 32 -> 64, or 3x3 vs 4x4 maps) dlib's ``add_prev`` zero-pads the
  smaller at the end (35 -> 17 -> 8 -> 4 -> 2 px);
* global average pool, ``fc 256 -> 128`` without bias: the 128-d descriptor (norm ~1.5; dlib's
  same-person rule is a euclidean distance < 0.6).

dlib's ``affine`` layers (frozen batch norm) are folded into the preceding convolutions when the
file is read, so every conv here carries a bias. Weights are read from, in order: an explicit
safetensors file, ``$STYLESTUDIO_FACEREC_DIR``/``resources/facerec`` (``facerec_dlib_resnet_v1
.safetensors``, written by ``python -m trainers.tools.convert_dlib_facerec``), else straight from
the installed ``face-recognition-models`` package (parsing the 22 MB ``.dat`` takes ~0.2 s; nothing
is downloaded). The fp16 safetensors copy is 11 MB, too large for the app's 60 MB resources budget,
so the app itself reads the installed ``.dat``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.core.errors import CheckpointError

__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DAT_FILE",
    "DAT_SHA256",
    "DLIB_MEAN_RGB",
    "TAPS",
    "WEIGHTS_FILE",
    "FaceRecNet",
    "aligned_chip_box",
    "find_facerec_weights",
    "load_facerec",
    "load_facerec_state",
    "mean_face_landmarks",
    "read_dlib_dat",
]

#: Side of dlib's face chip and its padding (``compute_face_descriptor`` defaults).
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: dlib's ``input_rgb_image_sized`` mean (the model file stores the same values).
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
WEIGHTS_FILE = "facerec_dlib_resnet_v1.safetensors"
DAT_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: sha256 of ``dlib_face_recognition_resnet_model_v1.dat`` in face-recognition-models 0.3.0.
DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

# (in_channels, out_channels, down) of the 14 residual units, input to output.
UNITS: tuple[tuple[int, int, bool], ...] = (
    (32, 32, False), (32, 32, False), (32, 32, False),
    (32, 64, True), (64, 64, False), (64, 64, False), (64, 64, False),
    (64, 128, True), (128, 128, False), (128, 128, False),
    (128, 256, True), (256, 256, False), (256, 256, False),
    (256, 256, True),
)
#: Units whose outputs :meth:`FaceRecNet.features` taps (the last unit of each full-size stage).
TAPS = (2, 6, 9, 12)


def _pad_to(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Zero-pad ``t`` (N, C, H, W) at the end of C, H and W up to ``(c, h, w)`` (dlib's add_prev)."""
    dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
    if dc or dh or dw:
        t = F.pad(t, (0, dw, 0, dh, 0, dc))
    return t


class ResUnit(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        sc = F.avg_pool2d(x, 2, 2) if self.down else x
        if sc.shape != out.shape:
            c, h, w = (max(a, b) for a, b in zip(out.shape[1:], sc.shape[1:]))
            out, sc = _pad_to(out, c, h, w), _pad_to(sc, c, h, w)
        return F.relu(out + sc)


class FaceRecNet(nn.Module):
    """dlib's face recognition ResNet: ``(N, 3, 150, 150)`` -> ``(N, 128)`` descriptors.

    :meth:`forward` takes RGB in ``[0, 255]`` (float, like dlib's pixels); :meth:`forward_chip`
    takes ``[-1, 1]``. Always frozen and in eval mode (there is no batch norm or dropout anyway),
    but gradients flow to the input. Other input sizes work (global average pool) but only
    150x150 chips match dlib.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.units = nn.ModuleList(ResUnit(*u) for u in UNITS)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen, always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x, levels=1)[-1]

    def features(self, x: torch.Tensor, levels: int = 1) -> list[torch.Tensor]:
        """The last ``levels`` (1..5) of: the outputs of the 32-, 64-, 128- and 256-channel stages
        at full resolution (35, 17, 8 and 4 px), and the descriptor; the descriptor is last.
        ``levels=5`` are the taps of E2Style's multi-layer identity loss."""
        if not 1 <= levels <= len(TAPS) + 1:
            raise ValueError(f"levels must be 1..{len(TAPS) + 1}, got {levels}")
        x = (x - self.mean_rgb.to(x.dtype)) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        taps = []
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i in TAPS:
                taps.append(x)
        taps.append(self.fc(x.mean(dim=(2, 3))))
        return taps[len(taps) - levels:]

    def forward_chip(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors of chips in ``[-1, 1]`` (the generator's range)."""
        return self((x + 1.0) * 127.5)


#---------------------------------------------------------------------------------------------------
# Reading dlib's serialised network.


class _Reader:
    """dlib's serialisation primitives (``dlib/serialize.h``, ``dlib/cuda/tensor.h``)."""

    def __init__(self, data: bytes, name: str):
        self.d = data
        self.pos = 0
        self.name = name

    def fail(self, what: str):
        raise CheckpointError(self.name, f"not dlib's face recognition model ({what} at byte {self.pos})")

    def int(self) -> int:
        """dlib's compressed integer: a control byte (size | 0x80 if negative), then size LE bytes."""
        if self.pos >= len(self.d):
            self.fail("unexpected end of file")
        ctl = self.d[self.pos]
        size = ctl & 0x0F
        if size == 0 or size > 8 or ctl & 0x70:
            self.fail("bad integer")
        v = int.from_bytes(self.d[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -v if ctl & 0x80 else v

    def float(self) -> float:
        """dlib's portable float: mantissa (int64) * 2**exponent (int16)."""
        m = self.int()
        e = self.int()
        return float(m) * 2.0 ** e

    def string(self) -> str:
        n = self.int()
        s = self.d[self.pos:self.pos + n]
        self.pos += n
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            self.fail("bad string")
            raise

    def expect(self, *versions: str) -> str:
        s = self.string()
        if s not in versions:
            self.fail(f"expected {'/'.join(versions)}, found {s[:40]!r}")
        return s

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            self.fail("unknown tensor version")
        shape = [self.int() for _ in range(4)]
        n = int(np.prod(shape))
        end = self.pos + 4 * n
        if n < 0 or end > len(self.d):
            self.fail("truncated tensor")
        a = np.frombuffer(self.d, dtype="<f4", count=n, offset=self.pos).reshape(shape)
        self.pos = end
        return a

    def find(self, version: str, start: int | None = None) -> int:
        """Position of the next serialised string ``version`` (length-prefixed)."""
        pat = bytes([1, len(version)]) + version.encode("ascii")
        i = self.d.find(pat, self.pos if start is None else start)
        if i < 0:
            self.fail(f"no {version!r} layer")
        return i


def read_dlib_dat(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict (float32, affine layers folded) of :class:`FaceRecNet` from dlib's ``.dat`` file.

    Returns ``(state_dict, info)`` with ``info`` = mean RGB, number of layers, sha256 of the file.
    Raises :class:`CheckpointError` for anything that is not this network.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(p, f"cannot read dlib model ({e.strerror or e})") from None
    r = _Reader(data, str(p))
    if not data.startswith(b"\x01\x01\x01\x0dloss_metric_"):
        r.fail("no metric loss layer")
    # The file starts with add_loss_layer's version and loss_metric_'s details; the sub-network follows,
    # serialised input layer first (dlib's add_layer writes its sub-network before its own layer).
    r.pos = r.find("input_rgb_image_sized", 0)
    r.expect("input_rgb_image_sized")
    mean = tuple(r.float() for _ in range(3))
    if r.int() != CHIP_SIZE or r.int() != CHIP_SIZE:
        r.fail("input is not 150x150")

    def conv(stride: int, ksize: int) -> tuple[np.ndarray, np.ndarray]:
        r.pos = r.find("con_4")
        r.expect("con_4")
        params = r.tensor().reshape(-1)
        nf = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        pad = ksize // 2 if stride == 1 else 0  # dlib's default padding
        if (nr, nc, sy, sx, py, px) != (ksize, ksize, stride, stride, pad, pad):
            r.fail(f"unexpected convolution {nf}x{nr}x{nc}/{sy} pad {py}")
        cin = (params.size - nf) // (nf * nr * nc)
        if cin * nf * nr * nc + nf != params.size:
            r.fail("conv parameter count")
        w = params[:-nf].reshape(nf, cin, nr, nc)
        b = params[-nf:]
        # the affine_ (frozen BN) right after the conv: y = gamma * (w*x + b) + beta
        r.pos = r.find("affine_")
        r.expect("affine_", "affine_2")
        ab = r.tensor().reshape(-1)
        if ab.size != 2 * nf:
            r.fail("affine parameter count")
        gamma, beta = ab[:nf].astype(np.float64), ab[nf:].astype(np.float64)
        w = (w.astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
        b = (b.astype(np.float64) * gamma + beta).astype(np.float32)
        return w, b

    sd: dict[str, torch.Tensor] = {}

    def put(name: str, wb: tuple[np.ndarray, np.ndarray]) -> None:
        sd[f"{name}.weight"] = torch.from_numpy(wb[0].copy())
        sd[f"{name}.bias"] = torch.from_numpy(wb[1].copy())

    put("stem", conv(2, 7))
    for i, (_cin, _cout, down) in enumerate(UNITS):
        put(f"units.{i}.conv1", conv(2 if down else 1, 3))
        put(f"units.{i}.conv2", conv(1, 3))
    r.pos = r.find("fc_2") if data.find(b"\x01\x04fc_2", r.pos) >= 0 else r.find("fc_3")
    r.expect("fc_2", "fc_3")
    n_out, n_in = r.int(), r.int()
    fcw = r.tensor().reshape(-1)
    if (n_out, n_in) != (128, 256) or fcw.size != 256 * 128:
        r.fail("unexpected fc layer")
    sd["fc.weight"] = torch.from_numpy(fcw.reshape(256, 128).T.copy())  # dlib: out = x @ W
    sd["mean_rgb"] = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    info = {"mean_rgb": mean, "convs": 1 + 2 * len(UNITS), "sha256": hashlib.sha256(data).hexdigest(),
            "file": str(p)}
    return sd, info


#---------------------------------------------------------------------------------------------------
# Finding and loading the weights.


def default_weight_dirs() -> list[Path]:
    """Where a converted ``facerec_dlib_resnet_v1.safetensors`` is looked for."""
    here = Path(__file__).resolve()
    dirs = []
    if os.environ.get("STYLESTUDIO_FACEREC_DIR"):
        dirs.append(Path(os.environ["STYLESTUDIO_FACEREC_DIR"]))
    dirs += [here.parents[2] / "resources" / "facerec", here.parents[3] / "resources" / "facerec"]
    return dirs


def _installed_dat() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    for loc in list(spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / "models" / DAT_FILE
        if p.is_file():
            return p
    return None


MISSING_HINT = ("the face recognition weights were not found: install the models with "
                "`pip install face-recognition-models==0.3.0` (they hold dlib's "
                f"{DAT_FILE}), or put {WEIGHTS_FILE} (made by `python -m trainers.tools."
                "convert_dlib_facerec`) in resources/facerec or $STYLESTUDIO_FACEREC_DIR")


def find_facerec_weights(weights: str | Path | None = None) -> Path:
    """The weights file to use: ``weights`` if given, else a converted safetensors in the search
    folders, else the installed dlib ``.dat``. Raises :class:`CheckpointError` when there is none."""
    if weights is not None:
        p = Path(weights)
        if p.is_dir():
            p = p / WEIGHTS_FILE
        if not p.is_file():
            raise CheckpointError(p, "face recognition weights not found")
        return p
    for d in default_weight_dirs():
        if (d / WEIGHTS_FILE).is_file():
            return d / WEIGHTS_FILE
    dat = _installed_dat()
    if dat is None:
        raise CheckpointError(None, MISSING_HINT)
    return dat


_state_cache: dict[tuple[str, float], dict[str, torch.Tensor]] = {}
_state_lock = threading.Lock()


def load_facerec_state(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The float32 state dict of :class:`FaceRecNet` (cached per file for the process)."""
    p = find_facerec_weights(weights)
    key = (str(p.resolve()), p.stat().st_mtime)
    with _state_lock:
        sd = _state_cache.get(key)
        if sd is None:
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                try:
                    sd = {k: v.float() for k, v in load_file(str(p)).items()}
                except Exception as e:  # noqa: BLE001 - any unreadable file: one clear error
                    raise CheckpointError(p, f"cannot read face recognition weights ({str(e)[:200]})") from None
            else:
                sd, _info = read_dlib_dat(p)
            _state_cache[key] = sd
    return sd


def load_facerec(device: str | torch.device = "cpu", weights: str | Path | None = None) -> FaceRecNet:
    """A frozen :class:`FaceRecNet` with dlib's weights on ``device`` (see :func:`find_facerec_weights`)."""
    sd = load_facerec_state(weights)
    net = FaceRecNet()
    try:
        net.load_state_dict(sd)
    except RuntimeError as e:
        raise CheckpointError(find_facerec_weights(weights),
                              f"not dlib face recognition weights ({str(e)[:200]})") from None
    return net.to(device)


#---------------------------------------------------------------------------------------------------
# dlib's face chip inside an aligned image (for the identity loss on generator outputs).

# dlib's mean face (points 17..67 of the 68-point layout, unit square of the chip without padding),
# from ``get_face_chip_details`` in dlib/image_transforms/interpolation.h.
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689)
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182)


def mean_face_landmarks(padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's mean face as ``(68, 2)`` landmarks in chip units (the chip is ``[0, 1]^2``).

    Points 0-16 (jaw; dlib does not use them for the chip) are left at NaN.
    """
    lm = np.full((68, 2), np.nan)
    lm[17:, 0] = (padding + np.asarray(_MEAN_FACE_X)) / (2 * padding + 1)
    lm[17:, 1] = (padding + np.asarray(_MEAN_FACE_Y)) / (2 * padding + 1)
    return lm


def aligned_chip_box(profile=None, padding: float = CHIP_PADDING) -> tuple[float, float, float, float]:
    """Where dlib's face chip lies in an image aligned with ``profile``: ``(left, top, right,
    bottom)`` as fractions of the aligned image's side (may reach outside ``[0, 1]``).

    Exact for a face whose landmarks are dlib's mean face: the chip of such a face is the unit
    square of its own coordinates, and the profile's crop (:func:`studio.core.align.crop_quad`,
    which reads only the eyes and mouth corners) is computed from the same landmarks. For real
    faces it is the usual approximation of a fixed crop (see ``IdentityLoss``). FFHQ gives about
    (0.150, 0.253, 0.859, 0.962); the pack's tighter ``utkface-64`` profile reaches past the image.
    """
    from studio.core.align import FFHQ, crop_quad, get_profile

    prof = FFHQ if profile is None else get_profile(profile)
    lm = mean_face_landmarks(padding)
    lm[:17] = 0.0  # unused by crop_quad
    quad, _ = crop_quad(lm, prof)
    q0, q1, q3 = quad[0], quad[1], quad[3]  # top-left, bottom-left, top-right of the aligned image
    ex, ey = q3 - q0, q1 - q0

    def frac(p):
        d = np.asarray(p, np.float64) - q0
        return float(d @ ex / (ex @ ex)), float(d @ ey / (ey @ ey))

    corners = [frac(p) for p in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)
