"""Remat policies and the chunked loss, measured (logic: lingshu_jax/bench/remat.py, whose docstring has the
commands). For any config and topology, scripts/aot.py gives the full fit report."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.bench.remat import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
