"""Fit report of a training config on a target: compile the trainer's own program (`train/program.py`) on
abstract inputs and read memory, collectives, FLOPs and an estimated step time from the compiled module.

    report = fit_report(config, parse_target("v5p:2x2x2"))
    print(format_report(report)); json.dump(report, f)

Step-time model (printed with every report under "assumptions"): every top-level HLO op (fusions, copies,
custom calls; not the ops inside a fusion) takes max(its matmul FLOPs / peak, the bytes of its operands and
result / HBM bandwidth; in-place updates and dynamic slices move their slice only: `hlo.hbm_bytes`), times its computation's
multiplier (while-loop trip counts read from the HLO, counters stepping by 1 or more);
collectives take their ring wire bytes / ICI bandwidth; cross-slice transfers (multi-slice programs send them
through the megascale runtime: `send` ops with `_xla_megascale_transfer_type`) take their bytes / DCN bandwidth. Compute
and collectives either overlap perfectly (the estimate) or not at all (the upper bound). Mosaic (Pallas)
kernels are custom calls the cost model cannot see into: splash attention is timed by the matmul FLOPs it
executes (`model/splash.kernel_flops`) at peak. The slowest ops (grouped by model source) are listed.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import numpy as np

from lingshu_jax.aot import hlo as hlo_lib
from lingshu_jax.aot.targets import (
    DCN_BYTES_PER_S,
    GIB,
    Target,
    devices,
    hbm_per_device,
    prepare_environment,
)

IMAGE_GRID = (1, 64, 64)  # assumed image for analytic FLOPs: 896 x 896 px, 4096 patches, 1024 tokens


def fit_report(config, target: Target, *, top: int = 12, hlo_out: str | None = None) -> dict[str, Any]:
    """Compiles `config`'s training step for `target`; returns the report as a JSON-able dict.
    `hlo_out`: also write the optimized HLO text there."""
    t0 = time.perf_counter()
    config, devs, mesh, program = build_for_target(config, target)
    lowered = program.lower()
    t1 = time.perf_counter()
    report: dict[str, Any] = {
        "config": _config_summary(config, program),
        "target": {"name": target.name, "devices": len(devs), "platform": target.platform},
        "mesh": dict(mesh.shape),
        "lower_s": round(t1 - t0, 2),
    }
    hbm = hbm_per_device(target, devs)
    report["memory"] = {"hbm_per_device": hbm, **_state_bytes(program)}
    try:
        compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001  (the compiler's own report is the result here)
        report["compile_s"] = round(time.perf_counter() - t1, 2)
        report["fits"] = False
        report["error"] = resource_exhausted(str(e))
        report["knobs"] = knobs(config, program, report)
        return report
    report["compile_s"] = round(time.perf_counter() - t1, 2)
    report["memory"].update(compiled_memory(compiled))
    used = report["memory"]["total"]
    report["fits"] = hbm is None or used <= hbm
    if hbm:
        report["memory"]["free_fraction"] = 1 - used / hbm
    text = compiled.as_text()
    if hlo_out:
        with open(hlo_out, "w") as f:
            f.write(text)
    module = hlo_lib.parse(text)
    report["loops"] = {"trip_counts": sorted(set(module.trip_counts.values()), reverse=True)}
    if module.unknown_trip_counts:
        report["loops"]["unknown"] = module.unknown_trip_counts
    report["largest_buffers"] = largest_buffers(module, top)
    cost = (compiled.cost_analysis() or {}) if target.platform == "tpu" else _cost(compiled)
    report["compiler_cost"] = {k: cost.get(k) for k in ("flops", "bytes accessed", "optimal_seconds")}
    # collectives name devices by partition id = position in the mesh's device order
    report.update(step_estimate(module, program, target, len(devs), list(mesh.devices.flat)))
    if not report["fits"]:
        report["knobs"] = knobs(config, program, report)
    return report


def build_for_target(config, target: Target):
    """(config with its slices, the target's devices, the mesh, the trainer's program on it)."""
    prepare_environment(target)

    from lingshu_jax import sharding
    from lingshu_jax.train.program import build_train_program

    config = with_slices(config, target)
    devs = devices(target)
    mesh = sharding.make_mesh(config.mesh, devs)
    return config, devs, mesh, build_train_program(config, mesh)


def compiled_memory(compiled) -> dict:
    """Per-device bytes of a compiled program (`memory_analysis`): arguments, outputs (aliased: donated
    arguments reused), temporaries, code, and their total."""
    mem = compiled.memory_analysis()
    return {
        "arguments": mem.argument_size_in_bytes,
        "outputs": mem.output_size_in_bytes,
        "aliased": mem.alias_size_in_bytes,
        "temporaries": mem.temp_size_in_bytes,
        "code": mem.generated_code_size_in_bytes,
        "total": mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
        + mem.generated_code_size_in_bytes,
    }


def _cost(compiled) -> dict:
    c = compiled.cost_analysis()
    return (c[0] if isinstance(c, list) else c) or {}


def with_slices(config, target: Target):
    """num_slices > 1 with no config.mesh.dcn: the slices are data-parallel (mesh.dcn.data = num_slices)."""
    if target.num_slices == 1:
        return config
    config = config.copy_and_resolve_references()
    dcn = dict(config.mesh.get("dcn", None) or {})
    n = math.prod(int(v) for v in dcn.values()) if dcn else 1
    if n == 1:
        with config.unlocked():
            config.mesh.dcn = {"data": target.num_slices}
    elif n != target.num_slices:
        raise ValueError(f"config.mesh.dcn={dcn} spans {n} slices but --num_slices={target.num_slices}")
    return config


def _config_summary(config, program) -> dict:
    m, d = program.model_config, config.data
    return {
        "model": f"text {m.text.num_hidden_layers}L x {m.text.hidden_size}, vision {m.vision.depth}L",
        "dtype": m.dtype,
        "param_dtype": m.param_dtype,
        "remat_policy": m.remat_policy,
        "vision_remat_policy": m.vision_remat_policy,
        "vision_attention_span": m.vision_attention_span,
        "attention_impl": m.attention_impl,
        "seq_len": int(d.seq_len),
        "batch_size": int(d.batch_size),
        "patch_budget": int(d.get("patch_budget", 0)),
        "grad_accum": program.grad_accum,
        "global_batch_rows": int(d.batch_size) * program.grad_accum,
        "trainable": list(_trainable(program)),
    }


def _trainable(program):
    from lingshu_jax.train.program import trainable_parts

    return trainable_parts(program.opt_info)


def shard_bytes(tree) -> float:
    import jax

    total = 0.0
    for x in jax.tree.leaves(tree):
        shard = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shard) * np.dtype(x.dtype).itemsize
    return total


def _state_bytes(program) -> dict:
    state, batch = program.abstract_state(), program.abstract_batch()
    return {
        "params": shard_bytes(state["params"]),
        "optimizer_state": shard_bytes(state["opt_state"]),
        "batch": shard_bytes(batch),
    }


# -------------------------------------------------------------------------------- what the HBM holds
def largest_buffers(module: hlo_lib.Module, top: int) -> list[dict]:
    """The largest results of top-level ops (live buffers the allocator must place) with their source op."""
    rows = []
    for comp, _m, ins in module.instructions():
        if comp in module.fused or ins.opcode in ("parameter", "get-tuple-element", "tuple", "bitcast"):
            continue
        size = sum(hlo_lib.array_bytes(ins.shape))
        if ins.opcode in ("while", "conditional", "call"):
            continue
        op = re.search(r'op_name="([^"]+)"', ins.attrs)
        rows.append(
            {
                "bytes": size,
                "shape": ins.shape.split("{")[0] if not ins.shape.startswith("(") else ins.shape[:120],
                "opcode": ins.opcode,
                "op_name": op.group(1)[-160:] if op else ins.name,
            }
        )
    rows.sort(key=lambda r: -r["bytes"])
    return rows[:top]


def resource_exhausted(msg: str) -> dict:
    """The compiler's RESOURCE_EXHAUSTED report: needed vs available and its largest allocations."""
    out: dict[str, Any] = {"message": msg.splitlines()[0][:500]}
    m = re.search(r"Used ([\d.]+)([GMK])? of ([\d.]+)([GMK])? hbm", msg) or re.search(
        r"\(([\d.]+)([GMK])\) exceeds available HBM \(([\d.]+)([GMK])\)", msg
    )
    if m:
        unit = {"G": GIB, "M": 1024**2, "K": 1024, None: 1}
        out["needed"] = float(m.group(1)) * unit[m.group(2)]
        out["available"] = float(m.group(3)) * unit[m.group(4)]
    allocs = []
    for block in re.split(r"\n\s*\d+\. ", msg)[1:]:
        size = re.search(r"Size: ([\d.]+)([GMK]?)", block)
        op = re.search(r"Operator: op_name=\"([^\"]+)\"", block) or re.search(r"op_name=\"([^\"]+)\"", block)
        shape = re.search(r"Shape: (\S+)", block)
        if size:
            allocs.append(
                {
                    "size": size.group(1) + size.group(2),
                    "shape": shape.group(1) if shape else "",
                    "op_name": op.group(1)[-160:] if op else "",
                }
            )
    out["largest_allocations"] = allocs[:12]
    if not allocs:
        out["compiler_report"] = msg[:6000]
    return out


def knobs(config, program, report) -> list[str]:
    """Settings that cut per-chip memory, in the order worth trying."""
    m, d, out = program.model_config, config.data, []
    if m.vision.depth and not m.vision_attention_span and int(d.get("patch_budget", 0)):
        out.append(
            "--config.model.vision_attention_span=5120: full-attention vision blocks attend within a "
            "bounded span instead of the whole patch stream"
        )
    if m.remat_policy != "full" or m.vision_remat_policy != "full":
        out.append("--config.model.remat_policy=full --config.model.vision_remat_policy=full")
    if int(d.batch_size) > 1:
        out.append(
            f"halve data.batch_size ({d.batch_size}) and double train.grad_accum ({program.grad_accum}): "
            "same global batch, half the activations"
        )
    out.append(
        f"shard further: more chips on mesh.fsdp (now {dict(program.mesh.shape)}) or mesh.tensor for "
        "heads / mlp / vocab"
    )
    if int(d.get("patch_budget", 0)) > 4096:
        out.append(f"a smaller data.patch_budget ({d.patch_budget} patches per micro-batch)")
    if m.param_dtype == "float32":
        out.append("param_dtype stays float32 for the optimizer; bf16 would halve parameters (not advised)")
    return out


# --------------------------------------------------------------------------------- collectives, time
def hlo_cost(module: hlo_lib.Module, target: Target, n_devices: int, devs) -> dict:
    """What one run of a compiled program costs per device, from its HLO: collectives (buffer and wire
    bytes, ICI vs DCN), matmul FLOPs (weighted by loop trip counts, and once), custom calls, and the
    cost model's compute time with the time per op source (see the module docstring)."""
    chip = target.chip
    slice_of = {p: getattr(d, "slice_index", 0) or 0 for p, d in enumerate(devs)}  # partition id -> slice
    coll: dict[str, dict] = {k: {"count": 0, "bytes": 0.0, "wire_bytes": 0.0} for k in hlo_lib.COLLECTIVES}
    dcn_wire = ici_wire = 0.0
    hlo_flops_once = hlo_flops = 0.0
    compute_s = 0.0
    custom_calls: dict[str, int] = {}
    op_times: dict[tuple, float] = {}
    peak = chip.peak_flops if chip else None
    fused_flops = {
        c: sum(hlo_lib.matmul_flops(i, hlo_lib.shape_table(module.computations[c])) for i in ins_list)
        for c, ins_list in module.computations.items()
        if c in module.fused
    }
    for comp, m, ins in module.instructions():
        shapes = hlo_lib.shape_table(module.computations[comp])
        kind = hlo_lib.collective_kind(ins.opcode)
        if kind:
            n = hlo_lib.group_size(ins.attrs, n_devices)
            buf = hlo_lib.collective_buffer_bytes(kind, ins, shapes)
            wire = buf * hlo_lib.wire_fraction(kind, n)
            c = coll[kind]
            c["count"] += m
            c["bytes"] += buf * m
            c["wire_bytes"] += wire * m
            groups = hlo_lib.replica_groups(ins.attrs)
            spans = bool(groups) and any(len({slice_of.get(i, 0) for i in g}) > 1 for g in groups)
            if spans:
                dcn_wire += wire * m
            else:
                ici_wire += wire * m
            continue
        megascale = re.search(r'_xla_megascale_transfer_type="(\w+)"', ins.attrs)
        if ins.opcode == "send" and megascale:  # a cross-slice (DCN) transfer of the multi-slice runtime
            sent = hlo_lib.array_bytes(ins.shape)[0] if hlo_lib.array_bytes(ins.shape) else 0.0
            c = coll.setdefault(
                f"dcn {megascale.group(1).lower()}", {"count": 0, "bytes": 0.0, "wire_bytes": 0.0}
            )
            c["count"] += m
            c["bytes"] += sent * m
            c["wire_bytes"] += sent * m
            dcn_wire += sent * m
            continue
        f = hlo_lib.matmul_flops(ins, shapes)
        if ins.opcode == "fusion":
            f = sum(fused_flops.get(c, 0.0) for c in re.findall(r"calls=%?([\w.\-]+)", ins.attrs))
        if comp not in module.fused:
            hlo_flops_once += f
            hlo_flops += f * m
            if ins.opcode == "custom-call":
                target_name = re.search(r'custom_call_target="([^"]+)"', ins.attrs)
                key = target_name.group(1) if target_name else "?"
                custom_calls[key] = custom_calls.get(key, 0) + int(m)
            if chip and ins.opcode not in hlo_lib.FREE_OPS:
                moved = hlo_lib.hbm_bytes(ins, module, shapes)
                op_s = m * max(f / peak, moved / chip.hbm_bytes_per_s)
                compute_s += op_s
                _add_op_time(
                    op_times, ins, op_s, bound="flops" if f / peak >= moved / chip.hbm_bytes_per_s else "hbm"
                )
    return {
        "collectives": {k: v for k, v in coll.items() if v["count"]},
        "custom_calls": custom_calls,
        "hlo_flops": hlo_flops,
        "hlo_flops_once": hlo_flops_once,
        "compute_s": compute_s,
        "ici_wire": ici_wire,
        "dcn_wire": dcn_wire,
        "op_times": op_times,
    }


def collective_seconds(cost: dict, chip) -> float:
    """Ring wire bytes over ICI, cross-slice bytes over DCN (a host's NIC serves 4 chips)."""
    return cost["ici_wire"] / chip.ici_bytes_per_s + cost["dcn_wire"] / (DCN_BYTES_PER_S / 4)


def cost_model_assumptions(chip, module: hlo_lib.Module, unknown_count: int = 1) -> list[str]:
    """The step-time model's assumptions, printed with every estimate (`unknown_count`: what loops of
    unknown trip count were counted as, `hlo.parse`)."""
    return [
        (f"peak {chip.peak_flops / 1e12:.0f} TFLOP/s bf16, HBM {chip.hbm_bytes_per_s / 1e9:.0f} GB/s, "
        f"ICI {chip.ici_bytes_per_s / 1e9:.0f} GB/s per chip (Cloud TPU docs); DCN "
        f"{DCN_BYTES_PER_S / 1e9:.0f} GB/s per host of 4 chips"),
        ("each top-level op: max(matmul FLOPs / peak, (operand + result bytes) / HBM bandwidth); ops inside a "
        "fusion move no HBM bytes of their own; an in-place dynamic-update-slice (e.g. a scan saving a layer's "
        "residuals) moves its update only, a (dynamic) slice and a fusion reading through one their slice only, "
        "async copies their operand twice, `-done` halves nothing; elementwise FLOPs ignored"),
        "loop bodies weighted by trip counts read from the HLO (counter from 0 to the LT constant)"
        + (f"; {len(module.unknown_trip_counts)} loops with unknown counts counted {unknown_count} times"
           if module.unknown_trip_counts else ""),
        ("collectives: ring wire bytes (all-gather / reduce-scatter (n-1)/n, all-reduce 2(n-1)/n of the "
        "full buffer) / ICI bandwidth, megascale (cross-slice) sends / DCN bandwidth; estimate = max(compute, collectives) (perfect overlap), upper bound "
        "= their sum"),
    ]  # fmt: skip


def step_estimate(module: hlo_lib.Module, program, target: Target, n_devices: int, devs) -> dict:
    """Collectives per step, FLOPs (HLO weighted by trip counts, compiler, analytic) and a step time."""
    chip = target.chip
    cost = hlo_cost(module, target, n_devices, devs)
    custom_calls, hlo_flops, compute_s = cost["custom_calls"], cost["hlo_flops"], cost["compute_s"]
    ici_wire, dcn_wire = cost["ici_wire"], cost["dcn_wire"]
    peak = chip.peak_flops if chip else None
    out: dict[str, Any] = {"collectives": cost["collectives"], "custom_calls": custom_calls}
    analytic = analytic_flops(program)
    out["flops"] = {
        "analytic": analytic["total"],
        "analytic_breakdown": analytic,
        "hlo_weighted_per_device": hlo_flops,
        "hlo_once_per_device": cost["hlo_flops_once"],
    }
    if not chip:
        return out
    mosaic = sum(v for k, v in custom_calls.items() if "tpu_custom_call" in k or "mosaic" in k.lower())
    kernel_s = 0.0
    if mosaic:  # Pallas kernels (splash attention): the matmul FLOPs they execute, at peak
        executed = splash_flops(program)
        kernel_s = executed / n_devices / peak
        out["flops"]["kernels_executed_per_device"] = executed / n_devices
    coll_s = collective_seconds(cost, chip)
    compute_s += kernel_s
    step = max(compute_s, coll_s)
    mfu = analytic["total"] / (step * n_devices * peak) if step else None
    out["slowest_ops"] = slowest_ops(cost["op_times"], compute_s)
    out["step"] = {
        "compute_s": compute_s,
        "collective_s": coll_s,
        "ici_wire_bytes": ici_wire,
        "dcn_wire_bytes": dcn_wire,
        "estimate_s": step,
        "upper_bound_s": compute_s + coll_s,
        "mfu": mfu,
        "mfu_no_overlap": analytic["total"] / ((compute_s + coll_s) * n_devices * peak),
        "hardware_flops_utilisation": hlo_flops / (step * peak) if step else None,
    }
    out["assumptions"] = [
        *cost_model_assumptions(chip, module),
        (f"analytic model FLOPs (train/flops.py): rows full of text ({program.config.data.seq_len} tokens), "
        f"the patch budget filled with {IMAGE_GRID[1]}x{IMAGE_GRID[2]}-patch images; MFU = analytic FLOPs / "
        "(estimate x devices x peak)"),
        "custom calls (Pallas/Mosaic kernels) are invisible to the HLO: " + (
            "splash attention's time is the matmul FLOPs it executes at peak (model/splash.py kernel_flops: "
            "causal blocks on/below the diagonal, every block of a vision chunk, forward again under remat, "
            "backward 3.5 forwards); their other custom calls are taken as free" if mosaic
            else "none in this program"
        ),
    ]  # fmt: skip
    return out


def splash_flops(program) -> float:
    """Matmul FLOPs of one step's splash kernels, all devices: the decoder's causal attention per row and
    layer, the vision full layers per stream chunk (`data.vision_chunks`)."""
    from lingshu_jax.model.splash import kernel_flops

    cfg, d = program.model_config, program.config.data
    t, v = cfg.text, cfg.vision
    rows, seq, budget = int(d.batch_size), int(d.seq_len), int(d.get("patch_budget", 0))
    total = (
        rows
        * t.num_hidden_layers
        * kernel_flops(
            seq,
            t.num_attention_heads,
            t.head_dim,
            causal=True,
            backward=True,
            recompute=cfg.remat_policy != "none",
        )
    )
    if budget and v.depth:
        chunks, trains = int(d.get("vision_chunks", 1)), "vision" in _trainable(program)
        total += chunks * len(v.fullatt_block_indexes) * kernel_flops(
            budget // chunks, v.num_heads, v.head_dim, causal=False, backward=trains,
            recompute=trains and cfg.vision_remat_policy != "none",
        )  # fmt: skip
    return total * program.grad_accum


def _source(ins) -> str:
    """The op's source as the model names it: its op_name metadata without jit/transform wrappers."""
    op = re.search(r'op_name="([^"]+)"', ins.attrs)
    if not op:
        return ins.opcode
    parts = [
        p
        for p in op.group(1).split("/")
        if not re.match(r"(jit|jvp|transpose|vmap|checkpoint|remat|while|body|closed_call|cond|branch)\b", p)
    ]
    return "/".join(parts[-4:]) or ins.opcode


def _add_op_time(op_times: dict, ins, seconds: float, bound: str) -> None:
    key = (_source(ins), ins.opcode, bound)
    op_times[key] = op_times.get(key, 0.0) + seconds


def slowest_ops(op_times: dict, total_s: float, top: int = 12) -> list[dict]:
    """The model ops (grouped by source) that take most of the estimated compute time, with what bounds them."""
    rows = sorted(op_times.items(), key=lambda kv: -kv[1])[:top]
    return [
        {
            "source": src,
            "opcode": opcode,
            "bound": bound,
            "seconds": sec,
            "share": sec / total_s if total_s else 0,
        }
        for (src, opcode, bound), sec in rows
    ]


def analytic_flops(program) -> dict:
    """Model FLOPs of one step (train/flops.py) for full rows and a full patch budget (IMAGE_GRID images)."""
    from lingshu_jax.train import flops as flops_lib

    d = program.config.data
    rows, seq, budget = int(d.batch_size), int(d.seq_len), int(d.get("patch_budget", 0))
    per = math.prod(IMAGE_GRID)
    grids = [IMAGE_GRID] * (budget // per)
    rest = budget % per
    if rest >= 16:
        side = math.isqrt(rest) // 2 * 2
        grids.append((1, side, rest // side // 2 * 2))
    out = flops_lib.train_flops_breakdown(
        program.model_config, (rows, seq), grids if program.model_config.vision.depth else [],
        _trainable(program),
    )  # fmt: skip
    return {k: float(v) * program.grad_accum for k, v in out.items()}


# -------------------------------------------------------------------------------------------- text
def _gib(x) -> str:
    return "-" if x is None else f"{x / GIB:.2f} GiB"


def format_report(r: dict) -> str:
    c, mem = r["config"], r["memory"]
    lines = [
        f"== {r['target']['name']} ({r['target']['devices']} devices), mesh {r['mesh']}",
        (
            f"   {c['model']}; {c['dtype']} compute, {c['param_dtype']} params; remat {c['remat_policy']}/"
            f"{c['vision_remat_policy']}; vision span {c['vision_attention_span']}; attention {c['attention_impl']}"
        ),
        (
            f"   batch: {c['batch_size']} rows x {c['seq_len']} tokens + {c['patch_budget']} patches per "
            f"micro-batch (global), grad_accum {c['grad_accum']} -> {c['global_batch_rows']} rows per step; "
            f"trains {', '.join(c['trainable'])}"
        ),
        f"   compile: lower {r['lower_s']} s, compile {r.get('compile_s')} s",
        "-- memory per device",
        (
            f"   parameters {_gib(mem['params'])}, optimizer state {_gib(mem['optimizer_state'])}, "
            f"batch {_gib(mem['batch'])}"
        ),
    ]
    if "error" in r:
        e = r["error"]
        lines.append(
            f"   DOES NOT FIT: needs {_gib(e.get('needed'))} of {_gib(e.get('available') or mem['hbm_per_device'])}"
        )
        lines.append(f"   compiler: {e['message'][:300]}")
        for a in e.get("largest_allocations", []):
            lines.append(f"     {a['size']:>9}  {a['shape'][:60]:60s} {a['op_name'][-90:]}")
        if e.get("compiler_report"):
            lines.extend("     " + ln[:200] for ln in e["compiler_report"].splitlines()[1:40] if ln.strip())
    else:
        lines.append(
            f"   temporaries {_gib(mem['temporaries'])}, arguments {_gib(mem['arguments'])}, outputs "
            f"{_gib(mem['outputs'])} (aliased {_gib(mem['aliased'])}), code {_gib(mem['code'])}"
        )
        hbm = mem.get("hbm_per_device")
        verdict = "FITS" if r["fits"] else "DOES NOT FIT"
        free = f", {mem['free_fraction'] * 100:.1f}% free" if hbm else ""
        lines.append(f"   total {_gib(mem['total'])} of {_gib(hbm)} HBM: {verdict}{free}")
        lines.append("   largest buffers:")
        for b in r["largest_buffers"][:8]:
            lines.append(
                f"     {_gib(b['bytes']):>11}  {b['opcode']:18s} {b['shape'][:44]:44s} {b['op_name'][-70:]}"
            )
        lines.append(f"-- loops: trip counts {r['loops']['trip_counts']}")
        lines.append("-- collectives per step (per device; buffer = full-size array, wire = bytes sent)")
        for k, v in r["collectives"].items():
            lines.append(
                f"   {k:20s} {v['count']:8.0f} ops  buffer {_gib(v['bytes']):>12}  wire {_gib(v['wire_bytes']):>12}"
            )
        f = r["flops"]
        lines.append("-- FLOPs per step")
        lines.append(
            f"   analytic (model, all devices): {f['analytic']:.3e} (vision {f['analytic_breakdown']['vision']:.3e})"
        )
        lines.append(
            f"   HLO matmuls per device: {f['hlo_weighted_per_device']:.3e} weighted by trip counts "
            f"({f['hlo_once_per_device']:.3e} once); compiler cost_analysis flops (bodies once): "
            f"{(r['compiler_cost'].get('flops') or 0):.3e}"
        )
        if r.get("custom_calls"):
            lines.append(f"   custom calls: {r['custom_calls']}")
        if r.get("slowest_ops"):
            lines.append("   slowest ops (estimated compute time, grouped by source):")
            for o in r["slowest_ops"]:
                lines.append(
                    f"     {o['seconds']:8.3f} s {100 * o['share']:5.1f}%  {o['bound']:5s} {o['opcode']:12s} {o['source']}"
                )
        if "step" in r:
            s = r["step"]
            lines.append("-- estimated step time")
            lines.append(
                f"   compute {s['compute_s']:.2f} s, collectives {s['collective_s']:.2f} s -> step "
                f"{s['estimate_s']:.2f} s (no overlap {s['upper_bound_s']:.2f} s); MFU {s['mfu'] * 100:.1f}% "
                f"(no overlap {s['mfu_no_overlap'] * 100:.1f}%)"
            )
            lines.append("   assumptions:")
            lines.extend(f"     - {a}" for a in r["assumptions"])
    if r.get("knobs"):
        lines.append("-- knobs that would help")
        lines.extend(f"   - {k}" for k in r["knobs"])
    return "\n".join(lines)
