"""One process of a 2-process jax.distributed run on 127.0.0.1 (driven by tests/test_multihost.py).

Each process builds the same tiny model, takes its own half of the rows (and their images), makes
global arrays with `sharding.global_batch`, and prints the loss of the global batch as JSON.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def main():
    port, pid, nproc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if nproc > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid
        )
    from lingshu_jax import sharding
    from lingshu_jax.model.config import preset
    from lingshu_jax.model.vlm import Qwen25VL, abstract_params, init_params
    from lingshu_jax.train.step import loss_and_grads
    from tests.test_sharding import _batch  # the same deterministic batch builder

    cfg = preset("tiny")
    halves = [_batch(cfg, rows=4, seed=s) for s in (1, 2)]
    local = halves[pid] if nproc > 1 else sharding.merge_host_batches(halves)
    mesh = sharding.make_mesh({"fsdp": -1})
    rules = sharding.DEFAULT_RULES
    p_sh = sharding.param_shardings(abstract_params(cfg, boxed=True), mesh, rules)
    model = Qwen25VL(cfg)
    with sharding.mesh_context(mesh, rules):
        params = jax.jit(lambda r: init_params(cfg, r), out_shardings=p_sh)(jax.random.key(0))
        batch = sharding.global_batch(local, mesh, rules)
        loss, grads = jax.jit(lambda p, b: loss_and_grads(model, p, b))(params, batch)
        gnorm = jax.jit(lambda g: sum(jax.numpy.sum(x * x) for x in jax.tree.leaves(g)))(grads)
    print(
        json.dumps(
            {"process": pid, "devices": jax.device_count(), "loss": float(loss), "grad_sq": float(gnorm)}
        )
    )


if __name__ == "__main__":
    main()
