"""GRPO (Lingshu-RL) training.

    python scripts/train_rl.py --config=configs/<file>.py[:arg] --workdir=DIR [--config.a.b=v ...]

Rerunning the same command resumes from the latest complete checkpoint in DIR. A finished run ends with a
before/after table (sampled rewards, first vs last fifth of the steps; with config.heldout, greedy
held-out scores of init_from and of the final policy), also in DIR/before_after.md, and DIR/curves.png.
Figures of a run
(reward curve, rollout tokens/s, update time, compile seconds): python scripts/rl_summary.py DIR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.cli import run_config_and_workdir  # noqa: E402

if __name__ == "__main__":
    run_config_and_workdir("lingshu_jax.rl.heldout:train_and_report")
