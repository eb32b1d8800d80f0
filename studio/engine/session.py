"""The edit session: a source latent plus the edits applied to it, as data with undo/redo.

Plain Python (no Qt). Every user action is a :class:`Command` with ``do``/``undo`` that mutates an
:class:`EditState`; :class:`EditSession` keeps the undo and redo stacks and tells listeners (plain
callables) after each change. Slider drags merge into one undo step: pass ``dragging=True`` while
the slider moves and ``dragging=False`` (or call :meth:`EditSession.end_drag`) on release.

The edited W+ is composed from the state in a fixed order (METHODS.md §5):
``mix(source, reference)`` -> truncation towards ``w_avg`` -> ``+ alpha_i * n_i`` on each direction's
rows, in list order. So an ``alpha`` is always in W units and exactly added.

A ``.stylestudio`` project is one zip file: ``project.json`` (settings, model identity) plus
``source.npy``, ``reference.npy`` and ``directions.npy`` (float32). Reopening gives the same W+ bit for
bit; a project made with another model (different ``w_avg`` hash or W+ shape) is refused with a
:class:`ProjectError`. The undo history is not saved.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import zipfile
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio import __version__
from studio.core.directions import Direction
from studio.core.errors import DirectionError, ProjectError, StudioError
from studio.core.fileio import atomic_write_bytes, not_a_regular_file
from studio.core.latent import GROUPS, apply_direction, as_wplus, truncate_rows
from studio.core.lazy import torch
from studio.engine.mixing import StyleMixer, _check_per_layer

log = logging.getLogger(__name__)

PROJECT_FORMAT = "stylestudio-project"
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".stylestudio"
#: Largest member of a project zip (its arrays are a few kB; more means damage or a zip bomb).
MAX_PROJECT_MEMBER_BYTES = 64 << 20

# ----------------------------------------------------------------------------
# Model identity


def w_avg_hash(w_avg) -> str:
    """sha256 (hex) of ``w_avg`` as little-endian float32: identifies a generator's weights cheaply."""
    a = np.ascontiguousarray(torch.as_tensor(w_avg).detach().cpu().to(torch.float32).numpy().astype("<f4"))
    return hashlib.sha256(a.tobytes()).hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """Which generator an edit belongs to. Matching uses the ``w_avg`` hash and the W+ shape;
    ``format`` and ``path`` are recorded to tell the user which model to open."""

    format: str
    path: str
    w_avg_sha256: str
    num_ws: int
    w_dim: int
    resolution: int

    @classmethod
    def from_generator(cls, G, *, format: str = "unknown", path: str = "") -> ModelIdentity:
        return cls(format=format, path=str(path), w_avg_sha256=w_avg_hash(G.w_avg), num_ws=int(G.num_ws),
                   w_dim=int(G.w_dim), resolution=int(G.img_resolution))

    @classmethod
    def from_bundle(cls, bundle) -> ModelIdentity:
        if bundle.generator is None:
            raise StudioError(f"{bundle.path}: this file has no generator")
        path = Path(bundle.path).resolve() if bundle.path else ""
        return cls.from_generator(bundle.generator, format=bundle.format, path=str(path))

    def to_json(self) -> dict:
        return {"format": self.format, "path": self.path, "w_avg_sha256": self.w_avg_sha256,
                "num_ws": self.num_ws, "w_dim": self.w_dim, "resolution": self.resolution}

    @classmethod
    def from_json(cls, d: dict) -> ModelIdentity:
        return cls(format=str(d.get("format", "unknown")), path=str(d.get("path", "")),
                   w_avg_sha256=str(d.get("w_avg_sha256", "")), num_ws=int(d["num_ws"]), w_dim=int(d["w_dim"]),
                   resolution=int(d.get("resolution", 0)))

    def check_same(self, loaded: ModelIdentity, *, path=None) -> None:
        """Raise :class:`ProjectError` unless ``loaded`` is the model this identity names."""
        if (self.num_ws, self.w_dim) != (loaded.num_ws, loaded.w_dim) or \
                (self.w_avg_sha256 and loaded.w_avg_sha256 and self.w_avg_sha256 != loaded.w_avg_sha256):
            raise ProjectError(
                f"this project was made with another model ({self.format} {self.path or '?'}, W+ "
                f"{self.num_ws}x{self.w_dim}, w_avg hash {self.w_avg_sha256[:12]}); the loaded model "
                f"({loaded.format} {loaded.path or '?'}, W+ {loaded.num_ws}x{loaded.w_dim}, w_avg hash "
                f"{loaded.w_avg_sha256[:12]}) differs. Open the project's model instead.", path=path)


# ----------------------------------------------------------------------------
# State


@dataclass
class AppliedDirection:
    """A direction in the session and its current amount ``alpha`` (W units)."""

    direction: Direction
    alpha: float = 0.0


@dataclass
class EditState:
    """Everything that defines the edited latent. source: W+ [num_ws, w_dim] float32."""

    source: np.ndarray
    mixer: StyleMixer
    directions: list[AppliedDirection] = field(default_factory=list)
    psi: float = 1.0
    cutoff: int | None = None

    @property
    def num_ws(self) -> int:
        return int(self.source.shape[0])

    @property
    def w_dim(self) -> int:
        return int(self.source.shape[1])

    def index_of(self, name: str) -> int:
        for i, ad in enumerate(self.directions):
            if ad.direction.name == name:
                return i
        raise DirectionError(f"no direction named {name!r} in this session "
                             f"(have: {', '.join(ad.direction.name for ad in self.directions) or 'none'})")

    def copy(self) -> EditState:
        return EditState(self.source.copy(), self.mixer.copy(),
                         [AppliedDirection(ad.direction, ad.alpha) for ad in self.directions], self.psi, self.cutoff)


def compose(state: EditState, w_avg: np.ndarray | None = None) -> torch.Tensor:
    """The edited W+ [num_ws, w_dim] float32 (CPU tensor) for ``state``; ``w_avg`` [w_dim] is needed
    only when ``psi != 1``."""
    src = torch.from_numpy(state.source)
    ws = state.mixer.apply(src)
    if state.psi != 1:
        if w_avg is None:
            raise StudioError("truncation needs the model's w_avg")
        ws = truncate_rows(ws, torch.from_numpy(np.asarray(w_avg, np.float32)), state.psi, state.cutoff)
    for ad in state.directions:
        if ad.alpha != 0:
            ws = apply_direction(ws, torch.from_numpy(ad.direction.vector), ad.alpha, ad.direction.span(state.num_ws))
    return ws.clone() if ws is src else ws  # never share memory with the state


# ----------------------------------------------------------------------------
# Commands


class Command:
    """An undoable edit: ``do(state)`` applies it (validating first, so a failed ``do`` changes
    nothing), ``undo(state)`` restores exactly the previous values. Commands with equal, non-None
    ``merge_key`` merge while a slider is dragged."""

    text = "edit"
    merge_key: Hashable | None = None

    def do(self, state: EditState) -> None:
        raise NotImplementedError

    def undo(self, state: EditState) -> None:
        raise NotImplementedError

    def merge(self, later: Command) -> None:
        """Absorb ``later`` (already done, same ``merge_key``): keep our old value, take its new one."""
        raise NotImplementedError


#: Largest |value| an edit takes: far past anything useful (sliders span a few units), and small
#: enough that float32 arithmetic on W+ rows cannot overflow to inf / NaN.
LIMITS = {"direction amount": 1000.0, "truncation psi": 100.0, "mixing strength": 100.0}


def _finite(x: float, what: str) -> float:
    x = float(x)
    limit = LIMITS.get(what, math.inf)
    if not math.isfinite(x) or abs(x) > limit:
        raise StudioError(f"{what} must be a finite number{f' within ±{limit:g}' if limit < math.inf else ''}, "
                          f"got {x}")
    return x


class SetAmount(Command):
    def __init__(self, name: str, alpha: float):
        self.name, self.new, self.old = name, _finite(alpha, "direction amount"), None
        self.text = f"{name} = {self.new:+.2f}"
        self.merge_key = ("amount", name)

    def do(self, state):
        i = state.index_of(self.name)
        self.old = state.directions[i].alpha
        state.directions[i].alpha = self.new

    def undo(self, state):
        state.directions[state.index_of(self.name)].alpha = self.old

    def merge(self, later):
        self.new, self.text = later.new, later.text


class AddDirection(Command):
    def __init__(self, direction: Direction, alpha: float = 0.0):
        self.applied = AppliedDirection(direction, _finite(alpha, "direction amount"))
        self.text = f"add direction {direction.name}"

    def do(self, state):
        d = self.applied.direction
        if any(ad.direction.name == d.name for ad in state.directions):
            raise DirectionError(f"the session already has a direction named {d.name!r}")
        d.check_fits(state.w_dim, state.num_ws)
        state.directions.append(AppliedDirection(d, self.applied.alpha))

    def undo(self, state):
        state.directions.pop(state.index_of(self.applied.direction.name))


class AddDirections(Command):
    """Several directions (e.g. a GANSpace file's components) as one undo step, one change signal."""

    def __init__(self, directions, text: str | None = None):
        self.parts = [AddDirection(d) for d in directions]
        self.text = text or f"add {len(self.parts)} directions"

    def do(self, state):
        done = []
        try:
            for part in self.parts:
                part.do(state)
                done.append(part)
        except Exception:
            for part in reversed(done):  # all or nothing
                part.undo(state)
            raise

    def undo(self, state):
        for part in reversed(self.parts):
            part.undo(state)


class RemoveDirection(Command):
    def __init__(self, name: str):
        self.name, self.saved, self.index = name, None, None
        self.text = f"remove direction {name}"

    def do(self, state):
        self.index = state.index_of(self.name)
        self.saved = state.directions.pop(self.index)

    def undo(self, state):
        state.directions.insert(self.index, self.saved)


class ReplaceDirection(Command):
    """Swap a direction's vector/metadata (e.g. conditioned, or a new layer range), keeping its amount."""

    def __init__(self, name: str, direction: Direction):
        self.name, self.new, self.old = name, direction, None
        self.text = f"change direction {name}"

    def do(self, state):
        i = state.index_of(self.name)
        if self.new.name != self.name and any(ad.direction.name == self.new.name for ad in state.directions):
            raise DirectionError(f"the session already has a direction named {self.new.name!r}")
        self.new.check_fits(state.w_dim, state.num_ws)
        self.old = state.directions[i].direction
        state.directions[i].direction = self.new

    def undo(self, state):
        state.directions[state.index_of(self.new.name)].direction = self.old


class SetMixStrength(Command):
    def __init__(self, group: str, value: float):
        if group not in GROUPS:
            raise StudioError(f"unknown layer group {group!r}; use one of {', '.join(GROUPS)}")
        self.group, self.new, self.old = group, _finite(value, "mixing strength"), None
        self.text = f"{group} mixing = {self.new:.2f}"
        self.merge_key = ("mix", group)

    def do(self, state):
        old = state.mixer.strengths[self.group]
        try:
            state.mixer.set_strength(self.group, self.new)
        except ValueError as e:
            raise StudioError(str(e)) from None
        self.old = old

    def undo(self, state):
        state.mixer.set_strength(self.group, self.old)

    def merge(self, later):
        self.new, self.text = later.new, later.text


class SetLayerStrengths(Command):
    """Advanced per-layer mixing: ``values`` [num_ws] in [0, 1], or None to go back to the groups."""

    def __init__(self, values):
        self.new = None if values is None else np.asarray(values, dtype=np.float64).copy()
        self.old = None
        self.text = "per-row mixing strengths" if values is not None else "back to coarse / medium / fine mixing"
        self.merge_key = ("mix-layers",)

    def do(self, state):
        new = None
        if self.new is not None:
            try:
                new = _check_per_layer(self.new, state.num_ws)
            except ValueError as e:
                raise StudioError(str(e)) from None
        self.old = state.mixer.per_layer
        state.mixer.per_layer = None if new is None else new.copy()

    def undo(self, state):
        state.mixer.per_layer = None if self.old is None else self.old.copy()

    def merge(self, later):
        self.new = later.new


class SetReference(Command):
    """The style-mixing reference W+ [num_ws, w_dim] (or None)."""

    def __init__(self, reference: np.ndarray | None):
        self.new = None if reference is None else np.asarray(reference, dtype=np.float32).copy()
        self.old = None
        self.text = "set mixing reference" if reference is not None else "clear mixing reference"

    def do(self, state):
        if self.new is not None and self.new.shape != state.source.shape:
            raise StudioError(f"reference W+ {list(self.new.shape)} does not match the source {list(state.source.shape)}")
        self.old = state.mixer.reference
        state.mixer.reference = None if self.new is None else self.new.copy()

    def undo(self, state):
        state.mixer.reference = self.old


class SetTruncation(Command):
    def __init__(self, psi: float, cutoff: int | None = None):
        self.new = (_finite(psi, "truncation psi"), None if cutoff is None else int(cutoff))
        self.old = None
        self.text = f"truncation ψ = {self.new[0]:.2f}"
        self.merge_key = ("psi",)

    def do(self, state):
        if self.new[1] is not None and not 0 < self.new[1] <= state.num_ws:
            raise StudioError(f"truncation cutoff must be in 1-{state.num_ws}, got {self.new[1]}")
        self.old = (state.psi, state.cutoff)
        state.psi, state.cutoff = self.new

    def undo(self, state):
        state.psi, state.cutoff = self.old

    def merge(self, later):
        self.new, self.text = later.new, later.text


class SetSource(Command):
    """A new source face (W+ [num_ws, w_dim]); the edits stay."""

    def __init__(self, source: np.ndarray):
        self.new, self.old = np.asarray(source, dtype=np.float32).copy(), None
        self.text = "set source face"

    def do(self, state):
        if self.new.shape != state.source.shape:
            raise StudioError(f"source W+ {list(self.new.shape)} does not match the session's {list(state.source.shape)}")
        self.old = state.source
        state.source = self.new.copy()

    def undo(self, state):
        state.source = self.old


class ReplaceState(Command):
    """Replace the whole state (reset all edits, apply a preset)."""

    def __init__(self, new: EditState, text: str = "reset edits"):
        self.new, self.old, self.text = new.copy(), None, text

    def do(self, state):
        if self.new.source.shape != state.source.shape:
            raise StudioError("the new state has another W+ shape")
        self.old = state.copy()
        _assign(state, self.new.copy())

    def undo(self, state):
        _assign(state, self.old.copy())


def _assign(dst: EditState, src: EditState) -> None:
    dst.source, dst.mixer, dst.directions, dst.psi, dst.cutoff = src.source, src.mixer, src.directions, src.psi, src.cutoff


# ----------------------------------------------------------------------------
# Session


class EditSession:
    """A source latent, its edits, undo/redo and project save/load.

    source: W [w_dim] or W+ [num_ws, w_dim] (num_ws/w_dim from ``model`` or the array).
    w_avg: the model's average w [w_dim] (needed for truncation). model: who the edit belongs to.
    ``listeners``: callables ``f(session)`` run after every change.
    """

    def __init__(self, source, *, w_avg=None, model: ModelIdentity | None = None, num_ws: int | None = None):
        src = torch.as_tensor(source).detach()
        if model is not None:
            num_ws, w_dim = model.num_ws, model.w_dim
        else:
            if src.ndim == 3 and src.shape[0] == 1:
                src = src[0]
            if src.ndim == 2:
                num_ws = num_ws or int(src.shape[0])
            elif num_ws is None:
                raise StudioError("a W latent needs num_ws (or a model) to become W+")
            w_dim = int(src.shape[-1])
        try:
            ws = as_wplus(src, num_ws, w_dim).numpy()
        except ValueError as e:
            raise StudioError(str(e)) from None
        self.model = model
        self.w_avg = None if w_avg is None else torch.as_tensor(w_avg).detach().cpu().float().numpy().copy()
        self.state = EditState(ws, StyleMixer(num_ws))
        self.listeners: list[Callable[[EditSession], None]] = []
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._open = False          # the top undo command still absorbs a slider drag
        self.version = 0            # bumps on every change
        self._saved_version = 0
        self._ws_cache: tuple[int, torch.Tensor] | None = None

    @classmethod
    def for_generator(cls, G, latent, *, format: str = "unknown", path: str = "") -> EditSession:
        ident = ModelIdentity.from_generator(G, format=format, path=path)
        return cls(latent, w_avg=G.w_avg, model=ident)

    # -- queries --------------------------------------------------------------------------------

    @property
    def num_ws(self) -> int:
        return self.state.num_ws

    @property
    def w_dim(self) -> int:
        return self.state.w_dim

    @property
    def directions(self) -> list[AppliedDirection]:
        return list(self.state.directions)

    def amount(self, name: str) -> float:
        return self.state.directions[self.state.index_of(name)].alpha

    @property
    def mixer(self) -> StyleMixer:
        return self.state.mixer

    def ws(self) -> torch.Tensor:
        """The edited W+ [num_ws, w_dim] float32 (a fresh CPU tensor)."""
        if self._ws_cache is None or self._ws_cache[0] != self.version:
            self._ws_cache = (self.version, compose(self.state, self.w_avg))
        return self._ws_cache[1].clone()

    def ws_batch(self, device=None) -> torch.Tensor:
        """The edited W+ as a batch of one [1, num_ws, w_dim] (what the renderer takes)."""
        return self.ws().unsqueeze(0).to(device) if device is not None else self.ws().unsqueeze(0)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str | None:
        return self._undo[-1].text if self._undo else None

    @property
    def redo_text(self) -> str | None:
        return self._redo[-1].text if self._redo else None

    @property
    def modified(self) -> bool:
        """Changed since the last save/load."""
        return self.version != self._saved_version

    # -- changes ----------------------------------------------------------------------------------

    def execute(self, cmd: Command, *, dragging: bool = False) -> None:
        """Do ``cmd`` and record it. While ``dragging``, later commands with the same merge key fold into
        it (one undo step per slider drag); ``dragging=False`` closes the step."""
        cmd.do(self.state)
        top = self._undo[-1] if self._undo else None
        if self._open and top is not None and cmd.merge_key is not None and top.merge_key == cmd.merge_key:
            top.merge(cmd)
        else:
            self._undo.append(cmd)
        self._redo.clear()
        self._open = dragging and cmd.merge_key is not None
        self._changed()

    def end_drag(self) -> None:
        """Close the open slider step (the next change starts a new undo step)."""
        self._open = False

    def undo(self) -> bool:
        if not self._undo:
            return False
        cmd = self._undo.pop()
        cmd.undo(self.state)
        self._redo.append(cmd)
        self._open = False
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        cmd = self._redo.pop()
        cmd.do(self.state)
        self._undo.append(cmd)
        self._open = False
        self._changed()
        return True

    def _changed(self) -> None:
        self.version += 1
        for fn in list(self.listeners):
            fn(self)

    # Convenience wrappers, one per action.

    def add_direction(self, direction: Direction, alpha: float = 0.0) -> None:
        self.execute(AddDirection(direction, alpha))

    def add_directions(self, directions, text: str | None = None) -> None:
        """Add several directions at once: one undo step."""
        self.execute(AddDirections(directions, text))

    def remove_direction(self, name: str) -> None:
        self.execute(RemoveDirection(name))

    def replace_direction(self, name: str, direction: Direction) -> None:
        self.execute(ReplaceDirection(name, direction))

    def set_amount(self, name: str, alpha: float, *, dragging: bool = False) -> None:
        self.execute(SetAmount(name, alpha), dragging=dragging)

    def set_mix_strength(self, group: str, value: float, *, dragging: bool = False) -> None:
        self.execute(SetMixStrength(group, value), dragging=dragging)

    def set_layer_strengths(self, values, *, dragging: bool = False) -> None:
        self.execute(SetLayerStrengths(values), dragging=dragging)

    def set_reference(self, latent) -> None:
        ref = None
        if latent is not None:
            try:
                ref = as_wplus(latent, self.num_ws, self.w_dim).numpy()
            except ValueError as e:
                raise StudioError(f"mixing reference: {e}") from None
        self.execute(SetReference(ref))

    def set_truncation(self, psi: float, cutoff: int | None = None, *, dragging: bool = False) -> None:
        self.execute(SetTruncation(psi, cutoff), dragging=dragging)

    def set_source(self, latent) -> None:
        try:
            self.execute(SetSource(as_wplus(latent, self.num_ws, self.w_dim).numpy()))
        except ValueError as e:
            raise StudioError(f"source latent: {e}") from None

    def reset(self) -> None:
        """Drop every edit (directions, mixing, truncation), keeping the source; undoable."""
        self.execute(ReplaceState(EditState(self.state.source.copy(), StyleMixer(self.num_ws))))

    def reset_directions(self) -> None:
        """Every direction amount back to 0 (mixing and truncation stay); one undo step."""
        if all(ad.alpha == 0 for ad in self.state.directions):
            return
        new = self.state.copy()
        for ad in new.directions:
            ad.alpha = 0.0
        self.execute(ReplaceState(new, "reset directions"))

    def recipe(self, **extra) -> dict:
        """The edit as JSON-able data (what an exported image carries in its metadata): the model,
        truncation, the non-zero direction amounts with their layer ranges, and the mixing settings.
        ``extra`` keys (e.g. the source photo, the inversion method) are added as given."""
        s = self.state
        out = {
            "app": f"stylestudio {__version__}",
            "model": None if self.model is None else self.model.to_json(),
            "psi": s.psi, "cutoff": s.cutoff,
            "directions": [{"name": ad.direction.name, "alpha": round(float(ad.alpha), 6),
                            "layers": list(ad.direction.span(s.num_ws)), "source": ad.direction.source}
                           for ad in s.directions if ad.alpha != 0],
            "mix": dict(s.mixer.to_json(), rows=[round(float(x), 6) for x in s.mixer.row_strengths()])
            if s.mixer.active else None,
        }
        out.update(extra)
        return out

    # -- output -------------------------------------------------------------------------------------

    def render(self, G, *, noise_mode: str = "const", device=None) -> torch.Tensor:
        """Full-resolution image [1, C, R, R] (values around [-1, 1]) of the edited latent."""
        self._check_generator(G)
        device = device or next(G.parameters()).device
        with torch.inference_mode():
            return G.synthesis(self.ws_batch(device), noise_mode=noise_mode)

    def export_image(self, G, path: str | Path, *, noise_mode: str = "const", device=None) -> Path:
        """Render at the model's full resolution and write an image (format from the suffix)."""
        from studio.core.imageio import save_image
        from studio.engine.renderer import to_uint8

        return save_image(path, to_uint8(self.render(G, noise_mode=noise_mode, device=device))[0])

    def _check_generator(self, G) -> None:
        if (int(G.num_ws), int(G.w_dim)) != (self.num_ws, self.w_dim):
            raise StudioError(f"the generator's W+ is {G.num_ws}x{G.w_dim} but this edit is {self.num_ws}x{self.w_dim}")

    # -- projects -------------------------------------------------------------------------------------

    def to_project_bytes(self) -> bytes:
        s = self.state
        meta = {
            "format": PROJECT_FORMAT, "version": PROJECT_VERSION, "created_by": f"stylestudio {__version__}",
            "model": None if self.model is None else self.model.to_json(),
            "num_ws": self.num_ws, "w_dim": self.w_dim,
            "psi": s.psi, "cutoff": s.cutoff, "mix": s.mixer.to_json(),
            "directions": [dict(ad.direction.to_json(), alpha=ad.alpha) for ad in s.directions],
        }
        arrays = {"source.npy": s.source}
        if s.mixer.reference is not None:
            arrays["reference.npy"] = s.mixer.reference
        if s.directions:
            arrays["directions.npy"] = np.stack([ad.direction.vector for ad in s.directions])
        if self.w_avg is not None:
            arrays["w_avg.npy"] = self.w_avg
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("project.json", json.dumps(meta, indent=1, allow_nan=False))
            for name, a in arrays.items():
                b = io.BytesIO()
                np.save(b, np.ascontiguousarray(a, dtype=np.float32), allow_pickle=False)
                zf.writestr(name, b.getvalue())
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the project (one zip file; ``.stylestudio`` is appended when there is no suffix)."""
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(PROJECT_SUFFIX)
        try:
            data = self.to_project_bytes()
        except ValueError as e:  # NaN in JSON etc.
            raise ProjectError(f"cannot save: {e}", path=path) from None
        atomic_write_bytes(path, data)
        self._saved_version = self.version
        return path

    @classmethod
    def load(cls, path: str | Path, *, model: ModelIdentity | None = None) -> EditSession:
        """Reopen a project. With ``model`` (the loaded generator's identity) a project made with a
        different model is refused; the session's ``model`` is then the loaded one."""
        meta, arrays = cls._read(Path(path), arrays=True)
        return cls._from_parts(meta, arrays, model=model, path=path)

    @classmethod
    def read_meta(cls, path: str | Path) -> dict:
        """A project's ``project.json`` only (with the checks :meth:`load` makes); :class:`ProjectError`
        if it cannot be read."""
        meta = cls._read(Path(path), arrays=False)[0]
        if not isinstance(meta, dict):
            raise ProjectError("not a StyleStudio project (project.json is not an object)", path=path)
        return meta

    @staticmethod
    def _read(path: Path, *, arrays: bool) -> tuple[Any, dict]:
        special = not_a_regular_file(path)
        if special:
            raise ProjectError(special, path=path)
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                if "project.json" not in names:
                    raise ProjectError("not a StyleStudio project (no project.json inside)", path=path)
                if any(i.file_size > MAX_PROJECT_MEMBER_BYTES for i in zf.infolist()):
                    raise ProjectError("a member of the project is implausibly large (damaged file?)", path=path)
                meta = json.loads(zf.read("project.json"))
                return meta, ({n[:-4]: _read_npy(zf, n, path) for n in names if n.endswith(".npy")} if arrays else {})
        except ProjectError:
            raise
        except FileNotFoundError:
            raise ProjectError("no such file", path=path) from None
        except zipfile.BadZipFile:
            raise ProjectError("not a StyleStudio project (not a zip archive; truncated?)", path=path) from None
        except (OSError, ValueError, RecursionError, EOFError, RuntimeError, NotImplementedError, zlib.error) as e:
            # JSON errors, encrypted members, unknown compression methods, corrupt deflate data
            raise ProjectError(f"cannot read the project: {type(e).__name__}: {str(e)[:200]}", path=path) from None

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict, *, model: ModelIdentity | None, path) -> EditSession:
        if not isinstance(meta, dict) or meta.get("format") != PROJECT_FORMAT:
            raise ProjectError("not a StyleStudio project (wrong format tag)", path=path)
        version = meta.get("version", 0)
        if not isinstance(version, int) or version > PROJECT_VERSION:
            raise ProjectError(f"made by a newer StyleStudio (project version {version!r}); update to open it",
                               path=path)
        try:
            num_ws, w_dim = int(meta["num_ws"]), int(meta["w_dim"])
            recorded = None if meta.get("model") is None else ModelIdentity.from_json(meta["model"])
            if model is not None:
                (recorded or ModelIdentity("unknown", "", "", num_ws, w_dim, 0)).check_same(model, path=path)
            source = arrays.get("source")
            if source is None or source.shape != (num_ws, w_dim):
                raise ProjectError(f"source.npy missing or not [{num_ws}, {w_dim}]", path=path)
            w_avg = arrays.get("w_avg")
            if w_avg is not None and w_avg.shape != (w_dim,):
                raise ProjectError(f"w_avg.npy is not [{w_dim}]", path=path)
            sess = cls(source, w_avg=w_avg, model=model or recorded, num_ws=num_ws)
            st = sess.state
            st.source = np.ascontiguousarray(source, dtype=np.float32)   # exact bytes, no reshaping copy games
            mix = meta.get("mix") or {}
            ref = arrays.get("reference")
            if mix.get("has_reference") and (ref is None or ref.shape != (num_ws, w_dim)):
                raise ProjectError(f"reference.npy missing or not [{num_ws}, {w_dim}]", path=path)
            per = mix.get("per_layer")
            strengths = {str(k): _finite(v, "mixing strength") for k, v in dict(mix.get("strengths") or {}).items()}
            per = None if per is None else np.asarray(per, dtype=np.float64)
            if per is not None and not (np.isfinite(per).all() and np.abs(per).max(initial=0) <= LIMITS["mixing strength"]):
                raise ProjectError("the per-row mixing strengths are not finite numbers", path=path)
            st.mixer = StyleMixer(num_ws, ref if mix.get("has_reference") else None, strengths, per)
            st.psi = _finite(meta.get("psi", 1.0), "truncation psi")
            st.cutoff = None if meta.get("cutoff") is None else int(meta["cutoff"])
            entries = meta.get("directions") or []
            vecs = arrays.get("directions")
            if entries and (vecs is None or vecs.shape != (len(entries), w_dim)):
                raise ProjectError(f"directions.npy missing or not [{len(entries)}, {w_dim}]", path=path)
            for d, v in zip(entries, vecs if entries else []):
                direction = Direction.from_json(d, v)
                direction.check_fits(w_dim, num_ws)
                st.directions.append(AppliedDirection(direction, _finite(d.get("alpha", 0.0), "direction amount")))
            if st.psi != 1 and sess.w_avg is None:
                raise ProjectError("the project uses truncation but stores no w_avg", path=path)
        except ProjectError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, StudioError) as e:
            raise ProjectError(f"the project is damaged or inconsistent: {e}", path=path) from None
        return sess


def _read_npy(zf: zipfile.ZipFile, name: str, path) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError):
        raise  # the archive's fault: reported by EditSession.load
    except Exception as e:  # noqa: BLE001 - numpy's parser raises ValueError, EOFError, SyntaxError, MemoryError, ...
        raise ProjectError(f"{name} is not a plain numeric array ({type(e).__name__}: {str(e)[:200]})",
                           path=path) from None
    if a.dtype != np.float32:
        raise ProjectError(f"{name} is {a.dtype}, expected float32", path=path)
    return a
