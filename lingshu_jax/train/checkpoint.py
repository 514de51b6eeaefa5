"""Orbax checkpoints of the whole training state, with the data iterator's position.

One step directory holds `state` (params, optimizer state, step, RNG) and `data` (the grain iterator
state). Orbax writes into a temporary directory and renames it only when complete, so a crash or a
SIGKILL mid-save leaves at most a temporary directory that is never listed or restored. Saves are
async (training continues while the arrays are written); `wait()` before exit.

Restoring onto a different mesh: pass an abstract state whose leaves are `jax.ShapeDtypeStruct`s with
the new shardings; Orbax reads each device's slice.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the latest `keep_last` checkpoints plus the `keep_best` best by `best_metric`."""

    def __init__(
        self,
        directory: str,
        keep_last: int = 2,
        keep_best: int = 0,
        best_metric: str | None = None,
        best_mode: str = "max",
        async_save: bool = True,
    ):
        self.directory = os.path.abspath(directory)
        policies = [ocp.checkpoint_managers.LatestN(n=keep_last)]
        if keep_best and best_metric:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m.get(
                        best_metric, float("-inf") if best_mode == "max" else float("inf")
                    ),
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_iterator=None, metrics: dict | None = None) -> bool:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            import grain

            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        saved = self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        if saved:
            log.info("checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def restore(self, step: int | None, abstract_state, data_iterator=None):
        """Restores `state` (shaped/sharded like `abstract_state`) and, in place, the data iterator."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no complete checkpoint to restore")
        items = {"state": ocp.args.StandardRestore(abstract_state)}  # None: arrays as saved
        if data_iterator is not None:
            import grain

            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        log.info("checkpoint: restored step %d from %s", step, self.directory)
        return restored["state"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree, shardings=None):
    """ShapeDtypeStructs (with target shardings) for a restore target."""
    if shardings is None:
        return jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
        )
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )
