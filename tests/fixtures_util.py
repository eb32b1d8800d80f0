"""Helpers for the golden fixtures in ``$STYLESTUDIO_FIXTURES`` (see its README)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from tests.conftest import FIXTURES


def detweights():
    """The fixture root's ``detweights`` module (numpy only; rebuilds deterministic weights)."""
    path = FIXTURES / "detweights.py"
    spec = importlib.util.spec_from_file_location("detweights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fixture_seed(d: Path) -> int:
    for name in ("meta.json", "checkpoint_layout.json", "state_digest.json"):
        p = d / name
        if p.exists():
            meta = json.loads(p.read_text())
            if "seed" in meta:
                return int(meta["seed"])
    raise AssertionError(f"no seed in {d}")


def make_state_checked(d: Path, listing: str, seed: int) -> dict[str, np.ndarray]:
    """make_state + the digest check the README asks for (a mismatch means other weights, not a bug)."""
    dw = detweights()
    state = dw.make_state(str(d / listing), seed)
    digests = json.loads((d / "state_digest.json").read_text())["digests"]
    key = f"{listing}@seed{seed}"
    if key in digests:
        assert dw.state_digest(state) == digests[key], f"regenerated weights differ from {key}"
    return state


def to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    # (np.ascontiguousarray would turn 0-d arrays into shape [1])
    return {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in state.items()}
