"""The data benchmark's measurement window: by default it opens only after the samples our pipeline can
prepare ahead of delivery (so the rate is the steady one), and never leaves too few samples to time."""

from lingshu_jax.bench.data_measure import DataBenchOptions, cpu_bound, read_ahead_samples
from lingshu_jax.data.config import DataConfig, SourceConfig


def test_read_ahead_counts_every_buffer_of_the_pipeline_config():
    cfg = DataConfig(sources=(SourceConfig(name="x", paths=("x.jsonl",)),))
    per_process = (cfg.worker_buffer_size + cfg.read_buffer + cfg.read_threads) * cfg.group
    batches = cfg.pack_pool + 2  # the packer's pool + bench_ours' two prefetched batches
    assert read_ahead_samples(2, 10) == 2 * per_process + batches * 10
    assert read_ahead_samples(0, 10) == read_ahead_samples(1, 10) == per_process + batches * 10


def test_default_warmup_covers_twice_the_read_ahead_within_bounds():
    # 512 text tokens + a 448 px image (256 tokens): 10 samples per 8192-token batch. Twice the read-ahead:
    # the backlog drains only as fast as delivery outpaces production.
    assert DataBenchOptions(samples=1440, worker_counts=(2, 0)).warmup == 2 * read_ahead_samples(2, 10)
    assert DataBenchOptions(samples=1440, worker_counts=(0,)).warmup == 2 * read_ahead_samples(0, 10)
    assert DataBenchOptions(samples=720, worker_counts=(3, 2)).warmup == 360  # capped at half the samples
    assert DataBenchOptions(samples=100).warmup == 50  # at most half the samples
    assert DataBenchOptions(samples=20_000).warmup == 2000  # at least 10%
    assert DataBenchOptions(samples=720, warmup=240).warmup == 240  # an explicit warm-up wins


def test_cpu_bound_is_all_cpus_against_one_process():
    assert cpu_bound(18.0, 12.0, cpus=2) == 3.0
