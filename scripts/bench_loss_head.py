"""lm_head + cross entropy, forward + backward, at bench-100m's shapes: ours vs the plain formula vs torch.

    python scripts/bench_loss_head.py --rounds 3 --reps 3

The measurement (fresh process per variant and round, ABBA order) is `lingshu_jax.bench.loss_head`.
"""

from __future__ import annotations

import sys

from lingshu_jax.bench.loss_head import main

if __name__ == "__main__":
    sys.exit(main())
