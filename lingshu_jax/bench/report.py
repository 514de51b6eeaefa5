"""The benchmark report: `results.json` (everything raw) and a markdown table with ratios and MFU.

Ratios are ours / transformers as a speed-up: > 1 means ours is faster (rates divided ours by theirs,
times theirs by ours). Each cell is the median over the interleaved rounds; the JSON holds every value.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from lingshu_jax.bench.harness import speedup
from lingshu_jax.bench.sections import TARGETS

SIDES = ("ours", "transformers")


def _f(x, digits: int = 3, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, str):
        return x
    ax = abs(x)
    if ax >= 1e4:
        s = f"{x:,.0f}"
    elif ax >= 100:
        s = f"{x:.1f}"
    else:
        s = f"{x:.{digits}g}"
    return s + unit


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ratio(x) -> str:
    return "–" if x is None else f"{x:.2f}x"


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _status(section: dict | None) -> str | None:
    if section is None:
        return "not run"
    if "error" in section:
        return f"failed: {section['error']}"
    if "pending" in section:
        return f"pending: {section['pending']}"
    return None


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The headline speed-ups (ours / transformers, > 1 = ours faster)."""
    m = lambda sec, *k: {s: _get(results.get(sec), s, *k) for s in SIDES}  # noqa: E731
    out = {}
    for name, sec, keys, higher in (
        ("train_tokens_per_s", "train", ("tokens_per_s", "median"), True),
        ("prefill_latency", "prefill", ("time_s", "median"), False),
        ("decode_tokens_per_s", "decode", ("decode_tok_s", "median"), True),
        ("decode_e2e_tokens_per_s", "decode", ("e2e_tok_s", "median"), True),
        ("data_samples_per_s", "data", ("samples_per_s", "median"), True),
    ):
        v = m(sec, *keys)
        out[name] = speedup(v["ours"], v["transformers"], higher)
    return out


def _row(metric, ours, theirs, ratio=None, target=None) -> str:
    met = "–" if target is None or ratio is None else ("yes" if ratio >= target else "**no**")
    tgt = "–" if target is None else f">= {target:g}x"
    return f"| {metric} | {ours} | {theirs} | {_ratio(ratio)} | {tgt} | {met} |"


def _spread(section, side, *keys) -> str:
    s = _get(section, side, *keys)
    if not s:
        return "–"
    return f"{_f(s['median'])} ({_f(s['min'])}–{_f(s['max'])}, n={s['n']})"


def _mem(section, side) -> str:
    mem = _get(section, side, "memory") or {}
    rss = mem.get("peak_rss_mb")
    dev = mem.get("peak_bytes_in_use")
    out = "–" if rss is None else f"{rss:,.0f} MiB"
    return out if dev is None else f"{out}, device {dev / 2**30:.2f} GiB"


def _measured_mfu_row(name: str, section) -> list[str]:
    """MFU against this run's best matmul rate, when the machine peak is another figure (GPU: vendor's)."""
    ours, theirs = (
        _get(section, "ours", "mfu_measured_peak"),
        _get(section, "transformers", "mfu_measured_peak"),
    )
    if ours is None and theirs is None:
        return []
    return [_row(f"{name} MFU vs measured matmul peak", _pct(ours), _pct(theirs))]


def table(results: dict[str, Any]) -> str:
    """The markdown table (plus status lines for sections that failed or are pending)."""
    r = ratios(results)
    tr, pf, dc, da, pk = (results.get(k) for k in ("train", "prefill", "decode", "data", "peak"))
    cpu = results["meta"]["suite"] == "cpu"
    lines = [
        "| metric | ours (lingshu-jax) | transformers | ours/transformers | target | met |",
        "|---|---|---|---|---|---|",
    ]
    if not _status(tr):
        lines += [
            _row(
                "train step tokens/s (median)",
                _f(_get(tr, "ours", "tokens_per_s", "median")),
                _f(_get(tr, "transformers", "tokens_per_s", "median")),
                r["train_tokens_per_s"],
                TARGETS["train"] if cpu else None,
            ),
            _row(
                "train step s (median, min–max)",
                _spread(tr, "ours", "step_s"),
                _spread(tr, "transformers", "step_s"),
            ),
            _row(
                "train MFU (model FLOPs / machine peak)",
                _pct(_get(tr, "ours", "mfu")),
                _pct(_get(tr, "transformers", "mfu")),
            ),
            *_measured_mfu_row("train", tr),
            _row(
                "compile s; first step s (steady median)",
                f"{_f(_get(tr, 'ours', 'compile_s'))} compile; "
                f"{_f(_get(tr, 'ours', 'first_step_s'))} ({_f(_get(tr, 'ours', 'step_s', 'median'))})",
                f"no compile; {_f(_get(tr, 'transformers', 'first_step_s'))} "
                f"({_f(_get(tr, 'transformers', 'step_s', 'median'))})",
            ),
            _row(
                "step-0 loss (abs diff " + _f(_get(tr, "loss0_abs_diff")) + ")",
                _f(_get(tr, "loss0", "ours"), 8),
                _f(_get(tr, "loss0", "transformers"), 8),
            ),
            _row("train peak RSS", _mem(tr, "ours"), _mem(tr, "transformers")),
        ]
    if not _status(pf):
        lines += [
            _row(
                "prefill latency s (median, min–max)",
                _spread(pf, "ours", "time_s"),
                _spread(pf, "transformers", "time_s"),
                r["prefill_latency"],
            ),
            _row("prefill MFU", _pct(_get(pf, "ours", "mfu")), _pct(_get(pf, "transformers", "mfu"))),
            *_measured_mfu_row("prefill", pf),
            _row("prefill+decode peak RSS", _mem(pf, "ours"), _mem(pf, "transformers")),
        ]
    if not _status(dc):
        agree = _get(dc, "agreement", "equal_fraction")
        lines += [
            _row(
                "decode tokens/s (median)",
                _f(_get(dc, "ours", "decode_tok_s", "median")),
                _f(_get(dc, "transformers", "decode_tok_s", "median")),
                r["decode_tokens_per_s"],
                TARGETS["decode"] if cpu else None,
            ),
            _row(
                "generate end-to-end tokens/s",
                _f(_get(dc, "ours", "e2e_tok_s", "median")),
                _f(_get(dc, "transformers", "e2e_tok_s", "median")),
                r["decode_e2e_tokens_per_s"],
            ),
            _row(f"greedy tokens equal to transformers' ({_pct(agree)})", "", ""),
        ]
    if not _status(da):
        lines += [
            _row(
                "data pipeline samples/s (median)",
                _f(_get(da, "ours", "samples_per_s", "median")),
                _f(_get(da, "transformers", "samples_per_s", "median")),
                r["data_samples_per_s"],
                TARGETS["data"] if cpu else None,
            ),
            _row(
                "data CPU ms/sample (all processes)",
                _f(_get(da, "ours", "cpu_ms_per_sample")),
                _f(_get(da, "transformers", "cpu_ms_per_sample")),
            ),
            _row("data peak RSS (workers included)", _mem(da, "ours"), _mem(da, "transformers")),
        ]
    if not _status(pk):
        lines.append(
            _row(
                "matmul peak GFLOP/s (best)",
                _f(_get(pk, "ours", "max") / 1e9),
                _f(_get(pk, "transformers", "max") / 1e9),
            )
        )
    for name in ("train", "prefill", "decode", "data", "peak"):
        st = _status(results.get(name))
        if st and name in results["meta"]["options"]["sections"]:
            lines.append(f"\n{name}: {st}")
    return "\n".join(lines)


def header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    s, model = meta["sizes"], meta.get("model", {})
    env = _get(results, "peak", "environment") or {
        side: _get(results, section, side, "environment")
        for section in ("train", "prefill", "decode")
        for side in ("ours", "transformers")
        if _get(results, section, side, "environment")
    }
    jax_env, torch_env = env.get("ours", {}), env.get("transformers", {})
    pk = results.get("peak") or {}
    return "\n".join(
        [
            f"## lingshu-jax vs transformers: `--suite {meta['suite']}`{' --quick' if meta['quick'] else ''}",
            f"model: preset `{s['preset']}` ({model.get('text_layers')} text layers, hidden {model.get('hidden')}, "
            f"vocab {model.get('vocab')}, vision depth {model.get('vision_depth')}; "
            f"{_f((_get(model, 'params', 'total') or 0) / 1e6)}M parameters); batch {s['batch']} x {s['seq']} tokens, "
            f"one {s['image_side']}x{s['image_side']} image per row; decode: {s['decode_batch']} text prompts of "
            f"{s['decode_prompt']} tokens, {s['max_new_tokens']} new tokens, greedy",
            f"environment: {meta['environment'].get('cpus')} CPUs, load average {meta['environment'].get('load_avg')} "
            f"at start, {meta['environment'].get('load_avg_end')} at end; jax {jax_env.get('jax')} "
            f"({jax_env.get('backend')}: {jax_env.get('device_kind')}; attention {meta.get('attention_impl')}), "
            f"torch {torch_env.get('torch')} ({torch_env.get('cuda_device') or 'cpu'}; attention "
            f"{meta['options'].get('hf_attn')}) "
            f"(default {torch_env.get('torch_threads')} threads), "
            f"transformers {torch_env.get('transformers')}; malloc {meta['options'].get('malloc', 'default')} "
            f"(both processes)",
            f"execution: ours remat {_policies(meta['options'])}; transformers gradient checkpointing "
            f"{'on' if meta['options'].get('remat', 'none') != 'none' else 'off'}",
            f"transformers' torch threads, calibrated per workload (1 vs all cores, the faster kept): "
            f"train {_threads(results, 'train')}, prefill {_threads(results, 'prefill')}, "
            f"decode {_threads(results, 'decode')}",
            f"machine peak for MFU: {_f((pk.get('machine_peak_flops') or 0) / 1e9)} GFLOP/s ({pk.get('source', '–')}); "
            f"model FLOPs: {meta.get('flops_formula', '–')}",
            f"medians of interleaved rounds (ABBA order), each framework in its own process; wall time "
            f"{_f(meta.get('wall_s'))} s",
        ]
    )


def _policies(o: dict[str, Any]) -> str:
    """'text save_dots, vision save_dots; vision blocks unrolled' from the options."""
    remat = o.get("remat", "none")
    text, vision = o.get("text_remat") or remat, o.get("vision_remat") or remat
    unrolled = [
        n
        for n, k in (("decoder layers", "unroll_layers"), ("vision blocks", "vision_unroll_layers"))
        if o.get(k)
    ]
    return f"text {text}, vision {vision}; " + (
        " and ".join(unrolled) + " unrolled" if unrolled else "scanned layers"
    )


def _threads(results: dict[str, Any], section: str) -> str:
    t = _get(results, section, "torch_threads")
    if section == "train":
        t = _get(t, "threads") if isinstance(t, dict) and "threads" in t else t
    if isinstance(t, dict):
        t = t.get("threads")
    return "–" if t is None else str(t)


def where_time_goes(results: dict[str, Any]) -> list[str]:
    """Measured explanations for missed targets (from the breakdowns the suite ran)."""
    out = []
    bd = _get(results, "train", "breakdown")
    if bd:
        o, t = bd.get("ours", {}), bd.get("transformers", {})
        parts = ("vision_forward", "text_forward", "backward_and_optimizer", "step")
        out.append(
            "train step, seconds (ours vs transformers): "
            + ", ".join(f"{p} {_f(o.get(p))} vs {_f(t.get(p))}" for p in parts if p in o or p in t)
        )
        skipped = sorted(set(o.get("skipped", [])) | set(t.get("skipped", [])))
        if skipped:
            out.append("breakdown parts skipped for the time budget: " + ", ".join(skipped))
        att = o.get("vision_attention") or {}
        if att.get("model_total_s") is not None:
            spans = att.get("spans") or {}
            out.append(
                f"ours' vision attention (forward + backward, all {sum(att['blocks'].values())} blocks, "
                f"{att['patches']} patches): {_f(att['model_total_s'])} s as the model computes it (block-local, "
                f"spans {spans.get('window')} / {spans.get('full')} patches for window / full layers) vs "
                f"{_f(att.get('blocked_total_s'))} s as independent dense blocks per window / per image (same result)"
            )
        ho, ht = o.get("loss_head") or {}, t.get("loss_head") or {}
        if ho.get("with_loss_s") is not None and ht.get("with_loss_s") is not None:
            out.append(
                f"lm_head + cross entropy (forward + backward, [{ho['tokens']} x {ho['hidden']}] x "
                f"[{ho['hidden']} x {ho['vocab']}]): ours {_f(ho['with_loss_s'])} s vs transformers "
                f"{_f(ht['with_loss_s'])} s; the matmuls alone {_f(ho['matmul_s'])} vs {_f(ht['matmul_s'])} s"
            )
        if t.get("top_ops"):
            out.append(
                "transformers' top ops (self CPU s): "
                + ", ".join(f"{k} {_f(v)}" for k, v in t["top_ops"][:5])
            )
        hlo = _get(results, "train", "ours", "hlo_ops")
        if hlo:
            out.append("ours' compiled step: " + ", ".join(f"{k} {v}" for k, v in hlo.items() if v))
    changed = _get(results, "train", "ours", "state_dtype_changed")
    if changed:
        out.append(
            f"ours' train step returned a state with other dtypes than it was given ({', '.join(changed)}); "
            f"it compiled again for step 2 ({_f(_get(results, 'train', 'ours', 'recompile_s'))} s)"
        )
    out += _decode_lines(results)
    da = results.get("data") or {}
    if not _status(da) and (ratios(results)["data_samples_per_s"] or 0) < TARGETS["data"]:
        o, t = _get(da, "ours", "cpu_ms_per_sample"), _get(da, "transformers", "cpu_ms_per_sample")
        if o is not None and t is not None:
            out.append(
                f"data pipeline: ours spends {_f(o)} CPU ms per sample summed over all its processes "
                f"(2 grain workers, start-up included) vs transformers' {_f(t)} in one process "
                "(figures from scripts/bench_data.py)"
            )
    return out


def _decode_lines(results: dict[str, Any]) -> list[str]:
    bd = _get(results, "decode", "breakdown")
    if not bd:
        return []
    o, t = bd.get("ours", {}), bd.get("transformers", {})
    dc = results["decode"]
    per_step = {s: _get(dc, s, "step_s", "median") for s in SIDES}
    out = []
    if o.get("step_s"):
        gb = o["weight_bytes"] / 1e9
        out.append(
            f"decode step ({dc['batch']} rows x 1 token): ours {_f(1e3 * (per_step['ours'] or 0))} ms inside "
            f"generate's loop, {_f(1e3 * o['step_s'])} ms as a lone jitted step (lm_head alone "
            f"{_f(1e3 * o['lm_head_s'])} ms); it must read {_f(gb * 1e3)} MB of weights: "
            f"{_f(gb / o['step_s'])} GB/s vs {_f(o['stream_gb_s'])} GB/s streaming bandwidth measured here; "
            f"transformers {_f(1e3 * (per_step['transformers'] or 0))} ms per step"
        )
    if t.get("top_ops"):
        out.append(
            "transformers' generate, top ops (self CPU s, calls): "
            + ", ".join(f"{k} {_f(v)} ({c})" for k, v, c in t["top_ops"][:5])
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    parts = [header(results), "", table(results)]
    why = where_time_goes(results)
    if why:
        parts += ["", "### Where the time goes (measured)", *[f"- {w}" for w in why]]
    return "\n".join(parts) + "\n"


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def write(results: dict[str, Any], out_dir: str) -> dict[str, str]:
    """Writes results.json and report.md into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    results = dict(results, ratios=ratios(results))
    paths = {"json": os.path.join(out_dir, "results.json"), "markdown": os.path.join(out_dir, "report.md")}
    with open(paths["json"], "w") as f:
        json.dump(_jsonable(results), f, indent=2)
    with open(paths["markdown"], "w") as f:
        f.write(markdown(results))
    return paths
