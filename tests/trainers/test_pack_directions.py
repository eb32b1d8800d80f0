"""The pack's edit directions: the loader (:func:`load_pack_directions`), the writer and the small
pure pieces of ``trainers.pack.directions``; the real pack's directions load with their declared
shapes, layers and ranges, and a tampered file is refused. No training, no dlib: fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.core.directions import Direction, load_pack_directions
from studio.core.errors import DirectionError
from trainers.pack import directions as pd

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "resources" / "pack"

# ----------------------------------------------------------------------------
# A tiny pack (w_dim 8, num_ws 4): writer + loader


def _unit(seed: int, n: int = 8) -> np.ndarray:
    v = np.random.RandomState(seed).randn(n).astype(np.float32)
    return v / np.linalg.norm(v)


def _tiny_pack(root: Path) -> tuple[Path, list[pd.PackDirection]]:
    root.mkdir(parents=True, exist_ok=True)
    man = {"format": "stylestudio-model", "format_version": 1, "networks": {"generator": {"file": "generator.safetensors"}},
           "w_dim": 8, "num_ws": 4, "layer_groups": {"coarse": [0, 4], "medium": [4, 4], "fine": [4, 4]}}
    (root / "manifest.json").write_text(json.dumps(man))
    items = [
        pd.PackDirection("age", Direction("age", _unit(0), source="interfacegan"), "Age", "interfacegan",
                         notes="svm", default_scale=1.3),
        pd.PackDirection("smile", Direction("smile", _unit(1), layers=(0, 2), default_range=(-2.0, 4.0)), "Smile",
                         "interfacegan"),
        pd.PackDirection("ganspace_0", Direction("yaw", _unit(2), layers=(0, 2), default_range=(-5.0, 5.0),
                                                 meta={"stdev": 2.5}), "Pose / yaw", "ganspace", default_scale=2.5),
        pd.PackDirection("ganspace_1", Direction("light", _unit(3), layers=(2, 4), default_range=(-4.0, 4.0)),
                         "Lighting", "ganspace"),
        pd.PackDirection("sefa_coarse_0", Direction("sefa c0", _unit(4), layers=(0, 4)), "SeFa 0", "sefa"),
    ]
    return root, items


def test_write_and_load_pack_directions(tmp_path):
    root, items = _tiny_pack(tmp_path / "pack")
    (root / "directions-stale.npy").write_bytes(b"old")          # an earlier run's file, no longer listed
    entries = pd.write_pack_directions(root, items)

    man = json.loads((root / "manifest.json").read_text())
    assert man["directions"] == entries and list(entries) == [p.key for p in items]
    assert man["networks"] == {"generator": {"file": "generator.safetensors"}}     # the rest is kept
    assert not (root / "directions-stale.npy").exists()
    assert sorted(p.name for p in root.glob("directions-*")) == [
        "directions-age.npy", "directions-ganspace.npz", "directions-sefa.npz", "directions-smile.npy"]
    e = entries["ganspace_1"]
    assert e["file"] == "directions-ganspace.npz" and e["index"] == 1 and e["layers"] == [2, 4]
    assert e["range"] == [-4.0, 4.0] and e["label"] == "Lighting" and e["method"] == "ganspace"
    assert len(e["sha256"]) == 64 and entries["age"]["layers"] == [0, 4] and entries["age"]["default_scale"] == 1.3

    dirs = load_pack_directions(root)
    assert [d.name for d in dirs] == ["age", "smile", "yaw", "light", "sefa c0"]
    for d, p in zip(dirs, items):
        np.testing.assert_allclose(d.vector, p.direction.vector, atol=1e-7)
        assert d.span(4) == p.direction.span(4)
        assert d.default_range == p.direction.default_range
        assert d.source == p.method and d.meta["label"] == p.label and d.meta["key"] == p.key
    assert dirs[0].layers == (0, 4) and dirs[0].meta["default_scale"] == 1.3 and dirs[0].meta["notes"] == "svm"

    # A loaded bundle works the same as the folder (its meta carries the manifest).
    bundle = SimpleNamespace(meta={"manifest": man}, path=str(root))
    assert [d.name for d in load_pack_directions(bundle)] == [d.name for d in dirs]
    assert [d.name for d in load_pack_directions(root / "manifest.json")] == [d.name for d in dirs]


def test_load_pack_directions_refuses_tampered_and_unsafe_files(tmp_path, caplog):
    root, items = _tiny_pack(tmp_path / "pack")
    pd.write_pack_directions(root, items)
    mpath = root / "manifest.json"
    good = json.loads(mpath.read_text())

    data = bytearray((root / "directions-ganspace.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "directions-ganspace.npz").write_bytes(bytes(data))
    with pytest.raises(DirectionError, match="sha256"):
        load_pack_directions(root)
    pd.write_pack_directions(root, items)

    def with_entry(**change):
        man = json.loads(json.dumps(good))
        man["directions"]["age"].update(change)
        mpath.write_text(json.dumps(man))

    for bad in ("../directions-age.npy", ".hidden.npy", "sub/x.npy", "model.pkl", "x.pt", ""):
        with_entry(file=bad)
        with pytest.raises(DirectionError, match="bad file name"):
            load_pack_directions(root)
    with_entry(file="missing.npy")
    with pytest.raises(DirectionError, match="missing"):
        load_pack_directions(root)
    with_entry(layers=[2, 9])
    with pytest.raises(DirectionError, match="does not fit"):
        load_pack_directions(root)
    with_entry(range=[1, -1])
    with pytest.raises(DirectionError, match="empty range"):
        load_pack_directions(root)
    man = json.loads(json.dumps(good))
    man["directions"]["ganspace_1"]["index"] = 5
    mpath.write_text(json.dumps(man))
    with pytest.raises(DirectionError, match="index"):
        load_pack_directions(root)
    man = json.loads(json.dumps(good))
    man["w_dim"] = 16                                             # made for a different model
    mpath.write_text(json.dumps(man))
    with pytest.raises(DirectionError, match="w_dim=16"):
        load_pack_directions(root)

    # No sha256: loaded, with a warning; no directions at all: an empty list.
    man = json.loads(json.dumps(good))
    del man["directions"]["age"]["sha256"]
    mpath.write_text(json.dumps(man))
    assert len(load_pack_directions(root)) == len(items)
    assert "not verified" in caplog.text
    man.pop("directions")
    mpath.write_text(json.dumps(man))
    assert load_pack_directions(root) == []


def test_pickle_in_a_direction_file_is_refused(tmp_path):
    root, items = _tiny_pack(tmp_path / "pack")
    entries = pd.write_pack_directions(root, items[:1])
    import hashlib
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (root / "directions-age.npy").write_bytes(buf.getvalue())
    man = json.loads((root / "manifest.json").read_text())
    man["directions"]["age"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(man))
    assert entries["age"]["sha256"] != man["directions"]["age"]["sha256"]
    with pytest.raises(DirectionError):
        load_pack_directions(root)


# ----------------------------------------------------------------------------
# Pure pieces of the recipe


def _mouth(open_px: float, width: float = 40.0) -> np.ndarray:
    """68 landmarks with eyes 60 px apart and a mouth ``width`` wide, inner lips ``open_px`` apart."""
    lm = np.zeros((68, 2))
    lm[36:42] = [100, 100]
    lm[42:48] = [160, 100]
    lm[48], lm[54] = [130 - width / 2, 200], [130 + width / 2, 200]
    lm[60], lm[64] = [130 - width / 2 + 4, 200], [130 + width / 2 - 4, 200]
    for top, bottom, x in ((61, 67, 125), (62, 66, 130), (63, 65, 135)):
        lm[top], lm[bottom] = [x, 200 - open_px / 2], [x, 200 + open_px / 2]
    return lm


def test_mouth_ratios():
    closed, open_ = _mouth(0.0), _mouth(16.0)
    assert pd.mouth_aspect_ratio(closed) == 0
    assert pd.mouth_aspect_ratio(open_) == pytest.approx(16 / 32)
    assert pd.mouth_width_ratio(_mouth(0, width=60)) == pytest.approx(1.0)
    both = pd.mouth_aspect_ratio(np.stack([closed, open_, np.full((68, 2), np.nan)]))
    assert both.shape == (3,) and both[1] > both[0] and np.isnan(both[2])


def test_mean_spearman():
    a = np.linspace(-3, 3, 13)
    rows = np.stack([a, -a, np.ones(13), np.where(np.arange(13) % 2, np.nan, a), np.full(13, np.nan)])
    mean, frac, used = pd.mean_spearman(a, rows)
    assert used == 4                        # the all-NaN face is skipped
    assert mean == pytest.approx((1 - 1 + 0 + 1) / 4) and frac == pytest.approx(0.5)


def test_labeller_fit_and_roundtrip(tmp_path):
    rng = np.random.RandomState(0)
    feats = rng.randn(400, 12) * 3 + 5
    genders = (feats[:, 0] > 5).astype(np.int64)
    ages = np.expm1(np.clip(2.5 + 0.3 * (feats[:, 1] - 5), 0.7, 4.7))
    lab = pd.fit_labeller(feats, ages, genders, age_alpha=1.0, C=1.0)
    m = pd.labeller_metrics(lab, feats, ages, genders)
    assert m["gender_accuracy"] > 0.95 and m["age_spearman"] > 0.95
    lab.metrics = {"heldout": m}
    path = tmp_path / "labeller.npz"
    path.write_bytes(lab.to_bytes())
    back = pd.Labeller.from_file(path)
    np.testing.assert_allclose(back.age(feats), lab.age(feats))
    np.testing.assert_allclose(back.female_logit(feats), lab.female_logit(feats))
    assert back.metrics == lab.metrics and back.feature_size == lab.feature_size
    assert (lab.age(feats) >= 1).all() and (lab.age(feats) <= 116).all()


def test_image_stats():
    imgs = torch.full((2, 3, 16, 16), -1.0)
    imgs[0, :, 4:12, 4:12] = 1.0                  # a white face on black
    imgs[1] = 1.0
    imgs[1, :, 4:12, 4:12] = -1.0                 # a black face on white
    st = pd.image_stats(imgs)
    assert st.shape == (2, 3)
    np.testing.assert_allclose(st[:, 0], [1, -1], atol=1e-6)     # face brightness
    np.testing.assert_allclose(st[:, 1], [-1, 1], atol=1e-6)     # background (border) brightness
    assert st[0, 2] == pytest.approx(st[1, 2]) and st[0, 2] > 0.5


def _synthetic_samples(n: int = 600, w_dim: int = 12) -> tuple[pd.Samples, pd.Labeller]:
    """w whose axes 0..6 drive age, gender, mouth width, mouth opening, brightness, background, contrast."""
    rng = np.random.RandomState(0)
    w = rng.randn(n, w_dim).astype(np.float32)
    feats = w[:, :2].astype(np.float64)
    lab = pd.Labeller(64, np.zeros(2), np.ones(2), np.array([0.5, 0.0]), 3.0, np.array([0.0, 2.0]), 0.0)
    lm = np.stack([_mouth(open_px=10 + 3 * a, width=60 + 8 * b) for a, b in zip(w[:, 3], w[:, 2])])
    lm[:5] = np.nan                                                # no face found in five samples
    return pd.Samples(w, feats, lm, w[:, 4:7].astype(np.float64)), lab


def test_interfacegan_directions_are_conditioned_as_declared():
    samples, lab = _synthetic_samples()
    items = pd.interfacegan_directions(samples, lab)
    assert [p.key for p in items] == list(pd.ATTRIBUTES)
    dirs = {p.key: p.direction for p in items}
    for axis, key in enumerate(pd.ATTRIBUTES):
        d = dirs[key]
        assert int(np.argmax(np.abs(d.vector))) == axis and d.vector[axis] > 0, key   # the right attribute, signed
        assert d.default_range == pd.ATTRIBUTES[key]["range"] and d.layers is None
        for other in pd.ATTRIBUTES[key]["condition"]:
            if other in dirs and list(pd.ATTRIBUTES).index(other) < list(pd.ATTRIBUTES).index(key):
                assert abs(float(d.vector @ dirs[other].vector)) < 1e-5, (key, other)
    assert "conditioned on age" in items[1].notes and "595 generated faces" in items[2].notes
    assert all(p.default_scale > 0 for p in items)


def test_conflicting_duplicates(tmp_path):
    (tmp_path / "duplicates.csv").write_text(
        "group,file,age,gender,race\n0,images/a.jpg,30,0,1\n0,images/b.jpg,31,0,1\n1,images/c.jpg,5,1,2\n1,images/d.jpg,5,1,2\n")
    assert pd.conflicting_duplicates(tmp_path) == {"images/a.jpg", "images/b.jpg"}
    assert pd.conflicting_duplicates(tmp_path / "nowhere") == set()


def test_dry_run_prints_the_config(capsys):
    assert pd.main(["--dry-run", "--samples", "500", "--sefa-k", "coarse=2"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["samples"] == 500 and cfg["sefa_k"] == "coarse=2"
    with pytest.raises(SystemExit):
        pd.main(["--dry-run", "--sefa-k", "huge=3"])


# ----------------------------------------------------------------------------
# The real pack


def _pack_manifest() -> dict:
    mpath = PACK / "manifest.json"
    if not mpath.is_file():
        pytest.skip("no default pack in resources/pack")
    man = json.loads(mpath.read_text())
    if not man.get("directions"):
        pytest.skip("the default pack has no directions yet (python -m trainers.pack.directions)")
    return man


def test_the_pack_directions_load_as_declared():
    man = _pack_manifest()
    dirs = load_pack_directions(PACK)
    assert len(dirs) == len(man["directions"])
    names = [d.name for d in dirs]
    assert len(set(names)) == len(names)
    assert {"age", "gender", "smile"} <= set(names)
    assert {d.source for d in dirs} == {"interfacegan", "ganspace", "sefa"}
    for d, (key, e) in zip(dirs, man["directions"].items()):
        assert d.vector.shape == (man["w_dim"],) and abs(float(np.linalg.norm(d.vector)) - 1) < 1e-5
        assert list(d.span(man["num_ws"])) == e["layers"] and 0 <= e["layers"][0] < e["layers"][1] <= man["num_ws"]
        assert d.default_range == tuple(e["range"]) and d.default_range[0] < 0 < d.default_range[1]
        assert e["label"] and e["notes"] and e["method"] == d.source and d.meta["key"] == key
        assert (PACK / e["file"]).is_file() and len(e["sha256"]) == 64
    for key in ("age", "gender", "smile"):
        assert man["directions"][key]["layers"] == [0, man["num_ws"]]
        assert "Spearman" in man["directions"][key]["notes"]


def test_the_pack_loads_with_its_directions():
    _pack_manifest()
    from studio.core.formats import stylestudio_fmt
    from studio.core.latent import apply_direction

    bundle = stylestudio_fmt.load(PACK)
    dirs = {d.name: d for d in load_pack_directions(bundle)}
    G = bundle.generator
    age = dirs["age"]
    age.check_fits(G.w_dim, G.num_ws)
    ws = G.map(G.sample_z(2, seed=3), psi=0.7)
    n = torch.from_numpy(age.vector)
    with torch.no_grad():
        lo, hi = (G.synthesis(apply_direction(ws, n, a, age.span(G.num_ws)), noise_mode="const")
                  for a in age.default_range)
    assert float((hi - lo).abs().mean()) > 0.05          # the slider's ends visibly differ


def test_a_tampered_pack_direction_is_refused(tmp_path):
    man = _pack_manifest()
    root = tmp_path / "pack"
    root.mkdir()
    shutil.copy(PACK / "manifest.json", root / "manifest.json")
    files = sorted({e["file"] for e in man["directions"].values()})
    for f in files:
        shutil.copy(PACK / f, root / f)
    assert len(load_pack_directions(root)) == len(man["directions"])
    victim = root / man["directions"]["age"]["file"]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(DirectionError, match="sha256"):
        load_pack_directions(root)


def test_encoded_faces_are_scored_like_generated_ones(tmp_path, monkeypatch):
    """--encoded: each chip's code is rendered and measured; its w is the mean of the W+ rows; chunks
    are cached; the normals' notes say how many of each kind of face they were fitted on."""
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=64, channel_max=16).eval()
    codes = torch.randn(7, G.num_ws, G.w_dim)
    images = SimpleNamespace(batch=lambda idx, device: torch.stack([torch.full((3, 16, 16), float(i)) for i in idx]))

    def encoder(x):  # chip i -> codes[i]
        return None, codes[x[:, 0, 0, 0].long()]

    def fx(imgs):
        return imgs.mean(dim=(2, 3)).numpy().astype(np.float64)
    monkeypatch.setattr(pd, "landmarks_of", lambda imgs: np.full((len(imgs), 68, 2), np.nan))
    idx = np.array([6, 0, 3, 1, 5])
    s = pd.encoded_faces(G, encoder, fx, images, idx, tag="t", cache_dir=tmp_path, chunk=2)
    np.testing.assert_allclose(s.w, codes[idx].mean(1).numpy(), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        np.testing.assert_allclose(s.feats, fx(pd.render(G, codes[idx])), rtol=1e-4, atol=1e-5)
    assert s.stats.shape == (5, 3) and not s.detected.any()
    assert len(list(tmp_path.glob("encoded-t-2-*.npz"))) == 3
    monkeypatch.setattr(pd, "render", lambda *a, **k: pytest.fail("rendered again despite the cache"))
    again = pd.encoded_faces(G, encoder, fx, images, idx, tag="t", cache_dir=tmp_path, chunk=2)
    np.testing.assert_array_equal(again.w, s.w)

    samples, lab = _synthetic_samples()
    both = pd.concat_samples(samples, pd.Samples(samples.w[:100], samples.feats[:100], samples.landmarks[:100],
                                                 samples.stats[:100]))
    items = pd.interfacegan_directions(both, lab, encoded=100)
    assert "600 generated faces (psi 1) and 100 train chips inverted with the e2style encoder" in items[0].notes
    assert "SVM (C 0.1) normal in W on 100 train chips inverted with the e2style encoder (mean" in items[1].notes
    assert "595 generated faces (psi 1) and 95 train chips" in items[2].notes  # no face found in 5 of each


def test_fit_mask():
    np.testing.assert_array_equal(pd.fit_mask(5, 2, "all"), [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(pd.fit_mask(5, 2, "encoded"), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(pd.fit_mask(5, 2, "generated"), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(pd.fit_mask(5, 0, "encoded"), [1, 1, 1, 1, 1])   # nothing encoded: all
    with pytest.raises(ValueError):
        pd.fit_mask(5, 2, "some")


def test_gender_is_fitted_on_the_encoded_chips_only():
    """ATTRIBUTES['gender'] fit_on='encoded': when the encoded chips' gender follows another axis of w
    than the generated faces', the normal follows the encoded chips; the other attributes use both."""
    assert pd.ATTRIBUTES["gender"]["fit_on"] == "encoded"
    samples, lab = _synthetic_samples()
    enc_feats = samples.feats.copy()
    enc_feats[:, 1] = samples.w[:, 8]                  # encoded chips: gender on axis 8
    both = pd.concat_samples(samples, pd.Samples(samples.w, enc_feats, samples.landmarks, samples.stats))
    dirs = {p.key: p.direction for p in pd.interfacegan_directions(both, lab, encoded=len(samples.w))}
    assert int(np.argmax(np.abs(dirs["gender"].vector))) == 8 and dirs["gender"].vector[8] > 0
    assert int(np.argmax(np.abs(dirs["age"].vector))) == 0
    alone = {p.key: p.direction for p in pd.interfacegan_directions(samples, lab)}  # nothing encoded: all faces
    assert int(np.argmax(np.abs(alone["gender"].vector))) == 1


@pytest.mark.parametrize("sha", list(pd.NAMES))
def test_component_names_are_unique_per_generator(sha):
    """The app lists directions by name: two components of one generator must not share one."""
    names = [e["name"] for e in pd.NAMES[sha].values() if "name" in e and not e.get("skip")]
    names += [spec["name"] for spec in pd.ATTRIBUTES.values()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


# ----------------------------------------------------------------------------
# Names carried over to a fine-tuned generator (--names-from)


def _copy_of(G, noise: float, seed: int = 0):
    import copy

    G2 = copy.deepcopy(G)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G2.parameters():
            p.add_(noise * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return G2


def test_names_carry_over_to_a_slightly_changed_generator():
    """Components that stay put (|cos| >= 0.9) keep the inspected names, rows and ranges; a
    generator with other weights gets neutral names; a flip negates the vector."""
    man = _pack_manifest()
    from studio.core.formats import load_checkpoint

    sha = man["networks"]["generator"]["sha256"]
    if sha not in pd.NAMES:
        pytest.skip("NAMES does not know the default pack's generator")
    G = load_checkpoint(PACK).generator.eval()
    cfg = pd.DirectionsConfig(ganspace_samples=3000)
    names, flips, rows = pd.inherited_names(_copy_of(G, 0.1), cfg, PACK)
    known = pd.NAMES[sha]
    kept = {k for k, _, ok in rows if ok}
    assert len(rows) == len([k for k in known if k.startswith(("ganspace", "sefa"))])
    assert len(kept) >= len(rows) - 2 and {"ganspace_0", "sefa_coarse_0"} <= kept
    for k in kept:
        assert names[k]["name" if "name" in known[k] else "skip"] == known[k].get("name", known[k].get("skip"))
        assert "the same component here" in names[k]["notes"]
    assert names["age"]["notes"].startswith(known["age"]["notes"])          # InterFaceGAN notes carry over
    comps = {p.key: p for p in pd.component_directions(G, cfg, names, flips)}
    assert comps["ganspace_0"].direction.name == known["ganspace_0"]["name"]
    assert comps["ganspace_0"].direction.span(G.num_ws) == pd._span(known["ganspace_0"]["layers"], G.num_ws)
    assert not any(known.get(k, {}).get("skip") and k in comps for k in kept)

    flipped = {p.key: p for p in pd.component_directions(G, cfg, names, {"ganspace_0": True})}
    np.testing.assert_allclose(flipped["ganspace_0"].direction.vector, -comps["ganspace_0"].direction.vector)

    other = _copy_of(G, 3.0, seed=1)   # weights swamped by noise: components elsewhere
    names2, _, rows2 = pd.inherited_names(other, cfg, PACK)
    assert sum(ok for _, _, ok in rows2) <= 2
    assert {k for k in names2 if k.startswith(("ganspace", "sefa"))} == {k for k, _, ok in rows2 if ok}


def test_names_from_a_pack_names_does_not_know_is_refused(tmp_path):
    root, _ = _tiny_pack(tmp_path / "pack")
    with pytest.raises(pd.UserError, match="--names-from .*no inspected names"):
        pd.inherited_names(None, pd.DirectionsConfig(), root)
