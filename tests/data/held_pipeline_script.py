"""A script that ends while its pipeline is still referenced from its globals, never closed: run as
`python tests/data/held_pipeline_script.py <ops.pkl> <data.jsonl> <worker_count>` (test_workers.py). Its exit
must be silent: no "Exception ignored in ... DatasetIterator.__del__" from grain closing it during
interpreter teardown (data/pipeline.py `_close_live`)."""

import pickle
import sys

from lingshu_jax.data import make_pipeline
from tests.data.helpers import data_config

if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        ops = pickle.load(f)
    cfg = data_config(
        sys.argv[2], seq_len=1024, batch_size=1, packing=False, shuffle=False, worker_count=int(sys.argv[3])
    )
    it = make_pipeline(cfg, ops=ops)  # a global of this script, alive until the interpreter ends
    print("batches:", len(it.next_batches(2)), flush=True)
