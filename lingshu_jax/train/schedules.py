"""Learning-rate schedules from config dicts, built from optax's own schedules (nothing hand-rolled).

A schedule config is a dict / ConfigDict::

    {type: "cosine" | "linear" | "constant",
     peak: float,             # the learning rate reached at the end of warmup
     warmup_steps: int = 0,   # linear ramp init_value -> peak over steps [0, warmup_steps]
     total_steps: int,        # cosine / linear: end of the decay, counted from step 0 (warmup included)
     end_value: float | end_ratio: float = 0.0,   # value at total_steps (end_ratio: fraction of peak)
     init_value: float = 0.0} # value at step 0

or a bare float, meaning a constant learning rate. The returned `optax.Schedule` maps the optimizer's
update count (0 for the first update) to a learning rate:

- cosine: ``optax.warmup_cosine_decay_schedule``: for warmup <= s <= total,
  ``end + (peak - end) * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))``; ``end`` after total.
- linear: ``optax.join_schedules`` of two ``optax.linear_schedule``: init -> peak, then peak -> end.
- constant: ``optax.warmup_constant_schedule`` (``optax.constant_schedule`` when there is no warmup).

With ``init_value=0, end_value=0`` the cosine schedule equals transformers'
``get_cosine_schedule_with_warmup`` (Lingshu's recipe: AdamW, cosine, 100 warmup steps); as there, the
first update (count 0) uses learning rate ``init_value``.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import optax

SCHEDULE_TYPES = ("cosine", "linear", "constant")
_KEYS = ("type", "peak", "warmup_steps", "total_steps", "end_value", "end_ratio", "init_value")

ScheduleConfig = Union[float, int, Mapping[str, Any]]


def as_dict(cfg: Any) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict
        return cfg.to_dict()
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise ValueError(f"schedule config: expected a dict or a float, got {type(cfg).__name__}: {cfg!r}")


def resolve(cfg: ScheduleConfig) -> dict[str, Any]:
    """Validates a schedule config and fills defaults. Returns a plain dict with every key of `_KEYS`
    except `end_ratio` (folded into `end_value`)."""
    if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
        cfg = {"type": "constant", "peak": float(cfg)}
    d = as_dict(cfg)
    unknown = sorted(set(d) - set(_KEYS))
    if unknown:
        raise ValueError(f"schedule config: unknown keys {unknown}; known: {list(_KEYS)}")
    kind = d.get("type", "cosine")
    if kind not in SCHEDULE_TYPES:
        raise ValueError(f"schedule config: type={kind!r}, expected one of {SCHEDULE_TYPES}")
    if d.get("peak") is None:
        raise ValueError("schedule config: missing key 'peak' (the learning rate after warmup)")
    if d.get("end_value") is not None and d.get("end_ratio") is not None:
        raise ValueError("schedule config: give one of 'end_value' or 'end_ratio', not both")
    peak = float(d["peak"])
    end = d.get("end_value")
    end = peak * float(d["end_ratio"]) if d.get("end_ratio") is not None else float(end or 0.0)
    warmup = int(d.get("warmup_steps") or 0)
    if warmup < 0:
        raise ValueError(f"schedule config: warmup_steps={warmup} must be >= 0")
    total = d.get("total_steps")
    if kind != "constant":
        if total is None:
            raise ValueError(f"schedule config: type={kind!r} needs 'total_steps'")
        if int(total) <= warmup:
            raise ValueError(f"schedule config: total_steps={total} must exceed warmup_steps={warmup}")
    return {
        "type": kind,
        "peak": peak,
        "warmup_steps": warmup,
        "total_steps": None if total is None else int(total),
        "end_value": end,
        "init_value": float(d.get("init_value") or 0.0),
    }


def make_schedule(cfg: ScheduleConfig) -> optax.Schedule:
    """An optax schedule from a schedule config (see the module docstring). Raises ValueError naming the
    offending key."""
    r = resolve(cfg)
    init, peak, end, warmup, total = (
        r["init_value"],
        r["peak"],
        r["end_value"],
        r["warmup_steps"],
        r["total_steps"],
    )
    if r["type"] == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=init, peak_value=peak, warmup_steps=warmup, decay_steps=total, end_value=end
        )
    if r["type"] == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(init, peak, warmup), optax.linear_schedule(peak, end, total - warmup)],
            [warmup],
        )
    if warmup == 0:  # optax's linear ramp with 0 steps would hold init_value forever
        return optax.constant_schedule(peak)
    return optax.warmup_constant_schedule(init_value=init, peak_value=peak, warmup_steps=warmup)


def peak_value(cfg: ScheduleConfig) -> float:
    """The configured peak learning rate (for summaries)."""
    return resolve(cfg)["peak"]
