"""benchmarks/bench_pack.py on the embedded pack with a handful of held-out chips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    import bench_pack

    if not (bench_pack.UTKFACE / "images").is_dir():
        pytest.skip("UTKFace data not present")
    pytest.importorskip("dlib")
    return bench_pack


def test_heldout_faces_spread_over_ages(bench):
    """The chips are spread over the name-sorted list (names start with the age), not the first n."""
    names = [n for n, _ in bench.bench_inversion.heldout_faces(6)]
    ages = [int(n.split("_")[0]) for n in names]
    assert len(set(names)) == 6 and max(ages) - min(ages) >= 30 and sum(a >= 20 for a in ages) >= 3


def test_encoders_and_directions_report(bench, tmp_path, capsys):
    bench.main(["--only", "encoders,directions", "--invert-n", "2", "--steps", "4", "--dir-n", "2",
                "--no-identity", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    methods = report["encoders"]["methods"]
    assert {"e2style", "crg", "optimize", "hybrid"} <= set(methods)
    for m in ("e2style", "crg"):
        v = methods[m]
        assert 0 < v["lpips"] < 0.8 and v["mse"] > 0
        assert v["speedup_vs_projector"] == pytest.approx(methods["optimize"]["seconds"] / v["seconds"])
        assert v["lpips_vs_projector"] == pytest.approx(v["lpips"] / methods["optimize"]["lpips"])
    d = report["directions"]
    assert d["method"] == "e2style" and d["faces"] == 2
    per = d["per_direction"]
    assert set(per) == {"age", "gender", "smile", "mouth_open"}
    # the pack's age direction moves the independent age probe monotonically on real faces
    assert per["age"]["spearman"] > 0.8
    assert 0.9 < per["age"]["identity_cos"] <= 1
    assert "## Directions" in out and "## Inversion" in out and "[ok]" in out


def test_generator_section_averages_independent_draws(bench, tmp_path, capsys):
    """Draw 0 is the single-draw protocol; the verdict is on the mean FD over the mean floor."""
    from studio.cli.common import resolve_model
    from studio.core.formats import load_checkpoint

    G = load_checkpoint(resolve_model(None)).generator.eval()
    one = bench.bench_generator(G, n=8, seed=5, out=None, data=bench.UTKFACE, draws=1)
    two = bench.bench_generator(G, n=8, seed=5, out=tmp_path, data=bench.UTKFACE, draws=2)
    assert one["fd_draws"][0] == pytest.approx(two["fd_draws"][0], rel=1e-6)
    assert one["floor_draws"][0] == pytest.approx(two["floor_draws"][0], rel=1e-6)
    assert two["fd_draws"][1] != pytest.approx(two["fd_draws"][0])          # an independent draw
    assert two["fd_vgg16"] == pytest.approx(sum(two["fd_draws"]) / 2)
    assert two["ratio"] == pytest.approx(two["fd_vgg16"] / two["floor"])
    assert two["detected_psi0.7"] > 0.9 and Path(two["grid"]).is_file()
    bench.print_report({"generator": two})
    out = capsys.readouterr().out
    assert "mean of 2 draws" in out and "per draw" in out


def test_unknown_section_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--only", "nope"])
    assert e.value.code == 2 and "argument --only: unknown section 'nope'" in capsys.readouterr().err
