"""``stylestudio convert IN OUT``: any supported checkpoint -> StyleStudio format."""

from __future__ import annotations

import sys
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.formats import load_checkpoint
from studio.core.formats import stylestudio_fmt

SINGLE_FILE_SUFFIX = ".safetensors"
#: manifest sections of a model pack whose files sit beside the manifest (copied when converting to a folder)
PACK_SECTIONS = ("encoders", "directions", "students")


def register(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a checkpoint to StyleStudio's safetensors format",
        description="Read any supported model file (format detected from content) and write it as "
                    "safetensors + JSON manifest: OUT ending in .safetensors = one file, else a directory "
                    "(a model pack converted to a directory keeps its encoders, directions and students; "
                    "a single file holds the networks only).")
    p.add_argument("input", help="NVIDIA .pkl, rosinality / pSp / e4e / E2Style .pt, or a StyleStudio model")
    p.add_argument("output", help="OUT.safetensors (single file) or a directory (a name without a suffix)")
    p.add_argument("--no-discriminator", action="store_true", help="leave the discriminator out (smaller)")
    p.add_argument("--licence", default=None, help="licence text to record in the manifest")
    p.set_defaults(func=run)


def _check_output(out: Path) -> bool:
    """Whether ``out`` is a single file (else a folder); refuses what convert cannot write."""
    from studio.cli.common import check_output

    suffix = out.suffix
    if suffix.lower() == SINGLE_FILE_SUFFIX and suffix != SINGLE_FILE_SUFFIX:
        raise StudioError(f"{out}: write the suffix in lower case ({out.with_suffix(SINGLE_FILE_SUFFIX).name})")
    single = suffix == SINGLE_FILE_SUFFIX and not out.is_dir()
    if not single and suffix and not out.is_dir():
        raise StudioError(f"{out}: convert cannot write {suffix} files; it writes StyleStudio's format only: "
                          f"OUT{SINGLE_FILE_SUFFIX} (one file) or a folder (a name without a suffix, or an "
                          f"existing folder)")
    if out.suffix == SINGLE_FILE_SUFFIX and out.is_dir():
        raise StudioError(f"{out} is an existing folder; give a new .safetensors file name, or a folder name "
                          f"without a suffix")
    check_output(out, folder=not single, flag="output")
    return single


def _pack_root(bundle) -> Path | None:
    """The folder of a model pack the bundle was loaded from (a folder or its manifest.json), else None."""
    if not bundle.path:
        return None
    p = Path(bundle.path)
    if p.is_dir():
        return p
    if p.suffix == ".json" or p.name == stylestudio_fmt.MANIFEST:
        return p.parent
    return None


def _entries(section) -> list[dict]:
    if isinstance(section, dict):
        return [e for e in section.values() if isinstance(e, dict)]
    if isinstance(section, list):
        return [e for e in section if isinstance(e, dict)]
    return []


def _section_names(section) -> list[str]:
    if isinstance(section, dict):
        return [str(k) for k in section]
    return [str(e.get("name", i)) if isinstance(e, dict) else str(i) for i, e in enumerate(_entries(section))]


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names) if len(names) <= n + 1 else f"{', '.join(names[:n])} and {len(names) - n} more"


def pack_assets(bundle) -> tuple[Path | None, dict, list[str]]:
    """(pack folder, manifest sections to carry, file names they list) of a bundle loaded from a pack."""
    root = _pack_root(bundle)
    man = bundle.meta.get("manifest") or {}
    if root is None or bundle.format != "stylestudio" or not isinstance(man, dict):
        return None, {}, []
    sections = {k: man[k] for k in PACK_SECTIONS if man.get(k)}
    files: list[str] = []
    for key, section in sections.items():
        for e in _entries(section):
            fname = e.get("file")
            if (not isinstance(fname, str) or not fname or "/" in fname or "\\" in fname
                    or fname.startswith(".")):
                raise StudioError(f"{root}: manifest['{key}'] lists a bad file name {fname!r}")
            if fname not in files:
                files.append(fname)
    return root, sections, files


def run(args) -> int:
    from studio.cli.common import check_not_input
    from studio.core.fileio import atomic_write_bytes

    out = Path(args.output)
    single = _check_output(out)
    check_not_input(out, args.input, flag="output")
    bundle = load_checkpoint(args.input)
    if args.no_discriminator:
        bundle.discriminator = None
    if args.licence:
        bundle.meta["licence"] = args.licence
    root, sections, files = pack_assets(bundle)
    if root is not None and not single:
        if out.resolve() == root.resolve():
            raise StudioError(f"output {out} is the input pack folder; choose another folder")
        extra = dict(sections)
        man = bundle.meta.get("manifest") or {}
        if isinstance(man.get("pack"), dict):
            extra["pack"] = man["pack"]
        out.mkdir(parents=True, exist_ok=True)
        for fname in files:
            try:
                data = (root / fname).read_bytes()
            except OSError as e:
                raise StudioError(f"{root / fname}: a file the pack's manifest lists is missing or unreadable "
                                  f"({e.strerror or e})") from None
            atomic_write_bytes(out / fname, data)
        written = stylestudio_fmt.save(bundle, out, extra_manifest=extra or None)
    else:
        written = stylestudio_fmt.save(bundle, out)
    for note in bundle.notes:
        print(f"note: {note}")
    if root is not None and single and sections:
        left = "; ".join(f"{k} ({_short(_section_names(v))})" for k, v in sections.items())
        print(f"note: {written} holds the networks only; the pack's {left} were not converted. "
              f"Use the pack folder itself (--model {root}), or convert it to a folder to keep them",
              file=sys.stderr)
    copied = root is not None and not single and files
    extra_msg = f", with the pack's {len(files)} encoder/direction/student files" if copied else ""
    print(f"wrote {written} ({bundle.format} -> {stylestudio_fmt.FORMAT_NAME}{extra_msg})")
    return 0
