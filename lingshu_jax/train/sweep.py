"""Sweeps: a list of runs (config argument + `--config.*` overrides) -> commands, results table, plot.

A sweep file (configs/sweeps/<name>.py) defines `get_sweep(root) -> [run]`, each run a dict:

    name        unique; the run's workdir is ROOT/name
    config      the config argument, e.g. "configs/demo.py:stage=3,w_vqa=10" (mixture weights, stage, model
                size: whatever the config file's argument takes)
    overrides   {dotted config key: value}, passed as --config.KEY=VALUE (any config key)
    eval        optional {"benchmarks": "VQA_RAD,SLAKE", "data_dir": D, "args": [...]}: after training,
                `scripts/evaluate.py run --model WORKDIR/<eval.model, default hf_export>` writes
                WORKDIR/eval/summary.json, whose scores enter the results table as bench/<name>

A run is complete when its workdir holds final/lingshu_checkpoint.json (and eval/summary.json when it has
an eval); complete runs are skipped. `run_all(parallel=N, devices_per_run=K)` runs N at a time, each on
its own K devices (`device_env`: CUDA_VISIBLE_DEVICES, TPU_VISIBLE_CHIPS or a K-device CPU platform).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from lingshu_jax.train.metrics import read_metrics

SUMMARY_KEYS = ("loss", "eval/loss", "eval/accuracy", "tokens_per_s", "mfu")
PLATFORMS = ("cpu", "gpu", "tpu")
# TPU_CHIPS_PER_PROCESS_BOUNDS for a process that owns k chips of one host (JAX's "several processes on one
# TPU VM" recipe).
_TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1"}


def load_sweep(path: str, root: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location("sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = module.get_sweep(root)
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: run names must be unique, got {names}")
    for r in runs:
        unknown = set(r) - {"name", "config", "overrides", "eval"}
        if unknown or "config" not in r:
            raise ValueError(f"{path}: run {r['name']!r}: needs 'config'; unknown keys {sorted(unknown)}")
    return runs


def workdir(run: dict, root: str) -> str:
    return os.path.join(root, run["name"])


def command(run: dict, root: str, python: str = sys.executable) -> list[str]:
    """The `scripts/train.py` command line of one run."""
    cmd = [python, "scripts/train.py", f"--config={run['config']}", f"--workdir={workdir(run, root)}"]
    for key, value in run.get("overrides", {}).items():
        cmd.append(f"--config.{key}={value}")
    return cmd


def eval_command(run: dict, root: str, python: str = sys.executable) -> list[str] | None:
    """The `scripts/evaluate.py run` command of a run with an "eval" entry (None without)."""
    ev = run.get("eval")
    if not ev:
        return None
    wd = workdir(run, root)
    return [
        python,
        "scripts/evaluate.py",
        "run",
        f"--model={os.path.join(wd, ev.get('model', 'hf_export'))}",
        f"--benchmarks={ev['benchmarks']}",
        f"--data_dir={ev['data_dir']}",
        f"--out={os.path.join(wd, 'eval')}",
        "--no_progress",
        *ev.get("args", ()),
    ]


def is_complete(run: dict, root: str) -> bool:
    wd = workdir(run, root)
    done = os.path.exists(os.path.join(wd, "final", "lingshu_checkpoint.json"))
    if run.get("eval"):
        done = done and os.path.exists(os.path.join(wd, "eval", "summary.json"))
    return done


def device_env(slot: int, devices_per_run: int, platform: str) -> dict[str, str]:
    """Environment of the run in `slot` so that it sees only devices [slot*k, (slot+1)*k) of the machine."""
    k = devices_per_run
    ids = ",".join(str(slot * k + i) for i in range(k))
    if platform == "gpu":
        return {"CUDA_VISIBLE_DEVICES": ids}
    if platform == "tpu":
        if k not in _TPU_BOUNDS:
            raise ValueError(f"sweep: devices_per_run={k} on TPU; one of {sorted(_TPU_BOUNDS)}")
        port = 8476 + slot
        return {
            "TPU_VISIBLE_CHIPS": ids,
            "TPU_CHIPS_PER_PROCESS_BOUNDS": _TPU_BOUNDS[k],
            "TPU_PROCESS_BOUNDS": "1,1,1",
            "TPU_PROCESS_PORT": str(port),
            "TPU_PROCESS_ADDRESSES": f"localhost:{port}",
            "CLOUD_TPU_TASK_ID": "0",
        }
    if platform == "cpu":
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        return {
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={k}"]),
        }
    raise ValueError(f"sweep: unknown platform {platform!r}; one of {PLATFORMS}")


def _run_commands(run: dict, root: str) -> list[list[str]]:
    cmds = [command(run, root)]
    if run.get("eval"):
        cmds.append(eval_command(run, root))
    return cmds


def run_all(
    runs: list[dict],
    root: str,
    cwd: str,
    parallel: int = 1,
    devices_per_run: int = 0,
    platform: str = "cpu",
    spawn: Callable = subprocess.Popen,
    poll_s: float = 1.0,
) -> list[str]:
    """Runs every incomplete run (training, then its eval), `parallel` at a time; with `devices_per_run`
    each concurrent run gets its own device slot (`device_env`). Each run's output goes to WORKDIR/sweep.log.
    Returns the names of the runs it launched; raises RuntimeError naming the runs that failed."""
    todo = [r for r in runs if not is_complete(r, root)]
    for r in runs:
        if r not in todo:
            print(f"{r['name']}: complete, skipped", flush=True)
    free, active, failed, launched = list(range(max(1, parallel))), {}, [], []
    queue = list(todo)
    while queue or active:
        while queue and free:
            run, slot = queue.pop(0), free.pop(0)
            env = dict(os.environ)
            if devices_per_run:
                env.update(device_env(slot, devices_per_run, platform))
            wd = workdir(run, root)
            os.makedirs(wd, exist_ok=True)
            script = " && ".join(shlex.join(c) for c in _run_commands(run, root))
            print(f"[{len(launched) + 1}/{len(todo)}] {run['name']} (slot {slot}): {script}", flush=True)
            log = open(os.path.join(wd, "sweep.log"), "a")  # noqa: SIM115 (closed when the run ends)
            proc = spawn(["bash", "-c", script], cwd=cwd, env=env, stdout=log, stderr=log)
            active[run["name"]] = (proc, slot, log)
            launched.append(run["name"])
        for name, (proc, slot, log) in list(active.items()):
            rc = proc.poll()
            if rc is None:
                continue
            log.close()
            del active[name]
            free.append(slot)
            print(f"{name}: {'done' if rc == 0 else f'FAILED (exit {rc}, see its sweep.log)'}", flush=True)
            if rc:
                failed.append(name)
        if active:
            time.sleep(poll_s)
    if failed:
        raise RuntimeError(f"sweep: runs failed: {failed}")
    return launched


def benchmark_scores(run: dict, root: str) -> dict[str, float]:
    """{"bench/<benchmark>": accuracy} (or "bench/<benchmark>/<metric>" for report-generation metrics) from
    WORKDIR/eval/summary.json; {} when the run has no evaluation."""
    path = os.path.join(workdir(run, root), "eval", "summary.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    out = {}
    for name, metrics in summary.items():
        acc = metrics.get("total", {}).get("acc") if isinstance(metrics.get("total"), dict) else None
        if acc is not None:
            out[f"bench/{name}"] = acc
        else:
            out.update({f"bench/{name}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    return out


def summarize(runs: list[dict], root: str) -> list[dict]:
    """Final value of each summary metric per run (last row that has it), every `eval/*` metric the runs
    logged, and the benchmark scores of their evaluations."""
    rows = []
    for run in runs:
        path = os.path.join(workdir(run, root), "metrics.jsonl")
        metrics = read_metrics(path) if os.path.exists(path) else []
        row = {"run": run["name"], "steps": metrics[-1]["step"] if metrics else 0}
        logged = {k for m in metrics for k in m if k.startswith("eval/")}
        keys = list(SUMMARY_KEYS) + sorted(logged - set(SUMMARY_KEYS))
        for key in keys:
            values = [m[key] for m in metrics if key in m]
            row[key] = values[-1] if values else None
        row.update(benchmark_scores(run, root))
        rows.append(row)
    return rows


def _columns(rows: list[dict]) -> list[str]:
    keys = ["run", "steps"]
    for r in rows:
        keys += [k for k in r if k not in keys]
    return keys


def write_results(rows: list[dict], root: str) -> dict[str, str]:
    """results.md (markdown table), results.csv and curves.png (loss, eval accuracy, benchmarks) per run."""
    os.makedirs(root, exist_ok=True)
    keys = _columns(rows)
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    paths = {
        "markdown": os.path.join(root, "results.md"),
        "csv": os.path.join(root, "results.csv"),
        "plot": os.path.join(root, "curves.png"),
    }
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(md) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    _plot(rows, root, paths["plot"])
    return paths


def _plot(rows: list[dict], root: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = [k for k in _columns(rows) if k.startswith("bench/")]
    fig, axes = plt.subplots(1, 3 if bench else 2, figsize=(15 if bench else 10, 3.5))
    for row in rows:
        path = os.path.join(root, row["run"], "metrics.jsonl")
        metrics = read_metrics(path) if os.path.exists(path) else []
        for ax, key in zip(axes, ("loss", "eval/accuracy")):
            pts = [(m["step"], m[key]) for m in metrics if key in m]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 20 else None, label=row["run"])
    for ax, key in zip(axes, ("loss", "eval/accuracy")):
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if bench:  # grouped bars: one group per benchmark, one bar per run
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            axes[2].bar(
                [j + i * width for j in range(len(bench))],
                [row.get(k) or 0.0 for k in bench],
                width,
                label=row["run"],
            )
        ticks = [j + 0.4 - width / 2 for j in range(len(bench))]
        axes[2].set_xticks(ticks, [k[len("bench/") :] for k in bench], fontsize=7)
        axes[2].set_title("benchmark scores")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
