"""A training script written without `if __name__ == "__main__":`, as new users write them: run as
`python tests/data/unguarded_script.py <ops.pkl> <data.jsonl>` (test_workers.py). Under the spawn start
method each grain worker re-imports this file as its main module, runs this same code, fails to start a
process of its own while it is still bootstrapping, and exits before it reads its part of the pipeline.

The pipeline pickles to more than a pipe holds (the ballast below), so `Process.start()` in the main
process is still writing it into the dead worker's pipe, and blocks there forever: without the watch
(workers.WorkerWatch) nothing would ever end this run."""

import functools
import pickle
import sys

from lingshu_jax.data import make_pipeline
from tests.data.helpers import data_config


def _with_ballast(load_image, ballast, *args):  # (ballast: pickled with the pipeline, never read)
    return load_image(*args)


with open(sys.argv[1], "rb") as f:
    ops = pickle.load(f)
ops = type(ops)(
    **{**vars(ops), "load_image": functools.partial(_with_ballast, ops.load_image, b"x" * 300_000)}
)
cfg = data_config(sys.argv[2], seq_len=1024, batch_size=1, packing=False, shuffle=False, worker_count=1)
it = make_pipeline(cfg, ops=ops)
print("first batch:", len(it.next_batches(1)), flush=True)
