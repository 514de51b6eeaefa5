"""Training metrics: `metrics.jsonl` (one object per logged step), TensorBoard events, a console progress
bar, and a PNG of the curves at the end. With several processes (multi-host) the metrics are global and
process 0 alone writes them."""

from __future__ import annotations

import json
import math
import os
import sys

import jax
from tqdm import tqdm


class MetricsWriter:
    def __init__(
        self,
        workdir: str,
        total_steps: int,
        start_step: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
    ):
        self.workdir = workdir
        self.primary = jax.process_index() == 0  # the one process that writes
        os.makedirs(workdir, exist_ok=True)
        self.jsonl = os.path.join(workdir, "metrics.jsonl")
        if self.primary:
            truncate_after(self.jsonl, start_step)  # a resumed run rewrites the steps after its checkpoint
        self._tb = None
        if tensorboard and self.primary:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not (progress and self.primary),
            mininterval=1.0,
        )

    def advance(self, n: int = 1):
        self._bar.update(n)

    def write(self, step: int, metrics: dict):
        if not self.primary:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        shown = {k: row[k] for k in ("loss", "eval/accuracy", "tokens_per_s") if k in row}
        self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in shown.items()})

    def close(self, plot: bool = True):
        self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if plot and self.primary and os.path.exists(self.jsonl):
            plot_curves(self.jsonl, os.path.join(self.workdir, "curves.png"))


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    return v


def read_metrics(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_after(path: str, step: int):
    """Drops rows with step > `step` (logged by a run that was killed before its next checkpoint)."""
    rows = read_metrics(path)
    keep = [r for r in rows if r["step"] <= step]
    if len(keep) != len(rows):
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)


def plot_curves(jsonl: str, png: str, keys=("loss", "eval/loss", "eval/accuracy", "grad_norm", "mfu")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(jsonl)
    keys = [k for k in keys if any(k in r for r in rows)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if k in r and r[k] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
