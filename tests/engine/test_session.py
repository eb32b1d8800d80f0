"""EditSession: edits as undoable commands, style mixing, save/load of .stylestudio projects."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from studio.core.directions import Direction, condition
from studio.core.errors import DirectionError, ProjectError, StudioError
from studio.core.latent import layer_groups
from studio.core.nets.stylegan2 import Generator
from studio.engine import EditSession, ModelIdentity, StyleMixer


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()
    G.mapping.w_avg.copy_(torch.randn(32) * 0.1)
    return G


def _latent(G, seed):
    with torch.no_grad():
        return G.map(G.sample_z(1, seed=seed))[0]


def _dir(name, seed, layers=None, d=32):
    v = np.random.RandomState(seed).randn(d)
    return Direction(name, v, layers=layers)


# --- StyleMixer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_ws", [8, 10, 14, 18])
@pytest.mark.parametrize("group", ["coarse", "medium", "fine"])
def test_mixer_strength_0_source_1_reference_on_group_rows(num_ws, group):
    g = torch.Generator().manual_seed(num_ws)
    src, ref = torch.randn(num_ws, 16, generator=g), torch.randn(num_ws, 16, generator=g)
    m = StyleMixer(num_ws, ref.numpy())
    assert torch.equal(m.apply(src), src)           # all strengths 0
    m.set_strength(group, 0.0)
    assert torch.equal(m.apply(src), src)
    m.set_strength(group, 1.0)
    out = m.apply(src)
    a, b = layer_groups(num_ws)[group]
    rows = np.zeros(num_ws, bool)
    rows[a:b] = True
    assert torch.equal(out[rows], ref[rows]) and torch.equal(out[~rows], src[~rows])
    m.set_strength(group, 0.25)
    torch.testing.assert_close(m.apply(src)[rows], src[rows] + 0.25 * (ref[rows] - src[rows]), atol=1e-6, rtol=0)


def test_mixer_per_layer_mode_and_validation():
    src, ref = torch.zeros(10, 4), torch.ones(10, 4)
    m = StyleMixer(10, ref.numpy(), {"coarse": 1.0})
    m.per_layer = np.r_[np.zeros(9), 1.0]
    out = m.apply(src)
    assert torch.equal(out[:9], src[:9]) and torch.equal(out[9], ref[9])
    assert m.groups == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 10)}
    with pytest.raises(ValueError):
        m.set_strength("fine", 1.2)
    with pytest.raises(ValueError):
        StyleMixer(10, ref.numpy(), per_layer=np.ones(9))
    assert not StyleMixer(10).active


# --- directions and composition ----------------------------------------------------------------------


def test_direction_edit_is_exact_on_its_rows(G):
    s = EditSession.for_generator(G, _latent(G, 1))
    src = s.ws()
    d = _dir("age", 1, layers=(5, 7))
    s.add_direction(d)
    assert torch.equal(s.ws(), src)
    s.set_amount("age", 2.5)
    ws = s.ws()
    n = torch.from_numpy(d.vector)
    assert torch.equal(ws[5:7], src[5:7] + 2.5 * n)
    assert torch.equal(ws[:5], src[:5]) and torch.equal(ws[7:], src[7:])
    s.add_direction(_dir("smile", 2), -1.0)   # all rows
    n2 = torch.from_numpy(s.directions[1].direction.vector)
    ws2 = s.ws()
    assert torch.equal(ws2[:5], src[:5] + (-1.0) * n2) and torch.equal(ws2[7:], src[7:] + (-1.0) * n2)
    assert torch.equal(ws2[5:7], (src[5:7] + 2.5 * n) + (-1.0) * n2)


def test_composition_order_mix_truncate_directions(G):
    s = EditSession.for_generator(G, _latent(G, 1))
    ref = _latent(G, 2)
    s.set_reference(ref)
    s.set_mix_strength("coarse", 1.0)
    s.set_truncation(0.5)
    s.add_direction(_dir("a", 3), 1.0)
    src, w_avg = torch.from_numpy(s.state.source), G.w_avg
    mixed = torch.cat([ref[:4], src[4:]])
    expect = w_avg.lerp(mixed, 0.5) + 1.0 * torch.from_numpy(s.directions[0].direction.vector)
    torch.testing.assert_close(s.ws(), expect, atol=0, rtol=0)


def test_errors_leave_state_and_history_alone(G):
    s = EditSession.for_generator(G, _latent(G, 1))
    s.add_direction(_dir("a", 1))
    before, depth = s.ws(), len(s._undo)
    with pytest.raises(DirectionError, match="already has"):
        s.add_direction(_dir("a", 2))
    with pytest.raises(DirectionError, match="w_dim=32"):
        s.add_direction(_dir("b", 2, d=16))
    with pytest.raises(DirectionError, match="does not fit"):
        s.add_direction(_dir("c", 2, layers=(8, 20)))
    with pytest.raises(DirectionError, match="no direction named"):
        s.set_amount("zzz", 1.0)
    with pytest.raises(StudioError):
        s.set_mix_strength("fine", 2.0)
    with pytest.raises(StudioError):
        s.set_amount("a", float("nan"))
    with pytest.raises(StudioError):
        s.set_reference(torch.randn(5, 32))
    assert torch.equal(s.ws(), before) and len(s._undo) == depth and s.mixer.strengths["fine"] == 0


# --- undo / redo ---------------------------------------------------------------------------------------


def test_undo_redo_round_trip_bit_exact(G):
    s = EditSession.for_generator(G, _latent(G, 1))
    seen = []
    s.listeners.append(lambda sess: seen.append(sess.version))
    snaps = [s.ws()]
    actions = [
        lambda: s.add_direction(_dir("age", 1, layers=(0, 4))),
        lambda: s.set_amount("age", 1.75),
        lambda: s.add_direction(_dir("pose", 2), -0.3),
        lambda: s.set_reference(_latent(G, 7)),
        lambda: s.set_mix_strength("medium", 0.6),
        lambda: s.set_mix_strength("fine", 1.0),
        lambda: s.set_layer_strengths(np.linspace(0, 1, G.num_ws)),
        lambda: s.set_truncation(0.7, 6),
        lambda: s.replace_direction("age", condition(s.directions[0].direction, s.directions[1].direction)),
        lambda: s.remove_direction("pose"),
        lambda: s.set_source(_latent(G, 9)),
        lambda: s.reset(),
        lambda: s.add_direction(_dir("x", 5), 3.0),
    ]
    for act in actions:
        act()
        snaps.append(s.ws())
    assert len(seen) == len(actions)
    assert len({snap.numpy().tobytes() for snap in snaps}) >= len(snaps) - 3  # a few actions change no row
    for k in range(len(actions), 0, -1):
        assert s.undo()
        assert torch.equal(s.ws(), snaps[k - 1]), f"undo to step {k - 1}"
    assert not s.undo() and not s.can_undo
    for k in range(1, len(actions) + 1):
        assert s.redo()
        assert torch.equal(s.ws(), snaps[k]), f"redo to step {k}"
    assert not s.redo()
    s.undo()
    s.add_direction(_dir("y", 6), 1.0)   # a new edit clears redo
    assert not s.can_redo


def test_slider_drag_is_one_undo_step(G):
    s = EditSession.for_generator(G, _latent(G, 1))
    s.add_direction(_dir("age", 1))
    start = s.ws()
    for a in np.linspace(0, 2, 9)[1:]:
        s.set_amount("age", float(a), dragging=True)
    s.set_amount("age", 2.0)            # release
    s.set_amount("age", 3.0, dragging=True)   # a new drag: a new step
    s.end_drag()
    assert s.undo_text == "age = +3.00"
    s.undo()
    assert s.amount("age") == 2.0
    s.undo()
    assert s.amount("age") == 0.0 and torch.equal(s.ws(), start)
    assert s.undo_text == "add direction age"
    # dragging another slider does not merge into this one
    s.set_mix_strength("fine", 0.3, dragging=True)
    s.set_truncation(0.9, dragging=True)
    s.undo()
    assert s.state.psi == 1.0 and s.mixer.strengths["fine"] == 0.3


# --- projects ----------------------------------------------------------------------------------------------


def _edited(G):
    s = EditSession.for_generator(G, _latent(G, 1), format="stylestudio", path="/models/tiny.safetensors")
    s.add_direction(_dir("age", 1, layers=(0, 4)), 1.1)
    s.add_direction(Direction("pc0", np.random.RandomState(3).randn(32), source="ganspace",
                              default_range=(-2.5, 2.5), meta={"stdev": 1.25}), -0.37)
    s.set_reference(_latent(G, 2))
    s.set_mix_strength("coarse", 0.3)
    s.set_layer_strengths(np.r_[np.zeros(4), np.full(G.num_ws - 4, 1 / 3)])
    s.set_truncation(0.8, 5)
    return s


def test_save_load_round_trip_bit_exact(G, tmp_path):
    s = _edited(G)
    p = s.save(tmp_path / "face")
    assert p.suffix == ".stylestudio" and not s.modified
    with zipfile.ZipFile(p) as zf:
        meta = json.loads(zf.read("project.json"))
    assert meta["model"]["w_avg_sha256"] == s.model.w_avg_sha256 and meta["num_ws"] == G.num_ws
    back = EditSession.load(p, model=ModelIdentity.from_generator(G))
    assert back.ws().numpy().tobytes() == s.ws().numpy().tobytes()
    assert [(a.direction.name, a.alpha, a.direction.layers, a.direction.default_range, a.direction.meta)
            for a in back.directions] == \
           [(a.direction.name, a.alpha, a.direction.layers, a.direction.default_range, a.direction.meta)
            for a in s.directions]
    for a, b in zip(back.directions, s.directions):
        assert a.direction.vector.tobytes() == b.direction.vector.tobytes()
    assert np.array_equal(back.mixer.per_layer, s.mixer.per_layer) and back.mixer.strengths == s.mixer.strengths
    assert (back.state.psi, back.state.cutoff) == (0.8, 5)
    # the reopened edit keeps editing the same way
    back.set_amount("age", 2.0)
    s.set_amount("age", 2.0)
    assert torch.equal(back.ws(), s.ws())
    # without a model the recorded identity is kept
    assert EditSession.load(p).model == s.model


def test_load_refuses_other_model(G, tmp_path):
    p = _edited(G).save(tmp_path / "face.stylestudio")
    torch.manual_seed(1)
    other = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32)
    other.mapping.w_avg.copy_(torch.randn(32))
    with pytest.raises(ProjectError, match="another model") as e:
        EditSession.load(p, model=ModelIdentity.from_generator(other, path="/models/other.pkl"))
    assert "/models/tiny.safetensors" in str(e.value) and "face.stylestudio" in str(e.value)
    bigger = Generator(z_dim=32, w_dim=32, img_resolution=64, channel_base=512, channel_max=32)
    with pytest.raises(ProjectError, match="another model"):
        EditSession.load(p, model=ModelIdentity.from_generator(bigger))


def test_load_damaged_projects(tmp_path):
    bad = tmp_path / "bad.stylestudio"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ProjectError, match="not a zip"):
        EditSession.load(bad)
    with zipfile.ZipFile(tmp_path / "empty.stylestudio", "w") as zf:
        zf.writestr("x.txt", "hi")
    with pytest.raises(ProjectError, match="no project.json"):
        EditSession.load(tmp_path / "empty.stylestudio")
    with zipfile.ZipFile(tmp_path / "short.stylestudio", "w") as zf:
        zf.writestr("project.json", json.dumps({"format": "stylestudio-project", "version": 1, "num_ws": 8, "w_dim": 32}))
    with pytest.raises(ProjectError, match="source.npy"):
        EditSession.load(tmp_path / "short.stylestudio")
    with pytest.raises(ProjectError, match="no such file"):
        EditSession.load(tmp_path / "missing.stylestudio")


def test_export_renders_full_resolution(G, tmp_path):
    from PIL import Image

    s = _edited(G)
    p = s.export_image(G, tmp_path / "out.png")
    im = np.asarray(Image.open(p))
    assert im.shape == (32, 32, 3)
    with torch.no_grad():
        ref = ((G.synthesis(s.ws()[None]).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(im, ref)
