"""``stylestudio invert`` (in-process, tiny random model) and photo input to ``edit``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.core.formats import ModelBundle, load_checkpoint, stylestudio_fmt
from studio.core.nets.stylegan2 import Generator
from tests.conftest import DATA

FACES = DATA / "faces"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("invert")
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32)).mean(0))
        img = G.synthesis(G.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(2))), noise_mode="const")
    path = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), d / "tiny.safetensors")
    face = d / "gen.png"
    Image.fromarray(((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(face)
    return path, face


def test_invert_aligned_face_writes_latent_images_and_metrics(model, tmp_path, capsys):
    path, face = model
    out = tmp_path / "out"
    assert main(["invert", str(face), "--aligned", "--method", "optimize", "--steps", "8", "--model", str(path),
                 "--out", str(out), "--no-identity"]) == 0
    lat = np.load(out / "gen.npy")
    assert lat.shape == (8, 32) and lat.dtype == np.float32 and np.isfinite(lat).all()
    doc = json.loads((out / "gen.json").read_text())
    assert doc["method"] == "optimize" and doc["latent_shape"] == [8, 32]
    assert set(doc["metrics"]) == {"mse", "lpips", "steps"} and doc["metrics"]["steps"] == 8
    assert np.asarray(Image.open(out / "gen_recon.png")).shape == (32, 32, 3)
    assert not (out / "transforms.json").exists()  # nothing to paste back into
    # the latent renders to the reconstruction that was written
    G = load_checkpoint(path).generator
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(lat)[None], noise_mode="const")
    expect = ((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(out / "gen_recon.png")), expect)
    assert "LPIPS" in capsys.readouterr().out


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_invert_photo_aligns_and_records_transform(model, tmp_path):
    path, _ = model
    photo = FACES / "celebahq_male_005735.jpg"
    out = tmp_path / "o"
    assert main(["invert", str(photo), "--method", "optimize", "--steps", "2", "--model", str(path),
                 "--out", str(out), "--no-identity"]) == 0
    doc = json.loads((out / "transforms.json").read_text())
    (item,) = doc["items"]
    assert item["output"] == "celebahq_male_005735_aligned.png" and "quad" in item["transform"]
    assert np.asarray(Image.open(out / "celebahq_male_005735_aligned.png")).shape == (256, 256, 3)  # FFHQ profile
    # ... which `paste` accepts for the reconstruction
    assert main(["paste", str(out / "celebahq_male_005735_recon.png"), str(photo), str(out / "transforms.json"),
                 "--face", "celebahq_male_005735_aligned.png", "--out", str(out / "pasted.png")]) == 0
    assert Image.open(out / "pasted.png").size == Image.open(photo).size


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_invert_errors_are_clear(model, tmp_path, capsys):
    path, face = model
    assert main(["invert", str(FACES / "noface_coffee.png"), "--model", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and "--detect-mp" not in err  # no advice about a flag invert lacks
    assert main(["invert", str(face), "--aligned", "--method", "psp", "--model", str(path), "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot use psp: no psp encoder for this model" in err and "Available here: optimize" in err
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(tmp_path / "wide.png")
    assert main(["invert", str(tmp_path / "wide.png"), "--aligned", "--model", str(path), "--out",
                 str(tmp_path)]) == 2
    assert "square" in capsys.readouterr().err
    assert main(["invert", str(face), "--aligned", "--steps", "0", "--model", str(path), "--out",
                 str(tmp_path)]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_edit_accepts_a_photo_via_inversion(model, tmp_path):
    """`edit PHOTO` inverts first (the photo here has a face dlib finds: a sample photo)."""
    if not FACES.is_dir():
        pytest.skip("shared sample photos not found")
    path, _ = model
    out = tmp_path / "e.png"
    assert main(["edit", str(FACES / "celebahq_female_039913.jpg"), "--model", str(path), "--invert-steps", "3",
                 "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)


def test_edit_pastes_the_edited_face_back_into_the_photo(model, tmp_path, capsys):
    """`edit PHOTO --paste P`: P is the photo with the rendered edit (--out) pasted back through the
    face's alignment; the photo's corners are untouched. --paste needs a photo input."""
    if not FACES.is_dir():
        pytest.skip("shared sample photos not found")
    from studio.core.align import align_face, get_profile
    from studio.core.faces import detect_faces
    from studio.core.imageio import load_image
    from studio.core.paste import paste_back

    path, _ = model
    photo = FACES / "celebahq_female_039913.jpg"
    out, pasted = tmp_path / "e.png", tmp_path / "photo_edit.png"
    assert main(["edit", str(photo), "--model", str(path), "--invert-steps", "3", "--direction", "sefa0=2",
                 "--out", str(out), "--paste", str(pasted), "--paste-mode", "replace"]) == 0
    img = load_image(photo)[0]
    transform = align_face(img, detect_faces(img)[0].landmarks, get_profile(None)).transform
    got = np.asarray(Image.open(pasted))
    assert got.shape == img.shape
    assert np.array_equal(got, paste_back(img, np.asarray(Image.open(out)), transform))
    assert np.array_equal(got[:40, :40], img[:40, :40]) and not np.array_equal(got, img)
    assert "the edit pasted back" in capsys.readouterr().out
    # the default: the change only; with no edit, the photo comes back as it was
    assert main(["edit", str(photo), "--model", str(path), "--invert-steps", "3", "--out", str(out),
                 "--paste", str(pasted)]) == 0
    assert np.array_equal(np.asarray(Image.open(pasted)), img)
    assert main(["edit", str(photo), "--model", str(path), "--invert-steps", "3", "--out", str(out),
                 "--paste-mode", "replace"]) == 2
    assert "--paste-mode only applies with --paste" in capsys.readouterr().err
    np.save(tmp_path / "w.npy", np.zeros((8, 32), np.float32))
    assert main(["edit", str(tmp_path / "w.npy"), "--model", str(path), "--out", str(tmp_path / "x.png"),
                 "--paste", str(tmp_path / "y.png")]) == 2
    assert "--paste only applies when the input is a photo" in capsys.readouterr().err
    assert main(["edit", str(photo), "--model", str(path), "--out", str(out), "--paste", str(out)]) == 2
    assert "name the same file" in capsys.readouterr().err


def test_invert_refuses_an_input_photo_as_out(model, tmp_path, capsys):
    path, face = model
    photo = tmp_path / "me.png"
    photo.write_bytes(face.read_bytes())
    before = photo.read_bytes()
    assert main(["invert", str(photo), "--aligned", "--method", "optimize", "--steps", "1", "--model", str(path),
                 "--out", str(photo), "--no-identity"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and "input file" in err and "\n" not in err
    assert photo.read_bytes() == before


@pytest.mark.parametrize("method", ["crg", "psp", "e4e"])
def test_invert_steps_with_an_encoder_method_is_refused(model, tmp_path, capsys, method):
    path, face = model
    out = tmp_path / "o"
    assert main(["invert", str(face), "--aligned", "--method", method, "--steps", "5", "--model", str(path),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--steps only applies to --method optimize or hybrid" in err and method in err
    assert not out.exists()


def test_invert_steps_with_an_encoder_as_default_method_is_refused(model, tmp_path, capsys):
    """No --method, a model whose default method is an encoder: --steps would be ignored."""
    from studio.cli.cmd_invert import default_method
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is None or default_method(load_checkpoint(pack)) in ("optimize", "hybrid"):
        pytest.skip("no default pack with an encoder")
    _, face = model
    assert main(["invert", str(face), "--aligned", "--steps", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--steps only applies" in err and "--method optimize" in err
    # the tiny model has no encoder: its default is optimize, which takes --steps
    assert default_method(load_checkpoint(model[0])) == "optimize"


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_invert_notes_several_faces(model, tmp_path, capsys):
    path, _ = model
    out = tmp_path / "o"
    assert main(["invert", str(FACES / "two_faces_celebahq.jpg"), "--method", "optimize", "--steps", "1",
                 "--model", str(path), "--out", str(out), "--no-identity"]) == 0
    err = capsys.readouterr().err
    assert "two_faces_celebahq.jpg: 2 faces found; using the most confident" in err
    assert "align --all-faces" in err and "--aligned" in err
    assert (out / "two_faces_celebahq.npy").is_file()


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_edit_paste_with_random_noise_gives_the_photo_back_without_an_edit(tmp_path):
    """--paste-mode change with --noise-mode random: the edit and its unedited base share their noise
    maps, so no edit is the photo bit for bit (was: the two noises' difference pasted into the face)."""
    from studio.core.imageio import load_image

    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        for n, p in G.named_parameters():
            if n.endswith("noise_strength"):
                p.fill_(0.5)  # noise that shows (a random model's strengths are 0)
    path = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), tmp_path / "noisy.safetensors")
    photo = FACES / "celebahq_female_039913.jpg"
    pasted = tmp_path / "p.png"
    assert main(["edit", str(photo), "--model", str(path), "--invert-steps", "2", "--noise-mode", "random",
                 "--out", str(tmp_path / "e.png"), "--paste", str(pasted)]) == 0
    assert np.array_equal(np.asarray(Image.open(pasted)), load_image(photo)[0])
