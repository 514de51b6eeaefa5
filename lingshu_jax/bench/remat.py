"""Remat policies and the chunked loss, measured. `compile`: the 7B stage-2 train step compiled for v5p:2x2x2
(fsdp=8; the trainer's train_step, state and batch shardings, 8 micro-batches) per text / vision policy and
loss chunk length, one JSON line of per-chip memory and the compiler's cost; and the analytic step FLOPs with
each policy's recompute (`flops`); `cpu`: the CPU suite's bench-100m step (batch 4 x 512, one 448^2 image
per row) compiled for XLA:CPU, its temporaries per text / vision policy. Results: docs/tpu.md "Remat policies
and the chunked loss", docs/benchmark_cpu.md. (The AOT tool of issue 14, scripts/aot.py, generalises
`compile` to any config and topology.)

    JAX_PLATFORMS=cpu TPU_ACCELERATOR_TYPE=v5p-8 TPU_WORKER_HOSTNAMES=localhost \
        python -m lingshu_jax.bench.remat compile TEXT_POLICY VISION_POLICY LOSS_CHUNK_LEN \
        [SPAN] [MICRO] [PATCHES]
    python -m lingshu_jax.bench.remat flops
    JAX_PLATFORMS=cpu python -m lingshu_jax.bench.remat cpu TEXT_POLICY VISION_POLICY [LOSS_CHUNK_LEN]
"""

import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
from jax.experimental import topologies
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lingshu_jax import sharding
from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, abstract_params
from lingshu_jax.train import flops
from lingshu_jax.train.aot import abstract_batch
from lingshu_jax.train.optimizer import make_optimizer, state_shardings
from lingshu_jax.train.trainer import train_step


def compile_report(pol, vpol, chunk, span, micro, patches):
    """One compile of the 7B stage-2 step on v5p:2x2x2 -> prints one JSON line (GiB per chip, cost)."""
    cfg = preset(
        "lingshu-7b",
        dtype="bfloat16",
        param_dtype="float32",
        remat_policy=pol,
        vision_remat_policy=vpol,
        vision_attention_span=span,
        loss_chunk_len=chunk,
    )
    topo = topologies.get_topology_desc(topology_name="v5p:2x2x2", platform="tpu")
    mesh = sharding.make_mesh({"fsdp": 8}, topo.devices)
    rules = sharding.DEFAULT_RULES
    p_shard = sharding.param_shardings(abstract_params(cfg, boxed=True), mesh, rules)
    with_sharding = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    params = jax.tree.map(with_sharding, abstract_params(cfg), p_shard)
    optim = {
        "groups": [
            ("visual/merger/.*", 1e-5, "merger"),
            ("visual/.*", 2e-6, "vit"),
            (".*", 1e-5, "llm"),
        ],
        "clip_norm": 1.0,
        "weight_decay": 0.0,
    }
    tx, info = make_optimizer(optim, params)
    rep = NamedSharding(mesh, P())
    opt_shard = state_shardings(tx, params, p_shard, rep)
    state_shard = {
        "step": rep,
        "params": p_shard,
        "bad_steps": rep,
        "opt_state": opt_shard,
    }
    with sharding.mesh_context(mesh, rules):
        opt_state = jax.eval_shape(tx.init, params)
    state = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "params": params,
        "opt_state": opt_state,
        "bad_steps": jax.ShapeDtypeStruct((), jnp.int32),
    }
    state = jax.tree.map(with_sharding, state, state_shard)
    batch = abstract_batch(cfg, batch=8, seq=8192, patches=patches, micro=micro)
    b_shard = sharding.batch_shardings(batch, mesh, rules, micro_axis=True)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=b_shard[k]) for k, v in batch.items()}
    fn = jax.jit(
        functools.partial(train_step, Qwen25VL(cfg), tx, trainable=info.trainable_mask),
        in_shardings=(state_shard, b_shard),
        out_shardings=(state_shard, None),
        donate_argnums=(0,),
    )
    t0 = time.perf_counter()
    with sharding.mesh_context(mesh, rules):
        lowered = fn.lower(state, batch)
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:  # RESOURCE_EXHAUSTED: the compiler's own figure
        print(
            json.dumps(
                {
                    "policy": pol,
                    "vision_policy": vpol,
                    "chunk": chunk,
                    "span": span,
                    "error": str(e)[:1500],
                }
            )
        )
        return
    tc = time.perf_counter() - t0
    m = compiled.memory_analysis()
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    G = 2**30
    out = {
        "policy": pol,
        "vision_policy": vpol,
        "chunk": chunk,
        "span": span,
        "micro": micro,
        "patches": patches,
        "temp_GiB": m.temp_size_in_bytes / G,
        "arg_GiB": m.argument_size_in_bytes / G,
        "out_GiB": m.output_size_in_bytes / G,
        "alias_GiB": m.alias_size_in_bytes / G,
        "total_GiB": (
            m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
        )
        / G,
        "flops": ca.get("flops"),
        "bytes": ca.get("bytes accessed"),
        "optimal_s": ca.get("optimal_seconds"),
        "compile_s": round(tc, 1),
    }
    print(json.dumps(out), flush=True)


def flops_report():
    """Analytic step FLOPs (8 rows x 8192 tokens x 8 micro-batches, one 16384-patch image per row) and the
    text decoder's recompute per policy."""
    cfg = preset("lingshu-7b")
    t = cfg.text
    rows, seq, micro, chips, peak = 8, 8192, 8, 8, 459e12
    grids = [(1, 128, 128)] * rows * micro
    b = flops.train_flops_breakdown(cfg, (rows * micro, seq), grids)
    D, H, K, Dh, F, L = (
        t.hidden_size,
        t.num_attention_heads,
        t.num_key_value_heads,
        t.head_dim,
        t.intermediate_size,
        t.num_hidden_layers,
    )
    tok = rows * micro * seq
    q = o = 2 * D * H * Dh * tok
    kv = 4 * D * K * Dh * tok
    gate = up = 2 * D * F * tok
    half_attn = 2 * H * Dh * rows * micro * seq * (seq + 1) // 2  # QK^T (or PV) of causal attention
    # per layer: forward matmul FLOPs the backward recomputes (XLA drops what the backward does not need)
    recompute = {
        "none": 0,
        "save_dots": 2 * half_attn,  # attention (QK^T, PV): batch-dim dots are not saved
        "save_qkv_attn": half_attn + o + gate + up,  # QK^T for the softmax; o (feeds the MLP); gate, up
        "save_qkv_proj": 2 * half_attn + o + gate + up,
        "full": q
        + kv
        + 2 * half_attn
        + o
        + gate
        + up,  # everything but down_proj (its output is the next carry)
    }
    total = b["total"]
    print(
        f"model FLOPs/step {total:.4g} (text {b['text']:.4g}, vision {b['vision']:.4g}); roofline "
        f"{total / (chips * peak):.2f} s at 100% of {chips} x {peak / 1e12:.0f} TFLOP/s"
    )
    for name, r in recompute.items():
        hw = total + L * r
        print(
            f"{name:14s} text recompute {L * r:.4g}  hardware FLOPs {hw:.4g} (+{100 * L * r / total:.1f}%)  "
            f"roofline {hw / (chips * peak):.2f} s; MFU ceiling {100 * total / hw:.1f}%"
        )


def cpu_report(pol, vpol, chunk=None):
    """bench-100m's CPU train step (the suite's batch and optimizer) compiled: temporaries in MiB."""
    from lingshu_jax.bench.inputs import bench_config, make_inputs
    from lingshu_jax.bench.train import OPTIM
    from lingshu_jax.model.vlm import prepare_inputs

    cfg = bench_config("bench-100m").replace(
        remat_policy=pol, vision_remat_policy=vpol, vision_attention_span=(448 // 14) ** 2
    )
    cfg = cfg if chunk is None else cfg.replace(loss_chunk_len=chunk)
    inputs = make_inputs(cfg, 4, 512, 448)
    labels = inputs.pop("labels")
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")
    batch = prepare_inputs(
        cfg, *(inputs[k] for k in keys[:2]), pixel_values=inputs[keys[2]], image_grid_thw=inputs[keys[3]]
    )
    batch["labels"] = labels.astype("int32")
    batch = {k: jax.ShapeDtypeStruct((1, *v.shape), v.dtype) for k, v in batch.items()}
    params = abstract_params(cfg)
    tx, _ = make_optimizer(OPTIM, params)
    state = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "params": params,
        "opt_state": jax.eval_shape(tx.init, params),
        "bad_steps": jax.ShapeDtypeStruct((), jnp.int32),
    }
    fn = jax.jit(functools.partial(train_step, Qwen25VL(cfg), tx), donate_argnums=(0,))
    m = fn.lower(state, batch).compile().memory_analysis()
    print(
        json.dumps(
            {
                "policy": pol,
                "vision_policy": vpol,
                "loss_chunk_len": cfg.loss_chunk_len,
                "temp_MiB": round(m.temp_size_in_bytes / 2**20, 1),
                "args_MiB": round(m.argument_size_in_bytes / 2**20, 1),
            }
        )
    )


def main(argv):
    if argv[:1] == ["flops"]:
        return flops_report()
    if argv[:1] == ["cpu"] and len(argv) >= 3:
        return cpu_report(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else None)
    if argv[:1] != ["compile"] or len(argv) < 4:
        raise SystemExit(__doc__)
    a = argv[1:]
    compile_report(
        a[0],
        a[1],
        int(a[2]),
        int(a[3]) if len(a) > 3 else 5120,
        int(a[4]) if len(a) > 4 else 8,
        int(a[5]) if len(a) > 5 else 8 * 16384,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
