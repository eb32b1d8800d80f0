"""benchmarks/bench_abortion.py's core on the tiny generator and faces of the encoder-trainer tests:
three modes, an aggressive schedule (both aborting modes abort twice in 8 steps), the table, the files,
and that re-measuring a final snapshot gives the same numbers."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.bench_abortion import (
    MODES,
    format_table,
    reevaluate_mode,
    run_bench,
    write_outputs,
)
from tests.trainers.test_encoder_trainer import data_dir, tiny_cfg, tiny_g  # noqa: F401 (fixtures)


@pytest.mark.usefixtures("one_thread")
def test_bench_core_three_modes(tiny_g, data_dir, tmp_path):  # noqa: F811
    # relative: min_delta 10 is never beaten after the first check; absolute: threshold 0 is never met.
    base = tiny_cfg(tiny_g, arch="e2style", stages=3, steps=8, abort="off", data=str(data_dir),
                    data_cache=str(tmp_path / "cache"), synthetic_fraction=0.5, heldout_fraction=0.25,
                    eval_every=4, eval_batch=4, check_every=1, abort_patience=2, min_delta=10.0,
                    abort_threshold=0.0, device="cpu")
    bench = run_bench(base, tmp_path / "out", identity=False, log=lambda *_: None)
    res = {r["mode"]: r for r in bench["results"]}
    assert [r["mode"] for r in bench["results"]] == list(MODES)
    off = res["off"]
    assert off["abort_steps"] == [] and off["final_active_stages"] == 3
    assert off["stage_passes"] == 8 * 4 * 3
    assert res["relative"]["abort_steps"] == [3, 5]   # checks 2, 3 then 4, 5 do not improve
    assert res["absolute"]["abort_steps"] == [2, 4]   # every check counts
    for mode in ("relative", "absolute"):
        r = res[mode]
        assert r["final_active_stages"] == 1
        assert r["stage_passes"] < off["stage_passes"]
    assert res["relative"]["stage_passes"] == 4 * (3 * 3 + 2 * 2 + 1 * 3)
    assert res["absolute"]["stage_passes"] == 4 * (3 * 2 + 2 * 2 + 1 * 4)
    for r in res.values():
        assert r["faces"] > 0 and r["heldout_lpips"] > 0 and r["heldout_mse"] > 0 and r["wall_s"] > 0
        assert [e["step"] for e in r["curves"]["evals"]] == [4, 8]
        assert len(r["curves"]["checks"]) == 8
    # the final snapshot measured again on the same chips gives the same numbers
    again = reevaluate_mode(base, tmp_path / "out" / "runs" / "absolute", n_heldout=4, identity=False)
    assert again["stage_passes"] == res["absolute"]["stage_passes"] and again["active_stages"] == 1
    assert again["heldout_lpips"] == pytest.approx(res["absolute"]["heldout_lpips"], abs=1e-5)
    v = {x["mode"]: x for x in bench["verdicts"]}
    assert set(v) == {"relative", "absolute"} and all(x["fewer_passes"] and x["aborted"] for x in v.values())

    table = format_table(bench)
    rows = table.splitlines()
    assert rows[0].split()[:3] == ["mode", "steps", "stage-passes"]
    assert [r.split()[0] for r in rows[1:4]] == list(MODES)
    assert "3, 5" in rows[2] and "2, 4" in rows[3]

    files = write_outputs(bench, tmp_path / "out", {"argv": []})
    js = json.loads(files[0].read_text())
    assert [r["mode"] for r in js["results"]] == list(MODES)
    with open(files[1]) as f:
        assert [r["mode"] for r in csv.DictReader(f)] == list(MODES)
    with open(files[2]) as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 3 * 8 and {"signal", "heldout_lpips", "loss_stage1"} <= set(curves[0])
