"""``stylestudio paste ALIGNED_EDIT ORIGINAL TRANSFORM``: put an edited aligned face back into its photo.

TRANSFORM is the ``transforms.json`` written by ``stylestudio align`` (the entry is chosen by the
photo's path and the aligned file's name, or ``--face``), or a JSON file holding one transform.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from studio.core.errors import ImageError, StudioError


def register(sub) -> None:
    p = sub.add_parser(
        "paste", help="paste an edited aligned face back into the original photo",
        description="Warp an edited aligned face back into the photo it was aligned from (full "
                    "resolution, feathered mask); pixels outside the mask are unchanged.")
    p.add_argument("edit", metavar="ALIGNED_EDIT", help="the edited aligned face (square image, any size)")
    p.add_argument("original", metavar="ORIGINAL", help="the original photo")
    p.add_argument("transform", metavar="TRANSFORM", help="transforms.json from `stylestudio align` (or one transform)")
    p.add_argument("--out", default=None,
                   help="output image (default: <ORIGINAL stem>_pasted.png next to ALIGNED_EDIT)")
    p.add_argument("--face", default=None,
                   help="which entry of TRANSFORM: the aligned file name (e.g. photo_face1.png) or its index")
    p.add_argument("--mask", choices=("hull", "ellipse"), default="hull", help="face mask shape (default hull)")
    p.add_argument("--feather", type=float, default=0.04,
                   help="mask softness, fraction of the aligned image side (default 0.04)")
    p.add_argument("--color-match", action="store_true", help="match the face's colour statistics to the photo")
    p.add_argument("--base", default=None, metavar="RECON",
                   help="the unedited reconstruction (e.g. `stylestudio invert`'s <stem>_recon.png): paste only "
                        "the change ALIGNED_EDIT makes over it, keeping the photo's own detail")
    p.set_defaults(func=run)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_items(items: list, source: str) -> None:
    """Each entry of a transforms file: a JSON object with a 'transform' object (names are strings)."""
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise StudioError(f"{source}: entry {i} of 'items' is not a JSON object (got {type(it).__name__}); "
                              f"is this a transforms.json from `stylestudio align`?")
        for key in ("input", "output"):
            if key in it and not isinstance(it[key], str):
                raise StudioError(f"{source}: entry {i} of 'items' has a non-text {key!r} ({it[key]!r})")
        label = f"entry {i}" + (f" ({it['output']})" if it.get("output") else "")
        if "transform" not in it:
            raise StudioError(f"{source}: {label} of 'items' has no 'transform'; re-create the file with "
                              f"`stylestudio align`")
        if not isinstance(it["transform"], dict):
            raise StudioError(f"{source}: the 'transform' of {label} is not a JSON object")


def select_transform(doc, original: str, edit: str, face: str | None, source: str = "TRANSFORM") -> dict:
    """Pick the transform dict for ``original``/``edit`` out of a transforms file's content
    (``source``: the file's name, for messages). Malformed content raises :class:`StudioError`."""
    if isinstance(doc, dict) and "quad" in doc:
        return doc
    if isinstance(doc, dict) and "transform" in doc and "items" not in doc:
        if not isinstance(doc["transform"], dict):
            raise StudioError(f"{source}: 'transform' is not a JSON object")
        return doc["transform"]
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise StudioError(f"{source} is not a transforms file from `stylestudio align` (no 'items')")
    _check_items(items, source)
    if face is not None:
        if face.isdigit() and not any(it.get("output") == face for it in items):
            idx = int(face)
            if idx >= len(items):
                raise StudioError(f"--face {idx}: {source} has only {len(items)} entries")
            return items[idx]["transform"]
        hits = [it for it in items if it.get("output") == face or Path(it.get("output", "")).stem == face]
        if not hits:
            raise StudioError(f"--face {face!r} not in {source}; entries: {[it.get('output') for it in items]}")
        return hits[0]["transform"]
    cands = [it for it in items if _same_file(it.get("input", ""), original)] or \
            [it for it in items if Path(it.get("input", "")).name == Path(original).name]
    if len(cands) > 1:  # several faces of this photo: use the aligned file's name
        stem = Path(edit).stem
        named = [it for it in cands if Path(it.get("output", "")).stem == stem] or \
                [it for it in cands if stem.startswith(Path(it.get("output", "")).stem)]
        if len(named) >= 1:
            cands = named[:1] if len(named) == 1 else [max(named, key=lambda it: len(it.get("output", "")))]
    if len(cands) == 1:
        return cands[0]["transform"]
    if not cands and len(items) == 1:
        return items[0]["transform"]
    names = [it.get("output") for it in (cands or items)]
    raise StudioError(f"cannot tell which face of {source} to use; pass --face with one of {names}")


#: Keys a transform must have (AlignTransform.to_dict writes them all).
REQUIRED_KEYS = ("input_size", "quad", "qsize", "output_size", "transform_size")


def run(args) -> int:
    from studio.cli.common import check_outputs
    from studio.core.align import AlignmentProfileError, AlignTransform
    from studio.core.imageio import load_image, save_image
    from studio.core.paste import paste_back

    dest = Path(args.out) if args.out else Path(args.edit).parent / f"{Path(args.original).stem}_pasted.png"
    base_path = getattr(args, "base", None)
    check_outputs([(dest, "--out" if args.out else "the default output", True)],
                  [args.edit, args.original, args.transform, base_path])
    if base_path is not None and args.color_match:
        raise StudioError("--color-match and --base do not go together: with --base only the change is pasted, "
                          "in the photo's own colours")
    try:
        doc = json.loads(Path(args.transform).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{args.transform}: transform file not found") from None
    except (OSError, ValueError) as e:
        raise StudioError(f"{args.transform}: not a readable JSON file ({e})") from None
    d = select_transform(doc, args.original, args.edit, args.face, source=str(args.transform))
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise StudioError(f"{args.transform}: the transform lacks {', '.join(repr(k) for k in missing)}; "
                          f"re-create it with `stylestudio align`")
    try:
        tf = AlignTransform.from_dict(d)
    except AlignmentProfileError as e:
        raise StudioError(f"{args.transform}: {e}") from None
    photo, _ = load_image(args.original)
    edit, _ = load_image(args.edit)
    if edit.shape[0] != edit.shape[1]:
        raise ImageError(args.edit, f"the edited face must be a square aligned image, got "
                                    f"{edit.shape[1]}x{edit.shape[0]}")
    base = None
    if base_path is not None:
        base, _ = load_image(base_path)
        if base.shape != edit.shape:
            raise ImageError(base_path, f"the unedited reconstruction is {base.shape[1]}x{base.shape[0]} but the "
                                        f"edit is {edit.shape[1]}x{edit.shape[0]}; pass images of the same size")
    if not 0.0 <= args.feather <= 0.5:
        raise StudioError(f"--feather must be between 0 and 0.5, got {args.feather}")
    out = paste_back(photo, edit, tf, mask=args.mask, feather=args.feather, color_match=args.color_match,
                     base_aligned=base)
    save_image(dest, out)
    print(f"wrote {dest}")
    return 0
