"""Fit report of a training config on a TPU slice before renting it (memory, collectives, FLOPs, step time).

python scripts/aot.py --config=configs/lingshu/stage2.py:size=7b --topology=v5p:2x2x2 [--config.a.b=v ...]
    [--num_slices=2] [--json=report.json]
python scripts/aot.py --recipes          # every recipe config on its slice -> docs/tpu.md
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.aot.main import main

if __name__ == "__main__":
    main()
