"""lm_head + cross entropy, forward + backward, at bench-100m's shapes ([4 x 512, 512] x [512, 32768]):
the training loss (`train.head_loss.head_nll_sum`: head + loss fused, gradient in the forward pass) as one
chunk (`fused`) and as 4 chunks of 128 positions (`fused_c4`); logits then `train.loss.token_nll` (`ours`);
the plain formula (3-D matmul, log_softmax + gather), the matmuls alone, and transformers'
(`F.cross_entropy` on float32 logits).

    python scripts/bench_loss_head.py --rounds 3 --reps 3      # or python -m lingshu_jax.bench.loss_head

Each (variant, round) runs in a fresh process; rounds alternate the variants' order (ABBA...), so a shared
machine's load drifts over all alike. Prints per variant the median wall and CPU seconds of a call (CPU time
sums threads: XLA uses all cores, torch gets --torch-threads) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = ("fused", "fused_c4", "ours", "plain", "matmul", "torch", "torch_matmul")
B, S, D, V = 4, 512, 512, 32768


def _jax_fn(name: str):
    import jax
    import jax.numpy as jnp

    from lingshu_jax.train.head_loss import head_nll_sum
    from lingshu_jax.train.loss import IGNORE, cross_entropy_sums

    def plain(h, w, targets):  # [B, S, D] @ [D, V], full log-softmax, gather
        logits = h @ w
        valid = targets != IGNORE
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.sum(valid)

    def ours(h, w, targets):  # as the model now computes it: [B*S, D] @ [D, V], token_nll
        logits = (h.reshape(-1, D) @ w).reshape(B, S, V)
        total, count = cross_entropy_sums(logits, targets)
        return total / count

    def matmul(h, w, targets):
        return (h.reshape(-1, D) @ w).astype(jnp.float32).sum()

    def fused(h, w, targets, chunk_len=S):
        valid = targets != IGNORE
        return head_nll_sum(h, w, targets, valid, chunk_len=chunk_len) / jnp.sum(valid)

    fused_c4 = lambda h, w, t: fused(h, w, t, chunk_len=S // 4)  # noqa: E731
    return {"fused": fused, "fused_c4": fused_c4, "ours": ours, "plain": plain, "matmul": matmul}[name]


def _one(name: str, reps: int, threads: int) -> dict:
    """Runs `reps` timed calls (after one warm-up) in this process."""
    if name.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        g = torch.Generator().manual_seed(0)
        h = torch.randn(B, S, D, generator=g).requires_grad_()
        w = (0.02 * torch.randn(D, V, generator=g)).requires_grad_()
        t = torch.randint(0, V, (B * S,), generator=g)

        def call():
            logits = h @ w
            loss = (
                torch.nn.functional.cross_entropy(logits.float().view(-1, V), t)
                if name == "torch"
                else logits.float().sum()
            )
            loss.backward()
            h.grad = w.grad = None
    else:
        import jax

        kh, kw, kt = jax.random.split(jax.random.key(0), 3)
        h = jax.random.normal(kh, (B, S, D))
        w = 0.02 * jax.random.normal(kw, (D, V))
        t = jax.random.randint(kt, (B, S), 0, V)
        compiled = jax.jit(jax.value_and_grad(_jax_fn(name), argnums=(0, 1))).lower(h, w, t).compile()

        def call():
            jax.block_until_ready(compiled(h, w, t))

    call()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": wall, "cpu": cpu, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_one(a.child, a.reps, a.torch_threads)))
        return 0
    names = [v for v in a.variants.split(",") if v]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for r in range(a.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            cmd = [
                sys.executable,
                "-m",
                "lingshu_jax.bench.loss_head",
                "--child",
                n,
                "--reps",
                str(a.reps),
                "--torch-threads",
                str(a.torch_threads),
            ]
            out = subprocess.run(
                cmd, capture_output=True, text=True, check=True, env=dict(os.environ, JAX_PLATFORMS="cpu")
            )
            runs[n].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<14}{'wall s (median)':>16}{'cpu s (median)':>16}   load")
    for n, rs in runs.items():
        wall = statistics.median(x for r in rs for x in r["wall"])
        cpu = statistics.median(x for r in rs for x in r["cpu"])
        loads = ", ".join(f"{r['load']:.1f}" for r in rs)
        print(f"{n:<14}{wall:>16.3f}{cpu:>16.3f}   {loads}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
