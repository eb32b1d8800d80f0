"""``stylestudio paste`` (in-process): it never overwrites one of its inputs, and a malformed
transforms file is a one-line error naming the file and what is missing (the round trip with
``align`` is in test_cli_align.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from tests.conftest import DATA

FACES = DATA / "faces"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """An aligned face (64 px), its photo and the transforms.json `align` wrote."""
    if not (FACES / "astronaut.png").is_file():
        pytest.skip("shared sample photos not found")
    d = tmp_path_factory.mktemp("paste")
    shutil.copy(FACES / "astronaut.png", d / "orig.png")
    assert main(["align", str(d / "orig.png"), "--out", str(d / "al"), "--size", "64"]) == 0
    shutil.copy(d / "al" / "orig.png", d / "edit.png")
    return d, d / "edit.png", d / "orig.png", d / "al" / "transforms.json"


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("stylestudio paste: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_paste_refuses_to_overwrite_an_input(aligned, tmp_path, capsys):
    d, edit, orig, tf = aligned
    before = {p: p.read_bytes() for p in (edit, orig, tf)}
    for target in (orig, edit, tf):
        assert main(["paste", str(edit), str(orig), str(tf), "--out", str(target)]) == 2
        _one_line_error(capsys, "is an input file", str(target))
    # the same file by another spelling
    other = d / "al" / ".." / "orig.png"
    assert main(["paste", str(edit), str(orig), str(tf), "--out", str(other)]) == 2
    _one_line_error(capsys, "is an input file")
    # the default output (<ORIGINAL stem>_pasted.png next to the edit) is the edit itself
    named = tmp_path / "orig_pasted.png"
    shutil.copy(edit, named)
    assert main(["paste", str(named), str(orig), str(tf)]) == 2
    _one_line_error(capsys, "default output", "is an input file")
    assert {p: p.read_bytes() for p in (edit, orig, tf)} == before
    assert named.read_bytes() == before[edit]
    # a good output still works, and a folder or a missing folder is refused first
    assert main(["paste", str(edit), str(orig), str(tf), "--out", str(tmp_path / "p.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "p.png")).shape == np.asarray(Image.open(orig).convert("RGB")).shape
    assert main(["paste", str(edit), str(orig), str(tf), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a folder")
    assert main(["paste", str(edit), str(orig), str(tf), "--out", str(tmp_path / "no" / "p.png")]) == 2
    _one_line_error(capsys, "does not exist")
    assert not (tmp_path / "no").exists()


def test_paste_malformed_transforms_are_one_line_errors(aligned, tmp_path, capsys):
    d, edit, orig, tf = aligned
    good = json.loads(tf.read_text())["items"][0]
    cases = {
        "no_transform.json": ({"items": [{"output": "x.png"}]}, ["entry 0 (x.png)", "no 'transform'"]),
        "not_object.json": ({"items": [3]}, ["entry 0", "not a JSON object"]),
        "bad_transform.json": ({"items": [{"output": "x.png", "transform": [1, 2]}]}, ["'transform'", "not a JSON object"]),
        "bad_name.json": ({"items": [{"output": 7, "transform": good["transform"]}]}, ["'output'"]),
        "no_quad.json": ({"items": [{"output": "x.png", "transform": {k: v for k, v in good["transform"].items()
                                                                      if k != "quad"}}]}, ["lacks 'quad'"]),
        "single_bad.json": ({"transform": "nope"}, ["'transform' is not a JSON object"]),
        "bad_value.json": ({"items": [{"output": "x.png", "transform": dict(good["transform"], qsize="big")}]},
                           ["malformed alignment transform"]),
    }
    for name, (doc, needles) in cases.items():
        (tmp_path / name).write_text(json.dumps(doc))
        out = tmp_path / f"{name}.png"
        assert main(["paste", str(edit), str(orig), str(tmp_path / name), "--out", str(out)]) == 2, name
        _one_line_error(capsys, name, *needles)
        assert not out.exists()
    # --face by index into items with a missing transform
    (tmp_path / "two.json").write_text(json.dumps({"items": [good, {"output": "b.png"}]}))
    assert main(["paste", str(edit), str(orig), str(tmp_path / "two.json"), "--face", "1",
                 "--out", str(tmp_path / "f.png")]) == 2
    _one_line_error(capsys, "entry 1 (b.png)", "no 'transform'")


def test_paste_with_base_adds_only_the_change(aligned, tmp_path, capsys):
    """--base: the edit's change over the unedited reconstruction; the edit as its own base gives the
    photo back unchanged. Refused with --color-match or a base of another size."""
    from studio.core.align import AlignTransform
    from studio.core.paste import paste_back

    d, edit, orig, tf = aligned
    photo = np.asarray(Image.open(orig).convert("RGB"))
    assert main(["paste", str(edit), str(orig), str(tf), "--base", str(edit), "--out", str(tmp_path / "same.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), photo)
    face = np.asarray(Image.open(edit))
    darker = Image.fromarray((face * 0.7).astype(np.uint8))
    darker.save(tmp_path / "darker.png")
    assert main(["paste", str(tmp_path / "darker.png"), str(orig), str(tf), "--base", str(edit),
                 "--out", str(tmp_path / "out.png")]) == 0
    t = AlignTransform.from_dict(json.loads(tf.read_text())["items"][0]["transform"])
    expect = paste_back(photo, np.asarray(darker), t, base_aligned=face)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expect)
    assert not np.array_equal(expect, photo)
    capsys.readouterr()
    assert main(["paste", str(edit), str(orig), str(tf), "--base", str(edit), "--color-match",
                 "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "--color-match and --base")
    Image.fromarray(face).resize((32, 32)).save(tmp_path / "small.png")
    assert main(["paste", str(edit), str(orig), str(tf), "--base", str(tmp_path / "small.png"),
                 "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "same size")
