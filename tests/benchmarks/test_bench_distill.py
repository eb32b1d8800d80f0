"""benchmarks/bench_distill.py with a tiny student and a tiny model (CRG encoder) on 4 held-out triplets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_distill_reports_quality_speed_and_writes_the_grid(tmp_path, capsys):
    import bench_distill

    from studio.core.formats import ModelBundle, stylestudio_fmt
    from studio.core.nets.crg import CRGEncoder
    from studio.core.nets.distill import DistillStudent
    from studio.core.nets.encoding import EncoderPipeline
    from studio.core.nets.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16).eval()
    enc = CRGEncoder(input_size=16, out_dim=16, space="w", channels=(4, 8), convs=(1, 1), hidden=0, dropout=0.0)
    la = G.mapping.w_avg.reshape(1, -1).repeat(G.num_ws, 1)
    pipe = EncoderPipeline(enc.eval(), G, la, kind="crg", out_size=16).eval()
    model = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, encoder=pipe, latent_avg=la),
                                 tmp_path / "model.safetensors")
    student = stylestudio_fmt.save_student(DistillStudent(16, width=8, downsamples=1, blocks=1).eval(),
                                           tmp_path / "s.safetensors",
                                           distill={"group": "medium", "crossover": 4, "num_ws": 6, "resolution": 16})
    out = tmp_path / "out"
    assert bench_distill.main(["--student", str(student), "--model", str(model), "--triplets", "4", "--grid", "3",
                               "--repeats", "2", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["triplets"] == 4 and res["inversion_method"] == "crg" and res["crossover"] == 4
    for path in ("student", "inversion"):
        q = res["quality"][path]
        assert 0 <= q["lpips"] and -1 <= q["ssim"] <= 1 and 0 <= q["l1"] <= 2
    assert res["speed"]["student_ms"] > 0 and res["speed"]["speedup"] > 0
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (5 * 16, 3 * 16, 3)  # content / style / target / student / inversion rows
    assert "held-out triplets" in capsys.readouterr().out
    # a student made for another generator is refused
    G8 = Generator(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
    other = stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G8), tmp_path / "g8.safetensors")
    assert bench_distill.main(["--student", str(student), "--model", str(other), "--out", str(out)]) == 2
