"""``stylestudio align IN... --out DIR``: align the faces of photos (FFHQ recipe), with a JSON of the transforms.

For each input, writes ``<stem>.png`` (best face) or ``<stem>_face<k>.png`` (``--all-faces``, best
first) into DIR, plus ``DIR/transforms.json``, which ``stylestudio paste`` reads to put an edited
face back into the photo. A name that would be one of the input photos becomes ``<stem>_aligned.png``
(an input is never overwritten).

The alignment profile defaults to the embedded model pack's (the model ``invert``, ``edit`` and
``mix`` use by default), so their inputs line up; ``--profile`` picks another.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.fileio import atomic_write_text

log = logging.getLogger(__name__)

TRANSFORMS_JSON = "transforms.json"
DEFAULT_MIN_SCORE = 0.25


def megapixels(text: str) -> float:
    """argparse type of ``--detect-mp``: a finite number of megapixels > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megapixels (e.g. 2.2), got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of megapixels (e.g. 2.2), got {text!r}")
    if v * 1e6 < 1:
        raise argparse.ArgumentTypeError(f"{text!r} megapixels is less than one pixel")
    return v


def register(sub) -> None:
    p = sub.add_parser(
        "align", help="align the faces in photos (FFHQ recipe) for encoding/editing",
        description="Detect faces (dlib), align them with the FFHQ recipe and write PNGs plus a JSON "
                    "of the transforms (for `stylestudio paste`).")
    p.add_argument("inputs", nargs="+", metavar="IN", help="photos (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--size", type=int, default=None,
                   help="aligned image side in pixels (default: the profile's, e.g. 256 for 'ffhq')")
    p.add_argument("--transform-size", type=int, default=None,
                   help="intermediate QUAD transform side (default: the profile's; NVlabs FFHQ used 4096 for 1024)")
    p.add_argument("--profile", default=None,
                   help="alignment profile: 'ffhq', 'ffhq-1024', a JSON file or a model pack (its folder or "
                        "manifest.json). Default: the embedded model pack's profile, the one invert/edit/mix "
                        "use by default ('ffhq' when no pack is installed)")
    p.add_argument("--all-faces", action="store_true", help="align every detected face, not only the best one")
    p.add_argument("--official", action="store_true",
                   help="pSp/e4e compatibility: detector(img, 1) on the full image and the LAST detection "
                        "(may pick a non-face when there are several detections); profile 'ffhq' unless "
                        "--profile is given")
    p.add_argument("--detect-mp", type=megapixels, default=None,
                   help="detector work budget in megapixels (default 2.2; larger finds smaller faces, slower)")
    p.add_argument("--min-score", type=float, default=None,
                   help=f"with --all-faces, skip extra detections scoring below this (default {DEFAULT_MIN_SCORE}; "
                        "the best face is always kept; dlib's own threshold is 0)")
    p.add_argument("--json", default=TRANSFORMS_JSON, help=f"name of the transforms file in DIR (default {TRANSFORMS_JSON})")
    p.set_defaults(func=run)


def default_profile_spec():
    """The alignment profile of the model the other commands use by default (the embedded pack's
    manifest ``alignment_profile``), or ``'ffhq'`` when there is no pack or it names none."""
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is None:
        return "ffhq"
    try:
        man = json.loads((pack / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("cannot read the default pack's manifest (%s); using the 'ffhq' profile", e)
        return "ffhq"
    spec = man.get("alignment_profile") if isinstance(man, dict) else None
    return spec if isinstance(spec, (dict, str)) and spec else "ffhq"


def _profile(spec):
    from studio.core.align import get_profile

    if spec is None:
        return get_profile(default_profile_spec())
    p = Path(spec)
    if p.is_dir():  # a model pack folder: its manifest names the profile
        if not (p / "manifest.json").is_file():
            raise StudioError(f"--profile {spec}: a folder must be a model pack (with a manifest.json)")
        p = p / "manifest.json"
        try:
            man = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StudioError(f"cannot read {p}: {e}") from None
        return get_profile((man.get("alignment_profile") if isinstance(man, dict) else None) or "ffhq")
    return get_profile(spec)


def _output_name(name: str, used: set[str], out_dir: Path, inputs: list[str]) -> str:
    """``name``, or a variant of it, that is neither already used nor one of the input photos
    (``<stem>_aligned.png`` when ``name`` is an input)."""
    stem, suffix = name.rsplit(".", 1)
    cand = f"{stem}_aligned.{suffix}" if _is_input_name(name, out_dir, inputs) else name
    base, k = cand.rsplit(".", 1)[0], 2
    while cand in used or _is_input_name(cand, out_dir, inputs):
        cand = f"{base}_{k}.{suffix}"
        k += 1
    used.add(cand)
    return cand


def run(args) -> int:
    from studio.cli.common import check_not_input, check_output
    from studio.core.align import MAX_OUTPUT_SIZE, MAX_TRANSFORM_SIZE, align_face
    from studio.core.errors import NoFaceError
    from studio.core.faces import DEFAULT_DETECT_BUDGET, RETRY_DETECT_BUDGET, detect_faces
    from studio.core.imageio import load_image, save_image

    if args.official and args.all_faces:
        raise StudioError("--all-faces and --official cannot be combined (--official keeps only the last "
                          "detection, as pSp/e4e do); drop one of them")
    if args.official and args.detect_mp is not None:
        raise StudioError("--detect-mp does not apply with --official (it always scans the full image, "
                          "upsampled 2x); drop one of them")
    if args.min_score is not None and not args.all_faces:
        raise StudioError("--min-score only applies with --all-faces (otherwise only the best face is aligned)")
    min_score = DEFAULT_MIN_SCORE if args.min_score is None else args.min_score
    # --official reproduces pSp / e4e's align_face, whose recipe is FFHQ's: that stays its default
    profile = _profile("ffhq" if args.official and args.profile is None else args.profile)
    size = args.size if args.size is not None else profile.output_size
    if size < 8 or size > MAX_OUTPUT_SIZE:
        raise StudioError(f"--size must be between 8 and {MAX_OUTPUT_SIZE} pixels, got {size}")
    if args.transform_size is not None and args.transform_size < size:
        raise StudioError(f"--transform-size ({args.transform_size}) must be >= --size ({size})")
    if args.transform_size is not None and args.transform_size > MAX_TRANSFORM_SIZE:
        raise StudioError(f"--transform-size must be at most {MAX_TRANSFORM_SIZE} pixels, got {args.transform_size}")
    if args.transform_size is None and args.size is not None and profile.transform_size is not None and \
            round(size * profile.transform_size / profile.output_size) > MAX_TRANSFORM_SIZE:
        raise StudioError(f"--size {size} with the profile's {profile.transform_size / profile.output_size:g}x "
                          f"supersampling needs a transform over {MAX_TRANSFORM_SIZE} pixels; give a smaller --size "
                          f"or --transform-size")
    budget = DEFAULT_DETECT_BUDGET if args.detect_mp is None else max(1, int(args.detect_mp * 1e6))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise StudioError(f"--out {out_dir} exists and is not a folder")
    check_output(out_dir, folder=True)  # a path through a file, a read-only folder: one error, before any work
    json_path = out_dir / args.json
    if json_path.suffix.lower() != ".json":
        raise StudioError(f"--json {args.json}: the transforms file must end in .json")
    check_not_input(json_path, *args.inputs, flag="--json")
    _read_existing(json_path)  # an existing file that is not a transforms file is refused, not replaced

    items: list[dict] = []
    used: set[str] = set()
    failed = 0
    for src in args.inputs:
        img = None
        try:
            img, info = load_image(src)
            if args.official:
                faces = detect_faces(img, upsample=1, budget=None, order="dlib", path=src)
                faces = [faces[-1]]
            else:
                faces = detect_faces(img, budget=budget, path=src,
                                     **({} if args.detect_mp is None else {"retry_budget": None}))
                likely = faces[:1] + [f for f in faces[1:] if f.score >= min_score]
                if args.all_faces:
                    faces = likely
                else:
                    if len(likely) > 1:
                        print(f"note: {Path(src).name}: {len(likely)} faces found; using the most confident "
                              f"(--all-faces aligns every one)", file=sys.stderr)
                    faces = faces[:1]
            stem = Path(src).stem
            for k, face in enumerate(faces):
                ts = args.transform_size
                if args.official and ts is None:
                    ts = size
                aligned = align_face(img, face.landmarks, profile, output_size=size, transform_size=ts,
                                     exact=True if args.official else None)
                want = f"{stem}_face{k}.png" if args.all_faces else f"{stem}.png"
                name = _output_name(want, used, out_dir, args.inputs)
                if not out_dir.is_dir():
                    try:
                        out_dir.mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise StudioError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
                save_image(out_dir / name, aligned.image)
                items.append({
                    "input": str(Path(src).resolve()),
                    "output": name,
                    "face": k,
                    "box": list(face.box),
                    "score": round(face.score, 4),
                    "exif_orientation": info.orientation,
                    "transform": aligned.transform.to_dict(),
                })
                renamed = (f"; not {want}: that is an input photo"
                           if name != want and _is_input_name(want, out_dir, args.inputs) else "")
                print(f"{src} -> {out_dir / name}  (face {k}, score {face.score:.2f}{renamed})")
        except StudioError as e:
            failed += 1
            hint = ""
            if isinstance(e, NoFaceError) and not args.official and img is not None:
                scanned = budget if args.detect_mp is not None else max(budget, RETRY_DETECT_BUDGET)
                full = img.shape[0] * img.shape[1] * 4  # the official scan: full size, upsampled 2x
                if scanned < full:
                    mp = math.ceil(min(full, 4 * scanned) / 1e5) / 10
                    hint = f" (or scan it at a higher resolution, slower: --detect-mp {mp:g})"
            print(f"stylestudio align: error: {e}{hint}", file=sys.stderr)
    if not items:  # every input failed (each said why): write nothing, not even the folder
        print(f"stylestudio align: error: no face aligned ({failed} input(s) failed); nothing written",
              file=sys.stderr)
        return 1
    doc = {"version": 1, "profile": profile.to_dict(), "size": size, "items": items}
    old = _read_existing(json_path)
    if old:  # several runs into one folder: keep earlier items whose images were not overwritten
        names = {it["output"] for it in items}
        doc["items"] = [it for it in old if it.get("output") not in names] + items
    atomic_write_text(json_path, json.dumps(doc, indent=1))
    print(f"wrote {len(items)} aligned face(s) ({profile.name} profile, {size} px) and {json_path}")
    if failed:
        return 1
    return 0


def _is_input_name(name: str, out_dir: Path, inputs: list[str]) -> bool:
    from studio.cli.common import same_file

    return any(same_file(out_dir / name, src) for src in inputs)


def _read_existing(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return [it for it in d.get("items", []) if isinstance(it, dict) and "output" in it]
    except (OSError, ValueError, AttributeError):
        raise StudioError(f"{path} exists and is not a transforms file made by align; move it away or pass "
                          f"another --json name") from None
