"""The core CLI commands: info, convert, generate (run in-process through ``studio.cli.main``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.core.formats import load_checkpoint
from tests.conftest import fixture_dir


@pytest.fixture(scope="module")
def nv_pkl():
    return fixture_dir("nvidia_stylegan2_ada_small") / "network-snapshot-000000.pkl"


@pytest.mark.fixtures
def test_info_json(nv_pkl, capsys):
    assert main(["info", str(nv_pkl), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "nvidia-pkl" and d["resolution"] == 64 and d["num_ws"] == 10
    assert d["parameters"]["generator"] == sum(p.numel() for p in load_checkpoint(nv_pkl).generator.parameters())


@pytest.mark.fixtures
def test_convert_then_generate_matches_source(nv_pkl, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(nv_pkl), str(out)]) == 0
    assert main(["info", str(out)]) == 0
    assert "stylestudio" in capsys.readouterr().out
    gen_a, gen_b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", str(nv_pkl), "--seeds", "1-3,7", "--psi", "0.7", "--out", str(gen_a), "--save-latents"]) == 0
    assert main(["generate", str(out), "--seeds", "1-3,7", "--psi", "0.7", "--out", str(gen_b)]) == 0
    for s in (1, 2, 3, 7):
        a = np.asarray(Image.open(gen_a / f"seed{s:04d}.png"))
        b = np.asarray(Image.open(gen_b / f"seed{s:04d}.png"))
        # the same network in another container: equal up to float summation order (thread count)
        d = np.abs(a.astype(int) - b.astype(int))
        assert a.shape == (64, 64, 3) and d.max() <= 1 and (d > 0).mean() < 0.01
    grid = np.asarray(Image.open(gen_a / "grid.png"))
    assert grid.shape == (128, 128, 3)
    # the latent written for seed 1 reproduces the image
    G = load_checkpoint(out).generator
    ws = torch.from_numpy(np.load(gen_a / "seed0001.npy"))[None]
    with torch.no_grad():
        img = ((G.synthesis(ws).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    d = np.abs(img.astype(int) - np.asarray(Image.open(gen_a / "seed0001.png")).astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 0.01


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pt" in err and "Traceback" not in err
    assert main(["generate", str(bad), "--seeds", "x-y"]) == 2


@pytest.mark.parametrize("trainer,flag", [("encoder", "--abort"), ("crg", "--space"), ("gan", "--resume")])
def test_train_dispatches_to_each_trainer(trainer, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", trainer, "--help"])
    assert e.value.code == 0 and flag in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["e2style", "crg"])
def test_info_names_the_kind_of_an_encoder_file(kind, tmp_path, capsys):
    """An encoder trainer's output (encoder + its generator in one file) shows its kind, not the format."""
    from studio.core.formats import ModelBundle, stylestudio_fmt
    from studio.core.nets.encoding import EncoderPipeline
    from studio.core.nets.light import light_encoder
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    la = G.mapping.w_avg.unsqueeze(0).repeat(G.num_ws, 1)
    pipe = EncoderPipeline(light_encoder(kind, num_ws=G.num_ws, w_dim=32, input_size=32, width=8), G, la,
                           kind=kind, out_size=32).eval()
    f = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, encoder=pipe, latent_avg=la),
                             tmp_path / "best.safetensors")
    assert main(["info", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoder"] == kind
