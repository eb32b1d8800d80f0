"""``stylestudio mix CONTENT STYLE --out X``: style mixing of two photos in one pass (seed 002).

Aligns the best face of each photo with the model's alignment profile (``--aligned``: they are
already aligned squares), then mixes them at a layer group: the content's rows before the group,
the style's from it on (METHODS.md §6). Uses a distilled student (``--student``, else the one the
model pack lists for the group) when there is one: one forward pass; otherwise it inverts both faces
with the model's fastest encoder (``--method`` picks another) and mixes through the generator.
Writes the mixed face (the generator's resolution) to ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

from studio.core.errors import StudioError


def register(sub) -> None:
    from studio.core.latent import GROUPS

    p = sub.add_parser(
        "mix", help="mix two photos' faces (content + style) in one pass with a distilled student",
        description="Align the faces of two photos and mix them: the content face's coarse layers with the style "
                    "face's layers from --group on. Uses the model's distilled student when it has one, else "
                    "inversion with its fastest encoder + the generator.")
    p.add_argument("content", metavar="CONTENT", help="photo whose face gives the pose and face shape")
    p.add_argument("style", metavar="STYLE", help="photo whose face gives the style rows")
    p.add_argument("--out", required=True, metavar="X", help="output image (PNG/JPEG/WebP by extension)")
    p.add_argument("--student", default=None, help="distilled student file (default: the model pack's, if any)")
    p.add_argument("--group", default=None, choices=list(GROUPS),
                   help="first layer group taken from the style face (default: the student's, else medium)")
    p.add_argument("--model", default=None, help="model file or pack (default: the embedded pack)")
    p.add_argument("--method", default=None,
                   help="encoder for the inversion path (forces it, so not with --student; default: fastest)")
    p.add_argument("--aligned", action="store_true", help="CONTENT and STYLE are already aligned square faces")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.set_defaults(func=run)


def align_for(photo, profile):
    """The best face of ``photo`` aligned with ``profile`` -> (S, S, 3) uint8."""
    from studio.core.align import align_face
    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image

    img, _ = load_image(photo)
    face = detect_faces(img, path=photo)[0]
    return align_face(img, face.landmarks, profile).image


def run(args) -> int:
    from studio.cli.common import check_outputs
    from studio.cli.common import resolve_model
    from studio.core.align import get_profile
    from studio.core.distill import make_mixer
    from studio.core.imageio import load_image, save_image
    from studio.core.tensors import pick_device

    for p in (args.content, args.style):
        if not Path(p).is_file():
            raise StudioError(f"{p}: no such file")
    if args.student is not None and args.method is not None:
        raise StudioError(f"--student and --method exclude each other: --student mixes with the distilled student "
                          f"in one pass, --method {args.method} forces inversion with that encoder + the generator; "
                          f"pass only one")
    out = Path(args.out)
    check_outputs([(out, "--out", True)], [args.content, args.style, args.student, args.model])
    model_path = resolve_model(args.model) if (args.model or args.student is None) else None
    dev = pick_device(args.device)
    mixer = make_mixer(model_path, student=args.student, group=args.group, method=args.method, device=dev)
    if args.aligned:
        faces = [load_image(p)[0] for p in (args.content, args.style)]
    else:
        profile = get_profile(mixer.alignment_profile)
        faces = [align_for(p, profile) for p in (args.content, args.style)]
    t0 = time.perf_counter()
    img = mixer.mix(faces[0], faces[1])
    ms = (time.perf_counter() - t0) * 1000
    save_image(out, img)
    how = "distilled student" if mixer.kind == "student" else f"{mixer.method} inversion + generator"
    print(f"{args.content} + {args.style} -> {out}  ({how}, group {mixer.group}, {ms:.0f} ms)")
    return 0

