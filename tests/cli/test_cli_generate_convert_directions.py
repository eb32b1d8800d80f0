"""``generate``, ``convert``, ``directions`` and ``info``: bad options and outputs give one-line errors
(exit 2) before any work and leave nothing behind; a pack converts with its assets; direction files
get the suffix (and the name) that ``edit --directions`` reads back. In-process, tiny random model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from studio.cli import main
from studio.core import directions as dirs
from studio.core.errors import DirectionError
from studio.core.formats import ModelBundle, load_checkpoint, stylestudio_fmt
from studio.core.nets.stylegan2 import Generator
from studio.core.pack import default_pack

W_DIM = 32
NUM_WS = 10  # 64 px


def _generator(seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=W_DIM, w_dim=W_DIM, img_resolution=64, channel_base=512, channel_max=32).eval()
    G.mapping.w_avg.copy_(torch.randn(W_DIM) * 0.1)
    return G


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """(single-file model, pack folder with one listed direction file, the generator)."""
    d = tmp_path_factory.mktemp("gcd")
    G = _generator()
    model = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), d / "tiny.safetensors")
    pack = d / "pack"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), pack)
    dirs.save_interfacegan_npy(dirs.Direction("age", np.random.RandomState(0).randn(W_DIM)), pack / "directions-age.npy")
    man = json.loads((pack / "manifest.json").read_text())
    man["directions"] = {"age": {"file": "directions-age.npy", "name": "age", "method": "interfacegan",
                                 "sha256": hashlib.sha256((pack / "directions-age.npy").read_bytes()).hexdigest()}}
    man["pack"] = {"name": "tiny test pack"}
    (pack / "manifest.json").write_text(json.dumps(man))
    return model, pack, G


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------
# generate


@pytest.mark.parametrize("opts, needle", [
    (["--batch", "0"], "--batch must be at least 1"),
    (["--batch", "-1"], "--batch must be at least 1"),
    (["--seeds", "-5"], "seeds must be in 0-4294967295"),
    (["--seeds", "1,5000000000"], "5000000000 is out of range"),
    (["--psi", "nan"], "--psi must be a finite number"),
    (["--psi", "inf"], "--psi must be a finite number"),
    (["--psi", "1e300"], "--psi must be a finite number within"),
    (["--cutoff", "-3"], f"--cutoff must be in 1-{NUM_WS}"),
    (["--cutoff", "0"], f"--cutoff must be in 1-{NUM_WS}"),
    (["--cutoff", "100"], f"--cutoff must be in 1-{NUM_WS}"),
])
def test_generate_bad_options_fail_before_creating_the_output(tiny, tmp_path, capsys, opts, needle):
    model, _, _ = tiny
    out = tmp_path / "out" / "nested"
    assert main(["generate", str(model), "--seeds", "1", "--out", str(out), *opts]) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "out").exists()


def test_generate_output_that_cannot_be_a_folder(tiny, tmp_path, capsys):
    model, pack, _ = tiny
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["generate", str(model), "--seeds", "1", "--out", str(f)]) == 2
    assert "existing file" in _err(capsys)
    assert main(["generate", str(model), "--seeds", "1", "--out", str(f / "sub")]) == 2
    assert "is a file" in _err(capsys)
    assert f.read_text() == "x"
    before = sorted(p.name for p in pack.iterdir())
    assert main(["generate", str(pack), "--seeds", "1", "--out", str(pack)]) == 2  # into the model pack itself
    assert "input" in _err(capsys)
    assert sorted(p.name for p in pack.iterdir()) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_generate_unwritable_output(tiny, tmp_path, capsys):
    model, _, _ = tiny
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["generate", str(model), "--seeds", "1", "--out", str(ro / "x")]) == 2
        assert "not writable" in _err(capsys)
    finally:
        ro.chmod(0o755)


def test_generate_cutoff_and_strict_json(tiny, tmp_path, capsys):
    model, _, _ = tiny
    out = tmp_path / "g"
    assert main(["generate", str(model), "--seeds", "1-3", "--batch", "2", "--cutoff", str(NUM_WS),
                 "--out", str(out)]) == 0, capsys.readouterr().err

    def no_nan(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    meta = json.loads((out / "generate.json").read_text(), parse_constant=no_nan)
    assert meta["cutoff"] == NUM_WS and meta["seeds"] == [1, 2, 3]
    assert sorted(p.name for p in out.glob("*.png")) == ["grid.png", "seed0001.png", "seed0002.png", "seed0003.png"]


# ----------------------------------------------------------------------------
# convert


def test_convert_pack_to_folder_keeps_its_assets(tiny, tmp_path, capsys):
    _, pack, G = tiny
    out = tmp_path / "copy"
    assert main(["convert", str(pack), str(out)]) == 0, capsys.readouterr().err
    assert (out / "directions-age.npy").read_bytes() == (pack / "directions-age.npy").read_bytes()
    man = json.loads((out / "manifest.json").read_text())
    assert man["pack"] == {"name": "tiny test pack"}
    found = dirs.load_pack_directions(out)            # sha256 checked against the copied manifest
    assert [d.name for d in found] == ["age"]
    b = load_checkpoint(out)
    assert torch.equal(b.generator.mapping.w_avg, G.mapping.w_avg)


def test_convert_pack_to_single_file_says_what_is_left_out(tiny, tmp_path, capsys):
    _, pack, _ = tiny
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(pack), str(out)]) == 0
    err = capsys.readouterr().err
    assert "directions (age)" in err and "not converted" in err and f"--model {pack}" in err
    man = stylestudio_fmt.read_manifest(out)
    assert "directions" not in man and "encoders" not in man   # a single file cannot carry them


@pytest.mark.parametrize("name, needle", [
    ("x.pt", "cannot write .pt"),
    ("x.pkl", "cannot write .pkl"),
    ("x.SAFETENSORS", "lower case"),
])
def test_convert_refuses_output_it_cannot_write(tiny, tmp_path, capsys, name, needle):
    model, _, _ = tiny
    assert main(["convert", str(model), str(tmp_path / name)]) == 2
    msg = _err(capsys)
    assert needle in msg and (".safetensors" in msg)
    assert not (tmp_path / name).exists()


def test_convert_output_is_a_file_or_under_one(tiny, tmp_path, capsys):
    model, pack, _ = tiny
    f = tmp_path / "plain"
    f.write_text("x")
    assert main(["convert", str(model), str(f)]) == 2
    assert "existing file" in _err(capsys)
    assert main(["convert", str(model), str(f / "sub")]) == 2
    assert "is a file" in _err(capsys)
    assert main(["convert", str(model), str(f / "m.safetensors")]) == 2
    assert "is a file" in _err(capsys)
    (tmp_path / "d.safetensors").mkdir()
    assert main(["convert", str(model), str(tmp_path / "d.safetensors")]) == 2
    assert "existing folder" in _err(capsys)
    assert main(["convert", str(pack), str(pack)]) == 2
    assert "input" in _err(capsys)
    assert f.read_text() == "x"


def test_convert_default_pack_to_folder_keeps_encoders(tmp_path, capsys, one_thread):
    pack = default_pack()
    if pack is None:
        pytest.skip("no default model pack")
    out = tmp_path / "pack2"
    assert main(["convert", str(pack), str(out)]) == 0, capsys.readouterr().err
    b = load_checkpoint(out)
    src = stylestudio_fmt.read_manifest(pack)
    assert sorted(b.meta["encoders"]) == sorted(src.get("encoders") or {})
    assert len(dirs.load_pack_directions(b)) == len(src.get("directions") or {})
    for entry in (src.get("students") or {}).values():
        assert (out / entry["file"]).read_bytes() == (pack / entry["file"]).read_bytes()


# ----------------------------------------------------------------------------
# directions


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("ifg")
    rng = np.random.RandomState(0)
    x = rng.randn(200, W_DIM).astype(np.float32)
    np.save(d / "lat.npy", x)
    np.savetxt(d / "lab200.txt", x[:, 0] + 0.1 * rng.randn(200))
    return d


def test_directions_wrong_suffix_refused_before_work(tiny, labelled, tmp_path, capsys):
    model, _, _ = tiny
    assert main(["directions", str(model), "--method", "sefa", "--out", str(tmp_path / "s.npy")]) == 2
    assert "s.npz" in _err(capsys)
    assert main(["directions", str(model), "--method", "ganspace", "--samples", "50",
                 "--out", str(tmp_path / "g.npy")]) == 2
    assert "g.npz" in _err(capsys)
    assert main(["directions", str(model), "--method", "interfacegan", "--latents", str(labelled / "lat.npy"),
                 "--labels", str(labelled / "lab200.txt"), "--out", str(tmp_path / "i.npz")]) == 2
    assert "i.npy" in _err(capsys)
    assert list(tmp_path.iterdir()) == []


def test_directions_sefa_npz_round_trip(tiny, tmp_path, capsys):
    model, _, _ = tiny
    out = tmp_path / "s.npz"
    assert main(["directions", str(model), "--method", "sefa", "--k", "3", "--out", str(out)]) == 0
    assert [d.name for d in dirs.load_directions(out, w_dim=W_DIM, num_ws=NUM_WS)] == ["sefa0", "sefa1", "sefa2"]


@pytest.mark.parametrize("opts, needle", [
    (["--method", "ganspace", "--k", "30", "--samples", "5"], "needs at least 31 --samples"),
    (["--method", "ganspace", "--k", "40", "--samples", "100"], f"dimensions ({W_DIM})"),
    (["--method", "sefa", "--k", "40"], f"dimensions ({W_DIM})"),
])
def test_directions_k_beyond_what_is_available(tiny, tmp_path, capsys, opts, needle):
    model, _, _ = tiny
    assert main(["directions", str(model), *opts, "--out", str(tmp_path / "d.npz")]) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "d.npz").exists()


def test_directions_ratio(tiny, labelled, tmp_path, capsys):
    model, _, _ = tiny
    base = ["directions", str(model), "--method", "interfacegan", "--latents", str(labelled / "lat.npy"),
            "--labels", str(labelled / "lab200.txt"), "--out", str(tmp_path / "i.npy")]
    assert main([*base, "--ratio", "nan"]) == 2
    assert "--ratio must be a positive number" in _err(capsys)
    assert main([*base, "--ratio", "-0.1"]) == 2
    assert "--ratio" in _err(capsys)
    assert main([*base, "--ratio", "0.9"]) == 2
    msg = _err(capsys)
    assert "smaller ratio" in msg and "larger ratio" not in msg
    assert main([*base, "--ratio", "0.001"]) == 2
    assert "larger ratio" in _err(capsys)
    assert not (tmp_path / "i.npy").exists()


def test_interfacegan_ratio_message_core():
    x = np.random.RandomState(1).randn(40, 4)
    y = np.linspace(0, 1, 40)
    with pytest.raises(DirectionError, match="smaller ratio"):
        dirs.interfacegan(x, y, ratio=0.8)
    with pytest.raises(DirectionError, match="larger ratio"):
        dirs.interfacegan(x, y, ratio=0.01)


def test_directions_interfacegan_name_matches_what_edit_loads(tiny, labelled, tmp_path, capsys, monkeypatch):
    model, _, _ = tiny
    monkeypatch.chdir(tmp_path)
    base = ["directions", str(model), "--method", "interfacegan", "--latents", str(labelled / "lat.npy"),
            "--labels", str(labelled / "lab200.txt"), "--ratio", "0.3"]
    # default: named after the labels, written as NAME_w_boundary.npy, which loads under NAME
    assert main(base) == 0
    out = capsys.readouterr()
    assert out.out.startswith("lab200:") and out.err == ""
    assert dirs.load_directions(tmp_path / "lab200_w_boundary.npy", w_dim=W_DIM)[0].name == "lab200"
    # --out without --name: the file's name is the direction's name
    assert main([*base, "--out", "smile.npy"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("smile:") and out.err == ""
    # --name that the file name cannot carry: say what edit will call it
    assert main([*base, "--name", "lab200", "--out", "i.npy"]) == 0
    err = capsys.readouterr().err
    assert "'i'" in err and "lab200_w_boundary.npy" in err
    assert dirs.load_directions(tmp_path / "i.npy", w_dim=W_DIM)[0].name == "i"


# ----------------------------------------------------------------------------
# info


def test_info_on_a_file_inside_a_pack_points_at_the_pack(tiny, capsys):
    _, pack, _ = tiny
    assert main(["info", str(pack / "generator.safetensors")]) == 2
    msg = _err(capsys)
    assert f"pack folder {pack}" in msg and "stylestudio convert" not in msg
    assert main(["info", str(pack / "directions-age.npy")]) == 2
    assert f"pack folder {pack}" in _err(capsys)


def test_info_on_default_pack_generator_file(capsys):
    pack = default_pack()
    if pack is None or not (pack / "generator.safetensors").is_file():
        pytest.skip("no default model pack")
    assert main(["info", str(pack / "generator.safetensors")]) == 2
    msg = _err(capsys)
    assert str(pack) in msg and "stylestudio convert" not in msg


def test_info_on_a_loose_raw_safetensors_still_suggests_convert(tiny, tmp_path, capsys):
    _, pack, _ = tiny
    shutil.copy(pack / "generator.safetensors", tmp_path / "g.safetensors")
    assert main(["info", str(tmp_path / "g.safetensors")]) == 2
    assert "stylestudio convert" in _err(capsys)


def test_generate_writes_each_seed_once(tmp_path, capsys):
    from studio.cli import main

    out = tmp_path / "g"
    assert main(["generate", "--seeds", "1,1,2", "--device", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("seed*.png")) == ["seed0001.png", "seed0002.png"]
    assert "2 image" in capsys.readouterr().out
