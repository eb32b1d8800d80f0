"""The app's long operations without Qt: refine, reference thumbnails, extra direction files, export
with the edit recipe, and the session's recipe / reset-directions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.directions import Direction
from studio.core.errors import DirectionError, ImageError
from studio.core.nets.stylegan2 import Generator
from studio.core.tensors import to_uint8
from studio.engine import EditSession
from studio.engine import workspace as ws_ops


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32)).mean(0))
    return ws_ops.LoadedModel(bundle=None, G=G.requires_grad_(False), encoders={}, directions=[],
                              directions_source="none", profile=None, licence="test", path="tiny")


def _face(model, seed=1) -> np.ndarray:
    return ws_ops.render_latent(model.G, ws_ops.random_latent(model.G, seed))


def test_render_latent_matches_the_generator(model):
    lat = ws_ops.random_latent(model.G, 3)
    img = ws_ops.render_latent(model.G, lat)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img, ws_ops.render_latent(model.G, lat))
    assert not np.array_equal(img, ws_ops.render_latent(model.G, ws_ops.random_latent(model.G, 4)))


def test_render_latent_is_the_renderers_pixels(model):
    """The paste's unedited base (render_latent) and the edit (a Renderer's frame) come from the same
    modulation path, so "Keep the photo's detail" adds nothing where the edit changed nothing."""
    from studio.engine.renderer import Renderer

    renderer = Renderer(model.G, device="cpu")
    for seed in range(64):  # the two modulations differ by ~1e-6: a few pixels of 64 faces round apart
        lat = ws_ops.random_latent(model.G, seed)
        frame = renderer.render(torch.as_tensor(lat, dtype=torch.float32))
        assert np.array_equal(ws_ops.render_latent(model.G, lat), to_uint8(frame)[0]), seed


def test_refine_moves_towards_the_target_and_cancels(model):
    target = _face(model, 1)
    start = ws_ops.random_latent(model.G, 2)
    seen = []
    inv = ws_ops.refine(model, target, start, steps=4, preview_every=2, progress=seen.append)
    assert inv.method == "refine" and inv.latent_wplus.shape == (8, 32)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert [p.preview is not None for p in seen] == [False, True, False, True]
    assert not np.allclose(inv.latent_wplus.numpy(), start)
    err0 = np.abs(ws_ops.render_latent(model.G, start).astype(float) - target).mean()
    err1 = np.abs(inv.reconstruction.astype(float) - target).mean()
    assert err1 < err0

    stop = threading.Event()
    stop.set()
    inv = ws_ops.refine(model, target, start, steps=50, cancel=stop)
    assert inv.cancelled


def test_load_direction_file_checks_the_size(model, tmp_path):
    good = tmp_path / "smile_boundary.npy"
    np.save(good, np.arange(1, 33, dtype=np.float32)[None])
    (d,) = ws_ops.load_direction_file(model, good)
    assert d.name == "smile" and d.w_dim == 32 and d.meta["file"] == "smile_boundary.npy"
    bad = tmp_path / "age.npy"
    np.save(bad, np.ones(512, np.float32))
    with pytest.raises(DirectionError, match="w_dim=32"):
        ws_ops.load_direction_file(model, bad)


def test_session_recipe_and_reset_directions(model):
    s = EditSession.for_generator(model.G, ws_ops.random_latent(model.G, 0))
    s.add_direction(Direction("a", np.ones(32), layers=(2, 5)))
    s.add_direction(Direction("b", -np.ones(32)))
    s.set_amount("a", 1.25)
    r = s.recipe(photo="x.jpg")
    assert r["directions"] == [{"name": "a", "alpha": 1.25, "layers": [2, 5], "source": ""}]
    assert r["mix"] is None and r["psi"] == 1 and r["photo"] == "x.jpg" and r["model"]["num_ws"] == 8
    s.set_reference(ws_ops.random_latent(model.G, 5))
    s.set_mix_strength("coarse", 1)
    assert s.recipe()["mix"]["rows"] == [1, 1, 1, 1, 0, 0, 0, 0]

    s.set_amount("b", -2)
    n = len(s._undo)
    s.reset_directions()
    assert [ad.alpha for ad in s.directions] == [0, 0] and len(s._undo) == n + 1
    assert s.mixer.strengths["coarse"] == 1  # mixing stays
    s.reset_directions()  # nothing to reset: no undo step
    assert len(s._undo) == n + 1
    s.undo()
    assert s.amount("a") == 1.25 and s.amount("b") == -2


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_save_with_recipe_round_trip(model, tmp_path, suffix):
    img = _face(model)
    recipe = {"directions": [{"name": "age", "alpha": 2.5}], "photo": "ünïcode.jpg"}
    p = ws_ops.save_with_recipe(tmp_path / f"out.{suffix}", img, recipe)
    assert ws_ops.read_recipe(p) == recipe
    out = np.asarray(Image.open(p))
    assert out.shape == img.shape
    if suffix == "png":
        assert np.array_equal(out, img)
    assert ws_ops.read_recipe(ws_ops.save_with_recipe(tmp_path / f"plain.{suffix}", img, None)) is None


def test_save_with_recipe_errors(model, tmp_path):
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(ImageError, match="writable"):
        ws_ops.save_with_recipe(tmp_path / "a_file" / "x.png", _face(model), {"a": 1})
    with pytest.raises(ImageError):
        ws_ops.save_with_recipe(tmp_path / "x.png", np.zeros((4, 4), np.uint8), {"a": 1})
