"""Checks for the kill tests of every trainer: after SIGKILL, every file in the run directory loads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np


def assert_run_dir_intact(run: Path) -> Counter:
    """Open every file of ``run`` the way its readers do and fail on a truncated or corrupt one:
    safetensors (every tensor read), ``.pt`` (weights-only unpickler), JSON, ``metrics.jsonl`` (every
    line but a torn last one), images, NumPy files, logs. Temp files of an atomic write cut short
    (``.<name>.<random>.tmp``, never read) and TensorBoard's append-only ``tb/`` are skipped. Returns
    the count of files checked per kind; an unknown kind of file fails (teach this function about it)."""
    from PIL import Image
    from safetensors import safe_open

    from studio.core.formats import safe_torch_load

    kinds: Counter = Counter()
    for f in sorted(run.rglob("*")):
        rel = f.relative_to(run)
        if not f.is_file() or rel.parts[0] == "tb" or (f.name.startswith(".") and f.name.endswith(".tmp")):
            continue
        suffix = f.suffix.lower()
        try:
            if suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as st:
                    for k in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                        st.get_tensor(k)
                    json.loads((st.metadata() or {}).get("stylestudio", "{}") or "{}")
            elif suffix == ".pt":
                safe_torch_load(f)
            elif suffix == ".json":
                json.loads(f.read_text(encoding="utf-8"))
            elif suffix == ".jsonl":
                data = f.read_bytes()
                lines = data.split(b"\n")
                if not data.endswith(b"\n"):
                    lines = lines[:-1]  # a torn last line (the kill hit mid-write): readers skip it
                for line in lines:
                    if line.strip():
                        assert isinstance(json.loads(line), dict), line
            elif suffix in (".png", ".jpg", ".jpeg"):
                with Image.open(f) as im:
                    im.load()
            elif suffix in (".npy", ".npz"):
                np.load(f, allow_pickle=False)
            elif suffix in (".txt", ".log"):
                f.read_bytes().decode("utf-8")
            else:
                raise AssertionError(f"unknown kind of file {rel}: add a check for it")
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read is corruption
            raise AssertionError(f"{rel} is corrupt after the kill: {type(e).__name__}: {e}") from None
        kinds[suffix] += 1
    assert kinds[".json"] >= 1 and kinds[".pt"] >= 1 and kinds[".jsonl"] == 1, dict(kinds)
    return kinds
