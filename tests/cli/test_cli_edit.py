"""``stylestudio edit`` and ``stylestudio directions`` (in-process, tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.cli.common import read_npy
from studio.core import directions as dirs
from studio.core.errors import StudioError
from studio.core.formats import ModelBundle, load_checkpoint, stylestudio_fmt
from studio.core.nets.stylegan2 import Generator
from studio.engine import EditSession
from tests.conftest import DATA


def _model(path, seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=32, w_dim=32, img_resolution=64, channel_base=512, channel_max=32).eval()
    G.mapping.w_avg.copy_(torch.randn(32) * 0.1)
    return stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edit")
    model = _model(d / "tiny.safetensors")
    G = load_checkpoint(model).generator
    with torch.no_grad():
        ws = G.map(G.sample_z(2, seed=5))
    np.save(d / "src.npy", ws[0].numpy())            # W+ [num_ws, w_dim]
    np.save(d / "ref.npy", ws[1, 0].numpy())         # W [w_dim]
    v = np.random.RandomState(0).randn(32)
    dirs.save_interfacegan_npy(dirs.Direction("age", v), d / "age_w_boundary.npy")
    return d, model, G


def _img(path):
    return np.asarray(Image.open(path))


def _expected(G, model, build):
    s = EditSession.for_generator(G, torch.from_numpy(np.load(build["src"])))
    build["fn"](s)
    with torch.no_grad():
        img = G.synthesis(s.ws()[None], noise_mode="const")
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy(), s


def test_edit_latent_with_direction_and_mix(files, tmp_path, capsys):
    d, model, G = files
    out = tmp_path / "x.png"
    rc = main(["edit", str(d / "src.npy"), "--model", str(model), "--directions", str(d / "age_w_boundary.npy"),
               "--direction", "age=+2@fine", "--direction", "sefa1=-1.5", "--mix", f"{d / 'ref.npy'}:coarse=1,medium=0.5",
               "--out", str(out), "--save-project", str(tmp_path / "p.stylestudio"),
               "--save-latent", str(tmp_path / "edited.npy")])
    assert rc == 0, capsys.readouterr().err
    img = _img(out)
    assert img.shape == (64, 64, 3)

    def build(s):
        age = dirs.load_interfacegan_npy(d / "age_w_boundary.npy", w_dim=32).with_layers((8, 10))
        s.add_direction(age, 2.0)
        s.add_direction(dirs.sefa(G, k=10)[1], -1.5)
        s.set_reference(np.load(d / "ref.npy"))
        s.set_mix_strength("coarse", 1.0)
        s.set_mix_strength("medium", 0.5)

    expect, s = _expected(G, model, {"src": d / "src.npy", "fn": build})
    assert np.array_equal(img, expect)
    assert np.array_equal(np.load(tmp_path / "edited.npy"), s.ws().numpy())
    # reopening the project (model path recorded) renders the same image
    out2 = tmp_path / "y.png"
    assert main(["edit", str(tmp_path / "p.stylestudio"), "--out", str(out2)]) == 0
    assert np.array_equal(_img(out2), img)
    # ... and keeps editing: change an amount and add per-row mixing
    assert main(["edit", str(tmp_path / "p.stylestudio"), "--direction", "age=0", "--mix",
                 f"{d / 'ref.npy'}:8-9=1", "--psi", "0.7", "--out", str(tmp_path / "z.png")]) == 0


def test_edit_errors_are_clear(files, tmp_path, capsys):
    d, model, G = files
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "face.png")
    assert main(["edit", str(tmp_path / "face.png"), "--model", str(model)]) == 2
    assert "faces need at least 16 px" in capsys.readouterr().err
    np.save(tmp_path / "big.npy", np.ones((1, 512), np.float32))
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--direction", f"{tmp_path / 'big.npy'}=1",
                 "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "w_dim=32" in err and "512 values" in err and err.count("\n") == 1
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--direction", "nose=1"]) == 2
    assert "unknown direction 'nose'" in capsys.readouterr().err
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--mix", f"{d / 'ref.npy'}:coarse=2"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", np.ones((3, 32), np.float32))
    assert main(["edit", str(tmp_path / "short.npy"), "--model", str(model)]) == 2
    assert "[10, 32]" in capsys.readouterr().err
    # a project made with another model
    other = _model(tmp_path / "other.safetensors", seed=1)
    s = EditSession.for_generator(G, torch.from_numpy(np.load(d / "src.npy")), path=str(model))
    p = s.save(tmp_path / "p.stylestudio")
    assert main(["edit", str(p), "--model", str(other), "--out", str(tmp_path / "o.png")]) == 2
    assert "another model" in capsys.readouterr().err


def test_edit_uses_the_packs_own_directions(tmp_path, capsys):
    """The default pack's named directions work by name (and manifest key) without --directions;
    the result equals the session applying the same direction; a damaged direction file leaves
    sefa<K> working and says what is wrong only when a pack name is asked for."""
    import json
    import shutil

    from studio.core.directions import load_pack_directions
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is None or not json.loads((pack / "manifest.json").read_text()).get("directions"):
        pytest.skip("no default pack with directions")
    bundle = load_checkpoint(pack)
    G = bundle.generator.eval()
    with torch.no_grad():
        ws = G.map(G.sample_z(1, seed=3))[0]
    np.save(tmp_path / "w.npy", ws.numpy())
    age = next(d for d in load_pack_directions(bundle) if d.name == "age")
    assert main(["edit", str(tmp_path / "w.npy"), "--direction", "age=3", "--out", str(tmp_path / "a.png")]) == 0
    s = EditSession.for_generator(G, ws, path=str(pack))
    s.add_direction(age, 3.0)
    with torch.inference_mode():
        s.export_image(G, tmp_path / "ref.png", noise_mode="const")
    assert np.abs(_img(tmp_path / "a.png").astype(int) - _img(tmp_path / "ref.png")).max() <= 1
    assert main(["edit", str(tmp_path / "w.npy"), "--out", str(tmp_path / "0.png")]) == 0
    assert np.abs(_img(tmp_path / "a.png").astype(int) - _img(tmp_path / "0.png")).mean() > 2  # it edits
    # the manifest key works too ("mouth_open" names "mouth open")
    assert main(["edit", str(tmp_path / "w.npy"), "--direction", "mouth_open=2", "--out", str(tmp_path / "m.png")]) == 0
    assert main(["edit", str(tmp_path / "w.npy"), "--direction", "nose=1"]) == 2
    assert "age, gender" in capsys.readouterr().err  # the error lists what the pack has
    # a pack whose direction files are damaged: a warning, and the generator's own components still work
    bad = tmp_path / "pack"
    shutil.copytree(pack, bad)
    man = json.loads((bad / "manifest.json").read_text())
    f = bad / man["directions"]["age"]["file"]
    f.write_bytes(f.read_bytes()[:-7])
    assert main(["edit", str(tmp_path / "w.npy"), "--model", str(bad), "--direction", "sefa0=1",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert main(["edit", str(tmp_path / "w.npy"), "--model", str(bad), "--direction", "age=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown direction 'age'" in err and "could not be loaded" in err


def test_directions_command(files, tmp_path, capsys):
    d, model, G = files
    out = tmp_path / "sefa.npz"
    assert main(["directions", str(model), "--method", "sefa", "--k", "4", "--layers", "coarse", "--out", str(out)]) == 0
    got = dirs.load_ganspace_npz(out, w_dim=32, num_ws=G.num_ws)
    ref = dirs.sefa(G, layers=(0, 4), k=4)
    assert [x.name for x in got] == ["sefa0", "sefa1", "sefa2", "sefa3"] and all(x.layers == (0, 4) for x in got)
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(got, ref))
    assert "eigenvalue" in capsys.readouterr().out

    out = tmp_path / "gs.npz"
    assert main(["directions", str(model), "--method", "ganspace", "--k", "3", "--samples", "300", "--out", str(out)]) == 0
    assert len(dirs.load_ganspace_npz(out, w_dim=32)) == 3
    # the written components are usable by edit
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--directions", str(out), "--direction", "pc0=1",
                 "--out", str(tmp_path / "pc.png")]) == 0

    rng = np.random.RandomState(0)
    x = rng.randn(400, 32).astype(np.float32)
    planted = rng.randn(32)
    np.save(tmp_path / "lat.npy", x)
    np.savetxt(tmp_path / "smile.csv", (x @ planted > 0).astype(int), fmt="%d")
    capsys.readouterr()
    assert main(["directions", str(model), "--method", "interfacegan", "--latents", str(tmp_path / "lat.npy"),
                 "--labels", str(tmp_path / "smile.csv"), "--out", str(tmp_path / "smile_w_boundary.npy")]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    b = dirs.load_interfacegan_npy(tmp_path / "smile_w_boundary.npy", w_dim=32)
    assert b.name == "smile" and float(b.vector @ planted / np.linalg.norm(planted)) > 0.9
    assert main(["directions", str(model), "--method", "interfacegan"]) == 2
    assert "--latents" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# QA fixes: outputs never overwrite inputs or half-write, bad latents and conflicting flags are one-line errors


def _err(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("stylestudio edit: error:") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_edit_refuses_outputs_that_are_inputs(files, tmp_path, capsys):
    d, model, G = files
    import shutil

    photo = tmp_path / "me.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(photo)
    src, ref = tmp_path / "src.npy", tmp_path / "ref.npy"
    shutil.copy(d / "src.npy", src)
    shutil.copy(d / "ref.npy", ref)
    before = {p: p.read_bytes() for p in (photo, src, ref, d / "age_w_boundary.npy")}
    m = ["--model", str(model)]
    # the photo itself as --out (it became the 64-px edit)
    assert main(["edit", str(photo), *m, "--direction", "sefa0=1", "--out", str(photo)]) == 2
    _err(capsys, "--out", "is an input file")
    assert main(["edit", str(src), *m, "--out", str(tmp_path / "o.png"), "--save-latent", str(src)]) == 2
    _err(capsys, "--save-latent", "is an input file")
    assert main(["edit", str(src), *m, "--mix", f"{ref}:coarse=1", "--out", str(tmp_path / "o.png"),
                 "--save-latent", str(tmp_path / "." / "ref.npy")]) == 2
    _err(capsys, "--save-latent", "is an input file")
    assert main(["edit", str(src), *m, "--directions", str(d / "age_w_boundary.npy"), "--direction", "age=1",
                 "--out", str(tmp_path / "o.png"), "--save-latent", str(d / "age_w_boundary.npy")]) == 2
    _err(capsys, "is an input file")
    # a project input may be updated in place by --save-project (atomic), but --out may not be it
    proj = EditSession.for_generator(G, torch.from_numpy(np.load(src)), path=str(model)).save(tmp_path / "p.stylestudio")
    pbytes = proj.read_bytes()
    assert main(["edit", str(proj), "--out", str(proj)]) == 2
    _err(capsys, "--out", "is an input file")
    # two outputs with the same name
    assert main(["edit", str(src), *m, "--out", str(tmp_path / "o.png"), "--save-latent", str(tmp_path / "o.png")]) == 2
    _err(capsys, "name the same file")
    assert {p: p.read_bytes() for p in before} == before and proj.read_bytes() == pbytes
    assert not (tmp_path / "o.png").exists()
    assert main(["edit", str(proj), "--direction", "sefa0=1", "--out", str(tmp_path / "o.png"),
                 "--save-project", str(tmp_path / "p")]) == 0       # 'p' + .stylestudio: the project itself
    assert proj.read_bytes() != pbytes and EditSession.load(proj).amount("sefa0") == 1


def test_edit_checks_every_output_before_writing_any(files, tmp_path, capsys):
    import os

    d, model, G = files
    out = tmp_path / "ok.png"
    base = ["edit", str(d / "src.npy"), "--model", str(model), "--out", str(out)]
    assert main([*base, "--save-project", str(tmp_path / "missing" / "p.stylestudio")]) == 2
    _err(capsys, "folder", "does not exist")
    (tmp_path / "afile").write_text("x")
    assert main([*base, "--save-latent", str(tmp_path / "afile" / "x.npy")]) == 2
    _err(capsys, "afile is not a folder")
    (tmp_path / "adir.npy").mkdir()
    assert main([*base, "--save-latent", str(tmp_path / "adir.npy")]) == 2
    _err(capsys, "--save-latent", "is a folder")
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--out", str(tmp_path)]) == 2
    _err(capsys, "--out", "is a folder")
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--out", str(tmp_path / "x.gif")]) == 2
    _err(capsys, "unknown image suffix")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert main([*base, "--save-project", str(ro / "p.stylestudio")]) == 2
            _err(capsys, "not writable")
        finally:
            ro.chmod(0o700)
    assert not out.exists() and not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.npy", "afile"] + (["ro"] if os.geteuid() else [])


def test_edit_refuses_non_finite_latents(files, tmp_path, capsys):
    d, model, G = files
    src = np.load(d / "src.npy")
    for bad in (np.nan, np.inf, -np.inf):
        a = src.copy()
        a[3, 5] = bad
        np.save(tmp_path / "lat_bad.npy", a)
        assert main(["edit", str(tmp_path / "lat_bad.npy"), "--model", str(model),
                     "--out", str(tmp_path / "x.png")]) == 2
        _err(capsys, "lat_bad.npy", "contains NaN or infinite values")
        assert main(["edit", str(d / "src.npy"), "--model", str(model), "--mix", f"{tmp_path / 'lat_bad.npy'}:coarse=1",
                     "--out", str(tmp_path / "x.png")]) == 2
        _err(capsys, "lat_bad.npy", "contains NaN or infinite values")
    # a project whose latent is not finite is refused before anything is rendered
    a = src.copy()
    a[0, 0] = np.nan
    s = EditSession.for_generator(G, torch.from_numpy(src), path=str(model))
    s.state.source[...] = a
    p = s.save(tmp_path / "nan.stylestudio")
    assert main(["edit", str(p), "--out", str(tmp_path / "x.png")]) == 2
    _err(capsys, "contains NaN or infinite values", "nothing was written")
    assert not (tmp_path / "x.png").exists()


def test_edit_invert_flags_need_a_photo(files, tmp_path, capsys):
    d, model, G = files
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--invert-steps", "5",
                 "--out", str(tmp_path / "x.png")]) == 2
    _err(capsys, "--invert-steps only applies when the input is a photo")
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--invert-method", "optimize",
                 "--out", str(tmp_path / "x.png")]) == 2
    _err(capsys, "--invert-method only applies when the input is a photo")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "face.png")
    assert main(["edit", str(tmp_path / "face.png"), "--model", str(model), "--invert-steps", "-1",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = _err(capsys, "--invert-steps must be at least 1")
    assert "--steps" not in err.replace("--invert-steps", "")
    assert not (tmp_path / "x.png").exists()


def test_edit_accepts_every_photo_format(files, tmp_path, capsys):
    """GIF (and the other formats invert / align read) is a photo: it reaches the photo reader (here: too
    small to hold a face), never "unknown input"; an unknown input names photos among what is accepted."""
    d, model, G = files
    small = Image.fromarray(np.full((8, 8, 3), 90, np.uint8))
    for name in ("face.gif", "face.GIF", "face.jfif", "face.ppm"):
        small.save(tmp_path / name, format={"gif": "GIF", "jfif": "JPEG", "ppm": "PPM"}[name.split(".")[1].lower()])
        assert main(["edit", str(tmp_path / name), "--model", str(model), "--out", str(tmp_path / "x.png")]) == 2
        _err(capsys, "faces need at least 16 px")
    small.save(tmp_path / "face.data", format="PNG")  # an image under an unusual name: read by content
    assert main(["edit", str(tmp_path / "face.data"), "--model", str(model)]) == 2
    _err(capsys, "faces need at least 16 px")
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["edit", str(tmp_path / "notes.txt"), "--model", str(model)]) == 2
    _err(capsys, "unknown input", "photo", "latent .npy", ".stylestudio project")
    assert main(["edit", str(tmp_path / "missing.gif"), "--model", str(model)]) == 2
    _err(capsys, "missing.gif: no such file")


@pytest.mark.skipif(not (DATA / "faces" / "celebahq_male_005735.jpg").is_file(), reason="no sample photos")
def test_edit_a_gif_photo_with_the_default_pack(tmp_path, capsys):
    from studio.core.pack import default_pack

    if default_pack() is None:
        pytest.skip("no default pack")
    Image.open(DATA / "faces" / "celebahq_male_005735.jpg").save(tmp_path / "face.gif")
    assert main(["edit", str(tmp_path / "face.gif"), "--direction", "sefa0=1", "--out", str(tmp_path / "g.png")]) == 0
    assert _img(tmp_path / "g.png").ndim == 3


def test_read_npy_never_suggests_unpickling(files, tmp_path, capsys):
    import os

    d, model, G = files
    (tmp_path / "text.npy").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "random.npy").write_bytes(np.random.RandomState(0).bytes(300))
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(tmp_path / "arch.npz", "wb") as f:
        np.savez(f, a=np.ones(3))
    os.replace(tmp_path / "arch.npz", tmp_path / "arch.npy")
    good = (tmp_path / "ok.npy")
    np.save(good, np.ones((2, 3), np.float32))
    (tmp_path / "cut.npy").write_bytes(good.read_bytes()[:-4])
    for name, needle in [("text.npy", "not a .npy latent file"), ("random.npy", "not a .npy latent file"),
                         ("empty.npy", "not a .npy latent file"), ("objects.npy", "never loads"),
                         ("arch.npy", ".npz archive"), ("cut.npy", "truncated")]:
        assert main(["edit", str(tmp_path / name), "--model", str(model), "--out", str(tmp_path / "x.png")]) == 2
        err = _err(capsys, name, needle)
        assert "allow_pickle" not in err and "unsafe" not in err and "trust" not in err
        with pytest.raises(StudioError) as e:
            read_npy(tmp_path / name, "latent")
        assert "allow_pickle" not in str(e.value) and "unsafe" not in str(e.value)
    assert read_npy(good).shape == (2, 3)
    with pytest.raises(StudioError, match="no such file"):
        read_npy(tmp_path / "nope.npy")


def test_edit_sweep_writes_a_strip_or_a_looping_gif(files, tmp_path, capsys):
    """--sweep NAME=FROM:TO:N: frame i is the edit with NAME at the i-th amount (the other edits kept);
    a .gif plays there and back (2N - 2 frames)."""
    d, model, G = files
    src = str(d / "src.npy")
    common = ["--model", str(model), "--direction", f"{d / 'age_w_boundary.npy'}=1"]
    assert main(["edit", src, *common, "--sweep", "sefa0=-2:2:3", "--out", str(tmp_path / "strip.png")]) == 0
    strip = _img(tmp_path / "strip.png")
    R = G.img_resolution
    assert strip.shape == (R, 3 * R, 3)
    for i, a in enumerate((-2, 0, 2)):
        out = tmp_path / f"f{i}.png"
        assert main(["edit", src, *common, "--direction", f"sefa0={a}", "--out", str(out)]) == 0
        assert np.array_equal(strip[:, i * R:(i + 1) * R], _img(out)), i
    assert not np.array_equal(strip[:, :R], strip[:, 2 * R:])
    assert main(["edit", src, *common, "--sweep", "sefa0=-2:2:4", "--frame-ms", "50",
                 "--out", str(tmp_path / "s.gif")]) == 0
    gif = Image.open(tmp_path / "s.gif")
    assert gif.n_frames == 6 and gif.size == (R, R) and gif.info.get("loop") == 0 and gif.info["duration"] == 50
    capsys.readouterr()
    for bad, needle in [(["--sweep", "sefa0=-2:2:1"], "FRAMES must be between 2"),
                        (["--sweep", "sefa0=-2"], "expected NAME=FROM:TO"),
                        (["--sweep", "sefa0=0:1", "--direction", "sefa0=1"], "also given with --direction"),
                        (["--sweep", "sefa0=0:1", "--save-latent", str(tmp_path / "w.npy")], "drop --save-latent"),
                        (["--sweep", "sefa0=0:1", "--frame-ms", "0"], "--frame-ms must be between 10 and"),
                        # (was an OverflowError traceback once every frame was rendered)
                        (["--sweep", "sefa0=0:1", "--frame-ms", "700000"], "--frame-ms must be between 10 and")]:
        assert main(["edit", src, "--model", str(model), *bad, "--out", str(tmp_path / "x.gif")]) == 2
        _err(capsys, needle)
    assert main(["edit", src, "--model", str(model), "--sweep", "sefa0=0:1", "--out", str(tmp_path / "x.mp4")]) == 2
    _err(capsys, "use .gif (an animation)")
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "w.npy").exists()


def _noisy_model(path, resolution=64):
    """A tiny model whose noise inputs matter (a random model's noise strengths are 0)."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=resolution, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        for n, p in G.named_parameters():
            if n.endswith("noise_strength"):
                p.fill_(0.5)
    return stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), path)


def test_edit_sweep_with_random_noise_keeps_the_noise_across_frames(files, tmp_path):
    """--noise-mode random: every frame draws the same noise maps, so frames differ by the direction
    only (a sweep from a value to itself gives equal frames; no flicker in the GIF)."""
    d, _, _ = files
    model = _noisy_model(tmp_path / "noisy.safetensors")
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--noise-mode", "random",
                 "--sweep", "sefa0=1:1:3", "--out", str(tmp_path / "strip.png")]) == 0
    strip = _img(tmp_path / "strip.png")
    assert np.array_equal(strip[:, :64], strip[:, 64:128]) and np.array_equal(strip[:, :64], strip[:, 128:])
    # ... and the noise is random still: a render with const noise differs
    assert main(["edit", str(d / "src.npy"), "--model", str(model), "--direction", "sefa0=1",
                 "--out", str(tmp_path / "const.png")]) == 0
    assert not np.array_equal(strip[:, :64], _img(tmp_path / "const.png"))


def test_edit_sweep_strip_too_wide_for_its_format_is_refused_first(tmp_path, capsys):
    """WebP holds 16383 px, JPEG 65500: a wider strip is one error line before any work (was a
    traceback, or a misleading 'check the folder' error, after every frame was rendered)."""
    from studio.cli.cmd_edit import check_strip_width

    model = _noisy_model(tmp_path / "m128.safetensors", resolution=128)
    np.save(tmp_path / "w.npy", np.zeros((12, 32), np.float32))
    assert main(["edit", str(tmp_path / "w.npy"), "--model", str(model), "--sweep", "sefa0=0:1:130",
                 "--out", str(tmp_path / "s.webp")]) == 2
    _err(capsys, "16640 px wide", ".webp allows (16383)", "at most 127 frames")
    assert not (tmp_path / "s.webp").exists()
    check_strip_width("s.png", 200, 1024)
    check_strip_width("s.jpg", 63, 1024)
    with pytest.raises(StudioError, match="65500"):
        check_strip_width("s.JPG", 64, 1024)
