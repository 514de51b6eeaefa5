"""Every ending of the data stream that is not "the next batch" is bounded in time and says why: a non-UTF-8
JSON source, a source whose records are all rejected (forever or for one epoch), skip counts after the last
batch, and a stop request (SIGTERM) while the pipeline waits for data. Each test enforces its own time
limit (SIGALRM), so a hang fails instead of passing."""

import json
import os
import signal
import threading

import pytest

from lingshu_jax.data import make_pipeline
from lingshu_jax.data.guard import DataInterrupted

from . import helpers
from .helpers import data_config, text_only, vqa, write_jsonl, write_png

LIMIT_S = 120  # far above the seconds these take, far below a hang


def time_limit(seconds=LIMIT_S):
    return helpers.time_limit(seconds)


def _all_bad(root, n):
    """n records whose image is missing (as with a wrong image root)."""
    return write_jsonl(os.path.join(root, "bad.jsonl"), [vqa(f"missing/{i}.png") for i in range(n)])


def _pipeline(path, ops, **kw):
    return make_pipeline(data_config(path, **kw), ops=ops)


def test_non_utf8_json_source_is_an_error_naming_file_line_and_policy(tmp_path, ops):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps([text_only()]).encode()[:-2] + b'\n, "caf\xe9"]')
    with time_limit(), pytest.raises(ValueError) as e:
        _pipeline(str(path), ops)
    msg = str(e.value)
    print(msg)
    assert f"{path}:2: not UTF-8" in msg and "data.on_error does not apply" in msg


@pytest.mark.parametrize("prefetch", [0, 2])
def test_all_bad_source_forever_is_an_error_naming_source_and_top_reasons(tmp_path, ops, prefetch):
    path = _all_bad(str(tmp_path), 12)
    it = _pipeline(path, ops, epochs=None, prefetch=prefetch)
    with time_limit(), pytest.raises(ValueError) as e:
        next(it)
    it.close()
    msg = str(e.value)
    print(msg)
    assert "data source 'mixed'" in msg and "yielded no good record in a full pass (12 records)" in msg
    assert "data.on_error='skip'" in msg and "missing_image 12 (first at" in msg
    assert f"image root {tmp_path}" in msg


def test_all_bad_source_for_one_epoch_is_an_error_with_its_counts(tmp_path, ops):
    path = _all_bad(str(tmp_path), 5)
    it = _pipeline(path, ops, epochs=1)
    with time_limit(), pytest.raises(ValueError, match=r"missing_image 5 \(first at .*bad.jsonl:\d+\)"):
        next(it)
    it.close()


def test_all_bad_shard_for_one_epoch_is_an_error_when_the_stream_ends(tmp_path, ops):
    # Two hosts: host 0 sees 3 of 5 records, fewer than a pass guard's count would need on one host ->
    # the end of the stream says it.
    path = _all_bad(str(tmp_path), 5)
    cfg = data_config(path, epochs=1)
    it = make_pipeline(cfg, ops=ops, shard_index=1, shard_count=2)
    with time_limit(), pytest.raises(ValueError, match="before the data ran out .*missing_image 2"):
        next(it)
    it.close()


def test_skips_after_the_last_batch_are_counted_when_the_data_ends(tmp_path, ops):
    write_png(str(tmp_path / "ok.png"), (56, 56))
    records = [vqa("ok.png") for _ in range(3)] + [vqa(f"missing/{i}.png") for i in range(4)]
    path = write_jsonl(str(tmp_path / "d.jsonl"), records)
    it = _pipeline(path, ops, epochs=1, shuffle=False, batch_size=1, packing=False)
    with time_limit():
        batches = list(it)
    it.close()
    assert len(batches) == 3
    assert it.counters["samples"] == 3 and it.counters["skipped/missing_image"] == 4


@pytest.mark.parametrize("prefetch", [0, 2])
def test_sigterm_while_waiting_for_data_interrupts_and_keeps_the_state_before_the_step(
    tmp_path, ops, prefetch
):
    # Two good records, then a long run of rejected ones (seconds of work): after the first batch the
    # pipeline is busy "waiting" for a third.
    write_png(str(tmp_path / "ok.png"), (56, 56))
    records = [vqa("ok.png")] * 2 + [vqa(f"missing/{i}.png") for i in range(20_000)]
    path = write_jsonl(str(tmp_path / "d.jsonl"), records)
    kw = dict(epochs=None, shuffle=False, batch_size=1, packing=False, pack_pool=1, prefetch=prefetch)
    it = _pipeline(path, ops, **kw)
    first = it.next_batches(1)
    before = it.get_state()
    requested = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda s, f: requested.set())
    it.stop_when(requested.is_set)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with time_limit(), pytest.raises(DataInterrupted):
            it.next_batches(2)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert requested.is_set() and first is not None
    assert it.get_state() == before  # a checkpoint taken now resumes at this step's first batch
    it.close()
    again = _pipeline(path, ops, **kw)
    again.set_state(before)
    assert again.counters == before["counters"]
    again.close()
