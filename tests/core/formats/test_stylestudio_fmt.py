"""Our own format: safetensors + JSON manifest, single file and directory, strict checks."""

from __future__ import annotations

import json

import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.formats import load_checkpoint, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.stylegan2 import Discriminator, Generator


def _bundle():
    torch.manual_seed(3)
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=32, conv_clamp=256)
    G.mapping.w_avg.normal_()
    D = Discriminator(img_resolution=16, channel_base=256, channel_max=32)
    return ModelBundle(format="rosinality", path="/x/source.pt", generator=G.eval(), discriminator=D.eval(),
                       meta={"licence": "test licence"}, notes=["a note"])


@pytest.mark.parametrize("name", ["model.safetensors", "pack"])
def test_round_trip_bit_exact(tmp_path, name):
    b = _bundle()
    out = stylestudio_fmt.save(b, tmp_path / name)
    b2 = load_checkpoint(out)
    assert b2.format == "stylestudio"
    for net, net2 in ((b.generator, b2.generator), (b.discriminator, b2.discriminator)):
        s1, s2 = net.state_dict(), net2.state_dict()
        assert s1.keys() == s2.keys()
        for k in s1:
            assert torch.equal(s1[k], s2[k]), k
        assert net.config == net2.config
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(b.generator(z), b2.generator(z))
    man = stylestudio_fmt.read_manifest(out)
    assert man["num_ws"] == 6 and man["resolution"] == 16
    assert man["layer_groups"] == {"coarse": [0, 4], "medium": [4, 6], "fine": [6, 6]}
    assert man["licence"] == "test licence"
    assert man["provenance"]["source_format"] == "rosinality"
    assert man["w_avg"] == pytest.approx(b.generator.w_avg.tolist())


def test_directory_hash_mismatch_and_tampering(tmp_path):
    out = stylestudio_fmt.save(_bundle(), tmp_path / "pack")
    f = out / "generator.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(out)


def test_manifest_cannot_name_arbitrary_classes(tmp_path):
    out = stylestudio_fmt.save(_bundle(), tmp_path / "pack")
    man = json.loads((out / "manifest.json").read_text())
    man["networks"]["generator"]["class"] = "os:system"
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="cannot build"):
        load_checkpoint(out)


def test_manifest_config_must_match_tensors(tmp_path):
    out = stylestudio_fmt.save(_bundle(), tmp_path / "pack")
    man = json.loads((out / "manifest.json").read_text())
    man["networks"]["generator"]["config"]["channel_max"] = 64
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(out)


def test_newer_format_version_is_refused(tmp_path):
    out = stylestudio_fmt.save(_bundle(), tmp_path / "pack")
    man = json.loads((out / "manifest.json").read_text())
    man["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(out / "manifest.json")


def test_plain_safetensors_without_manifest(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_files_are_written_with_normal_permissions(tmp_path):
    out = stylestudio_fmt.save(_bundle(), tmp_path / "m.safetensors")
    assert out.stat().st_mode & 0o044  # readable by others (not mkstemp's 0600)
    assert not list(tmp_path.glob(".*.tmp"))
