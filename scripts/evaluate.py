#!/usr/bin/env python
"""Medical evaluation (MedEvalKit-equivalent): score predictions, or generate and score.

  python scripts/evaluate.py score --benchmark vqa_rad --data_dir D --predictions P.jsonl [--out R]
  python scripts/evaluate.py run --model PATH --benchmarks vqa_rad,slake --data_dir D --out R/
  python scripts/evaluate.py fixes --benchmark vqa_rad --data_dir D --predictions P.jsonl

--scoring=medevalkit reproduces MedEvalKit bug for bug; the default fixes its bugs (docs/eval.md).
All flags: `python scripts/evaluate.py {score,run,fixes} --help`; logic in lingshu_jax/evals/cli.py.
"""

import sys

from lingshu_jax.evals.cli import main

if __name__ == "__main__":
    sys.exit(main())
