"""``stylestudio invert PHOTO --method M --model MODEL --out DIR``: a photo's face as a W+ latent.

Aligns the best face with the model's alignment profile (FFHQ unless the model pack names its own;
``--aligned`` skips this for an already aligned square face), inverts it with the chosen method
(an encoder, optimisation or hybrid) and writes into DIR:

* ``<stem>.npy``: the W+ latent [num_ws, w_dim] (``stylestudio edit`` reads it);
* ``<stem>_recon.png`` (the generator's reconstruction) and ``<stem>_aligned.png`` (its target);
* ``<stem>.json``: method, seconds, MSE / LPIPS (VGG) / identity similarity (dlib), the model;
* ``transforms.json``: the alignment transform, as ``stylestudio align`` writes it (for ``paste``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError
from studio.core.fileio import atomic_save_npy, atomic_write_text

log = logging.getLogger(__name__)


def register(sub) -> None:
    from studio.core.inversion import METHODS

    p = sub.add_parser(
        "invert", help="invert a photo's face into the generator's W+ latent",
        description="Align the face in a photo and invert it into W+ with an encoder, optimisation or both. "
                    "Methods: " + "; ".join(f"{k}: {v}" for k, v in METHODS.items()) + ".")
    p.add_argument("photo", metavar="PHOTO", help="a photo with a face (or an aligned face with --aligned)")
    p.add_argument("--method", default=None, choices=list(METHODS),
                   help="inversion method (default: the model's first encoder, else optimize)")
    p.add_argument("--model", default=None, help="model file or pack (default: the embedded pack)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--aligned", action="store_true", help="PHOTO is already an aligned square face")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (only with --method optimize or hybrid)")
    p.add_argument("--hybrid-encoder", default=None, help="encoder that starts the hybrid method (default: best available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimisation's random draws")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity similarity")
    p.set_defaults(func=run)


#: Extra detections scoring below this are not counted as faces in the "several faces" note
#: (``stylestudio align --all-faces`` skips them by default too).
NOTE_MIN_SCORE = 0.25
STEP_METHODS = ("optimize", "hybrid")


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def default_method(bundle) -> str:
    """The method used when none is given: the model's first encoder, else ``optimize``."""
    from studio.core.inversion import ENCODER_METHODS, bundle_encoders

    encoders = bundle_encoders(bundle)
    return next((k for k in ENCODER_METHODS if k in encoders), "optimize")


def invert_photo(photo, bundle, *, method: str | None = None, aligned: bool = False, steps: int | None = None,
                 seed: int = 0, hybrid_encoder: str | None = None, device: str = "auto", progress=None,
                 note=_note):
    """Align ``photo``'s best face with the model's profile (unless ``aligned``) and invert it.

    ``note(text)`` is told when the photo has several faces (the most confident one is used).
    Returns ``(inversion, aligned_image, transform_or_None, image_info)``.
    """
    import dataclasses

    from studio.core.align import align_face, get_profile
    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image
    from studio.core.inversion import ENCODER_METHODS, bundle_encoders, make_inverter
    from studio.core.projector import ProjectorConfig
    from studio.core.tensors import pick_device

    G = bundle.generator
    if G is None:
        raise StudioError(f"{bundle.path}: this model has no generator to invert into")
    dev = pick_device(device)
    G = G.to(dev).eval()
    encoders = {k: v.to(dev) for k, v in bundle_encoders(bundle).items()}
    method = method or next((k for k in ENCODER_METHODS if k in encoders), "optimize")
    if steps is not None and steps < 1:
        raise StudioError("--steps must be at least 1")
    cfg = None
    if method == "optimize" or (method == "hybrid" and steps is not None):
        cfg = ProjectorConfig(seed=seed)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
    inverter = make_inverter(method, G, encoders, projector_config=cfg, hybrid_encoder=hybrid_encoder)
    img, info = load_image(photo)
    transform = None
    if aligned:
        face_img = img
    else:
        profile = get_profile(bundle.meta.get("alignment_profile"))
        faces = detect_faces(img, path=photo)
        n = 1 + sum(f.score >= NOTE_MIN_SCORE for f in faces[1:])
        if n > 1 and note is not None:
            note(f"{Path(photo).name}: {n} faces found; using the most confident (to invert another one, "
                 f"align them all with `stylestudio align --all-faces`, then `stylestudio invert FILE --aligned`)")
        face = faces[0]
        a = align_face(img, face.landmarks, profile)
        face_img, transform = a.image, a.transform
    return inverter.invert(face_img, progress=progress), face_img, transform, info


def print_progress(p) -> None:
    if p.total > 1 and (p.step % 50 == 0 or p.step == p.total):
        print(f"  step {p.step}/{p.total}  loss {p.loss:.4f}", file=sys.stderr)


def run(args) -> int:
    from studio.cli.common import check_not_input, resolve_model
    from studio.core.formats import load_checkpoint
    from studio.core.imageio import save_image

    out_dir = Path(args.out)
    stem = Path(args.photo).stem
    outputs = [f"{stem}.npy", f"{stem}_recon.png", f"{stem}_aligned.png", f"{stem}.json", "transforms.json"]
    check_not_input(out_dir, args.photo)
    for name in outputs:
        check_not_input(out_dir / name, args.photo)
    if args.steps is not None and args.method is not None and args.method not in STEP_METHODS:
        raise StudioError(f"--steps only applies to --method optimize or hybrid, not {args.method}")
    model_path = resolve_model(args.model)
    bundle = load_checkpoint(model_path)
    if args.steps is not None and args.method is None and default_method(bundle) not in STEP_METHODS:
        raise StudioError(f"--steps only applies to --method optimize or hybrid; this model's default method "
                          f"is {default_method(bundle)} (an encoder: no steps). Add --method optimize or hybrid")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
    res, aligned, transform, info = invert_photo(
        args.photo, bundle, method=args.method, aligned=args.aligned, steps=args.steps, seed=args.seed,
        hybrid_encoder=args.hybrid_encoder, device=args.device, progress=print_progress)
    metrics = dict(res.metrics)
    if not args.no_identity:
        metrics["identity"] = _identity(aligned, res.reconstruction)
    atomic_save_npy(out_dir / f"{stem}.npy", res.latent_wplus.numpy().astype(np.float32))
    save_image(out_dir / f"{stem}_recon.png", res.reconstruction)
    save_image(out_dir / f"{stem}_aligned.png", aligned)
    doc = {"photo": str(Path(args.photo).resolve()), "model": str(model_path), "method": res.method,
           "seconds": round(res.seconds, 3), "metrics": {k: (None if v is None else round(float(v), 5))
                                                          for k, v in metrics.items()},
           "cancelled": res.cancelled, "notes": res.notes, "latent_shape": list(res.latent_wplus.shape)}
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(doc, indent=1))
    if transform is not None:
        _add_transform(out_dir, f"{stem}_aligned.png", args.photo, info, transform, aligned.shape[0])
    m = doc["metrics"]
    print(f"{args.photo} -> {out_dir / (stem + '.npy')}  ({res.method}, {res.seconds:.2f} s, "
          f"LPIPS {m['lpips']:.3f}, MSE {m['mse']:.4f}"
          + (f", identity {m['identity']:.3f}" if m.get("identity") is not None else "") + ")")
    return 0


def _identity(a, b) -> float | None:
    """dlib identity similarity of two aligned faces (None when dlib finds no face in one)."""
    from studio.core.identity import identity_similarity

    try:
        return float(identity_similarity(a, b, aligned=True))
    except StudioError as e:
        log.info("identity similarity unavailable: %s", e)
        return None


def _add_transform(out_dir: Path, name: str, photo: str, info, transform, size: int) -> None:
    from studio.cli.cmd_align import TRANSFORMS_JSON, _read_existing

    path = out_dir / TRANSFORMS_JSON
    items = [it for it in _read_existing(path) if it.get("output") != name]
    items.append({"input": str(Path(photo).resolve()), "output": name, "face": 0,
                  "exif_orientation": getattr(info, "orientation", 1), "transform": transform.to_dict()})
    atomic_write_text(path, json.dumps({"version": 1, "size": size, "items": items}, indent=1))
