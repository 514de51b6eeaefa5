"""GRPO (Lingshu-RL) training.

    python scripts/train_rl.py --config=configs/<file>.py[:arg] --workdir=DIR [--config.a.b=v ...]

Rerunning the same command resumes from the latest complete checkpoint in DIR. Figures of a finished run
(reward curve, rollout tokens/s, update time, compile seconds): python scripts/rl_summary.py DIR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config(arg)).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, TensorBoard and the final model.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from lingshu_jax import logs
    from lingshu_jax.rl.trainer import train

    logs.setup()
    train(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
