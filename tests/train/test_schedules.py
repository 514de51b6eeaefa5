"""Schedules from config dicts: values at chosen steps computed by hand."""

import math

import ml_collections
import numpy as np
import pytest

from lingshu_jax.train.schedules import make_schedule, peak_value


def _at(sched, steps):
    return np.array([float(sched(s)) for s in steps])


def test_cosine_warmup_then_decay_matches_hand_values():
    s = make_schedule(
        {
            "type": "cosine",
            "peak": 1e-3,
            "warmup_steps": 10,
            "total_steps": 110,
            "end_value": 1e-5,
            "init_value": 0.0,
        }
    )
    c = lambda frac: 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * frac))
    want = [0.0, 5e-4, 1e-3, c(0.25), c(0.5), c(0.9), 1e-5, 1e-5]
    # float32 schedule: tolerance 1e-6 of the peak
    np.testing.assert_allclose(_at(s, [0, 5, 10, 35, 60, 100, 110, 500]), want, rtol=1e-6, atol=1e-9)


def test_cosine_equals_hf_cosine_with_warmup_when_init_and_end_are_zero():
    # transformers' get_cosine_schedule_with_warmup: step/warmup, then 0.5*(1+cos(pi*progress)).
    peak, warm, total = 2e-6, 100, 1000
    s = make_schedule(
        ml_collections.ConfigDict(
            {"type": "cosine", "peak": peak, "warmup_steps": warm, "total_steps": total}
        )
    )
    for step in (0, 1, 50, 99, 100, 101, 550, 999, 1000):
        hf = step / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert float(s(step)) == pytest.approx(peak * hf, rel=1e-6, abs=peak * 1e-6)


def test_linear_warmup_from_init_value_then_linear_decay_to_end_ratio():
    s = make_schedule(
        {
            "type": "linear",
            "peak": 1.0,
            "warmup_steps": 4,
            "total_steps": 14,
            "end_ratio": 0.1,
            "init_value": 0.2,
        }
    )
    want = [0.2, 0.4, 0.8, 1.0, 1.0 - 0.9 * 0.3, 1.0 - 0.9 * 0.8, 0.1, 0.1]
    np.testing.assert_allclose(_at(s, [0, 1, 3, 4, 7, 12, 14, 20]), want, rtol=1e-6)


def test_constant_with_and_without_warmup():
    s = make_schedule({"type": "constant", "peak": 3e-4, "warmup_steps": 3})
    np.testing.assert_allclose(_at(s, [0, 1, 3, 1000]), [0.0, 1e-4, 3e-4, 3e-4], rtol=1e-6)
    s0 = make_schedule({"type": "constant", "peak": 3e-4})  # no warmup: peak from step 0
    np.testing.assert_allclose(_at(s0, [0, 7]), [3e-4, 3e-4], rtol=1e-7)
    np.testing.assert_allclose(_at(make_schedule(5e-5), [0, 9]), [5e-5, 5e-5], rtol=1e-7)
    assert peak_value({"type": "constant", "peak": 3e-4}) == 3e-4


def test_cosine_without_warmup_starts_at_peak():
    s = make_schedule({"type": "cosine", "peak": 1.0, "total_steps": 4})
    np.testing.assert_allclose(_at(s, [0, 2, 4]), [1.0, 0.5, 0.0], atol=1e-7)


@pytest.mark.parametrize(
    "cfg, msg",
    [
        ({"type": "cosine", "peak": 1.0}, "total_steps"),
        ({"type": "step", "peak": 1.0}, "type='step'"),
        ({"type": "cosine", "total_steps": 10}, "peak"),
        ({"type": "cosine", "peak": 1.0, "total_steps": 10, "warmup": 3}, "warmup"),
        ({"type": "cosine", "peak": 1.0, "total_steps": 10, "end_value": 0.0, "end_ratio": 0.1}, "end_ratio"),
        ({"type": "linear", "peak": 1.0, "total_steps": 10, "warmup_steps": 10}, "total_steps"),
    ],
)
def test_bad_configs_raise_naming_the_key(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        make_schedule(cfg)
