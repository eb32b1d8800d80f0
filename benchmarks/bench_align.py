"""Face detection + landmarks + FFHQ alignment speed on a 1 MP and a 12 MP photo (ms, median).

Photos are built from ``shared/data/faces/nonaligned_rotated_offset.jpg`` (a real 1280x800 = 1.0 MP
JPEG with one tilted face): "1MP" is the file itself, "12MP" the same scene scaled to 4000x2500 on
a 4000x3000 canvas (a 12 MP phone photo, face ~1100 px). Columns: ``load`` (JPEG decode, EXIF),
``detect`` (HOG detector at the default work budget, incl. downscaling), ``landmarks`` (68 points on
the full-resolution image), ``align256`` / ``align1024`` (FFHQ crop, pSp settings), ``total`` =
detect + landmarks + align256 (target < 150 ms for 1 MP). Also the official compatibility mode
(``detector(img, 1)`` on the full image) for comparison.

    python benchmarks/bench_align.py [--runs 5] [--photo PATH]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from studio.core.align import FFHQ, align_face
from studio.core.errors import StudioError
from studio.core.faces import DEFAULT_DETECT_BUDGET, detect_faces, landmarks_for_box
from studio.core.imageio import load_image

try:
    from . import _cli
except ImportError:  # run as a script (benchmarks/ is sys.path[0]) or imported with benchmarks/ on the path
    import _cli

SHARED = Path(os.environ.get("STYLESTUDIO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_PHOTO = SHARED / "data" / "faces" / "nonaligned_rotated_offset.jpg"


def _median_ms(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), out


def make_photos(src: Path, tmp: Path) -> list[tuple[str, Path]]:
    base = Image.open(src).convert("RGB")
    p1 = tmp / "photo_1mp.jpg"
    base.save(p1, quality=92)
    w, h = 4000, 3000
    scaled = base.resize((4000, round(base.height * 4000 / base.width)), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (w, h), (118, 128, 140))
    canvas.paste(scaled, (0, (h - scaled.height) // 2))
    p12 = tmp / "photo_12mp.jpg"
    canvas.save(p12, quality=92)
    return [("1MP", p1), ("12MP", p12)]


def bench(path: Path, runs: int) -> dict:
    t_load, (img, _info) = _median_ms(lambda: load_image(path), runs)
    h, w = img.shape[:2]
    # warm the lazily loaded models once
    try:
        detect_faces(img)
    except StudioError as e:
        raise SystemExit(f"error: --photo: {' '.join(str(e).split())}; pass --photo with one face") from None
    t_df, faces = _median_ms(lambda: detect_faces(img), runs)
    if not faces:
        raise SystemExit(f"error: --photo: no face found in {path.name} (made from it); pass --photo with one face")
    face = faces[0]
    t_lm, _ = _median_ms(lambda: landmarks_for_box(img, face.box), runs)
    t_a256, _ = _median_ms(lambda: align_face(img, face.landmarks, FFHQ, output_size=256), runs)
    t_a1024, _ = _median_ms(lambda: align_face(img, face.landmarks, FFHQ, output_size=1024), max(1, runs // 2))
    t_off, _ = _median_ms(lambda: detect_faces(img, budget=None, order="dlib"), max(1, min(runs, 2)))
    t_det = max(t_df - t_lm * len(faces), 0.0)
    return dict(size=f"{w}x{h}", mp=w * h / 1e6, faces=len(faces), load=t_load, detect=t_det, landmarks=t_lm,
                align256=t_a256, align1024=t_a1024, total=t_det + t_lm + t_a256, official_detect=t_off)


def build_parser():
    ap = _cli.make_parser(__doc__, __file__)
    ap.add_argument("--runs", type=_cli.int_at_least(1), default=5, help="timed runs per step (the median is shown)")
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO,
                    help="source photo with one face (the 12 MP photo is made from it)")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _cli.check_image(ap, args.photo, "--photo", "pass --photo PATH of a photo with one face")
    import dlib

    print(f"# bench_align: dlib {dlib.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, detect budget {DEFAULT_DETECT_BUDGET / 1e6:.1f} MP, median of {args.runs}")
    cols = ["photo", "size", "MP", "faces", "load", "detect", "landmarks", "align256", "align1024",
            "total(256)", "official detect"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_photos(args.photo, Path(tmp)):
            r = bench(path, args.runs)
            row = [name, r["size"], f"{r['mp']:.1f}", str(r["faces"])] + \
                  [f"{r[k]:.1f} ms" for k in ("load", "detect", "landmarks", "align256", "align1024", "total",
                                              "official_detect")]
            print("| " + " | ".join(row) + " |", flush=True)
    print("total(256) = detect + landmarks + align256; official detect = detector(img, 1) on the full image "
          "+ landmarks, as pSp's get_landmark does.")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
