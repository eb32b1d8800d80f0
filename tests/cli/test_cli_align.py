"""``stylestudio align`` and ``stylestudio paste`` run in-process through ``studio.cli.main``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.imageio import load_image
from tests.conftest import DATA, FIXTURES

FACES = DATA / "faces"


def test_align_then_paste_round_trip(tmp_path, capsys):
    src = FACES / "astronaut.png"
    out = tmp_path / "aligned"
    assert main(["align", str(src), "--out", str(out), "--size", "128", "--profile", "ffhq"]) == 0
    aligned = out / "astronaut.png"
    img = np.asarray(Image.open(aligned))
    assert img.shape == (128, 128, 3)
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["size"] == 128 and doc["profile"]["name"] == "ffhq" and len(doc["items"]) == 1
    item = doc["items"][0]
    assert item["output"] == "astronaut.png" and item["transform"]["output_size"] == 128
    assert item["score"] > 0.5

    dest = tmp_path / "pasted.png"
    assert main(["paste", str(aligned), str(src), str(out / "transforms.json"), "--out", str(dest)]) == 0
    pasted = load_image(dest)[0]
    orig = load_image(src)[0]
    assert pasted.shape == orig.shape
    changed = (pasted != orig).any(axis=2)
    ys, xs = np.nonzero(changed)
    # only the face region (README: x 170-280, y 60-185) may change
    assert xs.min() > 120 and xs.max() < 330 and ys.min() > 10 and ys.max() < 240
    assert "wrote" in capsys.readouterr().out


def test_all_faces_and_failures(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["align", str(FACES / "two_faces_celebahq.jpg"), str(FACES / "noface_coffee.png"),
               "--out", str(out), "--all-faces", "--size", "64"])
    assert rc == 1  # one input had no face; the other was still written
    err = capsys.readouterr().err
    assert "noface_coffee.png" in err and "no face" in err
    assert "--detect-mp" not in err  # 600x400 was already scanned at full resolution: nothing to raise
    doc = json.loads((out / "transforms.json").read_text())
    assert [it["output"] for it in doc["items"]] == ["two_faces_celebahq_face0.png", "two_faces_celebahq_face1.png"]
    assert (out / "two_faces_celebahq_face1.png").is_file()
    # paste needs to know which face: the aligned file's name tells it
    orig = FACES / "two_faces_celebahq.jpg"
    edit = out / "two_faces_celebahq_face1.png"
    assert main(["paste", str(edit), str(orig), str(out / "transforms.json"), "--out", str(tmp_path / "p.jpg")]) == 0
    # a renamed edit is ambiguous: one-line error asking for --face
    renamed = tmp_path / "edited.png"
    shutil.copy(edit, renamed)
    assert main(["paste", str(renamed), str(orig), str(out / "transforms.json")]) == 2
    assert "--face" in capsys.readouterr().err
    assert main(["paste", str(renamed), str(orig), str(out / "transforms.json"), "--face", "1",
                 "--mask", "ellipse", "--color-match"]) == 0
    assert (tmp_path / "two_faces_celebahq_pasted.png").is_file()


def test_no_face_in_a_large_photo_suggests_a_finer_scan(tmp_path, capsys):
    big = tmp_path / "big_noface.png"
    Image.open(FACES / "noface_coffee.png").convert("RGB").resize((4000, 3000)).save(big)
    assert main(["align", str(big), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no face" in err and "--detect-mp 35.2" in err  # 4x the 8.8 MP the second pass scanned
    assert main(["align", str(big), "--out", str(tmp_path / "o"), "--detect-mp", "40"]) == 1
    assert "--detect-mp 48" in capsys.readouterr().err  # capped at the official full-size scan


def test_exif_rotated_phone_photo(tmp_path):
    upright = load_image(FACES / "astronaut.png")[0]
    stored = np.rot90(upright, 1)  # what the sensor stored; orientation 6 turns it back upright
    exif = Image.Exif()
    exif[0x0112] = 6
    phone = tmp_path / "IMG_1234.JPG"
    Image.fromarray(np.ascontiguousarray(stored)).save(phone, "JPEG", quality=95, exif=exif.tobytes())
    out = tmp_path / "o"
    assert main(["align", str(phone), "--out", str(out), "--size", "64"]) == 0
    item = json.loads((out / "transforms.json").read_text())["items"][0]
    assert item["exif_orientation"] == 6 and item["transform"]["input_size"] == [512, 512]
    box = item["box"]
    assert 170 < (box[0] + box[2]) / 2 < 280 and 60 < (box[1] + box[3]) / 2 < 185  # found upright
    assert main(["paste", str(out / "IMG_1234.png"), str(phone), str(out / "transforms.json"),
                 "--out", str(tmp_path / "r.png")]) == 0
    assert load_image(tmp_path / "r.png")[0].shape == (512, 512, 3)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    src = str(FACES / "astronaut.png")
    assert main(["align", src, "--out", str(tmp_path), "--profile", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylestudio align: error:") and "\n" not in err
    assert main(["align", src, "--out", str(tmp_path), "--size", "4"]) == 2
    assert main(["paste", src, src, str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "t.json").write_text("{}")
    assert main(["paste", src, src, str(tmp_path / "t.json")]) == 2


def test_profile_from_json_file(tmp_path):
    prof = tmp_path / "pack_profile.json"
    prof.write_text(json.dumps({"name": "loose", "output_size": 96, "zoom": 1.25}))
    out = tmp_path / "o"
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(out), "--profile", str(prof)]) == 0
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["size"] == 96 and doc["profile"]["zoom"] == 1.25
    assert np.asarray(Image.open(out / "astronaut.png")).shape == (96, 96, 3)


@pytest.mark.fixtures
def test_official_mode_reproduces_fixture(tmp_path):
    d = FIXTURES / "ffhq_align"
    cases = sorted(p for p in d.iterdir() if (p / "aligned_256.png").is_file()) if d.is_dir() else []
    if not cases:
        pytest.skip("no ffhq_align fixtures")
    for i, case in enumerate(cases):
        out = tmp_path / case.name
        profile = ["--profile", "ffhq"] if i % 2 else []  # --official's default profile is FFHQ's
        assert main(["align", str(case / "input.png"), "--out", str(out), "--official", *profile]) == 0
        got = np.asarray(Image.open(out / "input.png"))
        want = np.asarray(Image.open(case / "aligned_256.png").convert("RGB"))
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def _no_hang(fn, seconds: int = 10):
    """Run ``fn``, failing (not hanging) if it loops for more than ``seconds``."""
    import signal

    def on_alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_never_overwrites_an_input_photo(tmp_path, capsys):
    d = tmp_path / "same"
    d.mkdir()
    me = d / "me.png"
    shutil.copy(FACES / "astronaut.png", me)
    before = me.read_bytes()
    assert main(["align", str(me), "--out", str(d), "--size", "32"]) == 0
    assert me.read_bytes() == before  # the photo is untouched
    out = capsys.readouterr().out
    assert "me_aligned.png" in out and "input photo" in out
    assert np.asarray(Image.open(d / "me_aligned.png")).shape == (32, 32, 3)
    (item,) = json.loads((d / "transforms.json").read_text())["items"]
    assert item["output"] == "me_aligned.png" and item["input"] == str(me.resolve())
    # the fallback name is itself an input: neither photo is overwritten, names stay distinct
    d2 = tmp_path / "two"
    d2.mkdir()
    me, other = d2 / "me.png", d2 / "me_aligned.png"
    shutil.copy(d / "me.png", me)
    shutil.copy(d / "me.png", other)
    assert main(["align", str(me), str(other), "--out", str(d2), "--size", "32"]) == 0
    assert me.read_bytes() == before and other.read_bytes() == before
    names = [it["output"] for it in json.loads((d2 / "transforms.json").read_text())["items"]]
    assert sorted(names) == ["me_aligned_2.png", "me_aligned_aligned.png"]
    assert {"me.png", "me_aligned.png"}.isdisjoint(names)


def test_default_profile_is_the_default_models(tmp_path, monkeypatch):
    """align's default = the profile invert/edit use with the default model, so their crops match."""
    from studio.core.align import get_profile
    from studio.core.formats import load_checkpoint
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is None:
        pytest.skip("no default model pack installed")
    want = get_profile(load_checkpoint(pack).meta.get("alignment_profile")).to_dict()
    out = tmp_path / "o"
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(out)]) == 0
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["profile"] == want and doc["size"] == want["output_size"]
    assert np.asarray(Image.open(out / "astronaut.png")).shape == (want["output_size"],) * 2 + (3,)
    # a pack folder as --profile gives the same; an explicit --profile wins
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(tmp_path / "p"), "--profile", str(pack)]) == 0
    assert json.loads((tmp_path / "p" / "transforms.json").read_text())["profile"] == want
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(tmp_path / "f"), "--profile", "ffhq"]) == 0
    assert json.loads((tmp_path / "f" / "transforms.json").read_text())["profile"]["name"] == "ffhq"
    # no pack installed: FFHQ
    monkeypatch.setattr("studio.core.pack.default_pack", lambda: None)
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(tmp_path / "n"), "--size", "32"]) == 0
    assert json.loads((tmp_path / "n" / "transforms.json").read_text())["profile"]["name"] == "ffhq"


@pytest.mark.parametrize("mp", ["0", "-1", "nan", "inf", "-inf", "1e-9", "lots"])
def test_bad_detect_mp_is_refused_not_a_hang(tmp_path, capsys, mp):
    with pytest.raises(SystemExit) as e:
        _no_hang(lambda: main(["align", str(FACES / "astronaut.png"), "--out", str(tmp_path / "o"),
                               f"--detect-mp={mp}"]))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--detect-mp" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_nothing_written_when_every_input_fails(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["align", str(FACES / "noface_coffee.png"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no face found" in err and "nothing written" in err
    assert not out.exists()
    # an existing folder and transforms file are left as they were
    out.mkdir()
    (out / "transforms.json").write_text('{"version": 1, "items": []}')
    assert main(["align", str(FACES / "noface_coffee.png"), "--out", str(out)]) == 1
    assert (out / "transforms.json").read_text() == '{"version": 1, "items": []}'
    assert sorted(p.name for p in out.iterdir()) == ["transforms.json"]


def test_several_faces_note_without_all_faces(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["align", str(FACES / "two_faces_celebahq.jpg"), "--out", str(out), "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "two_faces_celebahq.jpg: 2 faces found" in err and "--all-faces" in err
    assert [it["output"] for it in json.loads((out / "transforms.json").read_text())["items"]] == \
        ["two_faces_celebahq.png"]
    assert main(["align", str(FACES / "astronaut.png"), "--out", str(out), "--size", "32"]) == 0
    assert "faces found" not in capsys.readouterr().err  # one face: no note


@pytest.mark.parametrize("flags, words", [
    (["--all-faces", "--official"], "cannot be combined"),
    (["--official", "--detect-mp", "5"], "--detect-mp does not apply with --official"),
    (["--min-score", "0.5"], "--min-score only applies with --all-faces"),
])
def test_conflicting_flags_are_refused(tmp_path, capsys, flags, words):
    out = tmp_path / "o"
    assert main(["align", str(FACES / "two_faces_celebahq.jpg"), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not out.exists()


def test_align_json_and_out_are_checked_before_any_work(tmp_path, capsys):
    photo = tmp_path / "in" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"not even an image")
    other = tmp_path / "in" / "keep.txt"
    other.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["align", str(photo), "--out", str(out), "--json", "../in/keep.txt"]) == 2
    assert "must end in .json" in capsys.readouterr().err and other.read_text() == "mine"
    (tmp_path / "in" / "notes.json").write_text("my notes, not JSON")
    assert main(["align", str(photo), "--out", str(out), "--json", "../in/notes.json"]) == 2
    assert "not a transforms file" in capsys.readouterr().err
    assert (tmp_path / "in" / "notes.json").read_text() == "my notes, not JSON" and not any(out.iterdir())
    assert main(["align", str(photo), str(photo), "--out", str(photo / "x")]) == 2   # a path through a file
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
