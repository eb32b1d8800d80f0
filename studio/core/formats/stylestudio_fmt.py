"""StyleStudio's own model format: safetensors weights + a JSON manifest.

Two layouts, same manifest:

* a single ``*.safetensors`` file whose metadata key ``stylestudio`` holds the manifest JSON and
  whose tensors are named ``<network>/<parameter>`` (``generator/mapping.fc0.weight``);
* a directory (a *model pack*) with ``manifest.json`` and one ``<network>.safetensors`` per
  network, each listed with its sha256.

The manifest names each network's class (from the allow-list in :mod:`studio.core.nets`) and its
constructor config, plus resolution, num_ws, w_avg, the coarse/medium/fine layer groups, the
alignment profile the generator was trained on, licence and provenance. Loading checks every
tensor name and shape and every file hash; nothing in the files is executed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from studio import __version__
from studio.core.errors import CheckpointError
from studio.core.fileio import atomic_write_bytes
from studio.core.formats.base import STYLESTUDIO, ModelBundle, check_network_size, stylegan2_values
from studio.core.latent import layer_groups
from studio.core.nets import build, class_name_of

log = logging.getLogger(__name__)

FORMAT_NAME = "stylestudio-model"
FORMAT_VERSION = 1
META_KEY = "stylestudio"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20

# ----------------------------------------------------------------------------
# Writing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state(net: torch.nn.Module, half: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in net.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.dtype == torch.float32 and not k.endswith("w_avg"):
            v = v.to(torch.float16)  # loading casts back to the network's dtype (w_avg stays exact)
        out[k] = v.contiguous()
    return out


def _config(net: torch.nn.Module) -> dict:
    from dataclasses import asdict

    d = asdict(net.config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _networks(bundle: ModelBundle) -> dict[str, torch.nn.Module]:
    nets: dict[str, torch.nn.Module] = {}
    if bundle.generator is not None:
        nets["generator"] = bundle.generator
    if bundle.discriminator is not None:
        nets["discriminator"] = bundle.discriminator
    if bundle.encoder is not None:
        if bundle.latent_avg is None and getattr(bundle.encoder, "latent_avg", None) is not None:
            bundle.latent_avg = bundle.encoder.latent_avg
        # An encoder pipeline (encoder + latent_avg + the generator as decoder) is stored as its
        # encoder network; the decoder is the bundle's generator and latent_avg a tensor.
        nets["encoder"] = getattr(bundle.encoder, "encoder", bundle.encoder)
    return nets


def build_manifest(bundle: ModelBundle, nets: dict[str, torch.nn.Module], *, extra: dict | None = None) -> dict:
    G = bundle.generator
    man: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "networks": {name: {"class": class_name_of(net), "config": _config(net)} for name, net in nets.items()},
    }
    if G is not None:
        man.update(resolution=int(G.img_resolution), num_ws=int(G.num_ws), z_dim=int(G.z_dim),
                   w_dim=int(G.w_dim), w_avg=[float(v) for v in G.mapping.w_avg.tolist()],
                   layer_groups={k: list(v) for k, v in layer_groups(G.num_ws).items()})
    if bundle.encoder is not None:
        pipe_cfg = getattr(bundle.encoder, "config", None)
        info = {"kind": getattr(pipe_cfg, "kind", bundle.format),
                "start_from_latent_avg": bool(getattr(pipe_cfg, "start_from_latent_avg", True)),
                "out_size": int(getattr(pipe_cfg, "out_size", 256))}
        inner = getattr(bundle.encoder, "encoder", None)
        if hasattr(inner, "active_stages"):
            info["active_stages"] = int(inner.active_stages)
        man["encoder"] = info
    man["alignment_profile"] = bundle.meta.get("alignment_profile", "ffhq")
    man["licence"] = bundle.meta.get("licence", "unknown: the licence of the source weights applies")
    prov = dict(bundle.meta.get("provenance") or {})
    prov.setdefault("source_format", bundle.format)
    prov.setdefault("source_file", Path(bundle.path).name if bundle.path else None)
    prov.setdefault("converted_by", f"stylestudio {__version__}")
    prov.setdefault("created", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if bundle.notes:
        prov.setdefault("notes", list(bundle.notes))
    man["provenance"] = prov
    if extra:
        man.update(extra)
    return man


def save(bundle: ModelBundle, out: str | Path, *, extra_manifest: dict | None = None, half: bool = False) -> Path:
    """Write ``bundle`` in our format: ``*.safetensors`` = one file, anything else = a directory.

    ``half``: store float32 weights as float16 (half the size; networks run in float32 after loading).
    """
    from safetensors.torch import save as st_save

    out = Path(out)
    nets = _networks(bundle)
    if not nets:
        raise ValueError("nothing to save: the bundle has no networks")
    extra_tensors: dict[str, torch.Tensor] = {}
    if bundle.latent_avg is not None:
        extra_tensors["latent_avg"] = bundle.latent_avg.detach().cpu().to(torch.float32).contiguous()
    man = build_manifest(bundle, nets, extra=extra_manifest)
    if out.suffix == ".safetensors":
        tensors = {f"{name}/{k}": v for name, net in nets.items() for k, v in _state(net, half).items()}
        tensors.update({f"extra/{k}": v for k, v in extra_tensors.items()})
        man["layout"] = "single-file"
        atomic_write_bytes(out, st_save(tensors, metadata={META_KEY: json.dumps(man)}))
        return out
    out.mkdir(parents=True, exist_ok=True)
    man["layout"] = "directory"
    files = {name: _state(net, half) for name, net in nets.items()}
    if extra_tensors:
        files["extra"] = extra_tensors
    for name, tensors in files.items():
        fpath = out / f"{name}.safetensors"
        atomic_write_bytes(fpath, st_save(tensors, metadata={"network": name}))
        entry = man["networks"].setdefault(name, {}) if name != "extra" else man.setdefault("extra", {})
        entry.update(file=fpath.name, sha256=_sha256(fpath))
    atomic_write_bytes(out / MANIFEST, (json.dumps(man, indent=1) + "\n").encode())
    return out


# ----------------------------------------------------------------------------
# Reading


def _read_single(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if META_KEY not in meta:
                raise CheckpointError(path, "a safetensors file without a StyleStudio manifest; "
                                            "convert the original checkpoint with `stylestudio convert`")
            man = json.loads(meta[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # SafetensorError, JSON errors, OSError
        raise CheckpointError(path, f"corrupt or truncated safetensors file ({str(e)[:200]}); copy or download "
                                    f"it again, or re-export it") from None
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        net, _, name = k.partition("/")
        grouped.setdefault(net, {})[name] = v
    return man, grouped


def _read_dir(path: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]], Path]:
    from safetensors.torch import load as st_load

    mpath = path / MANIFEST if path.is_dir() else path
    root = mpath.parent
    try:
        raw = mpath.read_bytes()
        if len(raw) > MAX_MANIFEST_BYTES:
            raise CheckpointError(mpath, "manifest is implausibly large")
        man = json.loads(raw)
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(mpath, f"cannot read the manifest: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(mpath, f"the manifest is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    _check_manifest(mpath, man)
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    entries = dict(man["networks"])
    if isinstance(man.get("extra"), dict) and "file" in man["extra"]:
        entries["extra"] = man["extra"]
    for name, entry in entries.items():
        fname = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
            raise CheckpointError(mpath, f"network {name!r}: bad or missing file name {fname!r}")
        fpath = root / fname
        try:
            data = fpath.read_bytes()
        except OSError as e:
            raise CheckpointError(fpath, f"file of network {name!r} is missing or unreadable "
                                         f"({e.strerror or e})") from None
        want = entry.get("sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise CheckpointError(fpath, "sha256 does not match the manifest (file corrupt, truncated or "
                                         "replaced); re-download or re-convert the model")
        try:
            grouped[name] = st_load(data)
        except Exception as e:
            raise CheckpointError(fpath, f"corrupt safetensors file: {str(e)[:200]}") from None
    return man, grouped, mpath


def _check_manifest(path, man: Any) -> None:
    if not isinstance(man, dict) or man.get("format") != FORMAT_NAME:
        raise CheckpointError(path, f"not a StyleStudio manifest (expected \"format\": \"{FORMAT_NAME}\")")
    v = man.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise CheckpointError(path, f"manifest format_version {v!r} is not a version number (a whole number "
                                    f"such as {FORMAT_VERSION}); the manifest is damaged")
    if v > FORMAT_VERSION:
        raise CheckpointError(path, f"manifest format_version {v!r} is newer than this StyleStudio "
                                    f"understands ({FORMAT_VERSION}); update StyleStudio")
    if not isinstance(man.get("networks"), dict) or not man["networks"]:
        raise CheckpointError(path, "the manifest lists no networks")


def read_manifest(path: str | Path) -> dict:
    """The manifest of a model file or pack directory, without loading weights."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".json":
        mpath = path / MANIFEST if path.is_dir() else path
        try:
            man = json.loads(mpath.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise CheckpointError(mpath, f"cannot read the manifest ({type(e).__name__}: {str(e)[:200]})") from None
    else:
        man, _ = _read_single(path)
    _check_manifest(path, man)
    return man


def _instantiate(path, name: str, entry: dict, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    if not isinstance(entry, dict):
        raise CheckpointError(path, f"network {name!r}: the manifest entry is not an object; the manifest is damaged")
    missing = [k for k in ("class", "config") if k not in entry]
    if missing:
        raise CheckpointError(path, f"network {name!r}: the manifest entry has no {missing[0]!r} (it needs \"class\" "
                                    f"and \"config\"); the manifest is damaged")
    try:
        cls_name, config = str(entry["class"]), dict(entry["config"])
        if cls_name in ("Generator", "Discriminator"):  # refuse absurd sizes before allocating them
            check_network_size(path, f"network {name!r}", stylegan2_values(cls_name, config))
        net = build(cls_name, config)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(path, f"network {name!r}: cannot build it from the manifest ({e})") from None
    except Exception as e:  # noqa: BLE001 - odd config values (OverflowError, MemoryError, ...)
        raise CheckpointError(path, f"network {name!r}: cannot build it from the manifest "
                                    f"({type(e).__name__}: {str(e)[:200]})") from None
    ours = net.state_dict()
    unexpected = sorted(set(tensors) - set(ours))
    missing = sorted(set(ours) - set(tensors))
    if unexpected or missing:
        raise CheckpointError(path, f"network {name!r}: tensors do not match its config "
                                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(ours[k].shape):
            raise CheckpointError(path, f"network {name!r}: {k} has shape {list(v.shape)}, "
                                        f"expected {list(ours[k].shape)}")
    net.load_state_dict({k: v.to(ours[k].dtype) for k, v in tensors.items()}, strict=True)
    return net.eval().requires_grad_(False)


def load(path: str | Path, *, detect_only: bool = False) -> ModelBundle:
    path = Path(path)
    if path.is_dir() or path.suffix == ".json" or _is_json(path):
        man, grouped, mpath = _read_dir(path) if not detect_only else (read_manifest(path), {}, path)
    else:
        man, grouped = _read_single(path)
        _check_manifest(path, man)
    bundle = ModelBundle(format=STYLESTUDIO, path=str(path), meta={"manifest": man})
    if detect_only:
        return bundle
    nets = {}
    for name, entry in man["networks"].items():
        if name not in grouped:
            raise CheckpointError(path, f"network {name!r} is listed in the manifest but has no tensors")
        nets[name] = _instantiate(path, name, entry, grouped[name])
    bundle.generator = nets.get("generator")
    bundle.discriminator = nets.get("discriminator")
    if bundle.generator is not None:
        bundle.w_avg = bundle.generator.mapping.w_avg.clone()
    extra = grouped.get("extra", {})
    if "latent_avg" in extra:
        bundle.latent_avg = extra["latent_avg"].to(torch.float32)
    if "encoder" in nets:
        bundle.encoder = _wrap_encoder(path, nets["encoder"], bundle, man.get("encoder") or {})
    for key in ("alignment_profile", "licence", "provenance"):
        if key in man:
            bundle.meta[key] = man[key]
    if isinstance(man.get("encoders"), dict) and man["encoders"]:
        root = (path if path.is_dir() else path.parent)
        bundle.meta["encoders"] = _load_pack_encoders(root, man["encoders"], bundle)
    return bundle


def _load_pack_encoders(root: Path, entries: dict, bundle: ModelBundle) -> dict[str, torch.nn.Module]:
    """A model pack's encoders (``manifest['encoders']``: kind -> {file, sha256, ...}), each an
    encoder-only file of our format, wrapped with the pack's generator as decoder."""
    out: dict[str, torch.nn.Module] = {}
    for kind, entry in entries.items():
        fname = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
            raise CheckpointError(root / MANIFEST, f"encoder {kind!r}: bad or missing file name {fname!r}")
        fpath = root / fname
        if not fpath.is_file():
            raise CheckpointError(fpath, f"the pack's {kind} encoder file is missing; reinstall the pack")
        if entry.get("sha256") and _sha256(fpath) != entry["sha256"]:
            raise CheckpointError(fpath, "sha256 does not match the manifest (file corrupt, truncated or replaced)")
        eman, grouped = _read_single(fpath)
        _check_manifest(fpath, eman)
        net_entry = eman["networks"].get("encoder")
        if net_entry is None or "encoder" not in grouped:
            raise CheckpointError(fpath, "not an encoder file (no 'encoder' network)")
        enc = _instantiate(fpath, "encoder", net_entry, grouped["encoder"])
        la = grouped.get("extra", {}).get("latent_avg")
        sub = ModelBundle(format=STYLESTUDIO, path=str(fpath), generator=bundle.generator,
                          latent_avg=None if la is None else la.to(torch.float32))
        out[str(kind)] = _wrap_encoder(fpath, enc, sub, eman.get("encoder") or {})
    return out


def save_encoder(pipeline, out: str | Path, *, half: bool = True, provenance: dict | None = None) -> Path:
    """An encoder-only file (encoder network + latent_avg + its pipeline settings) for a model pack."""
    bundle = ModelBundle(format=STYLESTUDIO, path="", encoder=pipeline,
                         latent_avg=getattr(pipeline, "latent_avg", None), meta={"provenance": provenance or {}})
    return save(bundle, out, half=half)


def save_student(student: torch.nn.Module, out: str | Path, *, distill: dict, half: bool = True,
                 provenance: dict | None = None, alignment_profile=None, licence: str | None = None) -> Path:
    """A distilled style-mixing student (METHODS.md §6) as one ``*.safetensors`` file: network
    ``student`` plus ``manifest['distill']`` (crossover group/row, num_ws, resolution of the teacher)."""
    from safetensors.torch import save as st_save

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: a student file must end in .safetensors")
    man: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layout": "single-file",
        "networks": {"student": {"class": class_name_of(student), "config": _config(student)}},
        "distill": dict(distill),
        "alignment_profile": alignment_profile if alignment_profile is not None else "ffhq",
        "licence": licence or "inherits the licence of the teacher generator",
        "provenance": {"converted_by": f"stylestudio {__version__}",
                       "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       **(provenance or {})},
    }
    tensors = {f"student/{k}": v for k, v in _state(student, half).items()}
    atomic_write_bytes(out, st_save(tensors, metadata={META_KEY: json.dumps(man)}))
    return out


def load_student(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """``(student network in eval mode, manifest)`` of a file written by :func:`save_student`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such student file")
    man, grouped = _read_single(path)
    _check_manifest(path, man)
    entry = man["networks"].get("student")
    if entry is None or "student" not in grouped or not isinstance(man.get("distill"), dict):
        raise CheckpointError(path, "not a distilled style-mixing student (no 'student' network / 'distill' "
                                    "section); train one with `stylestudio train distill`")
    return _instantiate(path, "student", entry, grouped["student"]), man


def _wrap_encoder(path, encoder: torch.nn.Module, bundle: ModelBundle, info: dict) -> torch.nn.Module:
    if bundle.generator is None or bundle.latent_avg is None:
        raise CheckpointError(path, "an encoder needs the generator (decoder) and latent_avg in the same file")
    from studio.core.nets.encoding import EncoderPipeline

    try:
        if "active_stages" in info and hasattr(encoder, "set_active_stages"):
            encoder.set_active_stages(int(info["active_stages"]))
        return EncoderPipeline(encoder, bundle.generator, bundle.latent_avg, kind=str(info.get("kind")),
                               start_from_latent_avg=bool(info.get("start_from_latent_avg", True)),
                               out_size=int(info.get("out_size", 256))).eval()
    except (ValueError, TypeError) as e:
        raise CheckpointError(path, f"encoder section of the manifest is invalid ({e})") from None


def _is_json(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False
