"""Sweeps: a list of runs (config argument + `--config.*` overrides) -> commands, results table, plot."""

from __future__ import annotations

import csv
import importlib.util
import os
import shlex
import subprocess
import sys

from lingshu_jax.train.metrics import read_metrics

SUMMARY_KEYS = ("loss", "eval/loss", "eval/accuracy", "tokens_per_s", "mfu")


def load_sweep(path: str, root: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location("sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = module.get_sweep(root)
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: run names must be unique, got {names}")
    return runs


def command(run: dict, root: str, python: str = sys.executable) -> list[str]:
    """The `scripts/train.py` command line of one run."""
    cmd = [
        python,
        "scripts/train.py",
        f"--config={run['config']}",
        f"--workdir={os.path.join(root, run['name'])}",
    ]
    for key, value in run.get("overrides", {}).items():
        cmd.append(f"--config.{key}={value}")
    return cmd


def run_all(runs: list[dict], root: str, cwd: str) -> None:
    """Runs each command in sequence (each resumes if its workdir already has checkpoints)."""
    for i, run in enumerate(runs, 1):
        cmd = command(run, root)
        print(f"[{i}/{len(runs)}] {run['name']}: {shlex.join(cmd)}", flush=True)
        subprocess.run(cmd, cwd=cwd, check=True)


def summarize(runs: list[dict], root: str) -> list[dict]:
    """Final value of each summary metric per run (last row that has it)."""
    rows = []
    for run in runs:
        metrics = read_metrics(os.path.join(root, run["name"], "metrics.jsonl"))
        row = {"run": run["name"], "steps": metrics[-1]["step"] if metrics else 0}
        for key in SUMMARY_KEYS:
            values = [m[key] for m in metrics if key in m]
            row[key] = values[-1] if values else None
        rows.append(row)
    return rows


def write_results(rows: list[dict], root: str) -> dict[str, str]:
    """results.md (markdown table), results.csv and curves.png (loss and eval accuracy per run)."""
    os.makedirs(root, exist_ok=True)
    keys = ["run", "steps", *SUMMARY_KEYS]
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
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
    _plot([r["run"] for r in rows], root, paths["plot"])
    return paths


def _plot(names: list[str], root: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in names:
        metrics = read_metrics(os.path.join(root, name, "metrics.jsonl"))
        for ax, key in zip(axes, ("loss", "eval/accuracy")):
            pts = [(m["step"], m[key]) for m in metrics if key in m]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 20 else None, label=name)
    for ax, key in zip(axes, ("loss", "eval/accuracy")):
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
