"""Benchmarks of lingshu-jax against transformers, side by side in one run (`scripts/benchmark.py`).

  harness   statistics, ABBA interleaving, peak RSS / device memory, framework worker processes
  inputs    the shared random checkpoint and fixed batches      common   loading either framework
  peak      matmul FLOP/s (MFU denominator)                     train    training step (+ breakdown)
  prefill   forward of the prompt batch                         decode   greedy generation
  data      input pipeline in the suite's workers      data_measure  its measurement (scripts/bench_data.py)
  data_samples  the data benchmark's synthetic JPEG + JSONL records
  sections  one method per section                              suite    sizes, budget, run_suite
  report    results.json + the markdown table
Nothing here imports JAX or torch at import time: each framework runs in its own spawned worker.
"""
