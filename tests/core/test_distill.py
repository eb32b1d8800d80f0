"""Style-mixing distillation (seed 002) without training: crossover rows of the triplets, SSIM and
its filter, the student's shapes/range and file round trip, FastMixer / InversionMixer, pack lookup."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from studio.core.distill import (
    FastMixer,
    InversionMixer,
    MixError,
    crossover_row,
    crossover_strengths,
    fastest_encoder,
    find_student,
    load_student,
    make_mixer,
    mix_at_crossover,
    render_triplets,
    ssim,
    ssim_filter,
)
from studio.core.errors import CheckpointError
from studio.core.formats import ModelBundle, stylestudio_fmt
from studio.core.nets import NETWORKS, network_class
from studio.core.nets.distill import DistillStudent, stack_inputs
from studio.core.nets.stylegan2 import Generator
from trainers.distill_data import NpzTriplets, TripletSource, latents_for_seeds, triplet_seeds, write_triplets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = Generator(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16).eval()
    with torch.no_grad():
        g.mapping.w_avg.copy_(g.mapping(torch.randn(500, 16)).mean(0))
    return g


def _manual_mix(wc: torch.Tensor, ws: torch.Tensor, num_ws: int, cross: int) -> torch.Tensor:
    """W [N, w_dim] x 2 -> W+ built row by row: content rows before the crossover, style rows after."""
    rows = [wc if i < cross else ws for i in range(num_ws)]
    return torch.stack(rows, dim=1)


# -- crossover -------------------------------------------------------------------------------------


def test_crossover_rows_follow_the_layer_groups():
    assert crossover_row(10, "medium") == 4 and crossover_row(10, "fine") == 8
    assert crossover_row(18, "medium") == 4 and crossover_row(18, "fine") == 8
    with pytest.raises(ValueError, match="every row from the style"):
        crossover_row(10, "coarse")
    with pytest.raises(ValueError, match="no fine rows"):
        crossover_row(6, "fine")  # a 16-px model has no fine group
    with pytest.raises(ValueError, match="unknown layer group"):
        crossover_row(10, "middle")
    assert crossover_strengths(10, 4).tolist() == [0] * 4 + [1] * 6


def test_mix_at_crossover_copies_content_rows_before_and_style_rows_after():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 10, 8, generator=g), torch.randn(3, 10, 8, generator=g)
    for cross in (1, 4, 8, 9):
        m = mix_at_crossover(a, b, cross)
        assert torch.equal(m[:, :cross], a[:, :cross]) and torch.equal(m[:, cross:], b[:, cross:])


def test_triplets_render_exactly_the_content_rows_before_the_crossover_and_style_rows_after(G):
    wc, ws = latents_for_seeds(G, [1, 2, 3]), latents_for_seeds(G, [4, 5, 6])
    cross = crossover_row(G.num_ws, "medium")
    c, s, t = render_triplets(G, wc, ws, cross)
    with torch.no_grad():
        expect_t = G.synthesis(_manual_mix(wc, ws, G.num_ws, cross), noise_mode="const").clamp(-1, 1)
        expect_c = G.synthesis(_manual_mix(wc, wc, G.num_ws, cross), noise_mode="const").clamp(-1, 1)
        shifted = G.synthesis(_manual_mix(wc, ws, G.num_ws, cross + 1), noise_mode="const").clamp(-1, 1)
    # (batch composition changes float rounding of the grouped convs: compare to 1e-5)
    assert torch.allclose(t, expect_t, atol=1e-5) and torch.allclose(c, expect_c, atol=1e-5)
    for other in (shifted, c, s):
        assert float((t - other).abs().max()) > 1e-2


def test_training_batches_and_data_sets_hold_the_same_triplets(G, tmp_path):
    cross = crossover_row(G.num_ws, "medium")
    b = TripletSource(G, cross, batch=4).batch(5)
    assert b.content_seeds.tolist() == [20, 21, 22, 23] and b.style_seeds.tolist() == [21, 22, 23, 20]
    c, s, t = render_triplets(G, latents_for_seeds(G, b.content_seeds), latents_for_seeds(G, b.style_seeds), cross)
    for x, y in ((c, b.content), (s, b.style), (t, b.target)):
        assert torch.allclose(x, y, atol=1e-5)
    # a data set: each face rendered once, stored latents re-render the stored targets
    cs, ss = triplet_seeds(7, 100, styles_per_face=3)
    assert (cs != ss).all() and len(set(cs.tolist()) | set(ss.tolist())) == 4
    path = write_triplets(G, tmp_path / "t.npz", 7, cross, styles_per_face=3, seed_start=100)
    d = np.load(path)
    assert d["content"].shape == (7, 16, 16, 3) and d["content"].dtype == np.uint8 and int(d["crossover"]) == cross
    with torch.no_grad():
        t = G.synthesis(_manual_mix(torch.from_numpy(d["w_content"]), torch.from_numpy(d["w_style"]), G.num_ws, cross),
                        noise_mode="const")
    assert np.abs(((t.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy() - d["target"]).max() <= 1
    batch = NpzTriplets(path, batch=3).batch(0)
    assert batch.target.shape == (3, 3, 16, 16) and float(batch.target.abs().max()) <= 1


# -- SSIM ------------------------------------------------------------------------------------------


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6)
    noise = torch.randn(a.shape, generator=g)
    vals = [float(ssim(a, (a + s * noise).clamp(-1, 1))[0]) for s in (0.05, 0.2, 0.8)]
    assert vals[0] > vals[1] > vals[2] and vals[0] < 1
    assert float(ssim(0.5 + 0.3 * a, 0.5 - 0.3 * a)[0]) < -0.5  # same means, anti-correlated structure
    # a constant shift only touches the luminance term: SSIM stays high but below 1
    assert 0.9 < float(ssim(a * 0.8, a * 0.8 + 0.1)[0]) < 1
    with pytest.raises(ValueError):
        ssim(a, a[:, :2])


def test_ssim_matches_a_hand_computed_window():
    # one 11x11 window (image = window): SSIM by the formula with global statistics, Gaussian-weighted
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 1, 11, 11, generator=g), torch.rand(1, 1, 11, 11, generator=g)
    x = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = (w1[:, None] * w1[None]) / w1.sum() ** 2
    A, B = a[0, 0].double(), b[0, 0].double()
    ma, mb = (w * A).sum(), (w * B).sum()
    va, vb, cov = (w * A * A).sum() - ma ** 2, (w * B * B).sum() - mb ** 2, (w * A * B).sum() - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    want = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    assert abs(float(ssim(a, b, value_range=(0, 1))[0]) - float(want)) < 1e-6
    assert abs(float(ssim(a * 2 - 1, b * 2 - 1)[0]) - float(want)) < 1e-6  # [-1, 1] by default


def test_ssim_filter_keeps_pairs_at_or_above_the_threshold_and_reports_the_median():
    keep, med = ssim_filter([0.2, 0.5, 0.6, 0.9, float("nan")][:4])
    assert keep.tolist() == [False, True, True, True] and med == pytest.approx(0.55)
    keep, _ = ssim_filter([0.49, float("nan")], threshold=0.4)
    assert keep.tolist() == [True, False]
    # on synthetic pairs: a good and a bad "projection" of the same faces
    g = torch.Generator().manual_seed(0)
    src = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    noisy = torch.cat([src[:3] + 0.05 * torch.randn(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)])
    keep, med = ssim_filter(ssim(src, noisy.clamp(-1, 1)).numpy())
    assert keep.tolist() == [True] * 3 + [False] * 3 and 0 < med < 1


# -- the student -----------------------------------------------------------------------------------


def test_student_shapes_range_and_size():
    s = DistillStudent(resolution=16, width=8, downsamples=2, blocks=1).eval()
    x = torch.randn(2, 6, 16, 16) * 3
    with torch.no_grad():
        y = s(x)
    assert y.shape == (2, 3, 16, 16) and float(y.abs().max()) < 1
    assert s.mix(x[:, :3], x[:, 3:]).shape == (2, 3, 16, 16)
    assert torch.equal(stack_inputs(x[:, :3], x[:, 3:]), x)
    with pytest.raises(ValueError, match="multiple of 4"):
        s(torch.randn(1, 6, 18, 18))
    with pytest.raises(ValueError, match="expected"):
        s(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError):
        DistillStudent(resolution=20, downsamples=3)
    # the pack preset stays small: <= 1.5M parameters (<= 3 MB as float16)
    from trainers.distill import SIZES

    p = SIZES["small"]
    n = sum(t.numel() for t in DistillStudent(64, width=p["width"], downsamples=p["downsamples"],
                                              blocks=p["blocks"]).parameters())
    assert 1.0e6 < n < 1.5e6
    assert network_class("DistillStudent") is DistillStudent and "DistillStudent" in NETWORKS


@pytest.fixture(scope="module")
def student_file(tmp_path_factory):
    torch.manual_seed(1)
    s = DistillStudent(resolution=16, width=8, downsamples=1, blocks=1).eval()
    path = tmp_path_factory.mktemp("student") / "student.safetensors"
    stylestudio_fmt.save_student(s, path, distill={"group": "medium", "crossover": 4, "num_ws": 6, "resolution": 16},
                                 half=False)
    return s, path


def test_student_file_round_trip_and_fast_mixer(student_file, tmp_path):
    s, path = student_file
    mixer = load_student(path)
    assert isinstance(mixer, FastMixer) and mixer.group == "medium" and mixer.resolution == 16
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(mixer.mix_tensor(x, x.flip(0)), s(torch.cat([x, x.flip(0)], 1)).clamp(-1, 1))
    face = (np.random.RandomState(0).rand(40, 40, 3) * 255).astype(np.uint8)
    out = mixer.mix(face, face[::-1].copy())
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    with pytest.raises(MixError, match="square"):
        mixer.mix(face[:30], face)
    # a file of another kind is refused by name
    g = Generator(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
    other = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=g), tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="not a distilled"):
        load_student(other)
    with pytest.raises(CheckpointError):
        load_student(tmp_path / "missing.safetensors")


def test_find_student_in_a_pack_checks_the_hash(student_file, tmp_path):
    _, path = student_file
    pack = tmp_path / "pack"
    pack.mkdir()
    data = path.read_bytes()
    (pack / "student-medium.safetensors").write_bytes(data)
    man = {"format": "stylestudio-model", "format_version": 1, "networks": {},
           "students": {"medium": {"file": "student-medium.safetensors", "sha256": hashlib.sha256(data).hexdigest()}}}
    (pack / "manifest.json").write_text(json.dumps(man))
    assert find_student(pack, "medium") == pack / "student-medium.safetensors"
    assert find_student(pack) == pack / "student-medium.safetensors"
    assert find_student(pack, "fine") is None and find_student(tmp_path / "nothing") is None
    assert make_mixer(pack, group="medium").kind == "student"
    with pytest.raises(MixError, match="trained to mix at the medium"):
        make_mixer(None, student=path, group="fine")
    (pack / "student-medium.safetensors").write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="sha256"):
        find_student(pack, "medium")


def test_inversion_mixer_is_encode_mix_synthesise(G):
    from studio.core.nets.crg import CRGEncoder
    from studio.core.nets.encoding import EncoderPipeline

    enc = CRGEncoder(input_size=16, out_dim=16, space="w", channels=(4, 8), convs=(1, 1), hidden=0, dropout=0.0).eval()
    big = CRGEncoder(input_size=16, out_dim=16, space="w", channels=(8, 16), convs=(1, 1), hidden=0, dropout=0.0)
    la = G.mapping.w_avg.reshape(1, -1).repeat(G.num_ws, 1)
    pipes = {"crg": EncoderPipeline(enc, G, la, kind="crg", out_size=16).eval(),
             "psp": EncoderPipeline(big, G, la, kind="crg", out_size=16).eval()}
    assert fastest_encoder(pipes) == "crg" and fastest_encoder({}) is None
    mixer = InversionMixer(G, pipes["crg"], 4, method="crg")
    assert mixer.group == "medium"
    c, s = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        wc, ws = pipes["crg"].encode(c), pipes["crg"].encode(s)
        want = G.synthesis(torch.cat([wc[:, :4], ws[:, 4:]], 1), noise_mode="const").clamp(-1, 1)
    assert torch.allclose(mixer.mix_tensor(c, s), want, atol=1e-6)
    with pytest.raises(ValueError):
        InversionMixer(G, pipes["crg"], 0)
    with pytest.raises(MixError, match="neither a distilled student nor an encoder"):
        make_mixer(None, ModelBundle(format="stylestudio", path="", generator=G))


def test_face_to_x_pairs_project_score_and_filter(G):
    from studio.core.projector import ProjectorConfig
    from trainers.distill_data import face_to_x_pairs

    cfg = ProjectorConfig(steps=2, w_avg_samples=200, preview_every=0)
    torch.manual_seed(5)
    G2 = Generator(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8).eval()
    r = face_to_x_pairs(G, G2, [1, 2], config=cfg, threshold=-1.0)
    assert r["source"].shape == (2, 16, 16, 3) and r["target"].shape == (2, 16, 16, 3)  # G2 upsampled to G's size
    assert r["keep"].all() and r["kept"] == 2 and r["median_ssim"] == pytest.approx(float(np.median(r["ssim"])))
    r = face_to_x_pairs(G, G, [3], config=cfg, threshold=1.01)  # nothing reaches SSIM 1.01
    assert r["kept"] == 0 and -1 <= r["ssim"][0] <= 1
