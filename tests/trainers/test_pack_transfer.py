"""The tools that move pack training to a lent GPU and back: ``pack_data`` (a subset of the training
split plus held-out chips as JPEG mosaics) and ``gpu_session_merge`` (an encoder file returned without
its generator, in parts, joined with the generator of a donor model file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from trainers.data import is_heldout, load_images
from trainers.pack.gpu_session_merge import merge
from trainers.pack.pack_data import pack, unpack


def test_pack_a_subset_with_heldout_chips_and_unpack(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the decode cache
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(120):  # smooth images, so that JPEG keeps them close
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(base).resize((16, 16), Image.BILINEAR).save(src / f"{i % 90}_0_0_{i:04d}.png")
    train = load_images(src, 16, split="train", heldout_fraction=0.05)
    held = load_images(src, 16, split="heldout", heldout_fraction=0.05)
    assert len(held) >= 2 and len(train) > 30

    pack(str(src), 16, str(tmp_path / "d.npz"), quality=95, max_images=30, heldout=2)
    unpack(str(tmp_path / "d.npz"), str(tmp_path / "out"))
    names = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert len(names) == 32
    back_held = [n for n in names if is_heldout(n, 0.05)]
    assert len(back_held) == 2  # the split is by name, so the trainer sees them as held-out again
    # the subset is spread over the name-sorted list (which sorts by age), not a prefix
    train_names = [p.name for p in map(Path, train.names)]
    kept = sorted(train_names.index(n) for n in names if n in train_names)
    assert kept[0] == 0 and kept[-1] == len(train_names) - 1
    # pixels survive the mosaic round trip closely
    orig = {Path(n).name: img for n, img in zip(train.names, np.asarray(train.images))}
    again = load_images(tmp_path / "out" / "images", 16, split="all")
    for n, img in zip(again.names, np.asarray(again.images)):
        name = Path(n).name
        if name in orig:
            assert np.abs(img.astype(int) - orig[name].astype(int)).mean() < 4


def test_merge_an_encoder_returned_in_parts_with_a_donor_generator(tmp_path):
    g = {"generator/synthesis.w": torch.randn(5, 3), "generator/mapping.w": torch.randn(2)}
    e = {"encoder/stages.0.w": torch.randn(4, 4), "extra/latent_avg": torch.randn(3)}
    meta = {"stylestudio": '{"kind": "e2style"}'}
    save_file({**g, "encoder/stages.0.w": torch.zeros(4, 4), "extra/latent_avg": torch.zeros(3)},
              tmp_path / "donor.safetensors", {"stylestudio": "{}"})
    save_file(e, tmp_path / "E.safetensors", meta)
    raw = (tmp_path / "E.safetensors").read_bytes()
    for i in range(0, len(raw), 100):  # as `split -b 100 -d` leaves it
        (tmp_path / f"E.safetensors.part-{i // 100:02d}").write_bytes(raw[i:i + 100])
    (tmp_path / "E.safetensors").unlink()

    merge(str(tmp_path / "E.safetensors"), str(tmp_path / "donor.safetensors"), str(tmp_path / "M.safetensors"))
    out = load_file(tmp_path / "M.safetensors")
    assert set(out) == set(g) | set(e)
    for k, v in {**g, **e}.items():
        assert torch.equal(out[k], v)
    from safetensors import safe_open

    with safe_open(tmp_path / "M.safetensors", "pt") as f:
        assert f.metadata() == meta
