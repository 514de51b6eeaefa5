"""One process of a 2-process jax.distributed run on 127.0.0.1 (driven by tests/test_multihost.py).

Each process builds the same tiny model, takes its own half of the rows (and their images), makes
global arrays with `sharding.global_batch`, and prints the loss of the global batch as JSON. Then the
trainer's program (`build_train_program`) takes one step of a config whose data.batch_size is the global
micro-batch: each host builds only its share (`host_data_config`) and the step sees the whole global batch.
argv: port, process id, number of processes, local devices.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[4] if len(sys.argv) > 4 else 4}"
import jax

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
    out = {"process": pid, "devices": jax.device_count(), "loss": float(loss), "grad_sq": float(gnorm)}
    out.update(program_step(cfg, pid, nproc))
    print(json.dumps(out))


def program_step(cfg, pid, nproc) -> dict:
    """One step of the trainer's program on a global micro-batch of 8 rows x 2 micro-batches."""
    import ml_collections
    import numpy as np

    from lingshu_jax import sharding
    from lingshu_jax.model.vlm import init_params
    from lingshu_jax.train.program import build_train_program, host_data_config
    from tests.test_sharding import _batch

    config = ml_collections.ConfigDict(
        {
            "model": cfg.to_config_dict(),
            "optim": {"name": "adamw", "groups": [(".*", {"type": "constant", "peak": 1e-3})]},
            "data": {"batch_size": 8, "seq_len": 40, "patch_budget": 8 * 16},
            "train": {"grad_accum": 2},
            "mesh": {"fsdp": -1},
        }
    )
    share = host_data_config(config.data, jax.process_count())
    program = build_train_program(config, sharding.make_mesh(config.mesh))
    micro = []
    for k in range(2):  # micro-batch k of the global batch: rows 0-3 from seed 10k+1, rows 4-7 from 10k+2
        halves = [_batch(cfg, rows=4, seed=10 * k + 1 + h) for h in range(2)]
        local = halves[pid] if nproc > 1 else sharding.merge_host_batches(halves)
        assert local["input_ids"].shape[0] == share["batch_size"], (local["input_ids"].shape, share)
        micro.append(local)
    local = {key: np.stack([m[key] for m in micro]) for key in micro[0]}
    with sharding.mesh_context(program.mesh, program.rules):
        params = jax.jit(lambda r: init_params(cfg, r), out_shardings=program.param_shardings)(
            jax.random.key(0)
        )
        state = program.init_state(params)
        batch = sharding.global_batch(local, program.mesh, program.rules, micro_axis=True)
        state, m = program.step(state, batch)
    return {
        "host_rows": int(share["batch_size"]),
        "global_rows": int(batch["input_ids"].shape[0] * batch["input_ids"].shape[1]),
        "step_loss": float(m["loss"]),
        "step_tokens": float(m["tokens"]),
    }


if __name__ == "__main__":
    main()
