"""``stylestudio mix`` (in-process): a tiny student on two sample photos, the inversion fallback on
aligned faces, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.core.formats import ModelBundle, stylestudio_fmt
from studio.core.nets.crg import CRGEncoder
from studio.core.nets.distill import DistillStudent
from studio.core.nets.encoding import EncoderPipeline
from studio.core.nets.stylegan2 import Generator
from tests.conftest import DATA

FACES = DATA / "faces"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mix")
    torch.manual_seed(0)
    student = DistillStudent(resolution=16, width=8, downsamples=1, blocks=1).eval()
    spath = stylestudio_fmt.save_student(student, d / "student.safetensors", alignment_profile="ffhq",
                                         distill={"group": "medium", "crossover": 4, "num_ws": 6, "resolution": 16})
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 16)).mean(0))
    enc = CRGEncoder(input_size=16, out_dim=16, space="w", channels=(4, 8), convs=(1, 1), hidden=0, dropout=0.0)
    la = G.mapping.w_avg.reshape(1, -1).repeat(G.num_ws, 1)
    pipe = EncoderPipeline(enc.eval(), G, la, kind="crg", out_size=16).eval()
    mpath = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, encoder=pipe, latent_avg=la),
                                 d / "model.safetensors")
    gonly = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), d / "gonly.safetensors")
    faces = []
    for i in range(2):
        a = (np.random.RandomState(i).rand(32, 32, 3) * 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"face{i}.png")
        faces.append(d / f"face{i}.png")
    return spath, mpath, gonly, faces


@pytest.mark.skipif(not FACES.is_dir(), reason="shared sample photos not found")
def test_mix_two_photos_with_a_student(files, tmp_path, capsys):
    spath = files[0]
    out = tmp_path / "mixed.png"
    assert main(["mix", str(FACES / "celebahq_male_005735.jpg"), str(FACES / "celebahq_female_039913.jpg"),
                 "--student", str(spath), "--out", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert "distilled student, group medium" in capsys.readouterr().out


def test_mix_falls_back_to_inversion_and_generator(files, tmp_path, capsys):
    _, mpath, _, faces = files
    out = tmp_path / "m.png"
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--model", str(mpath), "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (16, 16, 3)
    assert "crg inversion + generator, group medium" in capsys.readouterr().out


def test_mix_errors_are_clear(files, tmp_path, capsys):
    spath, mpath, gonly, faces = files
    out = str(tmp_path / "x.png")
    if FACES.is_dir():
        assert main(["mix", str(FACES / "noface_coffee.png"), str(faces[0]), "--student", str(spath), "--out", out]) == 2
        assert "no face found" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(tmp_path / "missing.png"), "--student", str(spath), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--student", str(spath), "--group", "fine",
                 "--out", out]) == 2
    assert "trained to mix at the medium group" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--model", str(mpath), "--group", "coarse",
                 "--out", out]) == 2
    assert "every row from the style face" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--model", str(gonly), "--out", out]) == 2
    assert "neither a distilled student nor an encoder" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--student", str(mpath), "--out", out]) == 2
    assert "not a distilled style-mixing student" in capsys.readouterr().err
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--student", str(spath),
                 "--out", str(tmp_path / "no" / "dir" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_mix_never_overwrites_an_input(files, tmp_path, capsys):
    import shutil

    spath, mpath, _, faces = files
    content, style = tmp_path / "c.png", tmp_path / "style.png"
    shutil.copy(faces[0], content)
    shutil.copy(faces[1], style)
    before = {p: p.read_bytes() for p in (content, style, spath)}
    for target in (content, style, tmp_path / "sub" / ".." / "c.png"):
        if target.parent.name == "..":
            (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["mix", str(content), str(style), "--aligned", "--student", str(spath), "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert "is an input file" in err and err.count("\n") == 1
    assert main(["mix", str(content), str(style), "--aligned", "--model", str(mpath), "--out", str(mpath)]) == 2
    assert "is an input file" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before
    assert main(["mix", str(content), str(style), "--aligned", "--student", str(spath), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["mix", str(content), str(style), "--aligned", "--student", str(spath),
                 "--out", str(tmp_path / "m.gif")]) == 2
    assert "unknown image suffix" in capsys.readouterr().err


def test_mix_student_and_method_conflict(files, tmp_path, capsys):
    """--method forces the inversion path, so with --student it is an error, not silently ignored."""
    spath, mpath, _, faces = files
    out = tmp_path / "x.png"
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--student", str(spath), "--model", str(mpath),
                 "--method", "crg", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--student and --method" in err and err.count("\n") == 1
    assert not out.exists()
    # --method alone forces the inversion path
    assert main(["mix", str(faces[0]), str(faces[1]), "--aligned", "--model", str(mpath), "--method", "crg",
                 "--out", str(out)]) == 0
    assert "crg inversion + generator" in capsys.readouterr().out
