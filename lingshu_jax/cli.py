"""The command-line convention shared by the training scripts: --config=configs/x.py[:arg] --workdir=DIR."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def define_config_flag(required: bool = True) -> None:
    """--config=configs/x.py[:arg] (ml-collections, `--config.a.b=v` overrides)."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file (get_config(arg)).", lock_config=True
    )
    if required:
        flags.mark_flags_as_required(["config"])


def run_config_and_workdir(target: str) -> None:
    """Defines --config (ml-collections, `--config.a.b=v` overrides) and --workdir, sets up malloc
    (`config.host_malloc`, see host_memory.py) and logging and runs `target` ("module:function"), called as
    function(config, workdir)."""
    from absl import app, flags

    define_config_flag()
    flags.DEFINE_string(
        "workdir", None, "Directory for checkpoints, metrics, TensorBoard and the final model."
    )
    flags.mark_flags_as_required(["workdir"])

    def main(argv):
        del argv
        from lingshu_jax import host_memory, logs

        host_memory.configure(flags.FLAGS.config.get("host_malloc", "auto"))  # before JAX starts its threads
        logs.setup()
        _resolve(target)(flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(main)


def _resolve(target: str) -> Callable:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
