"""Train one stage: python scripts/train.py --config=configs/<file>.py[:arg] --workdir=DIR [--config.a.b=v ...]

Rerunning the same command resumes from the latest complete checkpoint in DIR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.cli import run_config_and_workdir  # noqa: E402

if __name__ == "__main__":
    run_config_and_workdir("lingshu_jax.train.trainer:train")
