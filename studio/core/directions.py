"""Edit directions in W (METHODS.md §5): the :class:`Direction` type, three finders, and file I/O.

Finders:

- :func:`sefa` - closed-form factorisation of the generator's affine (style) weights (Shen & Zhou,
  "Closed-Form Factorization of Latent Semantics in GANs"): the top eigenvectors of ``A^T A``.
- :func:`ganspace` - PCA of sampled w (Härkönen et al., "GANSpace"), applied to a chosen row range.
- :func:`interfacegan` - the unit normal of a linear SVM that separates latents by an attribute
  (Shen et al., "InterFaceGAN"), from binary or continuous labels.

Files: InterFaceGAN boundaries (``.npy``, shape [1, w_dim]) and GANSpace component files (``.npz``
with ``lat_comp`` [k, 1, w_dim], ``lat_mean``, ``lat_stdev``, ...). A vector whose size does not fit
the loaded generator is refused with a :class:`DirectionError` that says so. Files are read with
``allow_pickle=False`` (never run code) and written through :func:`atomic_write_bytes`.
A model pack lists its directions in ``manifest['directions']``; :func:`load_pack_directions` reads
them (each file's sha256 checked against the manifest).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import DirectionError
from studio.core.fileio import atomic_write_bytes, not_a_regular_file
from studio.core.latent import project_out, resolve_span
from studio.core.lazy import torch

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# The direction type


#: Largest |end| of a direction's slider range (edits past ±30 are already noise).
MAX_RANGE = 1000.0


@dataclass
class Direction:
    """A unit vector in W with what the UI needs to offer it as a slider.

    vector: [w_dim] float32, unit length (renormalised on creation unless already unit to 1e-5, so a
        saved direction reloads bit for bit).
    layers: half-open W+ row range ``(start, stop)`` the edit applies to; ``None`` = every row.
    default_range: slider range for ``alpha`` in W units (``w' = w + alpha * vector``).
    source: where it came from: 'sefa', 'ganspace', 'interfacegan', 'file', 'conditional', ...
    meta: JSON-able details (eigenvalue, explained variance, SVM accuracy, file name, ...).
    """

    name: str
    vector: np.ndarray
    layers: tuple[int, int] | None = None
    default_range: tuple[float, float] = (-3.0, 3.0)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise DirectionError(f"direction {self.name!r}: the vector is empty or not finite")
        norm = float(np.linalg.norm(v.astype(np.float64)))
        if norm < 1e-12:
            raise DirectionError(f"direction {self.name!r}: the vector is zero")
        if abs(norm - 1.0) > 1e-5:
            v = (v.astype(np.float64) / norm).astype(np.float32)
        self.vector = np.ascontiguousarray(v)
        if self.layers is not None:
            a, b = int(self.layers[0]), int(self.layers[1])
            if not 0 <= a < b:
                raise DirectionError(f"direction {self.name!r}: empty layer range {a}-{b - 1}")
            self.layers = (a, b)
        lo, hi = (float(x) for x in self.default_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and max(-lo, hi) <= MAX_RANGE):
            raise DirectionError(f"direction {self.name!r}: slider range {lo:g} to {hi:g} is not an increasing "
                                 f"pair of numbers within ±{MAX_RANGE:g}")
        self.default_range = (lo, hi)

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[0])

    def span(self, num_ws: int) -> tuple[int, int]:
        """The half-open W+ row range for a generator with ``num_ws`` rows."""
        try:
            return resolve_span(self.layers, num_ws)
        except ValueError as e:
            raise DirectionError(f"direction {self.name!r}: {e}") from None

    def check_fits(self, w_dim: int, num_ws: int | None = None) -> None:
        """Raise :class:`DirectionError` unless the vector fits a W of ``w_dim`` (and the layer range ``num_ws``)."""
        if self.w_dim != w_dim:
            raise DirectionError(f"direction {self.name!r} has {self.w_dim} values but the loaded generator's "
                                 f"W has w_dim={w_dim}; it was made for a different model")
        if num_ws is not None:
            self.span(num_ws)

    def with_layers(self, layers: tuple[int, int] | None) -> Direction:
        return replace(self, layers=layers, meta=dict(self.meta))

    def to_json(self) -> dict:
        """Everything but the vector (stored beside it as .npy)."""
        return {"name": self.name, "layers": None if self.layers is None else list(self.layers),
                "default_range": list(self.default_range), "source": self.source, "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict, vector: np.ndarray) -> Direction:
        layers = d.get("layers")
        return cls(name=str(d["name"]), vector=vector, layers=None if layers is None else tuple(layers),
                   default_range=tuple(d.get("default_range", (-3.0, 3.0))), source=str(d.get("source", "")),
                   meta=dict(d.get("meta") or {}))


def _canonical_sign(v: np.ndarray) -> np.ndarray:
    """Flip each row so its largest-magnitude entry is positive (eigenvector signs are arbitrary)."""
    v = np.atleast_2d(v)
    idx = np.argmax(np.abs(v), axis=1)
    signs = np.sign(v[np.arange(v.shape[0]), idx])
    signs[signs == 0] = 1
    return v * signs[:, None]


def condition(direction: Direction, *others: Direction) -> Direction:
    """Conditional manipulation (InterFaceGAN): remove from ``direction`` its component along the
    ``others`` (so moving along it leaves those attributes unchanged, to first order), renormalised."""
    if not others:
        return direction
    for o in others:
        if o.w_dim != direction.w_dim:
            raise DirectionError(f"cannot condition {direction.name!r} on {o.name!r}: sizes {direction.w_dim} "
                                 f"and {o.w_dim} differ")
    try:
        v = project_out(direction.vector, np.stack([o.vector for o in others]))
    except ValueError:
        raise DirectionError(f"direction {direction.name!r} lies in the span of "
                             f"{', '.join(repr(o.name) for o in others)}: nothing is left after projecting them out") from None
    meta = dict(direction.meta)
    meta["conditioned_on"] = [o.name for o in others]
    return replace(direction, vector=v.astype(np.float32), meta=meta)


# ----------------------------------------------------------------------------
# SeFa


def style_affines(G) -> list[torch.nn.Module]:
    """The affine (style) layer that reads each W+ row, in row order [num_ws]: the conv layers,
    then the last toRGB for the final row (SeFa's convention; intermediate toRGBs share their row
    with the next conv and are left out)."""
    layers = [layer.affine for layer in G.synthesis.noise_layers()]
    layers.append(G.synthesis.blocks()[-1].torgb.affine)
    assert len(layers) == G.num_ws
    return layers


def sefa_from_weights(weights: Sequence[np.ndarray], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SeFa on affine weights, each [C_i, w_dim]: rows concatenated into A [sum C_i, w_dim], each row
    scaled to unit norm (as in the SeFa authors' code), then the eigen-decomposition of ``A^T A``.

    Returns (directions [k, w_dim] float64 orthonormal, sorted by eigenvalue descending, sign fixed so
    the largest entry is positive; eigenvalues [k]).
    """
    a = np.concatenate([np.asarray(w, dtype=np.float64) for w in weights], axis=0)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    vals, vecs = np.linalg.eigh(a.T @ a)      # ascending
    order = np.argsort(vals)[::-1]
    k = a.shape[1] if k is None else min(int(k), a.shape[1])
    order = order[:k]
    return _canonical_sign(vecs[:, order].T), vals[order]


def sefa(G, *, layers: tuple[int, int] | None = None, k: int = 10, prefix: str = "sefa") -> list[Direction]:
    """The top-``k`` SeFa directions of generator ``G`` for the W+ rows ``layers`` (half-open; None =
    all rows). Each direction applies to those same rows, named ``f'{prefix}{i}'``."""
    start, stop = resolve_span(layers, G.num_ws)
    affines = style_affines(G)[start:stop]
    weights = [m.weight.detach().cpu().numpy() for m in affines]
    vecs, vals = sefa_from_weights(weights, k)
    span = None if (start, stop) == (0, G.num_ws) else (start, stop)
    return [Direction(f"{prefix}{i}", v.astype(np.float32), layers=span, default_range=(-5.0, 5.0), source="sefa",
                      meta={"rank": i, "eigenvalue": float(vals[i]), "rows": [start, stop]})
            for i, v in enumerate(vecs)]


# ----------------------------------------------------------------------------
# GANSpace


def sample_w_batches(G, n: int, *, seed: int = 0, batch: int = 1000) -> Iterator[np.ndarray]:
    """Map ``n`` standard-normal z (from ``torch.Generator().manual_seed(seed)``) to w, yielding
    float32 batches [b, w_dim]. A long job: stop iterating to cancel; each batch is a progress step."""
    gen = torch.Generator().manual_seed(int(seed))
    device = next(G.parameters()).device
    done = 0
    with torch.inference_mode():
        while done < n:
            b = min(batch, n - done)
            z = torch.randn([b, G.z_dim], generator=gen).to(device)
            yield G.mapping(z).float().cpu().numpy()
            done += b


def pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of samples x [N, d]: (components [k, d] unit rows, explained variance [k] (ddof=1),
    mean [d]). Same numbers as ``sklearn.decomposition.PCA(k, svd_solver='full')``; signs fixed so each
    component's largest entry is positive."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(int(k), vt.shape[0])
    var = s[:k] ** 2 / max(x.shape[0] - 1, 1)
    return _canonical_sign(vt[:k]), var, mean


def ganspace_from_w(w: np.ndarray, *, k: int = 10, layers: tuple[int, int] | None = None,
                    prefix: str = "pc") -> list[Direction]:
    """GANSpace directions from sampled w [N, w_dim]: the top-``k`` principal components, applied to
    the W+ rows ``layers``; each slider's default range is +-2 standard deviations along it."""
    comps, var, _ = pca(w, k)
    total = float(np.var(np.asarray(w, dtype=np.float64), axis=0, ddof=1).sum())
    out = []
    for i, (c, v) in enumerate(zip(comps, var)):
        sd = math.sqrt(float(v))
        out.append(Direction(f"{prefix}{i}", c.astype(np.float32), layers=layers, default_range=(-2 * sd, 2 * sd),
                             source="ganspace", meta={"rank": i, "stdev": sd, "variance_ratio": float(v) / total,
                                                      "samples": int(w.shape[0])}))
    return out


def ganspace(G, *, n_samples: int = 20000, k: int = 10, layers: tuple[int, int] | None = None, seed: int = 0,
             on_progress: Callable[[int, int], None] | None = None) -> list[Direction]:
    """GANSpace on generator ``G``: PCA of ``n_samples`` mapped w (seeded), see :func:`ganspace_from_w`.
    ``on_progress(done, total)`` is called after each batch."""
    if layers is not None:
        resolve_span(layers, G.num_ws)
    chunks, done = [], 0
    for w in sample_w_batches(G, n_samples, seed=seed):
        chunks.append(w)
        done += len(w)
        if on_progress is not None:
            on_progress(done, n_samples)
    dirs = ganspace_from_w(np.concatenate(chunks), k=k, layers=layers)
    for d in dirs:
        d.meta["seed"] = int(seed)
    return dirs


# ----------------------------------------------------------------------------
# InterFaceGAN


def _is_binary(labels: np.ndarray) -> bool:
    vals = set(np.unique(labels).tolist())
    return vals <= {0, 1} or vals <= {-1, 1} or labels.dtype == bool


def interfacegan(latents: np.ndarray, labels: np.ndarray, *, name: str = "attribute",
                 layers: tuple[int, int] | None = None, ratio: float = 0.02, val_fraction: float = 0.3,
                 C: float = 1.0, seed: int = 0) -> Direction:
    """The InterFaceGAN boundary normal for latents [N, w_dim] with labels [N].

    Binary labels (0/1, -1/+1, bool) are used as they are; continuous scores keep only the top and
    bottom ``ratio`` of the samples (positives / negatives), as the authors do. A linear SVM
    (scikit-learn ``LinearSVC``) is fit on ``1 - val_fraction`` of them (seeded shuffle); its unit
    normal points towards the positive class. Validation accuracy goes into ``meta``.
    """
    from sklearn.svm import LinearSVC

    x = np.asarray(latents, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2:
        raise DirectionError(f"InterFaceGAN needs W latents [N, w_dim]; got shape {list(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise DirectionError(f"{x.shape[0]} latents but {y.shape[0]} labels")
    if not np.all(np.isfinite(y.astype(np.float64))):
        raise DirectionError("labels contain NaN or infinity")
    if _is_binary(y):
        y = (y.astype(np.float64) > 0).astype(np.int64)
        mode = "binary"
    else:
        n = round(ratio * len(y)) if ratio < 1 else int(ratio)
        if n < 2:
            raise DirectionError(f"ratio {ratio} of {len(y)} samples leaves {n} per class (need at least 2); "
                                 f"use more samples or a larger ratio")
        if 2 * n > len(y):
            raise DirectionError(f"ratio {ratio} of {len(y)} samples asks for {n} per class, but the top and "
                                 f"bottom {n} would overlap; use a smaller ratio (at most 0.5, or a count of at "
                                 f"most {len(y) // 2})")
        order = np.argsort(y.astype(np.float64), kind="stable")
        idx = np.concatenate([order[-n:], order[:n]])
        x, y = x[idx], np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
        mode = "continuous"
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise DirectionError(f"need at least 2 samples of each class, have {counts[0]} negative and {counts[1]} positive")
    perm = np.random.RandomState(seed).permutation(len(y))
    n_val = int(len(y) * val_fraction)
    val, train = perm[:n_val], perm[n_val:]
    if len(np.unique(y[train])) < 2:
        raise DirectionError("the training split has one class only; use more samples")
    clf = LinearSVC(C=C, dual="auto", max_iter=20000, random_state=seed)
    clf.fit(x[train], y[train])
    normal = clf.coef_.reshape(-1)
    acc = float((clf.predict(x[val]) == y[val]).mean()) if n_val else float("nan")
    meta = {"labels": mode, "samples": len(y), "val_accuracy": acc if n_val else None, "C": C}
    if mode == "continuous":
        meta["ratio"] = ratio
    log.info("InterFaceGAN %s: %d samples, validation accuracy %.3f", name, len(y), acc)
    return Direction(name, normal.astype(np.float32), layers=layers, source="interfacegan", meta=meta)


# ----------------------------------------------------------------------------
# Files


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _size_message(size: int, shape, w_dim: int, num_ws: int | None) -> str:
    msg = (f"the vector has {size} values (shape {list(shape)}) but the loaded generator's W has "
           f"w_dim={w_dim}; it was made for a different model")
    if num_ws and size == num_ws * w_dim:
        msg += f" (it looks like a W+ boundary of {num_ws} x {w_dim}; only W directions are supported)"
    return msg


def load_interfacegan_npy(path: str | Path, *, w_dim: int, num_ws: int | None = None, name: str | None = None,
                          layers: tuple[int, int] | None = None) -> Direction:
    """An InterFaceGAN boundary file (``.npy``, [1, w_dim] or [w_dim]) as a :class:`Direction`.
    The name defaults to the file name without ``_w_boundary`` / ``_boundary``."""
    path = Path(path)
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DirectionError("no such file", path=path) from None
    except Exception as e:  # noqa: BLE001 - numpy's parser also raises EOFError, SyntaxError, MemoryError, ...
        if "pickle" in str(e):  # numpy's text suggests allow_pickle: never for an untrusted file
            raise DirectionError("not a .npy array file (or it holds Python objects, which StyleStudio never "
                                 "loads); an InterFaceGAN boundary is a plain numeric .npy", path=path) from None
        raise DirectionError(f"not a readable .npy array ({type(e).__name__}: {str(e)[:200]})", path=path) from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        raise DirectionError("expected a numeric array", path=path)
    if a.size != w_dim or (a.ndim == 2 and a.shape[0] != 1) or a.ndim > 2:
        raise DirectionError(_size_message(a.size, a.shape, w_dim, num_ws), path=path)
    if name is None:
        name = path.stem
        for suffix in ("_w_boundary", "_boundary"):
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    d = Direction(name, a.reshape(-1), layers=layers, source="interfacegan", meta={"file": path.name})
    if num_ws is not None:
        d.check_fits(w_dim, num_ws)
    return d


def save_interfacegan_npy(direction: Direction, path: str | Path) -> Path:
    """Write ``direction`` as an InterFaceGAN boundary: float32 [1, w_dim]."""
    path = Path(path)
    atomic_write_bytes(path, _npy_bytes(direction.vector.reshape(1, -1).astype(np.float32)))
    return path


def load_ganspace_npz(path: str | Path, *, w_dim: int, num_ws: int | None = None,
                      layers: tuple[int, int] | None = None, prefix: str = "pc") -> list[Direction]:
    """The components of a GANSpace ``.npz`` file (``lat_comp`` [k, 1, w_dim]; ``act_comp`` as a
    fallback) as directions named ``pc0``... (or the file's ``names``), with +-2 stdev ranges when
    ``lat_stdev`` is present. Our own exports also restore each direction's layer range."""
    path = Path(path)
    try:
        _check_unpacked_size(path)
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DirectionError("is a single .npy array, not an .npz archive; an InterFaceGAN boundary "
                                 "loads when the file is named .npy", path=path)
        with z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DirectionError("no such file", path=path) from None
    except DirectionError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy/zipfile raise BadZipFile, KeyError, EOFError, SyntaxError, ...
        raise DirectionError(f"not a readable .npz archive ({type(e).__name__}: {str(e)[:200]})", path=path) from None
    key = "lat_comp" if "lat_comp" in arrays else "act_comp" if "act_comp" in arrays else None
    if key is None:
        raise DirectionError(f"no 'lat_comp' or 'act_comp' array (found {sorted(arrays)}); not a GANSpace file",
                             path=path)
    comp = np.asarray(arrays[key])
    if comp.dtype.kind not in "fiu":
        raise DirectionError(f"'{key}' holds {comp.dtype} values; expected real numbers (float32)", path=path)
    if comp.ndim < 2:
        raise DirectionError(f"'{key}' has shape {list(comp.shape)}; expected [k, 1, w_dim]", path=path)
    per = int(np.prod(comp.shape[1:]))
    if per != w_dim:
        raise DirectionError(f"each component has {per} values (shape {list(comp.shape)}) but the loaded "
                             f"generator's W has w_dim={w_dim}; the file was made for a different model", path=path)
    if comp.shape[0] == 0:
        raise DirectionError(f"'{key}' holds no components", path=path)
    comp = comp.reshape(comp.shape[0], per)
    try:
        stdev = arrays.get("lat_stdev" if key == "lat_comp" else "act_stdev")
        stdev = None if stdev is None else np.asarray(stdev, dtype=np.float64).reshape(-1)
        names = arrays.get("names")
        names = None if names is None else [str(n) for n in np.asarray(names).reshape(-1)]
        spans = arrays.get("layers")
        if spans is not None:
            spans = np.asarray(spans)
            if spans.dtype.kind == "f" and not np.isfinite(spans).all():
                raise ValueError("'layers' holds NaN or infinite values")
            spans = spans.astype(np.int64).reshape(-1, 2)
    except (TypeError, ValueError, OverflowError) as e:  # names / layers / stdev of the wrong dtype or shape
        raise DirectionError(f"malformed 'names', 'layers' or stdev array ({e})", path=path) from None
    out = []
    for i, c in enumerate(comp):
        name = names[i] if names is not None and i < len(names) else f"{prefix}{i}"
        span = layers
        if span is None and spans is not None and i < len(spans) and spans[i][0] >= 0:
            span = (int(spans[i][0]), int(spans[i][1]))
        rng = (-3.0, 3.0)
        meta: dict[str, Any] = {"rank": i, "file": path.name}
        if stdev is not None and i < len(stdev) and np.isfinite(stdev[i]) and stdev[i] > 0:
            rng = (-2 * float(stdev[i]), 2 * float(stdev[i]))
            meta["stdev"] = float(stdev[i])
        d = Direction(name, c, layers=span, default_range=rng, source="ganspace", meta=meta)
        if num_ws is not None:
            d.check_fits(w_dim, num_ws)
        out.append(d)
    return out


def _check_unpacked_size(path: Path) -> None:
    """Refuse an .npz whose members unpack to more than MAX_DIRECTION_FILE_BYTES (a zip bomb);
    what zipfile cannot parse is left to np.load to report."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(max(i.file_size, 0) for i in zf.infolist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return
    if total > MAX_DIRECTION_FILE_BYTES:
        raise DirectionError(f"the archive unpacks to {total / 2**20:.0f} MiB, implausibly large for direction "
                             "components", path=path)


def save_ganspace_npz(directions: Sequence[Direction], path: str | Path, *, mean: np.ndarray | None = None) -> Path:
    """Write directions as a GANSpace component file (``lat_comp`` [k, 1, w_dim], ``lat_mean``,
    ``lat_stdev``, the same as ``act_*`` since the PCA is in W, ``var_ratio``), plus ``names`` and
    ``layers`` ([k, 2], -1 = all rows) so StyleStudio restores its sliders."""
    if not directions:
        raise DirectionError("no directions to save")
    w_dim = directions[0].w_dim
    for d in directions:
        d.check_fits(w_dim)
    comp = np.stack([d.vector for d in directions]).astype(np.float32)[:, None, :]
    stdev = np.array([d.meta.get("stdev", d.default_range[1] / 2) for d in directions], dtype=np.float32)
    ratio = np.array([d.meta.get("variance_ratio", np.nan) for d in directions], dtype=np.float32)
    mean = np.zeros((1, w_dim), np.float32) if mean is None else np.asarray(mean, np.float32).reshape(1, w_dim)
    spans = np.array([list(d.layers) if d.layers is not None else [-1, -1] for d in directions], dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, lat_comp=comp, lat_mean=mean, lat_stdev=stdev, act_comp=comp, act_mean=mean,
                        act_stdev=stdev, var_ratio=ratio, names=np.array([d.name for d in directions]), layers=spans)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_directions(path: str | Path, *, w_dim: int, num_ws: int | None = None,
                    layers: tuple[int, int] | None = None) -> list[Direction]:
    """Any direction file by suffix: ``.npy`` (InterFaceGAN boundary) or ``.npz`` (GANSpace components)."""
    suffix = Path(path).suffix.lower()
    special = not_a_regular_file(path)
    if special:
        raise DirectionError(special, path=path)
    if suffix == ".npy":
        return [load_interfacegan_npy(path, w_dim=w_dim, num_ws=num_ws, layers=layers)]
    if suffix == ".npz":
        return load_ganspace_npz(path, w_dim=w_dim, num_ws=num_ws, layers=layers)
    raise DirectionError("unknown direction file; use an InterFaceGAN boundary (.npy) or a GANSpace "
                         "component file (.npz)", path=path)


# ----------------------------------------------------------------------------
# Directions shipped in a model pack (``manifest['directions']``)

#: Entry fields of ``manifest['directions']`` (a dict key -> entry, or a list of entries):
#: ``file`` (.npy boundary / .npz components, in the pack's folder), ``index`` (component in a .npz),
#: ``name``, ``label``, ``method``, ``layers`` [start, stop), ``range`` [lo, hi], ``default_scale``,
#: ``notes``, ``sha256`` (of the file; checked when present).
PACK_DIRECTION_SUFFIXES = (".npy", ".npz")
MAX_DIRECTION_FILE_BYTES = 64 << 20


def _pack_manifest(bundle_or_path) -> tuple[dict, Path | None]:
    """(manifest, folder holding its files) of a loaded bundle or a pack path (folder or manifest.json).
    A single-file model has no folder (None)."""
    import json

    if hasattr(bundle_or_path, "meta"):
        man = (bundle_or_path.meta or {}).get("manifest") or {}
        p = Path(bundle_or_path.path) if getattr(bundle_or_path, "path", "") else None
        root = None if p is None else p if p.is_dir() else p.parent if p.suffix == ".json" else None
        return man, root
    p = Path(bundle_or_path)
    mpath = p / "manifest.json" if p.is_dir() else p
    if mpath.suffix != ".json":
        return {}, None          # a single-file model: its manifest cannot list files beside it
    try:
        raw = mpath.read_bytes()
        if len(raw) > 16 << 20:
            raise DirectionError("manifest is implausibly large", path=mpath)
        man = json.loads(raw)
    except OSError as e:
        raise DirectionError(f"cannot read the pack's manifest ({e.strerror or e})", path=mpath) from None
    except (ValueError, RecursionError) as e:
        raise DirectionError(f"the pack's manifest is not valid JSON ({type(e).__name__}: {str(e)[:200]})",
                             path=mpath) from None
    if not isinstance(man, dict):
        raise DirectionError("the pack's manifest is not a JSON object", path=mpath)
    return man, mpath.parent


def load_pack_directions(bundle_or_path) -> list[Direction]:
    """The directions listed in a model pack's ``manifest['directions']``, in manifest order.

    ``bundle_or_path``: a :class:`~studio.core.formats.ModelBundle` loaded from a pack folder (its
    ``meta['manifest']``), the folder, or its ``manifest.json``. Each file is read only as ``.npy`` /
    ``.npz`` without pickle (:func:`load_directions`), after its sha256 is checked against the entry
    (a mismatch, a missing file or a file name outside the folder raises :class:`DirectionError`).
    Each direction gets the entry's ``name``, ``layers`` and ``range``; ``label``, ``method``,
    ``notes``, ``default_scale`` and the manifest key go into ``meta``. No entries: ``[]``.
    """
    import hashlib

    man, root = _pack_manifest(bundle_or_path)
    entries = man.get("directions") or {}
    if isinstance(entries, list):
        items = [(str(e.get("name", i)) if isinstance(e, dict) else str(i), e) for i, e in enumerate(entries)]
    elif isinstance(entries, dict):
        items = [(str(k), e) for k, e in entries.items()]
    else:
        raise DirectionError("manifest['directions'] must be a dict or a list of entries")
    if not items:
        return []
    if root is None:
        raise DirectionError("this model lists directions but is not a pack folder; its direction files cannot be found")
    try:
        w_dim, num_ws = int(man["w_dim"]), int(man["num_ws"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DirectionError("the pack's manifest has no valid w_dim / num_ws", path=root) from None
    loaded: dict[str, list[Direction]] = {}
    hashes: dict[str, str] = {}
    out = []
    for key, e in items:
        if not isinstance(e, dict):
            raise DirectionError(f"manifest['directions'][{key!r}] is not an object", path=root)
        fname = e.get("file")
        if (not isinstance(fname, str) or not fname or "/" in fname or "\\" in fname or fname.startswith(".")
                or Path(fname).suffix.lower() not in PACK_DIRECTION_SUFFIXES):
            raise DirectionError(f"direction {key!r}: bad file name {fname!r} (expected a .npy or .npz file in "
                                 f"the pack's folder)", path=root)
        fpath = root / fname
        if fname not in loaded:
            try:
                if fpath.stat().st_size > MAX_DIRECTION_FILE_BYTES:
                    raise DirectionError(f"direction {key!r}: file is implausibly large", path=fpath)
                data = fpath.read_bytes()
            except OSError as err:
                raise DirectionError(f"direction {key!r}: file missing or unreadable ({err.strerror or err})",
                                     path=fpath) from None
            hashes[fname] = hashlib.sha256(data).hexdigest()
            loaded[fname] = load_directions(fpath, w_dim=w_dim)
        want = e.get("sha256")
        if want is None:
            log.warning("%s: no sha256 in the manifest for direction %r; not verified", fpath, key)
        elif hashes[fname] != str(want).lower():
            raise DirectionError(f"direction {key!r}: sha256 does not match the manifest (file corrupt, "
                                 f"truncated or replaced)", path=fpath)
        group = loaded[fname]
        idx = e.get("index", 0)
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(group):
            raise DirectionError(f"direction {key!r}: index {idx} but the file holds {len(group)}", path=fpath)
        base = group[idx]
        layers = e.get("layers")
        rng = e.get("range", base.default_range)
        try:
            layers = None if layers is None else (int(layers[0]), int(layers[1]))
            rng = (float(rng[0]), float(rng[1]))
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            raise DirectionError(f"direction {key!r}: layers / range must be [start, stop] / [lo, hi]", path=root) from None
        if not rng[0] < rng[1]:
            raise DirectionError(f"direction {key!r}: empty range {list(rng)}", path=root)
        meta = {k: e[k] for k in ("label", "method", "notes", "default_scale", "measured") if k in e}
        meta.update(key=key, file=fname, index=idx)
        d = Direction(str(e.get("name") or key), base.vector, layers=layers, default_range=rng,
                      source=str(e.get("method") or base.source), meta=meta)
        d.check_fits(w_dim, num_ws)
        out.append(d)
    return out
