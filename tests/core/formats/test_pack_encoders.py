"""A model pack's several encoders (``manifest['encoders']``): saved encoder-only, loaded with the pack's
generator as decoder, sha256-checked, and offered to the Inverter registry."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.formats import ModelBundle, load_checkpoint, stylestudio_fmt
from studio.core.inversion import bundle_encoders, make_inverter
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.light import light_encoder
from studio.core.nets.stylegan2 import Generator


@pytest.fixture
def pack(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    root = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), tmp_path / "pack", half=True)
    man = json.loads((root / "manifest.json").read_text())
    la = G.mapping.w_avg.unsqueeze(0).repeat(G.num_ws, 1)
    pipes = {}
    for kind in ("e2style", "crg"):
        enc = light_encoder(kind, num_ws=G.num_ws, w_dim=32, input_size=32, width=8)
        pipes[kind] = EncoderPipeline(enc, G, la, kind=kind, out_size=32).eval()
        f = stylestudio_fmt.save_encoder(pipes[kind], root / f"encoder-{kind}.safetensors")
        man.setdefault("encoders", {})[kind] = {"file": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    (root / "manifest.json").write_text(json.dumps(man))
    return root, G, pipes


def test_pack_encoders_load_and_invert(pack):
    root, G, pipes = pack
    b = load_checkpoint(root)
    encs = bundle_encoders(b)
    assert sorted(encs) == ["crg", "e2style"]
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for kind, pipe in encs.items():
        assert pipe.decoder is b.generator and pipe.config.kind == kind
        with torch.no_grad():  # float16 storage: close to the original encoder
            assert torch.allclose(pipe.encode(x), pipes[kind].encode(x), atol=2e-2)
        res = make_inverter(kind, b.generator, encs).invert(np.zeros((32, 32, 3), np.uint8))
        assert res.latent_wplus.shape == (G.num_ws, 32)


def test_tampered_or_missing_encoder_file_is_refused(pack):
    root, _, _ = pack
    f = root / "encoder-crg.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(root)
    f.unlink()
    with pytest.raises(CheckpointError, match="crg encoder file is missing"):
        load_checkpoint(root)
