"""``stylestudio edit LATENT_OR_PROJECT --direction age=+2 --mix ref.npy:coarse=1 --out x.png``.

Applies direction edits, style mixing and truncation to a latent (``.npy``: W [w_dim] or W+
[num_ws, w_dim] / [1, num_ws, w_dim]) or reopens a ``.stylestudio`` project, and renders the result
at full resolution. Photos are aligned and inverted first (see :func:`latent_from_image`); with
``--paste`` the edited face is also put back into the photo.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from studio.core.errors import DirectionError, ProjectError, StudioError

log = logging.getLogger(__name__)

def _image_suffixes() -> set[str]:
    from studio.engine.workspace import IMAGE_SUFFIXES as APP_SUFFIXES

    # what the app opens, plus the other names of formats load_image reads (HEIC: it explains itself)
    return set(APP_SUFFIXES) | {".jfif", ".jpe", ".mpo", ".dib", ".ppm", ".pgm", ".pnm", ".pbm", ".avif",
                                ".heic", ".heif"}


#: Photo suffixes: such an input is aligned and inverted first (the same formats `invert` / `align` read).
IMAGE_SUFFIXES = _image_suffixes()
#: The photo formats named in messages.
PHOTO_FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF or GIF"


def register(sub) -> None:
    p = sub.add_parser(
        "edit", help="edit a latent with directions and style mixing, render it",
        description="Edit a latent (.npy W or W+) or a .stylestudio project and render it at full resolution. "
                    "Directions: the model pack's own by name (age, gender, smile, ...: `stylestudio info` lists "
                    "them), names from --directions files, sefa<K> / pc<K> (SeFa / GANSpace component K of "
                    "the model, computed on the fly) or a path to an InterFaceGAN .npy boundary. Rows: coarse, "
                    "medium, fine, or W+ indices like 0-3 (inclusive).")
    p.add_argument("input", help="latent .npy, .stylestudio project, or a photo (aligned and inverted first)")
    p.add_argument("--model", default=None,
                   help="model file (default: the project's model, else the embedded pack)")
    p.add_argument("--invert-method", default=None, metavar="METHOD",
                   help="for a photo: how to invert it (see `stylestudio invert`; default: the model's first "
                        "encoder, else optimize)")
    p.add_argument("--invert-steps", type=int, default=None, metavar="N",
                   help="for a photo: optimisation steps (optimize / hybrid)")
    p.add_argument("--directions", action="append", default=[], metavar="FILE",
                   help="load directions from an InterFaceGAN .npy or GANSpace .npz file (repeatable)")
    p.add_argument("--direction", action="append", default=[], metavar="NAME=AMOUNT[@ROWS]",
                   help="apply AMOUNT (W units) of direction NAME, optionally on ROWS only (repeatable)")
    p.add_argument("--condition", action="append", default=[], metavar="NAME:OTHER[,OTHER]",
                   help="project OTHER directions out of NAME (conditional manipulation; repeatable)")
    p.add_argument("--mix", action="append", default=[], metavar="REF.npy:SPEC",
                   help="style mixing from a reference latent; SPEC like coarse=1,fine=0.5 or 0-3=1,8=0.5")
    p.add_argument("--psi", type=float, default=None, help="truncation psi towards w_avg (1 = none)")
    p.add_argument("--cutoff", type=int, default=None, help="truncate only the first N W+ rows")
    p.add_argument("--out", default="edit.png", help="output image (default edit.png)")
    p.add_argument("--save-project", default=None, metavar="FILE.stylestudio", help="also save the edit as a project")
    p.add_argument("--save-latent", default=None, metavar="FILE.npy", help="also write the edited W+ [num_ws, w_dim]")
    p.add_argument("--paste", default=None, metavar="IMAGE",
                   help="for a photo: also write the photo with the edited face pasted back (full resolution; "
                        "the rest of the photo unchanged)")
    p.add_argument("--paste-mode", choices=["change", "replace"], default=None,
                   help="with --paste: add only the change the edit makes, keeping the photo's detail "
                        "(change, default), or replace the photo's face with the generated one (replace)")
    p.add_argument("--sweep", default=None, metavar="NAME=FROM:TO[:FRAMES][@ROWS]",
                   help="render the edit with direction NAME moving from FROM to TO in FRAMES steps (default 9): "
                        "--out .gif is an animation (there and back), another image suffix a strip of the frames")
    p.add_argument("--frame-ms", type=int, default=120,
                   help="with --sweep and a .gif: milliseconds per frame (10 to 655350; default 120)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const",
                   help="per-pixel noise: const (the model's fixed maps, reproducible; default), random or none")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------
# Parsing (pure)


def parse_rows(text: str, num_ws: int) -> tuple[int, int]:
    """'coarse' | 'medium' | 'fine' | 'A-B' (inclusive) | 'A' -> half-open W+ range."""
    from studio.core.latent import layer_groups, resolve_span

    text = text.strip()
    groups = layer_groups(num_ws)
    if text in groups:
        a, b = groups[text]
        if a == b:
            raise StudioError(f"the {text} group is empty for a model with {num_ws} W+ rows")
        return a, b
    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-", 1))
        else:
            a = b = int(text)
        return resolve_span((a, b + 1), num_ws)
    except ValueError as e:
        raise StudioError(f"rows {text!r}: {e}; use coarse, medium, fine or W+ indices like 0-3") from None


MAX_SWEEP_FRAMES = 200
MAX_FRAME_MS = 655350  # a GIF frame's longest duration


def _split_spec(spec: str, flag: str, form: str, example: str) -> tuple[str, str, str | None]:
    """'NAME=VALUE[@ROWS]' -> (NAME, VALUE, ROWS or None); ``form`` / ``example`` for the message."""
    if "=" not in spec:
        raise StudioError(f"{flag} {spec!r}: expected {form}, e.g. {example}")
    name, rest = spec.rsplit("=", 1)
    rows = None
    if "@" in rest:
        rest, rows = rest.split("@", 1)
    return name, rest, rows


def parse_sweep_spec(spec: str) -> tuple[str, float, float, int, str | None]:
    """'age=-3:3' -> ('age', -3.0, 3.0, 9, None); 'pc3=0:2:5@fine' -> ('pc3', 0.0, 2.0, 5, 'fine')."""
    name, rest, rows = _split_spec(spec, "--sweep", "NAME=FROM:TO[:FRAMES]", "age=-3:3")
    parts = rest.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        a0, a1 = float(parts[0]), float(parts[1])
        n = int(parts[2]) if len(parts) == 3 else 9
    except ValueError:
        raise StudioError(f"--sweep {spec!r}: expected NAME=FROM:TO[:FRAMES] with numbers, e.g. age=-3:3:9") from None
    if not name:
        raise StudioError(f"--sweep {spec!r}: the direction name is missing")
    if not (np.isfinite(a0) and np.isfinite(a1)):
        raise StudioError(f"--sweep {spec!r}: FROM and TO must be finite numbers")
    if not 2 <= n <= MAX_SWEEP_FRAMES:
        raise StudioError(f"--sweep {spec!r}: FRAMES must be between 2 and {MAX_SWEEP_FRAMES}, got {n}")
    return name, a0, a1, n, rows


def parse_direction_spec(spec: str) -> tuple[str, float, str | None]:
    """'age=+2' -> ('age', 2.0, None); 'pc3=-1.5@fine' -> ('pc3', -1.5, 'fine')."""
    name, rest, rows = _split_spec(spec, "--direction", "NAME=AMOUNT", "age=+2")
    try:
        amount = float(rest)
    except ValueError:
        raise StudioError(f"--direction {spec!r}: {rest!r} is not a number") from None
    if not name:
        raise StudioError(f"--direction {spec!r}: missing name")
    return name, amount, rows


def parse_mix_spec(spec: str, num_ws: int) -> tuple[str, dict[str, float], dict[int, float]]:
    """'ref.npy:coarse=1,8-9=0.5' -> (path, group strengths, per-row strengths)."""
    from studio.core.latent import GROUPS

    if ":" not in spec:
        raise StudioError(f"--mix {spec!r}: expected REF.npy:SPEC, e.g. ref.npy:coarse=1")
    path, body = spec.rsplit(":", 1)
    groups: dict[str, float] = {}
    rows: dict[int, float] = {}
    for tok in filter(None, (t.strip() for t in body.split(","))):
        if "=" not in tok:
            raise StudioError(f"--mix {spec!r}: {tok!r} should be GROUP=STRENGTH or ROWS=STRENGTH")
        key, val = tok.rsplit("=", 1)
        try:
            s = float(val)
        except ValueError:
            raise StudioError(f"--mix {spec!r}: {val!r} is not a number") from None
        if not 0 <= s <= 1:
            raise StudioError(f"--mix {spec!r}: strengths lie in [0, 1], got {s}")
        if key in GROUPS:
            groups[key] = s
        else:
            a, b = parse_rows(key, num_ws)
            rows.update({i: s for i in range(a, b)})
    if not groups and not rows:
        raise StudioError(f"--mix {spec!r}: no strengths given")
    return path, groups, rows


# ----------------------------------------------------------------------------
# Inputs


def latent_from_image(path: Path, bundle, method: str | None = None, steps: int | None = None, *,
                      with_transform: bool = False):
    """Align a photo's best face and invert it to W+ [num_ws, w_dim] with the model's default method
    (its first encoder, else optimisation; ``stylestudio invert`` offers every method). With
    ``with_transform``: ``(latent, alignment transform)``, for pasting the edit back."""
    from studio.cli.cmd_invert import invert_photo, print_progress

    res, _, transform, _ = invert_photo(path, bundle, method=method, steps=steps, progress=print_progress)
    log.info("%s inverted with %s in %.1f s (LPIPS %.3f)", path, res.method, res.seconds, res.metrics["lpips"])
    latent = res.latent_wplus.numpy().astype(np.float32)
    return (latent, transform) if with_transform else latent


def load_latent(path: str | Path) -> np.ndarray:
    from studio.cli.common import read_npy

    path = Path(path)
    a = read_npy(path, "latent")
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        raise StudioError(f"{path}: expected a float array (W [w_dim] or W+ [num_ws, w_dim])")
    if not np.isfinite(a).all():
        raise StudioError(f"latent {path} contains NaN or infinite values; it cannot be rendered "
                          f"(re-create it, e.g. with `stylestudio invert`)")
    return a.astype(np.float32)


def input_kind(path: Path) -> str:
    """'photo', 'project' or 'latent' for an existing input (by suffix, else by content)."""
    if not path.exists():
        raise StudioError(f"{path}: no such file")
    if path.is_dir():
        raise StudioError(f"{path} is a folder; pass a photo, a latent .npy or a .stylestudio project")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "photo"
    if _is_project(path):
        return "project"
    if suffix == ".npy":
        return "latent"
    try:  # an unusual name: look at the content
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise StudioError(f"{path}: cannot read it ({e.strerror or e})") from None
    if head == b"\x93NUMPY":
        return "latent"
    from PIL import Image

    from studio.core.imageio import READ_FORMATS

    try:
        with Image.open(path, formats=list(READ_FORMATS)):
            return "photo"
    except Exception:  # noqa: BLE001 (not an image Pillow opens)
        pass
    raise StudioError(f"{path}: unknown input; pass a photo ({PHOTO_FORMATS_TEXT}), a latent .npy or a "
                      f".stylestudio project")


def _is_project(path: Path) -> bool:
    return path.suffix == ".stylestudio" or (path.is_file() and path.suffix != ".npy" and zipfile.is_zipfile(path))


def _project_model_path(path: Path) -> str | None:
    """The model path a project recorded, if that file is still there (else None; --model is needed)."""
    from studio.engine.session import EditSession

    try:
        model = EditSession.read_meta(path).get("model")
    except ProjectError:
        return None  # EditSession.load reports the problem
    p = model.get("path") if isinstance(model, dict) else None
    if not isinstance(p, str):
        return None  # none recorded, or damaged (the model check reports it)
    if p and not Path(p).exists():
        log.warning("the project's model %s is not there; using --model or the default pack", p)
        return None
    return p or None


class DirectionLibrary:
    """Directions by name: the model pack's own (by name or manifest key, e.g. ``age`` or
    ``mouth_open``), loaded files, sefa<K> / pc<K> computed from the model on demand, or a path."""

    def __init__(self, G, bundle=None):
        self.G = G
        self.named: dict = {}
        self.aliases: dict = {}
        self.pack_error: str | None = None
        self._sefa = None
        self._ganspace = None
        if bundle is not None:
            self._load_pack(bundle)

    def _load_pack(self, bundle) -> None:
        from studio.core.directions import load_pack_directions

        if not (bundle.meta or {}).get("manifest"):
            return  # a single model file: no pack directions
        try:
            found = load_pack_directions(bundle)
        except StudioError as e:
            self.pack_error = str(e)
            log.warning("the pack's directions could not be loaded (%s); sefa<K> / pc<K> and --directions "
                        "files still work", e)
            return
        for d in found:
            if d.w_dim != int(self.G.w_dim):
                continue
            self.named[d.name] = d
            key = str(d.meta.get("key") or "")
            if key and key != d.name:
                self.aliases[key] = d.name

    def load_file(self, path: str) -> None:
        from studio.core.directions import load_directions

        for d in load_directions(path, w_dim=self.G.w_dim, num_ws=self.G.num_ws):
            if d.name in self.named:
                log.warning("%s: its direction %r replaces the one loaded before under that name (--direction "
                            "%s=... uses the one from this file)", path, d.name, d.name)
            self.named[d.name] = d

    def get(self, name: str):
        from studio.core.directions import ganspace, load_interfacegan_npy, sefa

        if name in self.named:
            return self.named[name]
        if name in self.aliases:
            return self.named[self.aliases[name]]
        for prefix in ("sefa", "pc"):
            if name.startswith(prefix) and name[len(prefix):].lstrip(":").isdigit():
                k = int(name[len(prefix):].lstrip(":"))
                if prefix == "sefa":
                    self._sefa = self._sefa or sefa(self.G, k=max(k + 1, 10))
                    dirs = self._sefa
                else:
                    self._ganspace = self._ganspace or ganspace(self.G, k=max(k + 1, 10))
                    dirs = self._ganspace
                if k >= len(dirs):
                    raise DirectionError(f"{name}: the model has only {len(dirs)} components")
                return dirs[k]
        if name.endswith(".npy") and Path(name).exists():
            return load_interfacegan_npy(name, w_dim=self.G.w_dim, num_ws=self.G.num_ws)
        broken = f"; the model pack's own directions could not be loaded: {self.pack_error}" if self.pack_error else ""
        raise DirectionError(f"unknown direction {name!r}: load it with --directions FILE, use sefa<K> or pc<K>, "
                             f"or give a boundary .npy path (loaded: {', '.join(self.named) or 'none'}){broken}")


# ----------------------------------------------------------------------------


#: Widest image a strip may be in these formats (WebP's and libjpeg's own limits).
def check_strip_width(out, frames: int, resolution: int) -> None:
    """Refuse, before any work, a --sweep output its format cannot hold."""
    from studio.engine.workspace import sweep_problem

    problem = sweep_problem(out, frames, resolution)
    if problem is not None:
        raise StudioError(f"--out {problem}")


def _noise_seed(noise_mode: str) -> int | None:
    """With random noise: one seed for the noise maps of every render of this run (the edit and its
    unedited base, or a sweep's frames), so that they differ only by their latents."""
    import torch

    return int(torch.randint(0, 2 ** 62, ()).item()) if noise_mode == "random" else None


def _render(session, G, noise_mode: str, device, seed: int | None = None):
    """(R, R, 3) uint8 of the session's edit; ``seed``: the random noise maps' (see :func:`_noise_seed`)."""
    import torch

    from studio.engine.renderer import to_uint8

    with torch.inference_mode():
        if seed is None:
            return to_uint8(session.render(G, noise_mode=noise_mode, device=device))[0]
        gen = torch.Generator(device=device).manual_seed(seed)
        return to_uint8(G.synthesis(session.ws_batch(device), noise_mode=noise_mode, generator=gen))[0]


def _write_sweep(session, G, name: str, sweep, args, device) -> int:
    """Render the edit with ``name`` at each amount of the sweep; write a GIF (there and back) or a strip."""
    import torch

    _, a0, a1, n, _ = sweep
    seed = _noise_seed(args.noise_mode)  # (random noise: the same maps in every frame, no flicker)
    amounts = np.linspace(a0, a1, n)
    frames = []
    for a in amounts:
        session.set_amount(name, float(a))
        if not torch.isfinite(torch.as_tensor(session.ws())).all():
            raise StudioError(f"--sweep: the latent at {name} = {a:g} contains NaN or infinite values; nothing "
                              f"was written")
        frames.append(_render(session, G, args.noise_mode, device, seed))
    from studio.engine.workspace import save_sweep

    out, written = save_sweep(args.out, frames, frame_ms=args.frame_ms)
    if out.suffix.lower() == ".gif":
        print(f"wrote {out} ({written} frames of {G.img_resolution}x{G.img_resolution}, "
              f"{name} {a0:g} -> {a1:g} -> {a0:g})")
    else:
        print(f"wrote {out} ({n} frames side by side, {name} from {a0:g} to {a1:g})")
    return 0


def run(args) -> int:
    import torch

    from studio.cli.common import check_outputs, resolve_model
    from studio.core.directions import condition
    from studio.core.fileio import atomic_write_bytes
    from studio.core.formats import load_checkpoint
    from studio.engine.renderer import pick_device
    from studio.engine.session import EditSession, ModelIdentity

    inp = Path(args.input)
    kind = input_kind(inp)
    invert_method, invert_steps = getattr(args, "invert_method", None), getattr(args, "invert_steps", None)
    paste_out = getattr(args, "paste", None)
    if kind != "photo":
        given = [f for f, v in (("--invert-method", invert_method), ("--invert-steps", invert_steps),
                                ("--paste", paste_out)) if v is not None]
        if given:
            flags = " and ".join(given)
            raise StudioError(f"{flags} only {'applies' if len(given) == 1 else 'apply'} when the input is a "
                              f"photo; {inp} is a {'project' if kind == 'project' else 'latent'} (drop {flags})")
    sweep = parse_sweep_spec(args.sweep) if getattr(args, "sweep", None) else None
    if sweep is not None:
        clash = [f for f, v in (("--paste", paste_out), ("--save-project", args.save_project),
                                ("--save-latent", args.save_latent)) if v]
        if clash:
            raise StudioError(f"--sweep writes the frames only; drop {' and '.join(clash)} (or run once without "
                              f"--sweep for them)")
        if sweep[0] in [spec.rsplit("=", 1)[0] for spec in args.direction if "=" in spec]:
            raise StudioError(f"--sweep {args.sweep!r}: {sweep[0]} is also given with --direction; give it once")
        if not 10 <= getattr(args, "frame_ms", 120) <= MAX_FRAME_MS:  # (a GIF holds 16 bits of 1/100 s)
            raise StudioError(f"--frame-ms must be between 10 and {MAX_FRAME_MS}, got {args.frame_ms}")
    if getattr(args, "paste_mode", None) is not None and not paste_out:
        raise StudioError("--paste-mode only applies with --paste IMAGE (the photo with the edit pasted back)")
    if invert_steps is not None and invert_steps < 1:
        raise StudioError(f"--invert-steps must be at least 1, got {invert_steps}")
    if kind == "project":
        model_arg = args.model or _project_model_path(inp)
    else:
        model_arg = args.model
    # every output is checked before anything is loaded or written (no half-done results)
    refs = [spec.rsplit(":", 1)[0] for spec in args.mix if ":" in spec]
    named = [spec.rsplit("=", 1)[0] for spec in args.direction if "=" in spec] + ([sweep[0]] if sweep else [])
    inputs = [inp, model_arg, *args.directions, *refs, *(n for n in named if n.endswith(".npy"))]
    project_out = None
    if args.save_project:
        project_out = Path(args.save_project)
        if not project_out.suffix:
            project_out = project_out.with_suffix(".stylestudio")  # what EditSession.save writes
    gif = sweep is not None and Path(args.out).suffix.lower() == ".gif"
    if sweep is not None and not gif:
        from studio.core.imageio import SAVE_FORMATS, SAVE_SUFFIXES_TEXT

        if Path(args.out).suffix.lower() not in SAVE_FORMATS:
            raise StudioError(f"--out {args.out}: unknown suffix for --sweep; use .gif (an animation) or "
                              f"{SAVE_SUFFIXES_TEXT} (a strip of the frames)")
    check_outputs([(args.out, "--out", not gif), (project_out, "--save-project", False),
                   (args.save_latent, "--save-latent", False), (paste_out, "--paste", True)], inputs,
                  may_update={"--save-project": inp} if kind == "project" else None)

    bundle = load_checkpoint(resolve_model(model_arg))
    G = bundle.generator
    if G is None:
        raise StudioError(f"{bundle.path}: this file has no generator")
    device = pick_device(args.device)
    G = G.to(device).eval()
    ident = ModelIdentity.from_bundle(bundle)
    if sweep is not None and not gif:
        check_strip_width(args.out, sweep[3], int(G.img_resolution))

    transform = None
    if kind == "photo":
        latent, transform = latent_from_image(inp, bundle, invert_method, invert_steps, with_transform=True)
        session = EditSession(latent, w_avg=G.w_avg, model=ident)
    elif kind == "project":
        session = EditSession.load(inp, model=ident)
    else:
        session = EditSession(load_latent(inp), w_avg=G.w_avg, model=ident)

    lib = DirectionLibrary(G, bundle)
    for f in args.directions:
        lib.load_file(f)
    have = {ad.direction.name for ad in session.directions}
    specs = list(args.direction)
    if sweep is not None:  # added like --direction NAME=FROM[@ROWS], then moved frame by frame
        specs.append(f"{sweep[0]}={sweep[1]!r}" + (f"@{sweep[4]}" if sweep[4] else ""))
    swept = None
    for spec in specs:
        name, amount, rows = parse_direction_spec(spec)
        swept = name  # (the last spec is the sweep's: the name it has in the session)
        if name in have and rows is None:
            session.set_amount(name, amount)
            continue
        d = session.directions[session.state.index_of(name)].direction if name in have else lib.get(name)
        if rows is not None:
            d = d.with_layers(parse_rows(rows, G.num_ws))
        if name in have:
            session.replace_direction(name, d)
            session.set_amount(name, amount)
        else:
            session.add_direction(d, amount)
            have.add(d.name)
            swept = d.name
            if d.name != name:  # a path given as the name
                log.info("direction %s loaded from %s", d.name, name)
    for spec in args.condition:
        if ":" not in spec:
            raise StudioError(f"--condition {spec!r}: expected NAME:OTHER[,OTHER]")
        name, others = spec.split(":", 1)
        if name not in {ad.direction.name for ad in session.directions}:
            raise StudioError(f"--condition {spec!r}: apply {name!r} with --direction first")
        d = session.directions[session.state.index_of(name)].direction
        session.replace_direction(name, condition(d, *[lib.get(o.strip()) for o in others.split(",") if o.strip()]))
    refs = set()
    for spec in args.mix:
        ref_path, groups, rows = parse_mix_spec(spec, G.num_ws)
        refs.add(ref_path)
        if len(refs) > 1:
            raise StudioError("--mix: one reference latent per edit (all --mix options must name the same file)")
        session.set_reference(load_latent(ref_path))
        for g, s in groups.items():
            session.set_mix_strength(g, s)
        if rows:
            per = session.mixer.row_strengths()
            for i, s in rows.items():
                per[i] = s
            session.set_layer_strengths(per)
    if args.psi is not None or args.cutoff is not None:
        session.set_truncation(1.0 if args.psi is None else args.psi, args.cutoff)

    ws = session.ws()
    if not torch.isfinite(torch.as_tensor(ws)).all():
        raise StudioError("the edited latent contains NaN or infinite values (from the input, a direction, "
                          "--psi or the reference latent); nothing was written")
    from studio.core.imageio import save_image

    if sweep is not None:
        return _write_sweep(session, G, swept, sweep, args, device)
    change = paste_out and (getattr(args, "paste_mode", None) or "change") == "change"
    seed = _noise_seed(args.noise_mode) if change else None  # random noise: the same maps in the edit and its base
    edited = _render(session, G, args.noise_mode, device, seed)
    pasted = None
    if paste_out:  # before anything is written: a paste that fails leaves no half-done outputs
        from studio.core.imageio import load_image
        from studio.core.paste import paste_back

        base = None
        if change:  # the unedited reconstruction, rendered alike (the same noise)
            base = _render(EditSession(latent, w_avg=G.w_avg), G, args.noise_mode, device, seed)
        pasted = paste_back(load_image(inp)[0], edited, transform, base_aligned=base)
    out = save_image(args.out, edited)
    print(f"wrote {out} ({G.img_resolution}x{G.img_resolution})")
    if pasted is not None:
        print(f"wrote {save_image(paste_out, pasted)} ({pasted.shape[1]}x{pasted.shape[0]}, the edit pasted back)")
    if project_out is not None:
        print(f"wrote {session.save(project_out)}")
    if args.save_latent:
        buf = io.BytesIO()
        np.save(buf, session.ws().numpy(), allow_pickle=False)
        atomic_write_bytes(args.save_latent, buf.getvalue())
        print(f"wrote {args.save_latent}")
    return 0
