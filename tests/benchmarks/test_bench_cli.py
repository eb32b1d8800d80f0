"""The command lines of benchmarks/bench_*.py: every option says what it does and shows its default,
``--help`` shows the module docstring whole, and a bad value (a zero count, an unknown name in a list
flag, a missing file or folder) is an argparse error - exit status 2, one line naming the flag -
raised before any model is loaded. Offline and fast: nothing here runs a benchmark."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import _cli  # noqa: E402

SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))
MISSING = "/nonexistent/stylestudio-bench-cli/x.png"
NOT_AN_IMAGE = str(BENCH / "_cli.py")
SHARED_FACES = REPO.parent / "shared" / "data" / "faces"


def script(name: str):
    return importlib.import_module(name)


def test_every_benchmark_is_covered():
    assert {"bench_abortion", "bench_align", "bench_distill", "bench_edit", "bench_generator", "bench_gui_latency",
            "bench_inversion", "bench_pack", "bench_startup", "bench_train_gan"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_help_and_shows_its_default(name):
    ap = script(name).build_parser()
    assert isinstance(ap, argparse.ArgumentParser)
    assert _cli.option_help_missing(ap) == [], f"{name}: options without help"
    fmt = ap._get_formatter()
    for a in ap._actions:
        text = fmt._expand_help(a)  # also catches a stray '%' in a help string
        assert text.strip(), f"{name} {a.option_strings}: empty help"
        if a.option_strings and a.default is not None and a.default is not False and a.default is not argparse.SUPPRESS:
            assert "default" in text, f"{name} {a.option_strings[0]}: the default ({a.default!r}) is not shown"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_whole_docstring(name, capsys):
    mod = script(name)
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name}.py ")
    for line in mod.__doc__.splitlines():  # the layout is kept: every line as written
        if line.strip():
            assert line in out, f"{name} --help lacks {line!r}"


def _has_qt_platforms() -> bool:
    return script("bench_startup").qt_platforms() is not None


BAD = [
    # (script, argv ('{tmp}': a fresh empty folder), the flag the one-line error must name)
    ("bench_pack", ["--fd-n", "1"], "--fd-n"),
    ("bench_pack", ["--fd-n", "0"], "--fd-n"),
    ("bench_pack", ["--only", "generator,nope"], "--only"),
    ("bench_pack", ["--invert-n", "0"], "--invert-n"),
    ("bench_pack", ["--dir-n", "-1"], "--dir-n"),
    ("bench_pack", ["--steps", "0"], "--steps"),
    ("bench_pack", ["--dir-method", "nope"], "--dir-method"),
    ("bench_pack", ["--seed", "-1"], "--seed"),
    ("bench_pack", ["--fd-draws", "0"], "--fd-draws"),
    ("bench_pack", ["--seed", str(2 ** 32 - 124), "--fd-draws", "2"], "--seed"),
    ("bench_pack", ["--model", MISSING], "--model"),
    ("bench_pack", ["--only", "directions", "--labeller", MISSING], "--labeller"),
    ("bench_pack", ["--only", "encoders", "--out", NOT_AN_IMAGE], "--out"),
    ("bench_pack", ["--only", "generator", "--data", "{tmp}"], "--data"),
    ("bench_distill", ["--repeats", "0"], "--repeats"),
    ("bench_distill", ["--triplets", "-1"], "--triplets"),
    ("bench_distill", ["--grid", "0"], "--grid"),
    ("bench_distill", ["--threads", "0"], "--threads"),
    ("bench_distill", ["--method", "nope"], "--method"),
    ("bench_distill", ["--student", MISSING], "--student"),
    ("bench_distill", ["--model", MISSING], "--model"),
    ("bench_gui_latency", ["--photo", MISSING], "--photo"),
    ("bench_gui_latency", ["--photo", NOT_AN_IMAGE], "--photo"),
    ("bench_gui_latency", ["--moves", "0"], "--moves"),
    ("bench_gui_latency", ["--interval", "-1"], "--interval"),
    ("bench_gui_latency", ["--random-face", "--model", MISSING], "--model"),
    ("bench_gui_latency", ["--random-face", "--photo", MISSING], "--random-face"),
    ("bench_startup", ["--runs", "0"], "--runs"),
    ("bench_startup", ["--timeout", "0"], "--timeout"),
    ("bench_startup", ["--edit", "--photo", MISSING], "--photo"),
    ("bench_startup", ["--edit", "--photo", NOT_AN_IMAGE], "--photo"),
    ("bench_startup", ["--photo", NOT_AN_IMAGE], "--photo"),  # without --edit it would be ignored
    ("bench_startup", ["--json", "{tmp}"], "--json"),
    pytest.param("bench_startup", ["--platform", "nope"], "--platform",
                 marks=pytest.mark.skipif(not _has_qt_platforms(), reason="no Qt platform plugins to check against")),
    ("bench_inversion", ["--n", "0"], "--n"),
    ("bench_inversion", ["--steps", "-1"], "--steps"),
    ("bench_inversion", ["--methods", "optimize,nope"], "--methods"),
    ("bench_inversion", ["--device", "nope"], "--device"),
    ("bench_inversion", ["--faces", MISSING], "--faces"),
    ("bench_inversion", ["--faces", "{tmp}"], "--faces"),
    ("bench_inversion", ["--model", MISSING], "--model"),
    ("bench_abortion", ["--modes", "off,nope"], "--modes"),
    ("bench_abortion", ["--steps", "0"], "--steps"),
    ("bench_abortion", ["--n", "0"], "--n"),
    ("bench_abortion", ["--batch", "1"], "--batch"),
    ("bench_abortion", ["--lr", "nan"], "--lr"),
    ("bench_abortion", ["--stages", "1"], "--stages"),
    ("bench_abortion", ["--min-stages", "4"], "--min-stages"),
    ("bench_abortion", ["--abort-ema", "1"], "--abort-ema"),
    ("bench_abortion", ["--check-every", "0"], "--check-every"),
    ("bench_abortion", ["--device", "nope"], "--device"),
    ("bench_abortion", ["--data", MISSING], "--data"),
    ("bench_abortion", ["--reevaluate", "--out", "{tmp}"], "--reevaluate"),
    ("bench_train_gan", ["--steps", "-1"], "--steps"),
    ("bench_train_gan", ["--ds", "nope"], "--ds"),
    ("bench_train_gan", ["--procs", "1,0"], "--procs"),
    ("bench_train_gan", ["--cfgs", "cpu64,nope"], "--cfgs"),
    ("bench_train_gan", ["--data", MISSING], "--data"),
    ("bench_train_gan", ["--data", "{tmp}"], "--data"),
    ("bench_generator", ["--configs", "nope"], "--configs"),
    ("bench_generator", ["--batches", "0"], "--batches"),
    ("bench_generator", ["--variants", ","], "--variants"),
    ("bench_generator", ["--threads", "0"], "--threads"),
    ("bench_generator", ["--budget", "0"], "--budget"),
    ("bench_edit", ["--configs", "pack64,nope"], "--configs"),
    ("bench_edit", ["--steps", "0"], "--steps"),
    ("bench_edit", ["--budget", "-1"], "--budget"),
    ("bench_edit", ["--device", "nope"], "--device"),
    ("bench_align", ["--runs", "0"], "--runs"),
    ("bench_align", ["--photo", MISSING], "--photo"),
    ("bench_align", ["--photo", NOT_AN_IMAGE], "--photo"),
]


@pytest.mark.parametrize("name,argv,flag", BAD)
def test_bad_value_is_a_one_line_argparse_error(name, argv, flag, tmp_path, capsys):
    mod = script(name)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    took = time.perf_counter() - t0
    assert e.value.code == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # nothing started
    last = cap.err.strip().splitlines()[-1]
    assert last.startswith(f"{name}.py: error: ") and flag in last, cap.err
    assert took < 10  # refused before any model is loaded


def test_cuda_is_refused_where_there_is_none(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        script("bench_edit").main(["--device", "cuda"])
    assert e.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_an_unavailable_method_is_refused_once_the_model_is_known(tmp_path, capsys):
    """bench_inversion --methods psp on a pack without a pSp encoder: an argparse error, not a traceback."""
    from studio.core.inversion import bundle_encoders
    from studio.core.pack import default_pack

    pack = default_pack()
    if pack is None:
        pytest.skip("no default pack")
    from studio.core.formats import load_checkpoint

    have = set(bundle_encoders(load_checkpoint(pack)))
    missing = next((m for m in ("psp", "e4e", "sae", "e2style", "crg") if m not in have), None)
    if missing is None:
        pytest.skip("the pack has every encoder")
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "face.png")
    with pytest.raises(SystemExit) as e:
        script("bench_inversion").main(["--methods", missing, "--faces", str(tmp_path),
                                        "--csv", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--methods: '{missing}' not available" in err


def test_report_command_lines_still_parse(tmp_path):
    """benchmarks/report.py's quick and full command lines are valid for the stricter parsers."""
    import report

    for sec in report.sections(tmp_path):
        ap = script(Path(sec.script).stem).build_parser()
        for argv in (sec.quick, sec.full):
            ap.parse_args(argv)


# ----------------------------------------------------------------------------
# bench_startup: a run that did not get through every stage fails, with the reason


def test_startup_run_failure_reasons():
    bs = script("bench_startup")
    full = {"window": 0.3, "model": 2.0, "photo": 3.0, "inverted": 8.0, "edited": 8.1}
    assert bs.run_failure(full, edit=True, timeout=60) is None
    assert bs.run_failure({"window": 0.3, "model": 2.0}, edit=False, timeout=60) is None
    why = bs.run_failure({"window": 0.3, "model": 2.0, "error": "Cannot use this photo: no face found"},
                         edit=True, timeout=60)
    assert "no face found" in why and "photo aligned" in why
    why = bs.run_failure({"window": 0.3, "model": 2.0, "photo": 3.0, "timed_out": True}, edit=True, timeout=60)
    assert why == "did not reach 'inverted (fastest)' within --timeout 60 s"
    assert "default pack loaded" in bs.run_failure({"window": 0.3}, edit=False, timeout=5)


@pytest.mark.slow
def test_startup_edit_of_a_photo_without_a_face_fails(tmp_path):
    """The app (offscreen, a fresh process) says there is no face: the benchmark exits 1 with that reason."""
    from studio.core.pack import default_pack

    noface = SHARED_FACES / "noface_coffee.png"
    if default_pack() is None or not noface.is_file():
        pytest.skip("needs the default pack and shared/data/faces/noface_coffee.png")
    pytest.importorskip("dlib")
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "benchmarks/bench_startup.py", "--edit", "--runs", "2", "--timeout", "60",
                        "--photo", str(noface), "--json", str(tmp_path / "runs.json")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "run 1 of 2 failed" in r.stderr and "no face" in r.stderr.lower()
    assert "bar <=" not in r.stdout  # no verdict printed for a failed benchmark
    assert "error" in (tmp_path / "runs.json").read_text()


# ----------------------------------------------------------------------------
# As run from the repository root: python benchmarks/bench_x.py ...


def test_scripts_run_from_the_repo_root():
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    cmds = {f"{n} --help": [f"benchmarks/{n}.py", "--help"] for n in SCRIPTS}
    cmds.update({"pack --fd-n 1": ["benchmarks/bench_pack.py", "--fd-n", "1"],
                 "distill --repeats 0": ["benchmarks/bench_distill.py", "--repeats", "0"],
                 "gui --photo missing": ["benchmarks/bench_gui_latency.py", "--photo", MISSING]})
    procs = {k: subprocess.Popen([sys.executable, *c], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, c in cmds.items()}
    res = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=120)
        res[k] = (p.returncode, out, err)
    for n in SCRIPTS:
        code, out, err = res[f"{n} --help"]
        assert code == 0 and out.startswith(f"usage: {n}.py"), err
    for k, flag in (("pack --fd-n 1", "--fd-n"), ("distill --repeats 0", "--repeats"),
                    ("gui --photo missing", "--photo")):
        code, out, err = res[k]
        assert code == 2 and out == "", err
        assert "Traceback" not in err and flag in err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------
# The helpers


def test_number_converters():
    assert _cli.int_at_least(2)("5") == 5
    with pytest.raises(argparse.ArgumentTypeError, match=r"at least 2 \(FD\), got 1"):
        _cli.int_at_least(2, "FD")("1")
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        _cli.int_at_least(1)("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 3"):
        _cli.int_in_range(0, 3)("4")
    assert _cli.float_at_least(0, strict=True)("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            _cli.float_at_least(0, strict=True)(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0 and < 1"):
        _cli.float_in_range(0, 1, hi_open=True)("1")


def test_list_converters():
    p = _cli.name_list(("a", "b", "c"), "section")
    assert p(" b, a ,b,") == ["b", "a"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown sections 'x', 'y'; choose from a, b, c"):
        p("a,x,y")
    with pytest.raises(argparse.ArgumentTypeError, match="empty list"):
        p(" , ")
    assert _cli.int_list(1)("1,8,1") == [1, 8]
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1, got 0"):
        _cli.int_list(1)("1,0")


def test_help_formatter_shows_defaults_once():
    ap = _cli.make_parser("Doc\n  kept  as is", "bench_x.py")
    ap.add_argument("--n", type=int, default=3, help="count")
    ap.add_argument("--m", type=int, default=3, help="count (default 3)")
    ap.add_argument("--zero", type=int, default=0, help="zero")
    ap.add_argument("--opt", default=None, help="optional")
    ap.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(ap.format_help().split())
    assert "count (default: 3)" in text and "count (default 3) --zero" in text and "zero (default: 0)" in text
    assert "optional --flag" in text and "a switch" in text and "(default: False)" not in text
    assert "Doc\n  kept  as is" in ap.format_help() and ap.prog == "bench_x.py"


def test_path_checks(tmp_path):
    ap = _cli.make_parser(None, "bench_x.py")
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(img)
    (tmp_path / "note.txt").write_text("x")
    assert _cli.check_image(ap, img, "--photo") == img
    assert _cli.check_image_dir(ap, tmp_path, "--faces") == tmp_path
    assert _cli.check_out_dir(ap, tmp_path / "new" / "dir", "--out") == tmp_path / "new" / "dir"
    assert _cli.check_out_file(ap, tmp_path / "new" / "r.json", "--json") == tmp_path / "new" / "r.json"
    for call in (lambda: _cli.check_file(ap, tmp_path / "nope", "--photo"),
                 lambda: _cli.check_file(ap, tmp_path, "--photo"),
                 lambda: _cli.check_dir(ap, img, "--data"),
                 lambda: _cli.check_image(ap, tmp_path / "note.txt", "--photo"),
                 lambda: _cli.check_image_dir(ap, tmp_path / "empty", "--faces"),
                 lambda: _cli.check_out_dir(ap, img, "--out"),
                 lambda: _cli.check_out_file(ap, tmp_path, "--json"),
                 lambda: _cli.check_choices(ap, ["x"], ["a", "b"], "--methods")):
        with pytest.raises(SystemExit) as e:
            call()
        assert e.value.code == 2
