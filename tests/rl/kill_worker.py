"""The GRPO toy run in a process of its own, for the SIGKILL test (tests/rl/test_trainer.py), which kills it:

python -m tests.rl.kill_worker PATHS_JSON SFT_DIR WORKDIR STEPS
"""

import json
import sys

from tests.rl import toy


def kill_test_config(paths: dict, sft: str, steps: int):
    """The toy GRPO config with a checkpoint and a metrics row after every step."""
    c = toy.rl_config(paths, sft, steps)
    c.train.checkpoint_every = 1
    c.train.log_every = 1
    c.train.log_samples = 0
    return c


if __name__ == "__main__":
    from lingshu_jax.rl.trainer import train

    paths, sft, workdir, steps = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    train(kill_test_config(paths, sft, steps), workdir)
