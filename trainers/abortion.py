"""The abortion method (seeds 000 and 001, METHODS.md §4): drop refinement stages that stopped paying.

An N-stage encoder (E2Style) costs N forward/backward passes per image. The :class:`Abortor` watches
a loss signal and permanently switches off the last active stage once the signal has stopped
improving for ``patience`` checks in a row:

* **relative** mode: ``prev = inf``; at each check ``count = 0 if prev - signal > min_delta else
  count + 1``; then ``prev = signal``;
* **absolute** mode (threshold ``a``): ``count = 0 if a - signal > 0 else count + 1``;
* **off**: checks are still made and logged (the GUI draws the same loss curve for every run, so an
  'off' run can be compared with the others), but ``abort_count`` stays 0 and nothing is dropped.

When ``count`` reaches ``patience`` the abortor drops a stage (``active_stages -= 1``, never below
``min_stages``) and resets ``count``. Once ``active_stages == min_stages`` no stage can be dropped:
``count`` keeps following the rule (the log shows that it would have aborted) without any abort.

The signal is either the EMA of the per-step training loss, sampled every ``check_every`` steps
(:meth:`Abortor.update`, called once per training step), or a value the trainer passes itself, e.g.
a validation loss (:meth:`Abortor.check`). The EMA is bias-corrected (as Adam's moments), so it is
the weighted mean of the losses seen so far from the first step on; non-finite losses (a NaN
minibatch) are left out of it.

Both methods return the events to append to ``metrics.jsonl`` (plain JSON-able dicts):

* every check: ``{"event": "abort_check", "step", "signal", "prev", "abort_count", "active_stages"}``
  where ``prev`` is the previous check's signal (``None`` at the first check: JSON ``null``),
  ``abort_count`` the count after this check (``patience`` on the check that aborts) and
  ``active_stages`` the stages that were active during the steps up to this check;
* an abort, right after its check: ``{"event": "abort", "step", "dropped_stage", "active_stages"}``
  where ``dropped_stage`` is the 1-based index of the stage switched off and ``active_stages`` the
  number left active.

The abortor only counts; the trainer applies ``active_stages`` to the network (stop running and
training the dropped stage).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["MODES", "AbortConfig", "Abortor", "replay"]

MODES = ("relative", "absolute", "off")

# ----------------------------------------------------------------------------


@dataclass
class AbortConfig:
    mode: str = "relative"          # 'relative' | 'absolute' | 'off'
    threshold: float | None = None  # absolute mode's a (required there; ignored by the other modes)
    patience: int = 10              # non-improving checks in a row that drop a stage
    min_stages: int = 1             # never fewer active stages than this
    min_delta: float = 0.0          # relative mode: an improvement must exceed this
    check_every: int = 50           # steps between checks of the EMA signal (update())
    ema_beta: float = 0.98          # EMA of the per-step training loss

    def validate(self) -> None:
        """Raise ValueError naming the bad field."""
        if self.mode not in MODES:
            raise ValueError(f"abort mode must be one of {', '.join(map(repr, MODES))}, got {self.mode!r}")
        if self.mode == "absolute":
            if self.threshold is None:
                raise ValueError("abort mode 'absolute' needs a threshold (the loss level a stage must get below)")
            if not _is_number(self.threshold) or not math.isfinite(self.threshold):
                raise ValueError(f"abort threshold must be a finite number, got {self.threshold!r}")
        if not _is_int(self.patience) or self.patience < 1:
            raise ValueError(f"abort patience must be an integer >= 1, got {self.patience!r}")
        if not _is_int(self.min_stages) or self.min_stages < 1:
            raise ValueError(f"min_stages must be an integer >= 1, got {self.min_stages!r}")
        if not _is_number(self.min_delta) or not math.isfinite(self.min_delta) or self.min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")
        if not _is_int(self.check_every) or self.check_every < 1:
            raise ValueError(f"check_every must be an integer >= 1 (steps), got {self.check_every!r}")
        if not _is_number(self.ema_beta) or not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta!r}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ----------------------------------------------------------------------------


class Abortor:
    """Counts non-improving checks of a loss signal and drops the last active stage (METHODS.md §4).

    ``num_stages``: stages the network has; ``active_stages``: stages active now (default all of
    them; give the saved value when a run continues with fewer).
    """

    def __init__(self, config: AbortConfig, num_stages: int, active_stages: int | None = None):
        config.validate()
        if not _is_int(num_stages) or num_stages < 1:
            raise ValueError(f"num_stages must be an integer >= 1, got {num_stages!r}")
        if config.min_stages > num_stages:
            raise ValueError(f"min_stages ({config.min_stages}) is more than the network's {num_stages} stages")
        active = num_stages if active_stages is None else active_stages
        if not _is_int(active) or not 1 <= active <= num_stages:
            raise ValueError(f"active_stages must be between 1 and {num_stages}, got {active_stages!r}")
        self.config = config
        self.num_stages = num_stages
        self.active_stages = active
        self.count = 0                    # non-improving checks in a row
        self.prev: float | None = None    # previous check's signal (None: no check yet = inf)
        self.num_checks = 0
        self.aborts: list[dict] = []      # the abort events so far
        self._ema_sum = 0.0               # un-corrected EMA of the finite losses
        self._ema_n = 0                   # how many finite losses went into it

    # -- the signal -----------------------------------------------------------------------------

    @property
    def ema(self) -> float | None:
        """Bias-corrected EMA of the training losses seen so far (None before the first)."""
        if self._ema_n == 0:
            return None
        return self._ema_sum / (1.0 - self.config.ema_beta ** self._ema_n)

    def update(self, step: int, loss: float) -> list[dict]:
        """Every training step: fold ``loss`` into the EMA; on steps with ``step % check_every == 0``
        check the EMA. ``step``: the trainer's step counter (as logged in metrics.jsonl)."""
        loss = float(loss)
        if math.isfinite(loss):
            b = self.config.ema_beta
            self._ema_sum = b * self._ema_sum + (1.0 - b) * loss
            self._ema_n += 1
        if step % self.config.check_every != 0 or self._ema_n == 0:
            return []
        return self.check(step, self.ema)

    # -- the rule -------------------------------------------------------------------------------

    @property
    def can_abort(self) -> bool:
        return self.config.mode != "off" and self.active_stages > self.config.min_stages

    def check(self, step: int, signal: float) -> list[dict]:
        """One check of ``signal`` (the EMA, or e.g. a validation loss); returns the events."""
        signal = float(signal)
        if not math.isfinite(signal):
            raise ValueError(f"abort signal at step {step} is not finite ({signal}); the loss diverged")
        cfg = self.config
        prev = self.prev
        if cfg.mode == "relative":
            improved = (math.inf if prev is None else prev) - signal > cfg.min_delta
            self.count = 0 if improved else self.count + 1
        elif cfg.mode == "absolute":
            self.count = 0 if cfg.threshold - signal > 0 else self.count + 1
        self.prev = signal
        self.num_checks += 1
        events = [{"event": "abort_check", "step": int(step), "signal": signal, "prev": prev,
                   "abort_count": self.count, "active_stages": self.active_stages}]
        if self.count >= cfg.patience and self.can_abort:
            dropped = self.active_stages
            self.active_stages -= 1
            self.count = 0
            ev = {"event": "abort", "step": int(step), "dropped_stage": dropped, "active_stages": self.active_stages}
            self.aborts.append(ev)
            events.append(ev)
        return events

    # -- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain JSON-able state (config included for the record)."""
        return {"config": asdict(self.config), "num_stages": self.num_stages, "active_stages": self.active_stages,
                "count": self.count, "prev": self.prev, "num_checks": self.num_checks,
                "aborts": [dict(e) for e in self.aborts], "ema_sum": self._ema_sum, "ema_n": self._ema_n}

    def load_state_dict(self, d: dict) -> None:
        """Continue from :meth:`state_dict`; the constructor's config stays in charge."""
        if int(d["num_stages"]) != self.num_stages:
            raise ValueError(f"abortor state is for {d['num_stages']} stages, this network has {self.num_stages}")
        active = int(d["active_stages"])
        if not 1 <= active <= self.num_stages:
            raise ValueError(f"abortor state has active_stages {active}, outside 1..{self.num_stages}")
        self.active_stages = active
        self.count = int(d["count"])
        self.prev = None if d.get("prev") is None else float(d["prev"])
        self.num_checks = int(d.get("num_checks", 0))
        self.aborts = [dict(e) for e in d.get("aborts", [])]
        self._ema_sum = float(d.get("ema_sum", 0.0))
        self._ema_n = int(d.get("ema_n", 0))


def replay(config: AbortConfig, num_stages: int, signals) -> list[int]:
    """Loss history in, stages out: the active stages after each check of ``signals`` (pure)."""
    ab = Abortor(config, num_stages)
    out = []
    for i, s in enumerate(signals, 1):
        ab.check(i, s)
        out.append(ab.active_stages)
    return out
