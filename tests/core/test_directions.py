"""Edit directions: SeFa, GANSpace, InterFaceGAN, conditioning and the boundary/component files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from studio.core import directions as dirs
from studio.core.directions import Direction
from studio.core.errors import DirectionError, StudioError
from studio.core.nets.stylegan2 import Generator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32).eval()


def _unit(d, seed):
    v = np.random.RandomState(seed).randn(d)
    return v / np.linalg.norm(v)


# --- Direction -------------------------------------------------------------------------------


def test_direction_normalises_and_keeps_unit_vectors_bit_exact():
    d = Direction("a", np.array([3.0, 4.0]))
    assert np.allclose(d.vector, [0.6, 0.8]) and d.vector.dtype == np.float32
    again = Direction("a", d.vector.copy())
    assert np.array_equal(again.vector, d.vector)
    with pytest.raises(DirectionError, match="zero"):
        Direction("z", np.zeros(4))
    with pytest.raises(DirectionError, match="not finite"):
        Direction("n", np.array([1.0, np.nan]))
    with pytest.raises(DirectionError, match="w_dim=32"):
        Direction("a", np.ones(16)).check_fits(32)
    with pytest.raises(DirectionError, match="does not fit"):
        Direction("a", np.ones(32), layers=(8, 20)).check_fits(32, 10)
    assert issubclass(DirectionError, StudioError)


# --- SeFa ------------------------------------------------------------------------------------


def _affine_matrix(G, rows):
    """A from the named modules (independent of style_affines): one affine per W+ row."""
    names = []
    for res in G.synthesis.block_resolutions:
        if res > 4:
            names.append(f"synthesis.b{res}.conv0.affine.weight")
        names.append(f"synthesis.b{res}.conv1.affine.weight")
    names.append(f"synthesis.b{G.img_resolution}.torgb.affine.weight")
    sd = dict(G.named_parameters())
    assert len(names) == G.num_ws
    a = np.concatenate([sd[n].detach().double().numpy() for n in names[rows[0]:rows[1]]])
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("rows", [None, (0, 4), (2, 8)])
def test_sefa_orthonormal_top_eigenvectors(G, rows):
    found = dirs.sefa(G, layers=rows, k=5)
    assert [d.name for d in found] == [f"sefa{i}" for i in range(5)]
    v = np.stack([d.vector for d in found]).astype(np.float64)
    np.testing.assert_allclose(v @ v.T, np.eye(5), atol=1e-5)
    a = _affine_matrix(G, rows or (0, G.num_ws))
    vals, vecs = np.linalg.eig(a.T @ a)
    order = np.argsort(vals.real)[::-1][:5]
    ref = vecs.real[:, order].T
    np.testing.assert_allclose(np.abs(np.sum(v * ref, axis=1)), 1.0, atol=1e-5)  # same vectors up to sign
    np.testing.assert_allclose([d.meta["eigenvalue"] for d in found], vals.real[order], rtol=1e-9)
    ata = a.T @ a
    for d in found:  # an eigenvector: A^T A n = lambda n
        np.testing.assert_allclose(ata @ d.vector, d.meta["eigenvalue"] * d.vector, atol=1e-4)
        assert d.layers == rows and d.source == "sefa"


def test_style_affines_one_per_row(G):
    aff = dirs.style_affines(G)
    assert len(aff) == G.num_ws
    assert aff[0] is G.synthesis.b4.conv1.affine and aff[-1] is G.synthesis.b32.torgb.affine


# --- GANSpace ----------------------------------------------------------------------------------


def test_pca_reproduces_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.RandomState(0)
    x = rng.randn(500, 12) @ rng.randn(12, 12) + rng.randn(12)
    comps, var, mean = dirs.pca(x, 6)
    sk = PCA(6, svd_solver="full").fit(x)
    np.testing.assert_allclose(mean, sk.mean_, atol=1e-12)
    np.testing.assert_allclose(var, sk.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(comps * sk.components_, axis=1)), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.abs(comps), np.abs(sk.components_), atol=1e-10)


def test_ganspace_is_pca_of_sampled_w(G):
    from sklearn.decomposition import PCA

    found = dirs.ganspace(G, n_samples=600, k=4, layers=(4, 8), seed=3)
    w = np.concatenate(list(dirs.sample_w_batches(G, 600, seed=3, batch=1000)))
    assert w.shape == (600, 32)
    sk = PCA(4, svd_solver="full").fit(w)
    v = np.stack([d.vector for d in found]).astype(np.float64)
    np.testing.assert_allclose(np.abs(np.sum(v * sk.components_, axis=1)), 1.0, atol=1e-5)
    np.testing.assert_allclose([d.meta["stdev"] ** 2 for d in found], sk.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose([d.meta["variance_ratio"] for d in found], sk.explained_variance_ratio_, rtol=1e-4)
    assert all(d.layers == (4, 8) and d.default_range[1] == pytest.approx(2 * d.meta["stdev"]) for d in found)
    with pytest.raises(ValueError):
        dirs.ganspace(G, n_samples=10, layers=(8, 20))


# --- InterFaceGAN ----------------------------------------------------------------------------


def _planted(n=2000, d=32, seed=0):
    rng = np.random.RandomState(seed)
    normal = _unit(d, seed + 100)
    x = rng.randn(n, d) * rng.uniform(0.5, 1.5, d) + rng.randn(d) * 0.2
    score = x @ normal + 0.1 * rng.randn(n)
    return x, score, normal


def test_interfacegan_recovers_planted_binary():
    x, score, normal = _planted()
    d = dirs.interfacegan(x, (score > 0).astype(int), name="smile")
    assert float(d.vector @ normal) > 0.95
    assert d.meta["labels"] == "binary" and d.meta["val_accuracy"] > 0.9
    # -1/+1 and bool labels are binary too
    assert float(dirs.interfacegan(x, np.where(score > 0, 1, -1)).vector @ normal) > 0.95
    assert float(dirs.interfacegan(x, score > 0).vector @ normal) > 0.95


def test_interfacegan_recovers_planted_continuous():
    x, score, normal = _planted(n=4000, seed=1)
    d = dirs.interfacegan(x, score, name="age", ratio=0.2, layers=(0, 8))
    assert float(d.vector @ normal) > 0.95
    assert d.meta["labels"] == "continuous" and d.layers == (0, 8)


def test_interfacegan_errors():
    x, score, _ = _planted(n=100)
    with pytest.raises(DirectionError, match="each class"):
        dirs.interfacegan(x, np.ones(100, int))
    with pytest.raises(DirectionError, match="labels"):
        dirs.interfacegan(x, np.ones(99))
    with pytest.raises(DirectionError, match="ratio"):
        dirs.interfacegan(x, score, ratio=0.001)


# --- conditioning --------------------------------------------------------------------------------


def test_condition_projects_out():
    a = Direction("age", _unit(32, 1))
    g = Direction("gender", _unit(32, 2))
    e = Direction("glasses", _unit(32, 3))
    c = dirs.condition(a, g)
    assert abs(float(c.vector @ g.vector)) < 1e-6 and abs(np.linalg.norm(c.vector) - 1) < 1e-6
    c2 = dirs.condition(a, g, e)
    assert abs(float(c2.vector @ g.vector)) < 1e-6 and abs(float(c2.vector @ e.vector)) < 1e-6
    assert c2.meta["conditioned_on"] == ["gender", "glasses"] and c2.name == "age"
    with pytest.raises(DirectionError, match="span"):
        dirs.condition(Direction("x", g.vector), g)
    with pytest.raises(DirectionError, match="sizes"):
        dirs.condition(a, Direction("small", np.ones(8)))


# --- files -------------------------------------------------------------------------------------


def test_interfacegan_npy_round_trip(tmp_path):
    d = Direction("age", _unit(32, 4).astype(np.float32))
    p = dirs.save_interfacegan_npy(d, tmp_path / "age_w_boundary.npy")
    raw = np.load(p)
    assert raw.shape == (1, 32) and raw.dtype == np.float32
    back = dirs.load_interfacegan_npy(p, w_dim=32, num_ws=8)
    assert back.name == "age" and np.array_equal(back.vector, d.vector)
    np.save(tmp_path / "flat.npy", d.vector)  # [w_dim] is accepted too
    assert np.array_equal(dirs.load_interfacegan_npy(tmp_path / "flat.npy", w_dim=32).vector, d.vector)


def test_interfacegan_npy_wrong_size_says_so(tmp_path):
    np.save(tmp_path / "big.npy", np.ones((1, 512), np.float32))
    with pytest.raises(DirectionError, match=r"512 values.*w_dim=32") as e:
        dirs.load_interfacegan_npy(tmp_path / "big.npy", w_dim=32)
    assert "big.npy" in str(e.value)
    np.save(tmp_path / "wp.npy", np.ones((1, 8 * 32), np.float32))
    with pytest.raises(DirectionError, match="W\\+ boundary"):
        dirs.load_interfacegan_npy(tmp_path / "wp.npy", w_dim=32, num_ws=8)
    np.save(tmp_path / "two.npy", np.ones((2, 16), np.float32))
    with pytest.raises(DirectionError, match="w_dim=32"):
        dirs.load_interfacegan_npy(tmp_path / "two.npy", w_dim=32)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DirectionError, match="never loads") as e:
        dirs.load_interfacegan_npy(tmp_path / "obj.npy", w_dim=32)
    assert "allow_pickle" not in str(e.value) and "unsafe" not in str(e.value)
    (tmp_path / "text.npy").write_text("not numpy at all\n")
    with pytest.raises(DirectionError) as e:
        dirs.load_interfacegan_npy(tmp_path / "text.npy", w_dim=32)
    assert "allow_pickle" not in str(e.value) and "unsafe" not in str(e.value)
    with pytest.raises(DirectionError, match="no such file"):
        dirs.load_interfacegan_npy(tmp_path / "missing.npy", w_dim=32)


def test_ganspace_npz_round_trip(tmp_path, G):
    found = dirs.ganspace(G, n_samples=300, k=3, seed=0)
    found[1] = found[1].with_layers((0, 4))
    p = dirs.save_ganspace_npz(found, tmp_path / "comp.npz")
    with np.load(p) as z:
        assert z["lat_comp"].shape == (3, 1, 32) and z["lat_stdev"].shape == (3,)
    back = dirs.load_ganspace_npz(p, w_dim=32, num_ws=G.num_ws)
    assert [d.name for d in back] == ["pc0", "pc1", "pc2"]
    assert [d.layers for d in back] == [None, (0, 4), None]
    for a, b in zip(found, back):
        assert np.array_equal(a.vector, b.vector)
        assert b.default_range == pytest.approx(a.default_range, rel=1e-6)
    assert len(dirs.load_directions(p, w_dim=32)) == 3


def test_ganspace_npz_foreign_file_and_wrong_size(tmp_path):
    rng = np.random.RandomState(0)
    comp = np.linalg.qr(rng.randn(32, 4))[0].T.astype(np.float32)[:, None, :]   # GANSpace layout [k, 1, w_dim]
    buf = io.BytesIO()
    np.savez_compressed(buf, lat_comp=comp, lat_mean=np.zeros((1, 32), np.float32),
                        lat_stdev=np.array([3, 2, 1, 0.5], np.float32), var_ratio=np.ones(4, np.float32))
    (tmp_path / "g.npz").write_bytes(buf.getvalue())
    got = dirs.load_ganspace_npz(tmp_path / "g.npz", w_dim=32, layers=(2, 6))
    assert len(got) == 4 and got[0].default_range == (-6.0, 6.0) and got[3].layers == (2, 6)
    np.testing.assert_allclose(got[2].vector, comp[2, 0], atol=1e-6)
    with pytest.raises(DirectionError, match=r"32 values.*w_dim=512"):
        dirs.load_ganspace_npz(tmp_path / "g.npz", w_dim=512)
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(DirectionError, match="not a GANSpace file"):
        dirs.load_ganspace_npz(tmp_path / "other.npz", w_dim=32)
    with pytest.raises(DirectionError, match="unknown direction file"):
        dirs.load_directions(tmp_path / "x.txt", w_dim=32)
