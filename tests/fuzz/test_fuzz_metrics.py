"""Damaged ``metrics.jsonl`` / ``config.json`` of a run: the Training window's reader
(``studio.engine.training``: ``MetricsTailer`` + ``RunModel``) never raises for file content
("Lines that are not JSON objects are counted in bad_lines and skipped"), and a trainer resuming
onto a damaged file (``trainers.common.MetricsLog``, append mode) starts a fresh line, so its next
record reads back intact."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.engine.training import MetricsTailer, RunModel
from tests.fuzz import seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import json_text, mutated_bytes, mutated_json
from trainers.common import MetricsLog

CONFIG = {"train": {"arch": "e2style", "stages": 3, "batch": 4, "max_steps": 100, "abort": "relative",
                    "abort_patience": 10, "abort_threshold": 0.01},
          "argv": ["-m", "trainers.encoder", "--arch", "e2style"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("metrics")


@st.composite
def damaged_metrics(draw):
    seed = seeds.metrics_seed()
    how = draw(st.sampled_from(["bytes", "bytes", "line", "line", "torn", "junk"]))
    if how == "bytes":
        return draw(mutated_bytes(seed))
    lines = seed.decode().splitlines()
    if how == "line":
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(json_text(json.loads(lines[i])))
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if how == "torn":  # killed mid-write: the last line is cut anywhere
        return seed[: draw(st.integers(0, len(seed)))]
    return draw(st.sampled_from([b"\x00" * 100, b"\xff\xfe{\x00}\x00", b"[1, 2]\n3\n\"x\"\nnull\n", b"\r\n" * 10,
                                 "{\"é\": 1}\n".encode("latin1"), b"{}" * 1000 + b"\n",
                                 b"[" * 100000 + b"\n{\"step\": 1}\n",
                                 b'{"step": 1e999, "stage_passes": 1e999, "kimg": -1e999}\n',
                                 b'{"event": "resume", "step": "7"}\n{"event": "abort", "step": 2.5}\n']))


def _model_view(m: RunModel):
    """Everything the Training window reads from a RunModel."""
    return (m.loss_terms, m.num_stages, m.patience, m.abort_mode, m.abort_threshold, m.abort_count,
            m.active_stages, m.stage_lanes(), m.target_steps, m.target_kimg, m.progress, m.eta_seconds, m.compute(),
            m.latest_sample(), m.latest_snapshot(), m.running)


@fuzz_settings(100)
@given(blob=damaged_metrics(), config=st.one_of(st.none(), mutated_json(CONFIG), json_text(CONFIG)),
       resume=st.booleans())
def test_training_monitor(workdir, blob, config, resume):
    run = workdir / "00000-run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    path = run / "metrics.jsonl"
    path.write_bytes(blob)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config, allow_nan=True)
        (run / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))

    def tail():
        t = MetricsTailer(path, max_bytes=4096)
        recs = []
        for _ in range(64):
            new, _ = t.poll()
            if not new and t.offset >= path.stat().st_size:
                break
            recs += new
        return recs

    _, recs = check("MetricsTailer.poll", tail, ())
    assert all(isinstance(r, dict) for r in recs)

    def model():
        m = RunModel(run)
        m.poll()
        return _model_view(m)

    check("RunModel(run dir).poll", model, ())
    if resume:  # what a resumed trainer does: append; the reader then sees the new record last
        def append_and_read():
            m = MetricsLog(path)
            m.write(event="resume", step=123)
            m.close()
            return tail()

        _, recs2 = check("MetricsLog append + MetricsTailer", append_and_read, ())
        assert recs2 and recs2[-1]["event"] == "resume" and recs2[-1]["step"] == 123
        assert json.dumps(recs2[:-1]) == json.dumps(recs)  # the torn line never swallows the new record
