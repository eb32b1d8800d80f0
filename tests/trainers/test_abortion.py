"""The abortion rule (METHODS.md §4) replayed on loss sequences: counts, resets, the abort at exactly
the patience-th non-improving check, min_stages, both modes, min_delta, EMA sampling, events, state."""

from __future__ import annotations

import json
import math

import pytest

from trainers.abortion import AbortConfig, Abortor, replay


def _run(ab: Abortor, signals, start: int = 1):
    """Check each signal; return (counts after each check, all events)."""
    counts, events = [], []
    for i, s in enumerate(signals, start):
        events += ab.check(i, s)
        counts.append(ab.count)
    return counts, events


def _aborts(events):
    return [e for e in events if e["event"] == "abort"]


# -- relative mode ---------------------------------------------------------------------------------


def test_relative_counts_and_resets():
    ab = Abortor(AbortConfig(patience=10), num_stages=3)
    counts, events = _run(ab, [5.0, 4.0, 4.0, 4.5, 3.0, 3.0, 2.9])
    # first check improves on inf; equal is not an improvement; a rise counts; an improvement resets
    assert counts == [0, 0, 1, 2, 0, 1, 0]
    assert not _aborts(events) and ab.active_stages == 3
    # prev is the previous signal (the last one, not the best)
    assert [e["prev"] for e in events] == [None, 5.0, 4.0, 4.0, 4.5, 3.0, 3.0]


def test_relative_compares_with_previous_not_best():
    ab = Abortor(AbortConfig(patience=10), num_stages=2)
    counts, _ = _run(ab, [1.0, 3.0, 2.0])  # 2.0 < 3.0: an improvement even though worse than 1.0
    assert counts == [0, 1, 0]


@pytest.mark.parametrize("patience", [1, 3, 10])
def test_abort_at_exactly_the_patience_th_non_improving_check(patience):
    ab = Abortor(AbortConfig(patience=patience), num_stages=3)
    signals = [1.0] + [1.0] * patience  # check 1 improves on inf, then `patience` flat checks
    _, events = _run(ab, signals)
    aborts = _aborts(events)
    assert len(aborts) == 1
    assert aborts[0] == {"event": "abort", "step": patience + 1, "dropped_stage": 3, "active_stages": 2}
    assert ab.active_stages == 2 and ab.count == 0  # reset after the abort
    # one check earlier: no abort yet
    ab2 = Abortor(AbortConfig(patience=patience), num_stages=3)
    _, ev2 = _run(ab2, signals[:-1])
    assert not _aborts(ev2) and ab2.active_stages == 3 and ab2.count == patience - 1


def test_check_event_of_the_aborting_check_shows_the_full_count():
    ab = Abortor(AbortConfig(patience=2), num_stages=3)
    _, events = _run(ab, [1.0, 1.0, 1.0])
    check, abort = events[-2:]
    assert check == {"event": "abort_check", "step": 3, "signal": 1.0, "prev": 1.0, "abort_count": 2,
                     "active_stages": 3}
    assert abort == {"event": "abort", "step": 3, "dropped_stage": 3, "active_stages": 2}
    assert ab.aborts == [abort]


def test_repeated_aborts_down_to_min_stages_then_none():
    ab = Abortor(AbortConfig(patience=2, min_stages=2), num_stages=4)
    counts, events = _run(ab, [1.0] * 11)
    aborts = _aborts(events)
    # checks 3 and 5 abort (4 -> 3 -> 2); min_stages reached: no more aborts, the count keeps climbing
    assert [(a["step"], a["dropped_stage"], a["active_stages"]) for a in aborts] == [(3, 4, 3), (5, 3, 2)]
    assert ab.active_stages == 2 and not ab.can_abort
    assert counts == [0, 1, 0, 1, 0, 1, 2, 3, 4, 5, 6]


def test_min_stages_default_keeps_one_stage():
    assert replay(AbortConfig(patience=1), 3, [1.0, 1.0, 1.0, 1.0, 1.0]) == [3, 2, 1, 1, 1]


def test_single_stage_network_never_aborts():
    ab = Abortor(AbortConfig(patience=1), num_stages=1)
    _, events = _run(ab, [1.0] * 5)
    assert not _aborts(events) and ab.active_stages == 1


def test_min_delta():
    cfg = AbortConfig(patience=3, min_delta=0.1)
    ab = Abortor(cfg, num_stages=2)
    counts, _ = _run(ab, [1.0, 0.95, 0.9, 0.7, 0.65])
    # 0.05 and 0.05 are below min_delta (count), 0.2 beats it (reset), 0.05 counts again
    assert counts == [0, 1, 2, 0, 1]
    # exactly min_delta is not enough (strict >)
    counts, _ = _run(Abortor(AbortConfig(min_delta=0.5), 2), [2.0, 1.5, 0.75])
    assert counts == [0, 1, 0]


def test_resumed_with_fewer_active_stages():
    ab = Abortor(AbortConfig(patience=1), num_stages=3, active_stages=2)
    _, events = _run(ab, [1.0, 1.0])
    assert _aborts(events)[0]["dropped_stage"] == 2 and ab.active_stages == 1


# -- absolute mode ---------------------------------------------------------------------------------


def test_absolute_mode_counts_against_the_threshold():
    ab = Abortor(AbortConfig(mode="absolute", threshold=0.5, patience=3), num_stages=3)
    counts, events = _run(ab, [0.4, 0.6, 0.5, 0.3, 0.7, 0.1, 0.9, 0.8, 0.7])
    # below a resets (a - loss > 0), at or above a counts: rising or falling does not matter
    assert counts[:7] == [0, 1, 2, 0, 1, 0, 1]
    assert counts[7:] == [2, 0]  # the 3rd in a row (0.7) aborts and resets
    assert [(a["step"], a["dropped_stage"]) for a in _aborts(events)] == [(9, 3)]
    assert ab.active_stages == 2


def test_absolute_mode_ignores_min_delta_and_improvement():
    ab = Abortor(AbortConfig(mode="absolute", threshold=1.0, patience=2, min_delta=5.0), num_stages=2)
    counts, events = _run(ab, [3.0, 2.0])  # improving, but above a
    assert counts == [1, 0] and ab.active_stages == 1 and len(_aborts(events)) == 1


# -- off -------------------------------------------------------------------------------------------


def test_off_logs_checks_and_never_aborts():
    ab = Abortor(AbortConfig(mode="off", patience=1), num_stages=3)
    counts, events = _run(ab, [1.0, 2.0, 3.0, 4.0])
    assert counts == [0, 0, 0, 0] and not _aborts(events) and ab.active_stages == 3
    assert [e["signal"] for e in events] == [1.0, 2.0, 3.0, 4.0]
    assert [e["prev"] for e in events] == [None, 1.0, 2.0, 3.0]


# -- the EMA signal --------------------------------------------------------------------------------


def test_update_checks_every_check_every_steps_with_the_ema():
    cfg = AbortConfig(check_every=5, ema_beta=0.5, patience=100)
    ab = Abortor(cfg, num_stages=2)
    losses = [float(i % 3 + 1) for i in range(1, 21)]
    events = []
    for step, loss in enumerate(losses, 1):
        ev = ab.update(step, loss)
        assert bool(ev) == (step % 5 == 0)
        events += ev
    assert [e["step"] for e in events] == [5, 10, 15, 20]
    # the signal is the bias-corrected EMA of the losses up to that step
    for e in events:
        n = e["step"]
        num = sum((1 - 0.5) * 0.5 ** (n - i) * losses[i - 1] for i in range(1, n + 1))
        assert e["signal"] == pytest.approx(num / (1 - 0.5 ** n))
    assert [e["prev"] for e in events[1:]] == [e["signal"] for e in events[:-1]]


def test_ema_of_a_constant_is_the_constant_and_skips_nan():
    ab = Abortor(AbortConfig(check_every=3), num_stages=2)
    ab.update(1, 2.0)
    ab.update(2, float("nan"))
    ev = ab.update(3, 2.0)
    assert ev[0]["signal"] == pytest.approx(2.0)
    assert ab.ema == pytest.approx(2.0)


def test_ema_signal_aborts_on_a_plateau():
    # the loss falls for 200 steps, then stays flat: the EMA's improvements shrink below min_delta
    # within a few checks, and `patience` checks later the last stage goes
    cfg = AbortConfig(check_every=10, patience=3, ema_beta=0.9, min_delta=1e-3)
    ab = Abortor(cfg, num_stages=3)
    events = []
    for step in range(1, 601):
        loss = max(1.0 - step / 200, 0.0) + 0.5
        events += ab.update(step, loss)
    aborts = _aborts(events)
    assert aborts, "no abort on a plateau"
    first = aborts[0]["step"]
    assert 200 < first <= 200 + 10 * (5 + 3)  # a few checks for the EMA to settle, then patience
    assert len(aborts) == 2 and ab.active_stages == 1


def test_non_finite_signal_is_an_error():
    with pytest.raises(ValueError, match="not finite"):
        Abortor(AbortConfig(), 2).check(1, math.nan)


# -- events, state, validation ---------------------------------------------------------------------


def test_events_are_json_serialisable_with_exact_keys():
    ab = Abortor(AbortConfig(patience=1), num_stages=2)
    events = ab.check(7, 1.0) + ab.check(8, 1.5)
    text = "\n".join(json.dumps(e, allow_nan=False) for e in events)
    back = [json.loads(line) for line in text.splitlines()]
    assert back[0] == {"event": "abort_check", "step": 7, "signal": 1.0, "prev": None, "abort_count": 0,
                       "active_stages": 2}
    assert set(back[1]) == {"event", "step", "signal", "prev", "abort_count", "active_stages"}
    assert back[2] == {"event": "abort", "step": 8, "dropped_stage": 2, "active_stages": 1}


def test_state_round_trip_continues_identically():
    cfg = AbortConfig(patience=3, check_every=3, ema_beta=0.7)
    losses = [1.0 / (1 + i % 7) + 0.05 * max(i - 30, 0) for i in range(120)]  # noisy, then rising
    full = Abortor(cfg, 3)
    ev_full = [e for i, x in enumerate(losses, 1) for e in full.update(i, x)]
    a = Abortor(cfg, 3)
    ev_a = [e for i, x in enumerate(losses[:50], 1) for e in a.update(i, x)]
    state = json.loads(json.dumps(a.state_dict()))  # survives JSON (resume.pt / metrics)
    b = Abortor(cfg, 3)
    b.load_state_dict(state)
    ev_b = [e for i, x in enumerate(losses[50:], 51) for e in b.update(i, x)]
    assert ev_a + ev_b == ev_full
    assert b.state_dict() == full.state_dict()
    assert [e["step"] for e in _aborts(ev_full)] == [42, 63]  # one before the split, one after


def test_load_state_dict_checks_stages():
    st = Abortor(AbortConfig(), 3).state_dict()
    with pytest.raises(ValueError, match="3 stages"):
        Abortor(AbortConfig(), 2).load_state_dict(st)


@pytest.mark.parametrize("kw, match", [
    (dict(mode="sometimes"), "mode"),
    (dict(mode="absolute"), "threshold"),
    (dict(mode="absolute", threshold=math.inf), "threshold"),
    (dict(patience=0), "patience"),
    (dict(patience=2.5), "patience"),
    (dict(min_stages=0), "min_stages"),
    (dict(min_delta=-1.0), "min_delta"),
    (dict(check_every=0), "check_every"),
    (dict(ema_beta=1.0), "ema_beta"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        Abortor(AbortConfig(**kw), 3)


def test_stage_arguments_validated():
    with pytest.raises(ValueError, match="min_stages"):
        Abortor(AbortConfig(min_stages=4), 3)
    with pytest.raises(ValueError, match="active_stages"):
        Abortor(AbortConfig(), 3, active_stages=4)
    with pytest.raises(ValueError, match="num_stages"):
        Abortor(AbortConfig(), 0)
    # a threshold in relative mode is simply unused
    Abortor(AbortConfig(threshold=0.3), 3)
