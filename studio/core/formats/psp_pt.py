"""pSp / e4e / E2Style checkpoints: ``{'state_dict', 'opts', 'latent_avg', ...}`` (torch.save).

Layouts (official ``Coach`` save dicts):

* pSp (``encoder_type='GradualStyleEncoder'``) and e4e (``'Encoder4Editing'``): ``encoder.*`` +
  ``decoder.*`` (a rosinality generator); e4e files may add ``global_step``, ``optimizer``,
  ``best_val_loss``, ``discriminator_state_dict`` ... (ignored).
* E2Style: ``encoder_firststage.*``, ``encoder_refinestage_list.<i>.*`` (one per refinement stage,
  ``opts['training_stage'] - 1`` of them) and ``decoder.*``.

The decoder goes through :func:`studio.core.formats.rosinality_pt.generator_from_rosinality`;
the encoders through the one name table below. Every tensor must be known and of the right shape
and every one of ours must be present (except BatchNorm ``num_batches_tracked``, which older
PyTorch versions did not save); anything else is a :class:`CheckpointError` naming the tensor.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core.errors import CheckpointError
from studio.core.formats.base import E2STYLE, E4E, PSP, ModelBundle
from studio.core.nets.e2style import E2StyleEncoder
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.irse import num_layers_from_units
from studio.core.nets.psp import Encoder4Editing, GradualStyleEncoder

log = logging.getLogger(__name__)

__all__ = ["from_checkpoint", "encoder_name_table", "to_ours", "to_official", "ENCODER_TYPES"]

# opts['encoder_type'] -> our format name (None = a known official encoder we do not support).
ENCODER_TYPES: dict[str, str | None] = {
    "GradualStyleEncoder": PSP,
    "Encoder4Editing": E4E,
    "BackboneEncoderUsingLastLayerIntoW": None,
    "BackboneEncoderUsingLastLayerIntoWPlus": None,
    "SingleStyleCodeEncoder": None,
}

# ----------------------------------------------------------------------------
# The name table: official state-dict key (encoder part) <-> our EncoderPipeline key.
# Inside each encoder our module names are the official ones (input_layer, body.<i>.res_layer.<j>,
# styles.<i>.convs.<j>, output_layer_3.3, ...); only the containers differ.

_TABLE: dict[str, list[tuple[str, str]]] = {
    PSP: [(r"^encoder\.(.+)$", r"encoder.\1")],
    E4E: [(r"^encoder\.(.+)$", r"encoder.\1")],
    E2STYLE: [
        (r"^encoder_firststage\.(.+)$", r"encoder.stages.0.\1"),
        (r"^encoder_refinestage_list\.(\d+)\.(.+)$", "encoder.stages.{+1}.\\2"),
    ],
}
_INVERSE: dict[str, list[tuple[str, str]]] = {
    PSP: [(r"^encoder\.(.+)$", r"encoder.\1")],
    E4E: [(r"^encoder\.(.+)$", r"encoder.\1")],
    E2STYLE: [
        (r"^encoder\.stages\.0\.(.+)$", r"encoder_firststage.\1"),
        (r"^encoder\.stages\.(\d+)\.(.+)$", "encoder_refinestage_list.{-1}.\\2"),
    ],
}


def encoder_name_table(kind: str) -> list[tuple[str, str]]:
    """(official regex, our template) rules for the encoder keys of ``kind`` ('psp', 'e4e', 'e2style')."""
    return list(_TABLE[kind])


def _apply(rules: list[tuple[str, str]], key: str) -> str | None:
    for pattern, template in rules:
        m = re.match(pattern, key)
        if m is None:
            continue
        out = template
        if "{+1}" in out:
            out = out.replace("{+1}", str(int(m.group(1)) + 1))
        if "{-1}" in out:
            out = out.replace("{-1}", str(int(m.group(1)) - 1))
        return m.expand(out)
    return None


def to_ours(kind: str, official_key: str) -> str | None:
    """Our EncoderPipeline key for an official encoder key, or None if it is not an encoder key."""
    return _apply(_TABLE[kind], official_key)


def to_official(kind: str, our_key: str) -> str | None:
    """The official key of one of our encoder keys (inverse of :func:`to_ours`)."""
    return _apply(_INVERSE[kind], our_key)


# ----------------------------------------------------------------------------
# Detection and architecture inference


def _detect(path, sd: Mapping[str, Any], opts: dict) -> str:
    if any(k.startswith("encoder_firststage.") for k in sd):
        return E2STYLE
    if not any(k.startswith("encoder.") for k in sd):
        raise CheckpointError(
            path,
            "a 'state_dict' + 'opts' checkpoint without encoder weights: expected keys 'encoder.*' "
            "(pSp / e4e) or 'encoder_firststage.*' (E2Style)",
        )
    et = opts.get("encoder_type")
    if et is None:
        # pSp and e4e have identical tensors; only the options tell them apart.
        if any(k in opts for k in ("stylegan_size", "progressive_start", "w_discriminator_lambda", "delta_norm")):
            return E4E
        if "output_size" in opts or "learn_in_w" in opts:
            return PSP
        raise CheckpointError(
            path,
            "cannot tell pSp from e4e: opts has no 'encoder_type' (expected 'GradualStyleEncoder' or "
            "'Encoder4Editing')",
        )
    if not isinstance(et, str) or et not in ENCODER_TYPES:
        raise CheckpointError(
            path,
            f"unknown encoder_type {et!r} in opts: expected 'GradualStyleEncoder' (pSp) or 'Encoder4Editing' (e4e)",
        )
    kind = ENCODER_TYPES[et]
    if kind is None:
        raise CheckpointError(
            path,
            f"encoder_type {et!r} is not supported (only 'GradualStyleEncoder' (pSp), 'Encoder4Editing' "
            "(e4e) and E2Style checkpoints can be read)",
        )
    return kind


def _indices(keys, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pat.match(k))})


def _backbone_arch(path, enc: Mapping[str, torch.Tensor], where: str) -> dict:
    """num_layers, mode, in_channels of the IR backbone whose keys (prefix stripped) are ``enc``."""
    w = enc.get("input_layer.0.weight")
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        raise CheckpointError(path, f"missing or malformed tensor {where}input_layer.0.weight (expected [64, C, 3, 3])")
    units = _indices(enc, "body.")
    if not units or units != list(range(len(units))):
        raise CheckpointError(path, f"{where}body.*: expected consecutive backbone units 0..N-1, found {units[:30]}")
    num_layers = num_layers_from_units(len(units))
    if num_layers is None:
        raise CheckpointError(path, f"{where}body has {len(units)} units; expected 24, 49 or 50 (IR-50/100/152)")
    mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in enc else "ir"
    return dict(num_layers=num_layers, mode=mode, in_channels=int(w.shape[1]))


def _strip(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def _log2_int(v) -> int | None:
    try:
        v = int(v)
    except (TypeError, ValueError):
        return None
    return int(math.log2(v)) if v > 0 and 2 ** int(math.log2(v)) == v else None


def _n_styles_from_opts(opts: dict, kind: str) -> tuple[int | None, str]:
    """(n_styles the options imply, which option said so)."""
    if kind == PSP and opts.get("n_styles") is not None:
        return int(opts["n_styles"]), "opts['n_styles']"
    for name in (("output_size", "stylegan_size") if kind == PSP else ("stylegan_size", "output_size")):
        if opts.get(name) is not None:
            lg = _log2_int(opts[name])
            if lg is None:
                return -1, f"opts[{name!r}]={opts[name]!r} (not a power of two)"
            return 2 * lg - 2, f"opts[{name!r}]={opts[name]}"
    if opts.get("n_styles") is not None:
        return int(opts["n_styles"]), "opts['n_styles']"
    return None, ""


def _build_encoder(path, kind: str, sd: Mapping[str, Any], opts: dict, w_dim: int) -> tuple[nn.Module, dict]:
    """Our encoder for the checkpoint's architecture, built on the ``meta`` device (no storage, no init)."""
    if kind in (PSP, E4E):
        enc = _strip(sd, "encoder.")
        arch = _backbone_arch(path, enc, "encoder.")
        heads = _indices(enc, "styles.")
        if not heads or heads != list(range(len(heads))):
            raise CheckpointError(path, f"encoder.styles.*: expected style heads 0..N-1, found {heads[:30]}")
        n_styles = len(heads)
        cls = GradualStyleEncoder if kind == PSP else Encoder4Editing
        with torch.device("meta"):
            net = cls(n_styles=n_styles, **arch)
        return net, dict(arch, n_styles=n_styles)
    # E2Style
    first = _strip(sd, "encoder_firststage.")
    arch = _backbone_arch(path, first, "encoder_firststage.")
    refine = _indices(sd, "encoder_refinestage_list.")
    if refine != list(range(len(refine))):
        raise CheckpointError(path, f"encoder_refinestage_list.*: expected stages 0..N-1, found {refine}")
    num_stages = 1 + len(refine)
    ts = opts.get("training_stage")
    if ts is not None and int(ts) != num_stages:
        raise CheckpointError(
            path,
            f"opts['training_stage']={ts} needs {int(ts) - 1} refinement encoders "
            f"(encoder_refinestage_list.*), the state dict holds {len(refine)}",
        )
    refine_in = 2 * arch["in_channels"]
    if refine:
        r0 = sd.get("encoder_refinestage_list.0.input_layer.0.weight")
        if isinstance(r0, torch.Tensor) and r0.ndim == 4:
            refine_in = int(r0.shape[1])
    rows, pool = [], None
    for name in ("output_layer_3", "output_layer_4", "output_layer_5"):
        lin, bn = first.get(f"{name}.3.weight"), first.get(f"{name}.0.weight")
        if not isinstance(lin, torch.Tensor) or lin.ndim != 2 or not isinstance(bn, torch.Tensor) or bn.ndim != 1:
            raise CheckpointError(path, f"missing or malformed head encoder_firststage.{name}.0/.3 (BatchNorm, Linear)")
        if lin.shape[0] % w_dim:
            raise CheckpointError(
                path, f"encoder_firststage.{name}.3.weight: {lin.shape[0]} outputs are not a multiple of w_dim={w_dim}"
            )
        rows.append(int(lin.shape[0]) // w_dim)
        if pool is None:
            pool = math.isqrt(int(lin.shape[1]) // max(int(bn.shape[0]), 1))
    with torch.device("meta"):
        net = E2StyleEncoder(
            num_stages=num_stages, refine_in_channels=refine_in, head_rows=tuple(rows), pool=pool or 7,
            w_dim=w_dim, **arch,
        )
    return net, dict(arch, num_stages=num_stages, head_rows=tuple(rows), n_styles=sum(rows))


def _encoder_state(path, kind: str, net: nn.Module, sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's encoder tensors under our names (``net``'s keys), every key and shape checked."""
    ours = net.state_dict(keep_vars=True)  # meta tensors: names, shapes and dtypes only
    new: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.startswith("decoder."):
            continue
        full = to_ours(kind, key)
        dst = full[len("encoder."):] if full is not None else None
        if dst is None or dst not in ours:
            shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(path, f"unexpected tensor {key} {shape} in a {kind} state_dict")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(path, f"state_dict[{key!r}] is not a tensor ({type(t).__name__})")
        target = ours[dst]
        if tuple(t.shape) != tuple(target.shape):
            raise CheckpointError(path, f"{key}: shape {list(t.shape)}, expected {list(target.shape)}")
        if target.is_floating_point() != t.is_floating_point():
            raise CheckpointError(path, f"{key}: dtype {t.dtype}, expected {target.dtype}")
        new[dst] = t.detach().to(target.dtype).contiguous()
    missing = []
    for k, target in ours.items():
        if k in new:
            continue
        if k.endswith("num_batches_tracked"):  # not saved by PyTorch < 0.4.1; unused in eval mode
            new[k] = torch.zeros((), dtype=target.dtype)
        else:
            missing.append(to_official(kind, f"encoder.{k}"))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        names = ", ".join(map(str, missing[:5]))
        raise CheckpointError(path, f"truncated {kind} checkpoint: missing tensors {names}{more}")
    return new


def _latent_avg(path, obj: dict, num_ws: int, w_dim: int) -> torch.Tensor | None:
    la = obj.get("latent_avg")
    if la is None:
        return None
    if not isinstance(la, torch.Tensor) or not la.is_floating_point():
        raise CheckpointError(path, f"latent_avg must be a float tensor [{num_ws}, {w_dim}] or [{w_dim}]")
    la = la.detach().to(torch.float32)
    if tuple(la.shape) in ((w_dim,), (1, w_dim)):
        return la.reshape(1, w_dim).expand(num_ws, w_dim).clone()
    if tuple(la.shape) != (num_ws, w_dim):
        raise CheckpointError(path, f"latent_avg has shape {list(la.shape)}, expected [{num_ws}, {w_dim}] or [{w_dim}]")
    return la.clone()


# ----------------------------------------------------------------------------


def from_checkpoint(path: str | Path, obj: dict, *, detect_only: bool = False) -> ModelBundle:
    """A pSp / e4e / E2Style checkpoint dict (already loaded with ``weights_only=True``).

    Returns a :class:`ModelBundle` whose ``encoder`` is an :class:`EncoderPipeline` (eval mode)
    and whose ``generator`` is the decoder. ``meta['opts']`` holds the options as stored. The
    encoder takes the checkpoint's tensors over without copying them (they share storage with
    ``obj['state_dict']``). With ``detect_only`` only the format is identified (nothing is built).
    """
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(path, "'state_dict' is not a non-empty dict of tensors")
    if not all(isinstance(k, str) for k in sd):
        raise CheckpointError(path, "'state_dict' has non-string keys")
    opts = obj.get("opts") or {}
    if not isinstance(opts, dict):
        raise CheckpointError(path, f"'opts' must be a dict, found {type(opts).__name__}")
    kind = _detect(path, sd, opts)
    ignored = sorted(str(k) for k in obj if k not in ("state_dict", "opts", "latent_avg"))
    meta: dict[str, Any] = {"opts": opts, "source": f"{kind} checkpoint", "ignored_keys": ignored}
    if kind in (PSP, E4E):
        meta["encoder_type"] = opts.get("encoder_type")
    bundle = ModelBundle(format=kind, path=str(path), meta=meta)
    if detect_only:
        return bundle
    try:
        return _read(path, obj, sd, opts, kind, bundle)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError, OverflowError) as e:
        # Odd option values or tensors the checks above did not anticipate: still the file's fault.
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CheckpointError(path, f"malformed {kind} checkpoint ({type(e).__name__}: {detail})") from None


def _read(path, obj: dict, sd: Mapping[str, Any], opts: dict, kind: str, bundle: ModelBundle) -> ModelBundle:
    meta = bundle.meta
    # Anything outside the known prefixes is an error (before the expensive work).
    enc_prefixes = ("encoder.",) if kind in (PSP, E4E) else ("encoder_firststage.", "encoder_refinestage_list.")
    prefixes = ("decoder.", *enc_prefixes)
    for k, v in sd.items():
        if not k.startswith(prefixes):
            shape = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointError(path, f"unexpected tensor {k} {shape} in a {kind} state_dict")

    dec = _strip(sd, "decoder.")
    if not dec:
        raise CheckpointError(path, f"no decoder in the {kind} checkpoint (expected 'decoder.*' tensors)")
    w = dec.get("style.1.weight")
    w_dim = int(w.shape[1]) if isinstance(w, torch.Tensor) and w.ndim == 2 else 512

    # Encoder: architecture from the tensors, checked before anything is allocated.
    net, arch = _build_encoder(path, kind, sd, opts, w_dim)
    enc_state = _encoder_state(path, kind, net, sd)
    nc = opts.get("input_nc")
    if isinstance(nc, int) and nc != arch["in_channels"]:
        raise CheckpointError(
            path, f"opts['input_nc']={nc}, but the encoder's first conv takes {arch['in_channels']} channels"
        )
    want, said = _n_styles_from_opts(opts, kind)
    if want is not None and want != arch["n_styles"]:
        raise CheckpointError(path, f"{said} implies {want} W+ rows, but the encoder predicts {arch['n_styles']}")

    # Decoder (rosinality layout).
    from studio.core.formats.rosinality_pt import generator_from_rosinality

    G = generator_from_rosinality(dec, path=path, what="decoder")
    num_ws = int(G.num_ws)
    if int(G.w_dim) != w_dim or arch["n_styles"] != num_ws:
        raise CheckpointError(
            path,
            f"the encoder predicts {arch['n_styles']} W+ rows of {w_dim}, but the decoder "
            f"({G.img_resolution}px) takes {num_ws} of {G.w_dim}",
        )
    try:
        net.load_state_dict(enc_state, strict=True, assign=True)  # takes the tensors over, no copy
    except RuntimeError as e:  # cannot happen after the checks above; never let it escape
        raise CheckpointError(path, f"encoder weights do not fit: {str(e).splitlines()[0]}") from None

    # Average latent.
    start = bool(opts.get("start_from_latent_avg", True))
    latent_avg = _latent_avg(path, obj, num_ws, w_dim)
    notes = bundle.notes
    if latent_avg is None:
        if start:
            raise CheckpointError(
                path, f"opts['start_from_latent_avg'] is set but the file has no latent_avg [{num_ws}, {w_dim}]"
            )
        notes.append("the file has no latent_avg; the encoder's codes are used as W+ directly")
    if "start_from_latent_avg" not in opts and latent_avg is not None:
        notes.append("opts has no 'start_from_latent_avg': latent_avg is added to the codes (the usual setting)")
    if latent_avg is not None:
        if bool((latent_avg == latent_avg[:1]).all()):
            w_avg = latent_avg[0].clone()
            notes.append("w_avg = latent_avg (all rows equal)")
        else:
            w_avg = latent_avg.mean(0)
            notes.append("latent_avg rows differ: w_avg is their mean; the encoder adds latent_avg row by row")
        G.mapping.w_avg.copy_(w_avg)
    else:
        from studio.core.formats.rosinality_pt import estimate_w_avg

        w_avg = estimate_w_avg(G)
        G.mapping.w_avg.copy_(w_avg)
        notes.append("w_avg estimated from mapped random z (the file has no latent_avg)")

    pipe = EncoderPipeline(net, G, latent_avg, kind=kind, start_from_latent_avg=start and latent_avg is not None)
    pipe.eval().requires_grad_(False)
    if kind == E2STYLE:
        stage = opts.get("stage")
        if isinstance(stage, int) and 1 <= stage <= arch["num_stages"]:
            net.set_active_stages(stage)
    if meta["ignored_keys"]:
        log.info("%s: ignoring checkpoint entries %s", path, meta["ignored_keys"])
    meta["architecture"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in arch.items()}
    bundle.generator = G
    bundle.encoder = pipe
    bundle.latent_avg = latent_avg
    bundle.w_avg = w_avg.clone()
    return bundle
