"""Edit directions for the default model pack (issue 6 part 3; METHODS.md §5).

    python -m trainers.pack.directions [--out resources/pack] [--work /work/runs/pack-directions]

Steps, each cached in ``--work`` (a rerun continues where the last one stopped):

1. Labellers trained on real, labelled UTKFace chips (train split; all members of duplicate
   groups whose copies carry different labels are dropped): age (ridge regression on log(1 + age))
   and gender (logistic regression, positive = female) on frozen ImageNet-VGG16 features of the
   64-px chips (pooled relu4_3 + relu5_3). Held-out accuracy / MAE / Spearman are measured.
2. N generated faces (psi 1, seeded), each kept as its w, its labeller features and its dlib 68
   landmarks (the 64-px image upsampled to 256 px; faces without a detection have NaN landmarks).
3. InterFaceGAN normals in W (:func:`studio.core.directions.interfacegan`, top / bottom fractions of
   the continuous scores): age, gender, smile (mouth width over the eye distance) and mouth open
   (inner-lip mouth aspect ratio), each conditioned on others and on image-statistic normals
   (brightness, background, contrast) as :data:`ATTRIBUTES` says.
4. GANSpace (PCA of w) and SeFa components with layer ranges; human names come from :data:`NAMES`,
   written after looking at each component's grid (``--work``/grids/*.png), and apply only to the
   generator they were inspected on (its sha256); other generators get neutral names, or with
   ``--names-from PACK`` (a fine-tuning of PACK's generator) PACK's names for each component whose
   vector stayed put (|cosine| >= 0.9 with PACK's of the same key; :func:`inherited_names`).
5. Measurement: per attribute direction, the Spearman correlation between alpha (linspace(-3, 3, 13))
   and an independent measurement (labeller / mouth ratios) averaged over faces, and dlib identity
   at |alpha| = 1 (fraction under dlib's same-person distance); on generated faces and, with
   ``--project-faces``, on held-out chips inverted with the optimisation projector.
6. Direction files (``directions-*.npy`` / ``.npz``) and ``manifest['directions']`` in the pack,
   each entry with its file's sha256 (read back by :func:`studio.core.directions.load_pack_directions`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainers.common import UserError, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "utkface"
ALPHAS = tuple(float(a) for a in np.linspace(-3, 3, 13))
DLIB_SIZE = 256           # generated 64-px faces are upsampled to this for dlib
FEATURE_SIZE = 64         # VGG16 input size for the labellers (the chips' own resolution)

# ----------------------------------------------------------------------------
# Config


@dataclass
class DirectionsConfig:
    out: str = str(REPO / "resources" / "pack")      # the model pack to read G from and write into
    data: str = str(DEFAULT_DATA)                     # UTKFace folder (images/, labels.csv, duplicates.csv)
    work: str = "/work/runs/pack-directions"          # caches, grids, log, results.json
    labeller_images: int = 0                          # labelled train chips for the labellers (0 = all)
    samples: int = 4000                               # generated faces for InterFaceGAN
    encoded: int = 0                                  # + this many train chips inverted with --encoder (0: none)
    encoder: str = "e2style"                          # the pack's encoder for --encoded
    psi: float = 1.0                                  # truncation of those faces
    seed: int = 0                                     # seeds the samples (measurement faces use seed + 1000)
    ratios: str = ""                                  # InterFaceGAN top / bottom fractions overriding ATTRIBUTES, "age=0.3,..."
    ganspace_k: int = 8                               # GANSpace components inspected
    ganspace_samples: int = 20000                     # mapped w for the PCA
    sefa_k: str = "coarse=4,medium=3,fine=2"          # SeFa components per layer group
    measure_faces: int = 50                           # generated faces for the Spearman / identity table
    project_faces: int = 0                            # held-out chips inverted with the projector (0 = skip)
    project_steps: int = 100                          # projector steps per chip
    grids: bool = True                                # render a grid PNG per direction
    write: bool = True                                # write files + manifest into --out
    threads: int = 1                                  # torch CPU threads
    names_from: str = ""                              # a pack whose generator NAMES knows: carry its names over


def _parse_ratios(spec: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, r = part.partition("=")
        try:
            out[name] = float(r)
        except ValueError:
            out[name] = float("nan")
        if name not in (*ATTRIBUTES, *STAT_NAMES) or not 0 < out[name] < 0.5:
            raise UserError(f"--ratios: expected e.g. 'age=0.3,smile=0.15' with names from "
                            f"{', '.join((*ATTRIBUTES, *STAT_NAMES))} and fractions in (0, 0.5), got {spec!r}")
    return out


def _parse_sefa_k(spec: str) -> dict[str, int]:
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, k = part.partition("=")
        if name not in ("coarse", "medium", "fine", "all") or not k.isdigit():
            raise UserError(f"--sefa-k: expected e.g. 'coarse=4,medium=3,fine=2', got {spec!r}")
        out[name] = int(k)
    return out


# ----------------------------------------------------------------------------
# Features and labellers


class FaceFeatures:
    """Frozen ImageNet-VGG16 features of face images: relu4_3 and relu5_3, each averaged over space,
    concatenated [N, 1024] (float64). Images in [-1, 1] [N, 3, H, W] are resized to ``size`` px."""

    def __init__(self, size: int = FEATURE_SIZE, device=None):
        from studio.core.nets.perceptual import FeatureNet

        self.net = FeatureNet("vgg").to(device or "cpu")
        self.device = torch.device(device or "cpu")
        self.size = int(size)

    @torch.inference_mode()
    def __call__(self, imgs: torch.Tensor, batch: int = 50) -> np.ndarray:
        out = []
        for i in range(0, len(imgs), batch):
            x = imgs[i:i + batch].to(self.device, torch.float32).clamp(-1, 1)
            if x.shape[-1] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=x.shape[-1] > self.size)
            taps = self.net.taps(x)
            out.append(torch.cat([taps[3].mean(dim=(2, 3)), taps[4].mean(dim=(2, 3))], dim=1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1024))


@dataclass
class Labeller:
    """Linear heads on :class:`FaceFeatures`: age (ridge on log(1 + years)) and gender (logistic,
    logit > 0 = female, UTKFace's gender 1). ``mean``/``scale`` standardise the features [F]."""

    feature_size: int
    mean: np.ndarray
    scale: np.ndarray
    age_coef: np.ndarray
    age_bias: float
    gender_coef: np.ndarray
    gender_bias: float
    metrics: dict = field(default_factory=dict)

    def _z(self, feats: np.ndarray) -> np.ndarray:
        return (np.asarray(feats, np.float64) - self.mean) / self.scale

    def age(self, feats: np.ndarray) -> np.ndarray:
        """Predicted age in years [N], clipped to UTKFace's 1-116."""
        return np.clip(np.expm1(self._z(feats) @ self.age_coef + self.age_bias), 1.0, 116.0)

    def female_logit(self, feats: np.ndarray) -> np.ndarray:
        """Gender logit [N]: > 0 female, < 0 male."""
        return self._z(feats) @ self.gender_coef + self.gender_bias

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, feature_size=np.int64(self.feature_size), mean=self.mean, scale=self.scale,
                 age_coef=self.age_coef, age_bias=np.float64(self.age_bias), gender_coef=self.gender_coef,
                 gender_bias=np.float64(self.gender_bias), metrics=np.array(json.dumps(self.metrics)))
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: str | Path) -> Labeller:
        with np.load(path, allow_pickle=False) as z:
            return cls(int(z["feature_size"]), z["mean"], z["scale"], z["age_coef"], float(z["age_bias"]),
                       z["gender_coef"], float(z["gender_bias"]), json.loads(str(z["metrics"])))


def conflicting_duplicates(root: Path) -> set[str]:
    """File names (``images/...``) of every member of a duplicate group whose copies carry different labels."""
    f = Path(root) / "duplicates.csv"
    if not f.is_file():
        return set()
    groups: dict[str, list[dict]] = {}
    with open(f, newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["group"], []).append(row)
    return {r["file"] for rows in groups.values() if len({(r["age"], r["gender"], r["race"]) for r in rows}) > 1
            for r in rows}


def labelled_chips(root: Path, split: str, *, max_images: int = 0, seed: int = 0):
    """(ImageSet, indices, ages [n], genders [n]) of labelled 64-px chips in ``split``; members of
    conflicting duplicate groups are dropped (load_images already keeps one per identical group)."""
    from trainers.data import load_images

    root = Path(root)
    labels = {}
    with open(root / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            labels[row["file"]] = (int(row["age"]), int(row["gender"]))
    bad = conflicting_duplicates(root)
    images = load_images(root, 64, split=split)
    idx = np.array([i for i, n in enumerate(images.names) if n in labels and n not in bad], dtype=np.int64)
    if max_images and len(idx) > max_images:
        idx = np.sort(np.random.RandomState(seed).choice(idx, max_images, replace=False))
    ages = np.array([labels[images.names[i]][0] for i in idx], dtype=np.float64)
    genders = np.array([labels[images.names[i]][1] for i in idx], dtype=np.int64)
    return images, idx, ages, genders


def chip_features(fx: FaceFeatures, images, idx: np.ndarray, cache: Path | None = None, *, chunk: int = 2000,
                  on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Features of ``images`` rows ``idx`` [n, F]. With ``cache`` (a path prefix) each chunk of
    ``chunk`` rows is saved as ``<cache>-<k>.npy`` as it is done, so an interrupted run continues."""
    out = []
    for k, i in enumerate(range(0, len(idx), chunk)):
        part = idx[i:i + chunk]
        key = hashlib.sha1(part.tobytes()).hexdigest()[:8]
        path = None if cache is None else cache.with_name(f"{cache.name}-{k:03d}-{key}.npy")
        if path is not None and path.is_file():
            f = np.load(path, allow_pickle=False)
        else:
            f = np.concatenate([fx(images.batch(part[j:j + 100])) for j in range(0, len(part), 100)])
            if path is not None:
                _save_npy(path, f)
        out.append(f)
        if on_progress is not None:
            on_progress(min(i + chunk, len(idx)), len(idx))
    return np.concatenate(out) if out else np.zeros((0, 1024))


def _save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def fit_labeller(train_f: np.ndarray, ages: np.ndarray, genders: np.ndarray, *, feature_size: int = FEATURE_SIZE,
                 C: float = 0.01, age_alpha: float = 1000.0) -> Labeller:
    """Ridge (log1p age) and logistic (gender) heads on standardised features."""
    from sklearn.linear_model import LogisticRegression, Ridge

    mean = train_f.mean(axis=0)
    scale = train_f.std(axis=0) + 1e-6
    z = (train_f - mean) / scale
    ridge = Ridge(alpha=age_alpha).fit(z, np.log1p(ages))
    logit = LogisticRegression(C=C, max_iter=5000).fit(z, genders)
    return Labeller(feature_size, mean, scale, ridge.coef_.astype(np.float64), float(ridge.intercept_),
                    logit.coef_.reshape(-1).astype(np.float64), float(logit.intercept_[0]))


def labeller_metrics(lab: Labeller, feats: np.ndarray, ages: np.ndarray, genders: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    pred = lab.age(feats)
    return {"n": len(ages), "gender_accuracy": float(((lab.female_logit(feats) > 0) == (genders == 1)).mean()),
            "age_mae": float(np.abs(pred - ages).mean()), "age_spearman": float(spearmanr(pred, ages)[0])}


def train_labeller(cfg: DirectionsConfig, fx: FaceFeatures, work: Path) -> Labeller:
    """Fit the labellers on train chips and measure them on held-out chips (cached as labeller.npz)."""
    path = work / f"labeller-{fx.size}px-n{cfg.labeller_images or 'all'}-s{cfg.seed}.npz"
    if path.is_file():
        lab = Labeller.from_file(path)
        log.info("labellers from %s: %s", path, lab.metrics)
        return lab
    root = Path(cfg.data)
    t0 = time.time()
    tr_images, tr_idx, tr_age, tr_gender = labelled_chips(root, "train", max_images=cfg.labeller_images, seed=cfg.seed)
    ho_images, ho_idx, ho_age, ho_gender = labelled_chips(root, "heldout")
    log.info("labellers: %d train / %d held-out labelled chips", len(tr_idx), len(ho_idx))
    prog = lambda a, b: log.info("  features %d/%d (%.0f s)", a, b, time.time() - t0)
    tag = f"feat-{{}}-{fx.size}" + (f"-n{cfg.labeller_images}s{cfg.seed}" if cfg.labeller_images else "")
    ftr = chip_features(fx, tr_images, tr_idx, work / "cache" / tag.format("train"), on_progress=prog)
    fho = chip_features(fx, ho_images, ho_idx, work / "cache" / f"feat-heldout-{fx.size}", on_progress=prog)
    lab = fit_labeller(ftr, tr_age, tr_gender, feature_size=fx.size)
    lab.metrics = {"train": labeller_metrics(lab, ftr, tr_age, tr_gender),
                   "heldout": labeller_metrics(lab, fho, ho_age, ho_gender),
                   "features": "VGG16 relu4_3 + relu5_3 (spatial mean), 64-px chips",
                   "heads": "ridge on log1p(age), alpha 1000; logistic gender, C 0.01"}
    atomic_write_bytes(path, lab.to_bytes())
    log.info("labellers: %s", lab.metrics)
    return lab


# ----------------------------------------------------------------------------
# Mouth measurements from dlib's 68 landmarks (0-based indices)


def _dist(lm: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lm[..., a, :] - lm[..., b, :], axis=-1)


def mouth_aspect_ratio(lm: np.ndarray) -> np.ndarray:
    """Inner-lip mouth aspect ratio (mouth opening): mean of the vertical gaps 61-67, 62-66, 63-65 over
    the inner corner distance 60-64. lm: [..., 68, 2] -> [...]; NaN landmarks give NaN."""
    lm = np.asarray(lm, np.float64)
    vertical = (_dist(lm, 61, 67) + _dist(lm, 62, 66) + _dist(lm, 63, 65)) / 3
    return vertical / np.maximum(_dist(lm, 60, 64), 1e-6)


def mouth_width_ratio(lm: np.ndarray) -> np.ndarray:
    """Smile score: outer mouth-corner distance 48-54 over the distance between the eye centres
    (mean of 36-41 and of 42-47). lm: [..., 68, 2] -> [...]."""
    lm = np.asarray(lm, np.float64)
    eyes = np.linalg.norm(lm[..., 36:42, :].mean(axis=-2) - lm[..., 42:48, :].mean(axis=-2), axis=-1)
    return _dist(lm, 48, 54) / np.maximum(eyes, 1e-6)


# ----------------------------------------------------------------------------
# Rendering and dlib


def render(G, ws: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] for W+ ws [N, num_ws, w_dim] (constant noise). The unfused
    modulated convolution is 2-3x faster on the CPU for batches."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(ws), batch):
            out.append(G.synthesis(ws[i:i + batch], noise_mode="const", fused=False).clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 3, G.img_resolution, G.img_resolution)


def to_uint8_hwc(imgs: torch.Tensor, size: int | None = None) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, size, size, 3] (bicubic upsampling when ``size`` is given)."""
    x = imgs.float()
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def landmarks_of(imgs: torch.Tensor) -> np.ndarray:
    """dlib 68 landmarks [N, 68, 2] (float, in 256-px coordinates) of the most confident face in each
    image upsampled to 256 px; NaN where no face is found."""
    from studio.core.faces import detect_faces

    out = np.full((len(imgs), 68, 2), np.nan)
    for i, arr in enumerate(to_uint8_hwc(imgs, DLIB_SIZE)):
        faces = detect_faces(arr, upsample=0, raise_if_none=False)
        if not faces:
            faces = detect_faces(arr, upsample=1, raise_if_none=False)
        if faces:
            out[i] = faces[0].landmarks
    return out


# ----------------------------------------------------------------------------
# Generated samples for InterFaceGAN


def image_stats(imgs: torch.Tensor) -> np.ndarray:
    """Nuisance statistics of images [N, 3, R, R] in [-1, 1]: [N, 3] = mean luminance of the central
    half (the face), mean luminance of the border (an eighth of the side: background and hair) and
    the luminance standard deviation (contrast)."""
    lum = 0.299 * imgs[:, 0] + 0.587 * imgs[:, 1] + 0.114 * imgs[:, 2]      # [N, R, R]
    r = lum.shape[-1]
    q, e = r // 4, max(r // 8, 1)
    face = lum[:, q:r - q, q:r - q].mean(dim=(1, 2))
    mask = torch.ones(r, r, dtype=torch.bool)
    mask[e:r - e, e:r - e] = False
    border = lum[:, mask].mean(dim=1)
    return torch.stack([face, border, lum.flatten(1).std(dim=1)], dim=1).double().numpy()


STAT_NAMES = ("brightness", "background", "contrast")


@dataclass
class Samples:
    """Generated faces: w [N, w_dim] (float32), feats [N, F], landmarks [N, 68, 2] (NaN = no face),
    stats [N, 3] (:func:`image_stats`)."""

    w: np.ndarray
    feats: np.ndarray
    landmarks: np.ndarray
    stats: np.ndarray

    @property
    def detected(self) -> np.ndarray:
        return np.isfinite(self.landmarks).all(axis=(1, 2))


_SAMPLE_FIELDS = ("w", "feats", "landmarks", "stats")


def concat_samples(*parts: Samples) -> Samples:
    return Samples(*(np.concatenate([getattr(p, f) for p in parts]) for f in _SAMPLE_FIELDS))


def _save_samples(path: Path, s: Samples) -> None:
    buf = io.BytesIO()
    np.savez(buf, w=s.w, feats=s.feats, landmarks=s.landmarks, stats=s.stats)
    atomic_write_bytes(path, buf.getvalue())


def sample_faces(G, fx: FaceFeatures, n: int, *, psi: float, seed: int, cache_dir: Path | None = None,
                 chunk: int = 250) -> Samples:
    """``n`` faces from z drawn with ``torch.Generator().manual_seed(seed)``, rendered, featurised,
    landmarked and measured in chunks (each cached in ``cache_dir`` as it is done)."""
    gen = torch.Generator().manual_seed(int(seed))
    parts = []
    t0 = time.time()
    for k, i in enumerate(range(0, n, chunk)):
        b = min(chunk, n - i)
        z = torch.randn([b, G.z_dim], generator=gen)       # drawn even when cached: the stream stays aligned
        path = None if cache_dir is None else cache_dir / f"samples-s{seed}-p{psi:g}-{chunk}-{k:03d}.npz"
        cached: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as d:
                cached = {key: d[key] for key in d.files}
        if set(_SAMPLE_FIELDS) <= set(cached):
            parts.append(Samples(*(cached[f] for f in _SAMPLE_FIELDS)))
            continue
        with torch.inference_mode():
            ws = G.map(z, psi=psi)                            # [b, num_ws, w_dim], rows equal
        imgs = render(G, ws)
        if {"w", "feats", "landmarks"} <= set(cached):        # an older cache without stats
            s = Samples(cached["w"], cached["feats"], cached["landmarks"], image_stats(imgs))
        else:
            s = Samples(ws[:, 0].numpy().astype(np.float32), fx(imgs), landmarks_of(imgs), image_stats(imgs))
        if path is not None:
            _save_samples(path, s)
        parts.append(s)
        log.info("  samples %d/%d (%.0f s)", i + b, n, time.time() - t0)
    return concat_samples(*parts)


def encoded_faces(G, encoder, fx: FaceFeatures, images, idx: np.ndarray, *, tag: str,
                  cache_dir: Path | None = None, chunk: int = 250) -> Samples:
    """Real chips ``images[idx]`` inverted with ``encoder`` (an EncoderPipeline) as :class:`Samples`:
    w is the mean of each code's W+ rows (an attribute direction moves every row alike), and the
    features, landmarks and statistics are those of G's rendering of the full code, so they are scored
    exactly like generated faces. Editing real photos starts from such codes, which lie off the
    mapped W where generated faces live; fitting the normals on them too is what keeps a slider
    reliable on a user's photo (``--encoded``). Chunks are cached under ``tag``."""
    parts = []
    t0 = time.time()
    for k, i in enumerate(range(0, len(idx), chunk)):
        sel = idx[i:i + chunk]
        path = None if cache_dir is None else cache_dir / f"encoded-{tag}-{chunk}-{k:03d}.npz"
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as d:
                parts.append(Samples(*(d[f] for f in _SAMPLE_FIELDS)))
            continue
        with torch.inference_mode():
            x = images.batch([int(j) for j in sel], torch.device("cpu"))
            ws = torch.cat([encoder(x[j:j + 50])[1] for j in range(0, len(x), 50)]).float()
        imgs = render(G, ws)
        s = Samples(ws.mean(1).numpy().astype(np.float32), fx(imgs), landmarks_of(imgs), image_stats(imgs))
        if path is not None:
            _save_samples(path, s)
        parts.append(s)
        log.info("  encoded %d/%d (%.0f s)", i + len(sel), len(idx), time.time() - t0)
    return concat_samples(*parts)


def encoded_train_chips(pack: Path, G, cfg: DirectionsConfig, fx: FaceFeatures, cache_dir: Path) -> Samples:
    """``cfg.encoded`` train chips, evenly spaced over the name-sorted split (names sort by age), inverted
    with the pack's ``cfg.encoder``; cached per encoder file."""
    from studio.core.formats import load_checkpoint
    from studio.core.formats.stylestudio_fmt import read_manifest
    from trainers.data import load_images

    entry = read_manifest(pack).get("encoders", {}).get(cfg.encoder)
    if entry is None:
        raise UserError(f"--encoded needs the pack's {cfg.encoder!r} encoder, which {pack} does not have")
    encoder = load_checkpoint(pack).meta["encoders"][cfg.encoder].eval()
    images = load_images(Path(cfg.data) / "images", G.img_resolution, split="train")
    idx = np.linspace(0, len(images) - 1, min(cfg.encoded, len(images))).round().astype(int)
    tag = f"{cfg.encoder}-{str(entry.get('sha256', 'unknown'))[:12]}-{len(idx)}"
    return encoded_faces(G, encoder, fx, images, idx, tag=tag, cache_dir=cache_dir)


# ----------------------------------------------------------------------------
# The pack's directions


@dataclass
class PackDirection:
    """A direction plus what the pack's manifest says about it (``key`` = its manifest key)."""

    key: str
    direction: Any                  # studio.core.directions.Direction
    label: str
    method: str
    notes: str = ""
    default_scale: float | None = None
    measured: dict = field(default_factory=dict)


#: Per attribute: InterFaceGAN's top / bottom fraction, the directions it is conditioned on
#: (InterFaceGAN's conditional manipulation: their components are projected out) and the slider
#: range. Chosen with a 20-face probe on other seeds than the measurement's (mean Spearman over
#: alpha in [-3, 3]): the age labeller also reads a dark background and low brightness as "older"
#: (Spearman -0.81 with the border luminance on generated faces), so age is conditioned on those
#: image statistics (0.80 -> 0.86, and the grid shows age instead of lighting); gender on age (age
#: side effect 0.30 -> 0.20); smile (mouth width) on age, gender and the image statistics (0.95,
#: skin no longer darkens); mouth open (inner-lip aspect ratio) on age and gender, top/bottom 15%
#: (0.72 -> 0.78 on generated faces, held-out projected 0.06 -> 0.26 against 30%); conditioning it on
#: the image statistics as well cost ~0.08 of Spearman. On 10 held-out chips inverted with the
#: projector no gender variant tried (ratio 0.05-0.3, with or without conditioning) moved its
#: Spearman by more than 0.06.
#: Gender is fitted on the encoded train chips only, with a softer SVM (C 0.1), when ``--encoded`` gives
#: some: on 60 held-out chips outside bench_pack's 50, inverted with the encoder of the 438-kimg
#: generator, its Spearman was 0.89 fitted on generated + encoded faces, 0.93 on the encoded ones
#: only, 0.95 with C 0.1 (0.94 with C 0.01) and 0.49 on generated faces only; the labeller reads
#: G's renderings of real chips as more female than the chips (+2 logits), and a normal fitted on
#: generated faces barely moves an encoded code's gender.
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "age": {"ratio": 0.30, "condition": STAT_NAMES, "range": (-8.0, 8.0),
            "name": "age", "label": "Age (younger - older)"},
    "gender": {"ratio": 0.15, "condition": ("age",), "range": (-6.0, 6.0), "fit_on": "encoded", "C": 0.1,
               "name": "gender", "label": "Gender (male - female)"},
    "smile": {"ratio": 0.15, "condition": ("age", "gender", *STAT_NAMES), "range": (-8.0, 8.0),
              "name": "smile", "label": "Smile (mouth width)"},
    "mouth_open": {"ratio": 0.15, "condition": ("age", "gender"), "range": (-8.0, 8.0),
                   "name": "mouth open", "label": "Mouth open"},
}


def attribute_scores(samples: Samples, lab: Labeller) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Per attribute and image statistic: (sample mask, score, what it is)."""
    det = samples.detected
    every = np.ones(len(samples.w), dtype=bool)
    out = {"age": (every, np.log1p(lab.age(samples.feats)),
                   "the age labeller's log(1 + age) (ridge on VGG16 features, UTKFace train split)"),
           "gender": (every, lab.female_logit(samples.feats),
                      "the gender labeller's logit (logistic on VGG16 features, UTKFace train split)"),
           "smile": (det, mouth_width_ratio(samples.landmarks[det]), "the dlib mouth width / eye distance"),
           "mouth_open": (det, mouth_aspect_ratio(samples.landmarks[det]), "the dlib inner-lip mouth aspect ratio")}
    for j, name in enumerate(STAT_NAMES):
        out[name] = (every, samples.stats[:, j], f"image {name}")
    return out


def fit_mask(n: int, encoded: int, fit_on: str) -> np.ndarray:
    """Which of ``n`` samples (the last ``encoded`` of them inverted train chips) a normal is fitted on:
    ``fit_on`` 'all', 'encoded' or 'generated'; 'encoded' without encoded samples falls back to all."""
    if fit_on not in ("all", "encoded", "generated"):
        raise ValueError(f"fit_on must be 'all', 'encoded' or 'generated', not {fit_on!r}")
    m = np.ones(n, dtype=bool)
    if fit_on == "encoded" and encoded > 0:
        m[:n - encoded] = False
    elif fit_on == "generated":
        m[n - encoded:] = False
    return m


def interfacegan_directions(samples: Samples, lab: Labeller, *, ratios: dict[str, float] | None = None,
                            psi: float = 1.0, seed: int = 0, encoded: int = 0,
                            encoder: str = "e2style") -> list[PackDirection]:
    """age, gender, smile, mouth open (:data:`ATTRIBUTES`): InterFaceGAN normals in W, all layers,
    conditioned as the table says on each other and on the image-statistic normals."""
    from studio.core.directions import condition, interfacegan

    w = samples.w.astype(np.float64)
    scores = attribute_scores(samples, lab)
    ratios = {**{k: v["ratio"] for k, v in ATTRIBUTES.items()}, **(ratios or {})}
    raw = {}
    fit_masks: dict[str, np.ndarray] = {}
    for key in (*ATTRIBUTES, *STAT_NAMES):
        mask, y, _ = scores[key]
        spec = ATTRIBUTES.get(key, {})
        use = fit_mask(len(w), encoded, spec.get("fit_on", "all"))
        fit_masks[key] = mask & use
        raw[key] = interfacegan(w[mask & use], y[use[mask]], name=key, ratio=ratios.get(key, 0.3),
                                C=float(spec.get("C", 1.0)), seed=seed)
    final: dict[str, Any] = {}
    out = []
    for key, spec in ATTRIBUTES.items():           # in order: a direction is conditioned on final earlier ones
        others = [final.get(o, raw[o]) for o in spec["condition"]]
        cos = {o.name: round(float(raw[key].vector @ o.vector), 3) for o in others}
        d = condition(raw[key], *others)
        d.name, d.default_range = spec["name"], spec["range"]
        d.meta.pop("labels", None)
        final[key] = d
        _, _, what = scores[key]
        mask = fit_masks[key]
        n_enc = int(mask[len(mask) - encoded:].sum()) if encoded else 0
        n_gen = int(mask.sum()) - n_enc
        faces = " and ".join(
            ([f"{n_gen} generated faces (psi {psi:g})"] if n_gen else []) +
            ([f"{n_enc} train chips inverted with the {encoder} encoder (mean of the W+ rows)"] if n_enc else []))
        c = float(spec.get("C", 1.0))
        notes = (f"InterFaceGAN linear SVM{f' (C {c:g})' if c != 1.0 else ''} normal in W on {faces}, "
                 f"top/bottom {ratios[key]:.0%} of {what} (SVM validation accuracy "
                 f"{raw[key].meta['val_accuracy']:.2f}); conditioned on {', '.join(spec['condition'])} "
                 f"(cosine before: {', '.join(f'{k} {v:+.2f}' for k, v in cos.items())})")
        out.append(PackDirection(key, d, spec["label"], "interfacegan", notes,
                                 default_scale=float(np.std(w @ d.vector.astype(np.float64)))))
    return out


#: Human names of the GANSpace / SeFa components of the pack's generator, from their grids
#: (``--work``/grids/). Keyed by the generator's sha256; another generator gets neutral names.
#: Per component: name, label, layer span (a group or [start, stop)), slider range, notes.
NAMES: dict[str, dict[str, dict]] = {
    # cpu64-wide at 220 kimg (resources/pack since 2026-11-27); grids-survey/<key>-groups.png show each
    # component on all / coarse / medium / fine rows, 3 faces each, alpha over +-2 stdev (GANSpace) or +-5 (SeFa).
    "5740e97972ad0aed612a982dbd3206cb0138f557ba70bc165d9684e74bdeb1d6": {
        # InterFaceGAN directions: only notes (grids/<key>.png, alpha over the slider range).
        "age": {"notes": "inspected: a round, child-like face to a thinner, lined, older face; towards +8 the "
                         "hair and background darken and the skin greys a little"},
        "gender": {"notes": "inspected: heavy brows and a rougher, darker face to a smoother face with made-up "
                            "eyes and lips and a wider smile"},
        "smile": {"notes": "inspected: closed lips to a wide smile showing teeth; towards +8 the skin darkens a "
                           "little and the face looks more masculine"},
        "mouth_open": {"notes": "inspected: closed lips to an open smile showing teeth; the skin darkens and warms "
                                "towards +8"},
        "ganspace_0": {"name": "skin tone", "label": "Skin tone & brightness (darker - lighter)",
                       "layers": "medium+fine", "range": [-5.0, 5.0],
                       "notes": "inspected: darker, warmer skin and a darker picture to lighter skin; on all rows it "
                                "also ages the face, so it is kept off the coarse rows"},
        "ganspace_1": {"name": "hair & background", "label": "Hair & background (light - dark)", "layers": "coarse",
                       "range": [-5.0, 5.0],
                       "notes": "inspected: on the coarse rows, a light background and short hair to dark hair "
                                "framing the face and a darker background; the face narrows slightly"},
        "ganspace_2": {"name": "older look", "label": "Older look & glasses (medium rows)", "layers": "medium",
                       "range": [-6.0, 6.0],
                       "notes": "inspected: smooth young face to lined skin and darker eye region (glasses on some "
                                "faces); all rows also make the face more masculine"},
        "ganspace_3": {"name": "warm - grey colour", "label": "Colour: warm - grey (component 3)", "layers": "all",
                       "range": [-4.5, 4.5],
                       "notes": "inspected: weak; reddish saturated colour to a greyer picture; no single layer "
                                "group carries it"},
        "ganspace_4": {"name": "younger - older", "label": "Younger - older look (component 4, medium rows)",
                       "layers": "medium", "range": [-6.0, 6.0],
                       "notes": "inspected: like component 2, weaker: smooth skin to lines and glasses-like eyes"},
        "ganspace_5": {"name": "pale - warm skin", "label": "Skin colour: pale - warm (component 5)", "layers": "all",
                       "range": [-4.0, 4.0],
                       "notes": "inspected: pale, cool skin to warm, tanned, more saturated skin"},
        "ganspace_6": {"skip": True, "notes": "inspected: a weaker mix of components 0 and 5"},
        "ganspace_7": {"skip": True, "notes": "inspected: barely visible"},
        "sefa_coarse_0": {"name": "coarse 0: background", "label": "Background & hair darkness (SeFa coarse 0)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: on its coarse rows, a darker background and hair with a slightly "
                                   "narrower face to a lighter one; weak"},
        "sefa_coarse_1": {"name": "face shape & hair", "label": "Slim face, long dark hair - round face, light background",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: on its coarse rows, a slim face framed by long dark hair on a dark "
                                   "background to a round face on a light background; on all rows it also turns "
                                   "the face into a child's"},
        "sefa_coarse_2": {"skip": True, "notes": "inspected: almost no change on its own (coarse) rows"},
        "sefa_coarse_3": {"skip": True, "notes": "inspected: almost no change on its own (coarse) rows"},
        "sefa_medium_0": {"name": "skin tone (medium)", "label": "Skin tone: darker, warmer - lighter (medium rows)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: on its medium rows, darker warmer skin to lighter skin; weak"},
        "sefa_medium_1": {"name": "youthful - older", "label": "Youthful - older (medium rows; darkens skin)",
                          "range": [-4.0, 4.0],
                          "notes": "inspected: strong: a child-like pale face to an older adult with darker skin "
                                   "and harder features; entangled with skin tone and gender"},
        "sefa_medium_2": {"name": "vivid - washed out", "label": "Contrast: vivid - washed out (medium rows)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: saturated, sharp eyes and lips to a pale, hazy face"},
        "sefa_fine_0": {"name": "tint: pink - yellow", "label": "Colour tint: pink - yellow (fine rows)",
                        "range": [-5.0, 5.0],
                        "notes": "inspected: on the 64-px rows, a pinkish tint to a yellower, more saturated one; weak"},
        "sefa_fine_1": {"name": "white balance", "label": "White balance: warm - cool (fine rows)", "range": [-5.0, 5.0],
                        "notes": "inspected: orange, warm colour to bluish, cool colour; face and shape unchanged"},
    },
    # cpu64-wide continued on the H200 at batch 256, lr 0.0025: 438 kimg (FD-VGG16 7.44); the same survey grids.
    "7de568850498bc0346912b1215fbc667dfc16ee2b28dc897d872708ce4f8cd5a": {
        "age": {"notes": "inspected: a smooth, young face to an older, lined face with greying hair and glasses on "
                         "some faces; towards +8 the skin darkens and the background lightens"},
        "gender": {"notes": "inspected: heavy brows and darker, rougher skin to a smoother, lighter face with made-up "
                            "eyes and lips"},
        "smile": {"notes": "inspected: closed lips to a wide smile showing teeth; towards +8 the skin darkens and "
                           "warms"},
        "mouth_open": {"notes": "inspected: closed lips to an open smile showing teeth; the skin darkens and warms "
                                "towards +8"},
        "ganspace_0": {"name": "skin tone", "label": "Skin tone & brightness (darker - lighter)",
                       "layers": "medium+fine", "range": [-5.0, 5.0],
                       "notes": "inspected: on the medium rows, darker, older-looking skin to lighter, smoother skin; "
                                "on all rows it also turns an older man into a young woman, so it is kept off the "
                                "coarse rows"},
        "ganspace_1": {"name": "face shape & hair", "label": "Round face - slim face framed by dark hair",
                       "layers": "coarse", "range": [-5.0, 5.0],
                       "notes": "inspected: on the coarse rows, a round, soft, child-like face to a slimmer face "
                                "framed by dark hair on a lighter background"},
        "ganspace_2": {"name": "older look", "label": "Older look & glasses (medium rows)", "layers": "medium",
                       "range": [-6.0, 6.0],
                       "notes": "inspected: a smooth young face to lined skin, a wider grin and glasses on some "
                                "faces; also more masculine"},
        "ganspace_3": {"name": "warm - grey colour", "label": "Colour: warm - grey (component 3)", "layers": "all",
                       "range": [-4.5, 4.5],
                       "notes": "inspected: weak; reddish saturated colour to a paler, greyer picture; no single "
                                "layer group carries it"},
        "ganspace_4": {"name": "younger - older", "label": "Younger - older look (component 4, medium rows)",
                       "layers": "medium", "range": [-6.0, 6.0],
                       "notes": "inspected: like component 2, weaker: smooth warm skin to sallow skin with shaded, "
                                "glasses-like eyes"},
        "ganspace_5": {"name": "pale - warm skin", "label": "Skin colour: pale - warm (component 5)", "layers": "all",
                       "range": [-4.0, 4.0],
                       "notes": "inspected: pale, cool skin to warm, tanned, more saturated skin"},
        "ganspace_6": {"skip": True, "notes": "inspected: a weaker mix of components 0 and 5"},
        "ganspace_7": {"skip": True, "notes": "inspected: barely visible"},
        "sefa_coarse_0": {"name": "coarse 0: background", "label": "Background & hair darkness (SeFa coarse 0)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: on its coarse rows, a light background to a darker background and "
                                   "hair; weak"},
        "sefa_coarse_1": {"name": "slim - round face", "label": "Slim face, long dark hair - round, bright face",
                          "range": [-4.0, 4.0],
                          "notes": "inspected: on its coarse rows, a slim face framed by long dark hair on a light "
                                   "background to a round, bright face; past +4 the eyes smear"},
        "sefa_coarse_2": {"skip": True, "notes": "inspected: almost no change on its own (coarse) rows"},
        "sefa_coarse_3": {"skip": True, "notes": "inspected: almost no change on its own (coarse) rows"},
        "sefa_medium_0": {"name": "skin tone (medium)", "label": "Skin tone: darker, older - lighter (medium rows)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: on its medium rows, darker, weathered skin to lighter, smoother skin"},
        "sefa_medium_1": {"name": "youthful - older", "label": "Youthful - older (medium rows; darkens skin)",
                          "range": [-4.0, 4.0],
                          "notes": "inspected: strong: a child-like pale face to an older adult with darker skin, "
                                   "harder features and glasses; entangled with skin tone and gender"},
        "sefa_medium_2": {"name": "vivid - washed out", "label": "Contrast: vivid - washed out (medium rows)",
                          "range": [-5.0, 5.0],
                          "notes": "inspected: saturated, sharp eyes and a toothy smile to a pale, hazy face"},
        "sefa_fine_0": {"skip": True, "notes": "inspected: almost no change on its own (fine) rows"},
        "sefa_fine_1": {"name": "white balance", "label": "White balance: warm - cool (fine rows)", "range": [-5.0, 5.0],
                        "notes": "inspected: orange, warm colour to bluish, cool colour; face and shape unchanged"},
    },
}

# The 438-kimg generator with its mapping and style affines fine-tuned (synthesis convolutions frozen;
# 468 kimg, FD-VGG16 5.53). Every component it keeps matches the 438-kimg one of the same index and sign:
# GANSpace 0-5 cosines 0.997, 0.996, 0.998, 0.970, 0.951, 0.979; SeFa coarse 0-1 0.998, 0.996, medium
# 0-2 0.999, 0.988, 0.983, fine 1 0.971 (/work/runs/s28/comp_cmp.py), and its grids show the same
# edits, so the inspected names carry over.
NAMES["200e8753e7c5e81cd41aac528dde9e54999b71512031798073542c2c2d369018"] = {
    key: dict(info, notes=info["notes"] + (" (inspected on the 438-kimg generator; the same component here)"
                                            if key.startswith(("ganspace", "sefa")) else
                                            " (inspected on the 438-kimg generator's normal)"))
    for key, info in NAMES["7de568850498bc0346912b1215fbc667dfc16ee2b28dc897d872708ce4f8cd5a"].items()
}

# That generator with every layer fine-tuned 5.5 kimg more at a quarter of its learning rate (480 kimg,
# FD-VGG16 4.91 = 2.46x the floor; session 30). Every component kept its index and sign: GANSpace 0-7
# cosines 0.998-1.000, SeFa 0.996-1.000 (``directions.py --names-from``'s log), so the names carry over.
NAMES["baa134ce9cb98df71f24dce16b147f54dbb012d987c8e24bc35b1c383e262447"] = {
    key: dict(info, notes=info["notes"].replace("the same component here)", "the same component two fine-tunings on)")
                                      .replace("generator's normal)", "generator's normal, two fine-tunings ago)"))
    for key, info in NAMES["200e8753e7c5e81cd41aac528dde9e54999b71512031798073542c2c2d369018"].items()
}


def _span(spec, num_ws: int) -> tuple[int, int]:
    from studio.core.latent import layer_groups

    groups = layer_groups(num_ws)
    if spec is None or spec == "all":
        return 0, num_ws
    if isinstance(spec, str):
        if "+" in spec:                  # e.g. "coarse+medium"
            parts = [groups[s] for s in spec.split("+")]
            return parts[0][0], parts[-1][1]
        return groups[spec]
    return int(spec[0]), int(spec[1])


def raw_components(G, cfg: DirectionsConfig) -> dict[str, Direction]:
    """Every GANSpace and SeFa component ``cfg`` asks for, by key (``ganspace_<i>``,
    ``sefa_<group>_<i>``), unnamed and on its default rows (GANSpace: all; SeFa: its group's)."""
    from studio.core.directions import ganspace, sefa
    from studio.core.latent import layer_groups

    out = {f"ganspace_{i}": d for i, d in enumerate(ganspace(G, n_samples=cfg.ganspace_samples, k=cfg.ganspace_k,
                                                                  seed=cfg.seed))}
    for group, k in _parse_sefa_k(cfg.sefa_k).items():
        span = (0, G.num_ws) if group == "all" else layer_groups(G.num_ws)[group]
        if span[0] != span[1]:
            out.update({f"sefa_{group}_{i}": d for i, d in enumerate(sefa(G, layers=span, k=k))})
    return out


def inherited_names(G, cfg: DirectionsConfig, old_pack: Path, *, min_cos: float = 0.9,
                    raw: dict | None = None) -> tuple[dict, dict, list]:
    """Names for a generator :data:`NAMES` does not know, carried over from ``old_pack``'s generator
    (which it must know) component by component: a component keeps the old one's name, rows and
    range when the two vectors of the same key have |cosine| >= ``min_cos`` (a negative cosine flips
    the new vector, so "darker - lighter" still reads left to right); the others get neutral names.
    The InterFaceGAN entries (notes only) carry over as they are.

    Returns (names, flips {key: True to negate}, rows of (key, cosine, kept) for the log)."""
    from studio.core.formats import load_checkpoint
    from studio.core.formats.stylestudio_fmt import read_manifest

    old_sha = str(read_manifest(old_pack)["networks"]["generator"].get("sha256") or "")
    known = NAMES.get(old_sha)
    if not known:
        raise UserError(f"--names-from {old_pack}: its generator ({old_sha[:12] or 'no sha256'}...) has no inspected "
                        f"names in trainers/pack/directions.py NAMES; pass a pack whose generator has, or none")
    old = raw_components(load_checkpoint(old_pack).generator.eval(), cfg)
    new = raw if raw is not None else raw_components(G, cfg)
    names, flips, rows = {}, {}, []
    for key, info in known.items():
        if not key.startswith(("ganspace", "sefa")):
            names[key] = dict(info, notes=info["notes"] + f" (inspected on generator {old_sha[:12]}'s normal)") \
                if "notes" in info else dict(info)
            continue
        if key not in new or key not in old:
            continue
        cos = float(np.dot(new[key].vector.astype(np.float64), old[key].vector.astype(np.float64)))
        kept = abs(cos) >= min_cos
        rows.append((key, cos, kept))
        if kept:
            names[key] = dict(info, notes=info.get("notes", "") + f" (inspected on generator {old_sha[:12]}; the same "
                                                                  f"component here, |cos| {abs(cos):.3f})")
            flips[key] = cos < 0
    return names, flips, rows


def component_directions(G, cfg: DirectionsConfig, names: dict, flips: dict | None = None,
                         raw: dict | None = None) -> list[PackDirection]:
    """GANSpace and SeFa components, named and spanned from ``names`` (an entry of :data:`NAMES`,
    or :func:`inherited_names`'); ``flips``: keys whose vector is negated first; ``raw``: this
    generator's :func:`raw_components` when already computed."""
    if not names:
        log.warning("no inspected names for this generator: components get neutral names")
    flips = flips or {}
    out: list[PackDirection] = []
    for key, d in (raw if raw is not None else raw_components(G, cfg)).items():
        info = names.get(key, {})
        if info.get("skip"):
            continue
        if flips.get(key):
            d = replace(d, vector=-d.vector)
        if key.startswith("ganspace_"):
            i = int(key.rsplit("_", 1)[1])
            span = _span(info.get("layers", "all"), G.num_ws)
            sd = float(d.meta["stdev"])
            d = d.with_layers(span)
            d.name = info.get("name", f"GANSpace {i}")
            d.default_range = tuple(info.get("range", (-2 * sd, 2 * sd)))
            out.append(PackDirection(key, d, info.get("label", f"GANSpace component {i} (rows {span[0]}-{span[1] - 1})"),
                                     "ganspace", _component_notes(f"PCA component {i} of {cfg.ganspace_samples} mapped w "
                                                                  f"({d.meta['variance_ratio']:.1%} of the variance)", info),
                                     default_scale=sd))
        else:
            _, group, i = key.split("_")
            if "layers" in info:
                d = d.with_layers(_span(info["layers"], G.num_ws))
            d.name = info.get("name", f"SeFa {group} {i}")
            d.default_range = tuple(info.get("range", (-5.0, 5.0)))
            out.append(PackDirection(key, d, info.get("label", f"SeFa component {i} ({group})"), "sefa",
                                     _component_notes(f"SeFa eigenvector {i} of the {group} rows' affine weights "
                                                      f"(eigenvalue {d.meta['eigenvalue']:.1f})", info)))
    return out


def _component_notes(what: str, info: dict) -> str:
    return what + (f"; {info['notes']}" if info.get("notes") else "; name not inspected")


# ----------------------------------------------------------------------------
# Grids


def edit_batch(ws: torch.Tensor, d, alphas: Sequence[float]) -> torch.Tensor:
    """Every face of W+ ws [N, num_ws, w_dim] at every alpha: [N * len(alphas), num_ws, w_dim], face-major."""
    from studio.core.latent import apply_direction

    n = torch.as_tensor(d.vector)
    span = d.span(ws.shape[1])
    return torch.stack([apply_direction(w, n, a, span) for w in ws for a in alphas])


def save_grid(imgs: torch.Tensor, cols: int, path: Path, *, tile: int = 96) -> Path:
    """A PNG grid of images [N, 3, H, W] in [-1, 1], ``cols`` per row, tiles resized to ``tile`` px."""
    from PIL import Image

    arr = to_uint8_hwc(imgs, tile)
    rows = math.ceil(len(arr) / cols)
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for i, a in enumerate(arr):
        r, c = divmod(i, cols)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = a
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def grid_alphas(d, n: int = 7) -> list[float]:
    lo, hi = d.default_range
    return [float(a) for a in np.linspace(lo, hi, n)]


def render_grids(G, items: Sequence[PackDirection], base_ws: torch.Tensor, out_dir: Path, *,
                 survey: bool = True) -> list[Path]:
    """One grid per direction (rows: faces, columns: alpha over the slider range). With ``survey``,
    components also get ``<key>-groups.png``: the same alphas applied to all / coarse / medium / fine
    rows (three faces each), to choose each component's layer span."""
    from studio.core.latent import layer_groups

    paths = []
    for p in items:
        alphas = grid_alphas(p.direction)
        paths.append(save_grid(render(G, edit_batch(base_ws, p.direction, alphas)), len(alphas),
                               out_dir / f"{p.key}.png"))
        if survey and p.method != "interfacegan":
            rows = []
            spans = {"all": (0, G.num_ws), **layer_groups(G.num_ws)}
            for span in spans.values():
                if span[0] < span[1]:
                    rows.append(edit_batch(base_ws[:3], p.direction.with_layers(span), alphas))
            paths.append(save_grid(render(G, torch.cat(rows)), len(alphas), out_dir / f"{p.key}-groups.png"))
        log.info("  grid %s", paths[-1])
    return paths


# ----------------------------------------------------------------------------
# Measurement (issue 6 acceptance: Spearman >= 0.8 over alpha in [-3, 3]; identity at |alpha| = 1)


MEASURES = {  # direction key -> what measures it
    "age": "age labeller (years)",
    "gender": "gender labeller logit (female > 0)",
    "smile": "mouth width / eye distance (dlib)",
    "mouth_open": "inner-lip mouth aspect ratio (dlib)",
}


def measure_images(imgs: torch.Tensor, lab: Labeller, fx: FaceFeatures) -> dict[str, np.ndarray]:
    """Every measurement of images [N, 3, R, R]: age, gender logit, mouth width ratio, MAR [N] each."""
    feats = fx(imgs)
    lm = landmarks_of(imgs)
    return {"age": lab.age(feats), "gender": lab.female_logit(feats), "smile": mouth_width_ratio(lm),
            "mouth_open": mouth_aspect_ratio(lm)}


def mean_spearman(alphas: Sequence[float], values: np.ndarray, *, min_points: int = 5) -> tuple[float, float, int]:
    """Per face (rows of values [faces, alphas]) Spearman between alpha and the value, ignoring NaN;
    returns (mean, fraction of faces >= 0.8, faces used). A face with a constant value counts as 0."""
    from scipy.stats import spearmanr

    rhos = []
    a = np.asarray(alphas, np.float64)
    for row in np.asarray(values, np.float64):
        ok = np.isfinite(row)
        if ok.sum() < min_points:
            continue
        if np.ptp(row[ok]) == 0:
            rhos.append(0.0)
            continue
        rhos.append(float(spearmanr(a[ok], row[ok])[0]))
    if not rhos:
        return float("nan"), float("nan"), 0
    r = np.array(rhos)
    return float(r.mean()), float((r >= 0.8).mean()), len(r)


def identity_at(G, base_ws: torch.Tensor, d, alpha: float = 1.0) -> dict:
    """dlib identity between each face and its edits at +-alpha (256-px upsampled renders):
    mean cosine similarity, fraction of pairs under dlib's same-person distance (0.6), pairs used."""
    from studio.core.errors import NoFaceError
    from studio.core.identity import SAME_PERSON_DISTANCE, cosine_similarity, face_descriptor

    imgs = render(G, edit_batch(base_ws, d, [0.0, -alpha, alpha]))
    arr = to_uint8_hwc(imgs, DLIB_SIZE).reshape(len(base_ws), 3, DLIB_SIZE, DLIB_SIZE, 3)
    sims, same = [], []
    for face in arr:
        try:
            desc = [face_descriptor(x) for x in face]
        except NoFaceError:
            continue
        for e in desc[1:]:
            sims.append(cosine_similarity(desc[0], e))
            same.append(float(np.linalg.norm(desc[0] - e)) < SAME_PERSON_DISTANCE)
    if not sims:
        return {"identity_cos": float("nan"), "same_person": float("nan"), "pairs": 0}
    return {"identity_cos": float(np.mean(sims)), "same_person": float(np.mean(same)), "pairs": len(sims)}


def measure_directions(G, items: Sequence[PackDirection], base_ws: torch.Tensor, lab: Labeller, fx: FaceFeatures,
                       *, alphas: Sequence[float] | None = ALPHAS, identity: bool = True,
                       tag: str = "generated", cache_dir: Path | None = None) -> dict[str, dict]:
    """For each attribute direction (keys in :data:`MEASURES`): mean Spearman of its own measurement
    and of the other attributes (side effects) over ``alphas`` (None: 13 values over the direction's
    slider range), and (``identity``) dlib identity at |alpha| = 1. With ``cache_dir``, each result
    is kept under a hash of everything it depends on, so a rerun measures only what changed."""
    out = {}
    for p in items:
        if p.key not in MEASURES:
            continue
        t0 = time.time()
        a = [float(x) for x in (np.linspace(*p.direction.default_range, 13) if alphas is None else alphas)]
        cpath = None
        if cache_dir is not None:
            h = hashlib.sha1()
            for part in (p.key, p.direction.vector, str(p.direction.layers), str(a), str(identity),
                         base_ws.numpy(), lab.age_coef, lab.gender_coef):
                h.update(part.tobytes() if isinstance(part, np.ndarray) else part.encode())
            cpath = cache_dir / f"measure-{p.key}-{h.hexdigest()[:16]}.json"
            if cpath.is_file():
                out[p.key] = json.loads(cpath.read_text())
                continue
        m = measure_images(render(G, edit_batch(base_ws, p.direction, a)), lab, fx)
        res: dict[str, Any] = {"faces": len(base_ws), "alphas": a, "measure": MEASURES[p.key]}
        for k, v in m.items():
            vv = v.reshape(len(base_ws), len(a))
            rho, frac, used = mean_spearman(a, vv)
            if k == p.key:
                res.update(spearman=rho, spearman_ge_0_8=frac, faces_measured=used)
                with np.errstate(all="ignore"):
                    res["mean_at_alpha"] = [float(x) for x in np.nanmean(vv, axis=0)]
            else:
                res.setdefault("side_effects", {})[k] = rho
        if identity:
            res.update(identity_at(G, base_ws, p.direction, 1.0))
        out[p.key] = _rounded(res)
        if cpath is not None:
            atomic_write_json(cpath, out[p.key])
        log.info("  %s %s: Spearman %.3f over alpha %+.0f..%+.0f (%.0f%% of faces >= 0.8)%s (%.0f s)", tag, p.key,
                 res["spearman"], a[0], a[-1], 100 * res["spearman_ge_0_8"],
                 f", identity cos {res['identity_cos']:.3f}, same person {100 * res['same_person']:.0f}%"
                 if identity else "", time.time() - t0)
    return out


def _rounded(x, digits: int = 4):
    """Floats rounded (NaN -> None) through dicts and lists, for JSON."""
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, digits)
    return x


def projected_heldout(G, cfg: DirectionsConfig, cache_dir: Path) -> torch.Tensor:
    """W+ latents [n, num_ws, w_dim] of ``cfg.project_faces`` held-out chips (seeded choice) inverted
    with the optimisation projector (cached per chip)."""
    from studio.core.lpips import LPIPS
    from studio.core.projector import ProjectorConfig, project

    images, idx, _, _ = labelled_chips(Path(cfg.data), "heldout")
    pick = np.random.RandomState(cfg.seed + 7).choice(idx, cfg.project_faces, replace=False)
    pcfg = ProjectorConfig(steps=cfg.project_steps, space="wplus", seed=cfg.seed, preview_every=0)
    lpips = None
    out = []
    for j, i in enumerate(pick):
        name = Path(images.names[i]).name.split(".")[0]
        path = cache_dir / f"proj-{cfg.project_steps}-{name}.npy"
        if path.is_file():
            out.append(torch.from_numpy(np.load(path, allow_pickle=False)))
            continue
        if lpips is None:
            lpips = LPIPS(net=pcfg.lpips_net)
        with torch.enable_grad():
            r = project(G, images.batch([i]), pcfg, lpips=lpips)
        _save_npy(path, r.latent_wplus[0].numpy())
        out.append(r.latent_wplus[0])
        log.info("  projected %d/%d %s: LPIPS %.3f (%.0f s)", j + 1, len(pick), name, r.lpips, r.seconds)
    return torch.stack(out).float()


# ----------------------------------------------------------------------------
# Writing into the pack


def direction_file(p: PackDirection) -> str:
    return f"directions-{p.key.replace('_', '-')}.npy" if p.method == "interfacegan" else f"directions-{p.method}.npz"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pack_directions(pack: Path, items: Sequence[PackDirection]) -> dict[str, dict]:
    """Write the direction files into ``pack`` and set ``manifest['directions']`` (key -> entry with
    file, index (.npz), name, label, method, layers [start, stop), range [lo, hi] (slider range in W
    units: ``w' = w + alpha * n``), default_scale (the standard deviation of sampled w along the
    direction, where known), notes, measured, sha256). The manifest is re-read just before it is
    written, so other steps' keys (encoders) survive. Direction files of an earlier run that are no
    longer listed are removed."""
    from studio.core.directions import save_ganspace_npz, save_interfacegan_npy

    pack = Path(pack)
    mpath = pack / "manifest.json"
    man = json.loads(mpath.read_text())
    num_ws = int(man["num_ws"])
    by_file: dict[str, list[PackDirection]] = {}
    for p in items:
        by_file.setdefault(direction_file(p), []).append(p)
    for fname, group in by_file.items():
        if fname.endswith(".npy"):
            save_interfacegan_npy(group[0].direction, pack / fname)
        else:
            save_ganspace_npz([p.direction for p in group], pack / fname)
    shas = {fname: _sha256(pack / fname) for fname in by_file}
    entries: dict[str, dict] = {}
    for fname, group in by_file.items():
        for i, p in enumerate(group):
            d = p.direction
            entry: dict[str, Any] = {"file": fname}
            if fname.endswith(".npz"):
                entry["index"] = i
            entry.update(name=d.name, label=p.label, method=p.method, layers=list(d.span(num_ws)),
                         range=[round(float(x), 4) for x in d.default_range])
            if p.default_scale is not None:
                entry["default_scale"] = round(float(p.default_scale), 4)
            entry["notes"] = p.notes
            if p.measured:
                entry["measured"] = p.measured
            entry["sha256"] = shas[fname]
            entries[p.key] = entry
    for old in pack.glob("directions-*.np[yz]"):
        if old.name not in by_file:
            old.unlink()
    man["directions"] = entries
    atomic_write_bytes(mpath, (json.dumps(man, indent=1) + "\n").encode())
    return entries


# ----------------------------------------------------------------------------
# The whole recipe


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _measured_note(key: str, res: dict, tag: str) -> str:
    lo, hi = res["alphas"][0], res["alphas"][-1]
    note = (f"{tag} ({res['faces_measured']} faces): Spearman(alpha in [{lo:g}, {hi:g}], {res['measure']}) "
            f"{_fmt(res['spearman'], '.2f')} (>= 0.8 on {_fmt(res['spearman_ge_0_8'], '.0%')} of faces)")
    if "identity_cos" in res:
        note += (f"; identity at |alpha| = 1: cos {_fmt(res['identity_cos'], '.3f')}, same person (dlib distance "
                 f"< 0.6) {_fmt(res['same_person'], '.0%')} of {res['pairs']} pairs")
    return note


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """The Spearman / identity table, one row per (face set, direction)."""
    head = (f"{'faces, alphas':<34} {'direction':<11} {'Spearman':>8} {'>=0.8':>6} {'id cos':>7} {'same':>6}  "
            f"side effects (Spearman of the other measurements)")
    lines = [head, "-" * len(head)]
    for tag, per in results.items():
        for key, r in per.items():
            side = ", ".join(f"{k} {_fmt(v, '+.2f')}" for k, v in (r.get("side_effects") or {}).items())
            lines.append(f"{tag:<34} {key:<11} {_fmt(r['spearman'], '.3f'):>8} {_fmt(r['spearman_ge_0_8'], '.0%'):>6} "
                         f"{_fmt(r.get('identity_cos'), '.3f'):>7} {_fmt(r.get('same_person'), '.0%'):>6}  {side}")
    return "\n".join(lines)


@torch.no_grad()  # not set_grad_enabled(False): a caller in the same process keeps autograd
def run(cfg: DirectionsConfig) -> dict:
    """The whole recipe (module docstring); returns results.json's content."""
    from studio.core.formats import load_checkpoint
    from studio.core.formats.stylestudio_fmt import read_manifest

    torch.set_num_threads(int(cfg.threads))
    pack, work = Path(cfg.out), Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    man = read_manifest(pack)
    gen_sha = str(man["networks"]["generator"].get("sha256") or "unknown")
    cache = work / "cache" / gen_sha[:12]
    cache.mkdir(parents=True, exist_ok=True)
    G = load_checkpoint(pack).generator.eval()
    fx = FaceFeatures()
    names, flips, inherited, raw = NAMES.get(gen_sha, {}), {}, None, None
    if not names and cfg.names_from:
        raw = raw_components(G, cfg)   # computed once: compared here, named in step 4
        names, flips, rows = inherited_names(G, cfg, Path(cfg.names_from), raw=raw)
        inherited = {"from": str(cfg.names_from), "components": [
            {"key": k, "cos": round(c, 4), "kept": kept} for k, c, kept in rows]}
        for k, c, kept in rows:
            log.info("   %-16s cos %+.3f %s", k, c, "named as in --names-from" if kept else "neutral name")
    elif names and cfg.names_from:
        log.info("   NAMES knows generator %s...: --names-from is not needed", gen_sha[:12])

    log.info("1/6 labellers")
    lab = train_labeller(cfg, fx, work)
    log.info("2/6 %d generated faces (psi %g)", cfg.samples, cfg.psi)
    samples = sample_faces(G, fx, cfg.samples, psi=cfg.psi, seed=cfg.seed, cache_dir=cache)
    log.info("   dlib found a face in %.1f%% of them", 100 * samples.detected.mean())
    if cfg.encoded:
        log.info("   + %d train chips inverted with the pack's %s encoder", cfg.encoded, cfg.encoder)
        enc = encoded_train_chips(pack, G, cfg, fx, cache)
        log.info("   dlib found a face in %.1f%% of their renderings", 100 * enc.detected.mean())
        samples = concat_samples(samples, enc)
    log.info("3/6 InterFaceGAN")
    attrs = interfacegan_directions(samples, lab, ratios=_parse_ratios(cfg.ratios), psi=cfg.psi, seed=cfg.seed,
                                    encoded=len(samples.w) - cfg.samples, encoder=cfg.encoder)
    ho = lab.metrics.get("heldout", {})
    for p in attrs:
        if names.get(p.key, {}).get("notes"):
            p.notes += "; " + names[p.key]["notes"]
        if p.key == "age":
            p.notes += f"; labeller held-out MAE {ho.get('age_mae', float('nan')):.1f} y, Spearman {ho.get('age_spearman', float('nan')):.2f}"
        if p.key == "gender":
            p.notes += f"; labeller held-out accuracy {ho.get('gender_accuracy', float('nan')):.1%}"
    log.info("4/6 GANSpace and SeFa")
    comps = component_directions(G, cfg, names, flips, raw)
    items = attrs + comps
    base_gen = G.map(torch.randn([cfg.measure_faces, G.z_dim], generator=torch.Generator().manual_seed(cfg.seed + 1000)),
                     psi=cfg.psi)
    grids: list[str] = []
    if cfg.grids:
        grid_ws = G.map(G.sample_z(6, seed=cfg.seed + 2000), psi=0.7)        # typical faces, easier to judge
        grids = [str(p) for p in render_grids(G, items, grid_ws, work / "grids" / gen_sha[:12],
                                               survey=not names)]
    log.info("5/6 measurement")
    gen = f"generated psi {cfg.psi:g}"
    results = {f"{gen}, [-3, 3]": measure_directions(G, attrs, base_gen, lab, fx, tag="generated", cache_dir=cache),
               f"{gen}, slider range": measure_directions(G, attrs, base_gen, lab, fx, alphas=None, identity=False,
                                                          tag="generated", cache_dir=cache)}
    if cfg.project_faces:
        base_ho = projected_heldout(G, cfg, cache)
        ho = f"held-out projected ({len(base_ho)})"
        results[f"{ho}, [-3, 3]"] = measure_directions(G, attrs, base_ho, lab, fx, tag="held-out",
                                                       cache_dir=cache)
        results[f"{ho}, slider range"] = measure_directions(G, attrs, base_ho, lab, fx, alphas=None, identity=False,
                                                            tag="held-out", cache_dir=cache)
    for p in attrs:
        p.measured = {tag: {k: v for k, v in per[p.key].items() if k not in ("alphas", "measure")}
                      for tag, per in results.items() if p.key in per}
        p.notes += "; " + "; ".join(_measured_note(p.key, per[p.key], tag) for tag, per in results.items() if p.key in per)
    out = {"config": asdict(cfg), "generator_sha256": gen_sha, "names_inherited": inherited, "labeller": lab.metrics,
           "samples_detected": float(samples.detected.mean()), "results": results, "grids": grids,
           "directions": [{"key": p.key, "name": p.direction.name, "label": p.label, "method": p.method,
                           "layers": list(p.direction.span(G.num_ws)), "range": list(p.direction.default_range),
                           "default_scale": p.default_scale, "notes": p.notes,
                           "meta": {k: v for k, v in p.direction.meta.items() if isinstance(v, (int, float, str, list))}}
                          for p in items]}
    if cfg.write:
        log.info("6/6 writing %d directions into %s", len(items), pack)
        write_pack_directions(pack, items)
        from studio.core.directions import load_pack_directions

        back = load_pack_directions(pack)
        assert [d.name for d in back] == [p.direction.name for p in items]
    atomic_write_json(work / "results.json", out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DirectionsConfig()
    ap.add_argument("--out", default=d.out, help="model pack to read the generator from and write directions into")
    ap.add_argument("--data", default=d.data, help="UTKFace folder (images/, labels.csv, duplicates.csv)")
    ap.add_argument("--work", default=d.work, help="caches, grids, results.json")
    ap.add_argument("--labeller-images", type=int, default=d.labeller_images,
                    help="labelled train chips the attribute labellers learn from (0: all)")
    ap.add_argument("--samples", type=int, default=d.samples, help="generated faces for InterFaceGAN (default %(default)s)")
    ap.add_argument("--encoded", type=int, default=d.encoded,
                    help="also fit the attribute normals on this many train chips inverted with --encoder")
    ap.add_argument("--encoder", default=d.encoder, help="the pack's encoder for --encoded")
    ap.add_argument("--psi", type=float, default=d.psi, help="truncation of the generated faces (default %(default)s)")
    ap.add_argument("--seed", type=int, default=d.seed,
                    help="seeds the samples; measurement faces use seed + 1000 (default %(default)s)")
    ap.add_argument("--ratios", default=d.ratios, help="e.g. 'age=0.3,smile=0.15' (default: ATTRIBUTES)")
    ap.add_argument("--ganspace-k", type=int, default=d.ganspace_k, help="GANSpace components inspected (default %(default)s)")
    ap.add_argument("--ganspace-samples", type=int, default=d.ganspace_samples,
                    help="mapped w for the GANSpace PCA (default %(default)s)")
    ap.add_argument("--sefa-k", default=d.sefa_k, help="SeFa components per layer group (default %(default)s)")
    ap.add_argument("--measure-faces", type=int, default=d.measure_faces,
                    help="generated faces for the Spearman / identity table (default %(default)s)")
    ap.add_argument("--project-faces", type=int, default=d.project_faces,
                    help="also measure on this many held-out chips inverted with the projector (0: skip)")
    ap.add_argument("--project-steps", type=int, default=d.project_steps, help="projector steps per chip (default %(default)s)")
    ap.add_argument("--names-from", default=d.names_from, metavar="PACK",
                    help="for a generator NAMES does not know (e.g. a fine-tuned one): name each GANSpace / SeFa "
                         "component as PACK's generator's of the same key when their |cosine| >= 0.9")
    ap.add_argument("--no-grids", dest="grids", action="store_false", help="do not render a grid PNG per direction")
    ap.add_argument("--no-write", dest="write", action="store_false", help="measure only; leave the pack alone")
    ap.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default %(default)s)")
    ap.add_argument("--dry-run", action="store_true", help="print the config and exit")
    a = vars(ap.parse_args(argv))
    dry = a.pop("dry_run")
    cfg = DirectionsConfig(**a)
    try:
        _parse_sefa_k(cfg.sefa_k)
        _parse_ratios(cfg.ratios)
        if cfg.samples < 100:
            raise UserError(f"--samples must be at least 100, got {cfg.samples}")
        if cfg.measure_faces < 1:
            raise UserError(f"--measure-faces must be positive, got {cfg.measure_faces}")
    except UserError as e:
        ap.error(str(e))
    if dry:
        print(json.dumps(asdict(cfg), indent=1))
        return 0
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(Path(cfg.work) / "log.txt")])
    logging.getLogger("studio.core.faces").setLevel(logging.WARNING)
    logging.getLogger("studio.core.identity").setLevel(logging.WARNING)
    out = run(cfg)
    lab = out["labeller"]["heldout"]
    print(f"labellers, held-out ({lab['n']} chips): gender accuracy {lab['gender_accuracy']:.1%}, "
          f"age MAE {lab['age_mae']:.2f} y, age Spearman {lab['age_spearman']:.3f}")
    print(format_table(out["results"]))
    for dd in out["directions"]:
        print(f"  {dd['key']:<16} {dd['name']:<22} {dd['method']:<12} rows {dd['layers'][0]}-{dd['layers'][1] - 1}  "
              f"range [{dd['range'][0]:+.1f}, {dd['range'][1]:+.1f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
