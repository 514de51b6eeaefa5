"""Statistics, ordering and worker plumbing of lingshu_jax.bench.harness (no timing is asserted)."""

import math
import os

import pytest

from lingshu_jax.bench import harness
from lingshu_jax.bench.harness import Worker, WorkerError


def test_median_odd_and_even():
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        harness.median([])


def test_summarize_keeps_raw_values_and_skips_invalid_rounds():
    s = harness.summarize([2.0, None, 4.0, float("nan"), 3.0])
    assert s["values"][:3] == [2.0, None, 4.0]
    assert (s["n"], s["invalid"], s["median"], s["min"], s["max"]) == (3, 2, 3.0, 2.0, 4.0)
    assert math.isclose(s["spread"], 2.0 / 3.0)
    assert harness.summarize([None])["median"] is None


def test_speedup_is_ours_over_theirs_for_rates_and_theirs_over_ours_for_times():
    assert harness.speedup(300.0, 100.0, higher_is_better=True) == 3.0  # tokens/s: ours 3x faster
    assert harness.speedup(2.0, 1.0, higher_is_better=False) == 0.5  # seconds: ours 2x slower
    assert harness.speedup(None, 1.0, True) is None
    assert harness.speedup(0.0, 1.0, True) is None


def test_abba_order_alternates():
    assert harness.abba_order(4, ("a", "b")) == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]


def test_rss_sampler_sees_this_process():
    with harness.RssSampler(interval_s=0.01) as sampler:
        blob = bytearray(32 * 2**20)
        sampler.sample()
    del blob
    assert sampler.peak_mb > 32
    assert harness.self_peak_rss_mb() > 0


def test_workers_run_in_their_own_process_with_their_environment_from_the_start():
    os.environ["LINGSHU_BENCH_UNSET_ME"] = "parent"
    try:
        a = Worker.start(
            "a",
            "tests.bench.sessions:Echo",
            10,
            env={"LINGSHU_BENCH_X": "1", "LINGSHU_BENCH_UNSET_ME": None},
            wait=False,
        )
        b = Worker.start("b", "tests.bench.sessions:Echo", 20, wait=False)
        a.ready(), b.ready()
    finally:
        del os.environ["LINGSHU_BENCH_UNSET_ME"]
    try:
        runs = harness.interleaved({"a": a, "b": b}, rounds=3, add=1)
        assert [r["value"] for r in runs["a"]] == [11, 11, 11]
        assert [r["calls"] for r in runs["b"]] == [1, 2, 3]
        assert runs["a"][0]["pid"] not in (os.getpid(), runs["b"][0]["pid"])
        assert a.call("env", key="LINGSHU_BENCH_X") == "1"
        assert a.call("env", key="LINGSHU_BENCH_UNSET_ME") is None
        # set before the process starts (GLIBC_TUNABLES is read there), and only for this worker
        assert a.call("start_env", key="LINGSHU_BENCH_X") == "1"
        assert a.call("start_env", key="LINGSHU_BENCH_UNSET_ME") is None
        assert b.call("start_env", key="LINGSHU_BENCH_X") is None
        assert os.environ.get("LINGSHU_BENCH_X") is None
        mem = a.call("memory")
        assert mem["peak_rss_mb"] > 0 and mem["max_rss_self_mb"] > 0
        with pytest.raises(WorkerError, match="boom from the worker"):
            a.call("fail")
        assert a.call("run")["calls"] == 4  # the session survives a failed call
    finally:
        harness.close_all({"a": a, "b": b})
    assert not a.process.is_alive() and not b.process.is_alive()


def test_a_session_that_cannot_be_built_reports_why():
    with pytest.raises(WorkerError, match="cannot build this session"):
        Worker.start("broken", "tests.bench.sessions:BrokenInit")
