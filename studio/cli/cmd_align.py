"""``stylestudio align IN... --out DIR``: FFHQ-align the faces of photos, with a JSON of the transforms.

For each input, writes ``<stem>.png`` (best face) or ``<stem>_face<k>.png`` (``--all-faces``, best
first) into DIR, plus ``DIR/transforms.json``, which ``stylestudio paste`` reads to put an edited
face back into the photo.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.fileio import atomic_write_text

log = logging.getLogger(__name__)

TRANSFORMS_JSON = "transforms.json"


def register(sub) -> None:
    p = sub.add_parser(
        "align", help="align the faces in photos (FFHQ crop) for encoding/editing",
        description="Detect faces (dlib), align them with the FFHQ recipe and write PNGs plus a JSON "
                    "of the transforms (for `stylestudio paste`).")
    p.add_argument("inputs", nargs="+", metavar="IN", help="photos (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--size", type=int, default=None,
                   help="aligned image side in pixels (default: the profile's, 256 for 'ffhq')")
    p.add_argument("--transform-size", type=int, default=None,
                   help="intermediate QUAD transform side (default: the profile's; NVlabs FFHQ used 4096 for 1024)")
    p.add_argument("--profile", default="ffhq",
                   help="alignment profile: 'ffhq', 'ffhq-1024' or a JSON file (e.g. a model pack's manifest)")
    p.add_argument("--all-faces", action="store_true", help="align every detected face, not only the best one")
    p.add_argument("--official", action="store_true",
                   help="pSp/e4e compatibility: detector(img, 1) on the full image and the LAST detection "
                        "(may pick a non-face when there are several detections)")
    p.add_argument("--detect-mp", type=float, default=None,
                   help="detector work budget in megapixels (default 2.2; larger finds smaller faces, slower)")
    p.add_argument("--min-score", type=float, default=0.25,
                   help="with --all-faces, skip extra detections scoring below this (default 0.25; the best "
                        "face is always kept; dlib's own threshold is 0)")
    p.add_argument("--json", default=TRANSFORMS_JSON, help=f"name of the transforms file in DIR (default {TRANSFORMS_JSON})")
    p.set_defaults(func=run)


def _unique(name: str, used: set[str]) -> str:
    stem, suffix = name.rsplit(".", 1)
    cand, k = name, 2
    while cand in used:
        cand = f"{stem}_{k}.{suffix}"
        k += 1
    used.add(cand)
    return cand


def run(args) -> int:
    from studio.core.align import align_face, get_profile
    from studio.core.errors import NoFaceError
    from studio.core.faces import DEFAULT_DETECT_BUDGET, RETRY_DETECT_BUDGET, detect_faces
    from studio.core.imageio import load_image, save_image

    profile = get_profile(args.profile)
    size = args.size if args.size is not None else profile.output_size
    if size < 8 or size > 8192:
        raise StudioError(f"--size must be between 8 and 8192 pixels, got {size}")
    if args.transform_size is not None and args.transform_size < size:
        raise StudioError(f"--transform-size ({args.transform_size}) must be >= --size ({size})")
    budget = DEFAULT_DETECT_BUDGET if args.detect_mp is None else int(args.detect_mp * 1e6)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None

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
                if args.all_faces:
                    faces = faces[:1] + [f for f in faces[1:] if f.score >= args.min_score]
                else:
                    faces = faces[:1]
            stem = Path(src).stem
            for k, face in enumerate(faces):
                ts = args.transform_size
                if args.official and ts is None:
                    ts = size
                aligned = align_face(img, face.landmarks, profile, output_size=size, transform_size=ts,
                                     exact=True if args.official else None)
                name = _unique(f"{stem}_face{k}.png" if args.all_faces else f"{stem}.png", used)
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
                print(f"{src} -> {out_dir / name}  (face {k}, score {face.score:.2f})")
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
    doc = {"version": 1, "profile": profile.to_dict(), "size": size, "items": items}
    json_path = out_dir / args.json
    old = _read_existing(json_path)
    if old:  # several runs into one folder: keep earlier items whose images were not overwritten
        names = {it["output"] for it in items}
        doc["items"] = [it for it in old if it.get("output") not in names] + items
    atomic_write_text(json_path, json.dumps(doc, indent=1))
    print(f"wrote {len(items)} aligned face(s) and {json_path}")
    if failed:
        return 1
    return 0


def _read_existing(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return [it for it in d.get("items", []) if isinstance(it, dict) and "output" in it]
    except (OSError, ValueError, AttributeError):
        log.warning("%s is not a transforms file; overwriting it", path)
        return []
