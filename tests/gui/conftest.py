"""GUI test fixtures: a tiny random generator saved to disk, and a window on it."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


@pytest.fixture(autouse=True)
def recovery_dir(tmp_path, monkeypatch):
    """Every window autosaves into a fresh folder of its test (never the user's recovery folder)."""
    d = tmp_path / "recovery"
    monkeypatch.setenv("STYLESTUDIO_RECOVERY_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    import torch

    from studio.core.formats import ModelBundle, stylestudio_fmt
    from studio.core.nets.stylegan2 import Generator

    d = tmp_path_factory.mktemp("gui-model")
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32)).mean(0))
    return stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G), d / "tiny.safetensors")


@pytest.fixture
def window(qtbot, tiny_model, one_thread):
    from studio.gui.main_window import MainWindow

    win = MainWindow(model_path=tiny_model, optimize_steps=3, settings=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_loaded, timeout=30000):
        win.show()
    yield win
    win.shutdown()
