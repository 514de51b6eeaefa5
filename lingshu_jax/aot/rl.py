"""Fit report of a GRPO config (`configs/lingshu/rl.py`) on a target: compiles each program a rollout step
runs, with the trainer's own code (`rl.trainer.grpo_programs`, `infer.generate.compiled_program`) on
abstract inputs, and reads memory, collectives and an estimated time from each.

    report = rl_fit_report(config, parse_target("v5p:2x2x2"))
    print(format_rl_report(report))

A rollout step (`rl/trainer.py`) calls, in turn:
    generate     KV-cache sampling of `rows_per_generate` rows (whole prompt groups) per call
    logprob      old (and, with a KL term, reference) log-probs, `micro_batch_rows` rows per call
    accumulate   one micro-batch's gradient and metric sums added into the accumulator
    update       the optimizer update of one mini-batch
Every program holds its own arguments, outputs and temporaries (`memory_analysis`); besides them the HBM
holds the buffers that live across the step and are not its arguments: the optimizer state, the frozen
reference parameters and, while a mini-batch accumulates, the gradient accumulator. A phase's peak is its
program's total plus those; the step fits when every phase does.

Shapes are the largest a step can see: prompts of `max_prompt_tokens` (bucketed as the trainer buckets
them), each with one image, the largest `data.max_pixels` allows (printed: an assumption, since prompts'
images differ),
responses of `max_new_tokens`, and the decode loop running to `max_new_tokens` (it stops early when
every row has).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from lingshu_jax.aot import hlo as hlo_lib
from lingshu_jax.aot.report import (
    build_for_target,
    collective_seconds,
    compiled_memory,
    cost_model_assumptions,
    hlo_cost,
    largest_buffers,
    resource_exhausted,
    shard_bytes,
    slowest_ops,
)
from lingshu_jax.aot.targets import GIB, Target, hbm_per_device

PROMPT_IMAGE_GRID = (
    1,
    64,
    64,
)  # assumed image per prompt without data.max_pixels: 896 x 896 px, 4096 patches


def largest_image_grid(max_pixels: int, patch: int = 14, merge: int = 2) -> tuple[int, int, int]:
    """(1, h, w) patches of the largest near-square image the processor's `max_pixels` allows."""
    units = max_pixels // (patch * merge) ** 2
    h = math.isqrt(units)
    return (1, merge * h, merge * (units // h))


@dataclasses.dataclass(frozen=True)
class RolloutShapes:
    """Global shapes of the GRPO programs' inputs for the largest prompts and responses."""

    gen_rows: int  # rows of one generation call
    prompt_len: int  # generation's prompt bucket
    gen_patches: int  # vision patches of one generation call
    cache_len: int
    micro_rows: int  # rows of one log-prob / accumulate call
    update_prompt_len: int  # the update batches' prompt bucket
    resp_len: int
    micro_patches: int
    calls: dict  # program -> calls per rollout step


def rollout_shapes(
    s, model_cfg, batch_shards: int, image_grid=PROMPT_IMAGE_GRID, vision_chunks: int = 1
) -> RolloutShapes:
    """What `rl.trainer` would build for prompts of `s.max_prompt_tokens` tokens with one `image_grid`
    image each and responses of `s.max_new_tokens` (buckets as `infer.generate` and `rl.rollout` apply;
    the vision stream in `vision_chunks` chunks, each bucketed for its share of the rows)."""
    from lingshu_jax.infer.batching import bucket_size, round_up
    from lingshu_jax.infer.generate import DEFAULT_BUCKETS
    from lingshu_jax.model.vision_inputs import stream_rows

    v = model_cfg.vision
    image_tokens = math.prod(image_grid) // v.merge_unit
    prompt = max(s.max_prompt_tokens, image_tokens + 64) if s.max_prompt_tokens else image_tokens + 512
    per_row = stream_rows(
        image_grid, spatial_merge_size=v.spatial_merge_size, window_merge_units=v.window_merge_units
    )
    per_row = per_row if v.depth else 0
    per_call = max(1, s.rows_per_generate // s.group_size)  # whole prompt groups per call
    gen_rows = round_up(per_call * s.group_size, math.lcm(batch_shards, vision_chunks))
    gen_prompt = bucket_size(prompt, DEFAULT_BUCKETS.prompt)
    rows = s.rollout_prompts * s.group_size
    micro = s.micro_batch_rows
    stream = lambda n, step: bucket_size(n // vision_chunks * per_row, step) * vision_chunks if per_row else 0  # noqa: E731
    return RolloutShapes(
        gen_rows=gen_rows,
        prompt_len=gen_prompt,
        gen_patches=stream(gen_rows, DEFAULT_BUCKETS.patches),
        cache_len=round_up(gen_prompt + s.max_new_tokens, DEFAULT_BUCKETS.cache),
        micro_rows=micro,
        update_prompt_len=bucket_size(prompt, s.prompt_bucket),
        resp_len=min(bucket_size(s.max_new_tokens, s.response_bucket), s.max_new_tokens),
        micro_patches=stream(micro, s.patch_bucket),
        calls={
            "generate": -(-s.rollout_prompts // per_call),
            "logprob": (2 if s.kl_coef else 1) * rows // micro,
            "accumulate": s.epochs * rows // micro,
            "update": s.updates_per_step,
        },
    )


def abstract_inputs(program, s, shapes: RolloutShapes) -> dict[str, tuple]:
    """Program name -> its abstract arguments (ShapeDtypeStructs with the shardings the trainer gives)."""
    import jax
    import numpy as np

    from lingshu_jax import sharding
    from lingshu_jax.infer.generate import generation_param_shardings, generation_rules
    from lingshu_jax.rl.trainer import grpo_programs
    from lingshu_jax.train.program import model_batch_spec

    cfg, mesh = program.model_config, program.mesh

    def placed(spec: dict, rules) -> dict:
        shard = sharding.batch_shardings(spec, mesh, rules)
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shard[k]) for k, v in spec.items()}

    gen = model_batch_spec(cfg, shapes.gen_rows, shapes.prompt_len, shapes.gen_patches, np.float32)
    gen_rules = generation_rules(program.rules)
    row_keys = {"row_keys": jax.ShapeDtypeStruct((shapes.gen_rows, 2), np.uint32)}
    seq = shapes.update_prompt_len + shapes.resp_len
    mb = model_batch_spec(cfg, shapes.micro_rows, seq, shapes.micro_patches, np.float32)
    t = (shapes.micro_rows, shapes.resp_len)
    mb["response_tokens"] = jax.ShapeDtypeStruct(t, np.int32)
    mb["response_mask"] = jax.ShapeDtypeStruct(t, np.int32)
    logprob_batch = placed(mb, program.rules)
    mb.update(
        {
            "old_logp": jax.ShapeDtypeStruct(t, np.float32),
            "ref_logp": jax.ShapeDtypeStruct(t, np.float32),
            "advantages": jax.ShapeDtypeStruct((shapes.micro_rows,), np.float32),
        }
    )
    state = program.abstract_state()
    params = state["params"]
    train_state = {k: state[k] for k in ("params", "opt_state", "bad_steps")}
    progs = grpo_programs(program, s)
    acc = jax.eval_shape(progs.zeros, params)  # gradient sums of the trainable parameters, metric sums
    acc = jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), acc, progs.acc_shardings
    )
    gen_params = jax.tree.map(  # `generate_ids` lays the policy out for generation (`place_params`)
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
        params,
        generation_param_shardings(cfg, mesh, gen_rules),
    )
    return {
        "generate": (gen_params, placed(gen, gen_rules), placed(row_keys, gen_rules)["row_keys"]),
        "logprob": (params, logprob_batch),
        "accumulate": (params, acc, placed(mb, program.rules)),
        "update": (train_state, acc),
    }


def rl_fit_report(config, target: Target, *, top: int = 8, image_grid=None) -> dict[str, Any]:
    """Compiles the GRPO programs of `config` for `target`; returns the report as a JSON-able dict.
    `image_grid`: the (t, h, w) patch grid of the one image assumed in every prompt (default: the largest
    `config.data.max_pixels` allows, else `PROMPT_IMAGE_GRID`)."""
    if image_grid is None:
        max_pixels = config.data.get("max_pixels")
        image_grid = largest_image_grid(int(max_pixels)) if max_pixels else PROMPT_IMAGE_GRID
    t0 = time.perf_counter()
    config, devs, mesh, program = build_for_target(config, target)

    from lingshu_jax import sharding
    from lingshu_jax.infer.generate import (
        ProgramKey,
        batch_shards,
        compiled_program,
        generation_rules,
        stream_chunks,
    )
    from lingshu_jax.infer.sampling import SamplingConfig
    from lingshu_jax.rl.trainer import GRPOSettings, check_batch_shards, grpo_programs

    s = GRPOSettings.from_config(config.rl)
    check_batch_shards(s, program.model_config, mesh, program.rules)  # what the trainer refuses, refused
    gen_rules = generation_rules(program.rules)
    chunks = stream_chunks(program.model_config, mesh, gen_rules)
    shapes = rollout_shapes(s, program.model_config, batch_shards(mesh, gen_rules), image_grid, chunks)
    inputs = abstract_inputs(program, s, shapes)
    progs = grpo_programs(program, s)
    eos = program.model_config.eos_token_ids
    gen_key = ProgramKey(
        config=program.model_config,
        cache_len=shapes.cache_len,
        max_new_tokens=s.max_new_tokens,
        sampling=SamplingConfig(s.temperature, s.top_k, s.top_p),
        stop_token_ids=tuple(eos),
        pad_token_id=int(eos[0]) if eos else 0,
        return_logits=s.check_logprobs,
        mesh=mesh,
        rules=gen_rules,
    )
    jitted = {
        "generate": (compiled_program(gen_key), gen_rules),
        "logprob": (progs.logprob, program.rules),
        "accumulate": (progs.accumulate, program.rules),
        "update": (progs.update, program.rules),
    }
    state = program.abstract_state()
    resident = {
        "params": shard_bytes(state["params"]),
        "optimizer_state": shard_bytes(state["opt_state"]),
        "reference_params": shard_bytes(state["params"]) if s.kl_coef else 0.0,
        "accumulator": shard_bytes(inputs["update"][1]),
    }
    # buffers alive during each program that are not its arguments (rl/trainer.py: `_step`, `_update`)
    extra = {  # generate: its argument is the policy's generation-layout copy; the training layout stays
        "generate": ("params", "optimizer_state", "reference_params"),
        "logprob": ("optimizer_state", "reference_params"),  # the reference pass: the policy instead
        "accumulate": ("optimizer_state", "reference_params"),
        "update": ("reference_params",),
    }
    hbm = hbm_per_device(target, devs)
    report: dict[str, Any] = {
        "kind": "grpo",
        "config": {**_summary(program, s, shapes, image_grid), "vision_chunks": chunks},
        "target": {"name": target.name, "devices": len(devs), "platform": target.platform},
        "mesh": dict(mesh.shape),
        "memory": {"hbm_per_device": hbm, "resident": resident},
        "programs": {},
    }
    for name, (fn, rules) in jitted.items():
        t1 = time.perf_counter()
        with sharding.mesh_context(mesh, rules):
            lowered = fn.lower(*inputs[name])
        report["programs"][name] = _compile_one(
            lowered,
            target,
            devs,
            list(mesh.devices.flat),
            sum(resident[k] for k in extra[name]),
            list(extra[name]),
            shapes.calls[name],
            unknown_count=max(s.max_new_tokens - 1, 1) if name == "generate" else 1,
            top=top,
        )
        report["programs"][name]["lower_s"] = round(time.perf_counter() - t1, 2)
    report["lower_and_compile_s"] = round(time.perf_counter() - t0, 2)
    peaks = [p.get("peak") for p in report["programs"].values()]
    report["fits"] = all(p.get("fits", False) for p in report["programs"].values())
    if all(peaks):
        report["memory"]["peak"] = max(peaks)
        if hbm:
            report["memory"]["free_fraction"] = 1 - max(peaks) / hbm
    if target.chip and all("time_s" in p for p in report["programs"].values()):
        per_step = {n: p["time_s"] * p["calls_per_step"] for n, p in report["programs"].items()}
        report["step"] = {"estimate_s": sum(per_step.values()), "by_program_s": per_step}
        report["assumptions"] = _assumptions(target, s, shapes, report)
    return report


def _compile_one(lowered, target, devs, mesh_devs, extra_bytes, extra_names, calls, unknown_count, top):
    """Compiles one program: its memory (+ the resident buffers that are not its arguments), HLO cost."""
    hbm = hbm_per_device(target, devs)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"calls_per_step": calls, "resident_not_arguments": extra_names}
    try:
        compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001  (the compiler's own report is the result here)
        out.update(compile_s=round(time.perf_counter() - t0, 2), fits=False, error=resource_exhausted(str(e)))
        return out
    out["compile_s"] = round(time.perf_counter() - t0, 2)
    mem = compiled_memory(compiled)
    out.update(mem, program_total=mem["total"], resident_bytes=extra_bytes, peak=mem["total"] + extra_bytes)
    del out["total"]
    out["fits"] = hbm is None or out["peak"] <= hbm
    module = hlo_lib.parse(compiled.as_text(), unknown_trip_count=unknown_count)
    out["largest_buffers"] = largest_buffers(module, top)
    out["loops"] = {"trip_counts": sorted(set(module.trip_counts.values()), reverse=True)}
    if module.unknown_trip_counts:
        out["loops"]["unknown_counted_as"] = unknown_count
    cost = hlo_cost(module, target, len(devs), mesh_devs)  # partition ids name the mesh's device order
    out["collectives"] = cost["collectives"]
    out["hlo_flops_per_device"] = cost["hlo_flops"]
    if target.chip:
        coll_s = collective_seconds(cost, target.chip)
        out.update(compute_s=cost["compute_s"], collective_s=coll_s, time_s=max(cost["compute_s"], coll_s))
        out["slowest_ops"] = slowest_ops(cost["op_times"], cost["compute_s"], top=5)
        out["assumption_lines"] = cost_model_assumptions(target.chip, module, unknown_count)
    return out


def _summary(program, s, shapes: RolloutShapes, image_grid) -> dict:
    m = program.model_config
    return {
        "model": f"text {m.text.num_hidden_layers}L x {m.text.hidden_size}, vision {m.vision.depth}L",
        "dtype": m.dtype,
        "param_dtype": m.param_dtype,
        "remat_policy": m.remat_policy,
        "attention_impl": m.attention_impl,
        "vision_attention_span": m.vision_attention_span,
        "rollout": f"{s.rollout_prompts} prompts x {s.group_size} samples",
        "updates_per_step": s.updates_per_step,
        "image_per_prompt": f"{image_grid[1] * 14}x{image_grid[2] * 14} px, {math.prod(image_grid)} patches",
        "shapes": dataclasses.asdict(shapes),
    }


def _assumptions(target, s, shapes: RolloutShapes, report) -> list[str]:
    first = next(iter(report["programs"].values()))
    return [
        *first["assumption_lines"],
        f"every prompt {shapes.update_prompt_len} tokens with one "
        f"{report['config']['image_per_prompt']} image; every response {s.max_new_tokens} tokens (the decode "
        "loop, which stops once every row has, runs to its maximum: an upper bound)",
        "a rollout step = the calls per step of each program in sequence (host work between calls, "
        "reward scoring and prompt encoding not counted)",
    ]


# -------------------------------------------------------------------------------------------- text
def _gib(x) -> str:
    return "-" if x is None else f"{x / GIB:.2f} GiB"


def format_rl_report(r: dict) -> str:
    c, mem = r["config"], r["memory"]
    sh = c["shapes"]
    res = mem["resident"]
    lines = [
        f"== GRPO rollout step on {r['target']['name']} ({r['target']['devices']} devices), mesh {r['mesh']}",
        (
            f"   {c['model']}; {c['dtype']} compute, {c['param_dtype']} params; remat {c['remat_policy']}; "
            f"attention {c['attention_impl']}; vision span {c['vision_attention_span']}"
        ),
        (
            f"   rollout {c['rollout']}, {c['updates_per_step']} updates; each prompt {sh['update_prompt_len']} "
            f"tokens with one {c['image_per_prompt']} image (assumed), responses up to {sh['resp_len']}"
        ),
        (
            f"   generate: {sh['gen_rows']} rows x {sh['prompt_len']} prompt tokens + {sh['gen_patches']} "
            f"patches, KV cache {sh['cache_len']}; log-prob / accumulate: {sh['micro_rows']} rows x "
            f"{sh['update_prompt_len'] + sh['resp_len']} tokens + {sh['micro_patches']} patches"
        ),
        f"   lower + compile: {r['lower_and_compile_s']} s",
        "-- memory per device",
        (
            f"   held across the step: policy parameters {_gib(res['params'])}, optimizer state "
            f"{_gib(res['optimizer_state'])}, reference parameters {_gib(res['reference_params'])}, "
            f"gradient accumulator {_gib(res['accumulator'])} (during updates)"
        ),
        (
            f"   {'program':11s} {'calls/step':>10s} {'arguments':>11s} {'temporaries':>12s} {'outputs':>11s} "
            f"{'+ resident':>11s} {'= peak':>11s}  est. time/call"
        ),
    ]
    for name, p in r["programs"].items():
        if "error" in p:
            e = p["error"]
            lines.append(
                f"   {name:11s} {p['calls_per_step']:>10d}  DOES NOT FIT: needs {_gib(e.get('needed'))} "
                f"({e['message'][:120]})"
            )
            for a in e.get("largest_allocations", [])[:6]:
                lines.append(f"       {a['size']:>9}  {a['shape'][:60]:60s} {a['op_name'][-80:]}")
            continue
        t = f"{p['time_s']:.3f} s" if "time_s" in p else "-"
        lines.append(
            f"   {name:11s} {p['calls_per_step']:>10d} {_gib(p['arguments']):>11s} {_gib(p['temporaries']):>12s} "
            f"{_gib(p['outputs']):>11s} {_gib(p['resident_bytes']):>11s} {_gib(p['peak']):>11s}  {t}"
        )
    hbm = mem.get("hbm_per_device")
    if "peak" in mem:
        verdict = "FITS" if r["fits"] else "DOES NOT FIT"
        free = f", {mem['free_fraction'] * 100:.1f}% free" if hbm else ""
        lines.append(f"   peak {_gib(mem['peak'])} of {_gib(hbm)} HBM: {verdict}{free}")
    else:
        lines.append("   DOES NOT FIT: a program failed to compile (above)")
    for name, p in r["programs"].items():
        if "largest_buffers" not in p:
            continue
        lines.append(f"-- {name}: largest buffers; loops {p['loops']}")
        for b in p["largest_buffers"][:4]:
            lines.append(
                f"     {_gib(b['bytes']):>11}  {b['opcode']:18s} {b['shape'][:44]:44s} {b['op_name'][-70:]}"
            )
        coll = ", ".join(f"{k} {_gib(v['wire_bytes'])}" for k, v in p["collectives"].items())
        lines.append(f"   collectives per call (wire): {coll or 'none'}")
        for o in p.get("slowest_ops", []):
            lines.append(
                f"     {o['seconds']:8.4f} s {100 * o['share']:5.1f}%  {o['bound']:5s} {o['opcode']:12s} {o['source']}"
            )
    if "step" in r:
        st = r["step"]
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in st["by_program_s"].items())
        lines.append("-- estimated rollout step (a cost-model estimate, not a measurement)")
        lines.append(f"   {st['estimate_s']:.1f} s = {parts}")
        lines.append("   assumptions:")
        lines.extend(f"     - {a}" for a in r["assumptions"])
    return "\n".join(lines)
