"""Training step: ours (jitted `train_step`, grouped AdamW) vs transformers (forward + backward +
`torch.optim.AdamW`), same checkpoint, same batch, same optimizer settings.

Both sides: AdamW lr 1e-5 (constant), betas (0.9, 0.999), eps 1e-8, no weight decay, gradient clipping
at global norm 1.0. Ours also keeps its NaN/inf guard (part of every real step). One `run()` = one step,
blocked until the loss is on the host. `breakdown()` splits a step into vision forward, whole forward,
forward + backward and the rest (optimizer), measured the same way on both sides.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from lingshu_jax.bench import common
from lingshu_jax.bench.harness import median, timed
from lingshu_jax.bench.peak import HFPeak, OursPeak

LR, CLIP = 1e-5, 1.0
OPTIM = {
    "groups": [(".*", LR, "all")],
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "clip_norm": CLIP,
}


def hlo_op_counts(hlo_text: str) -> dict[str, int]:
    """Instruction counts of a compiled HLO module by opcode family (all computations, fusion bodies
    included): a cheap fingerprint of what XLA made of the step."""
    ops = re.findall(r"=\s*\S+\s+([a-z][a-z0-9\-]*)\(", hlo_text)
    families = (
        "dot",
        "fusion",
        "custom-call",
        "convolution",
        "while",
        "all-reduce",
        "copy",
        "transpose",
        "gather",
        "scatter",
        "reduce",
    )
    out = {k: sum(1 for o in ops if o == k) for k in families}
    out["instructions"] = len(ops)
    return out


class OursTrain(OursPeak):
    """Our jitted train step (`lingshu_jax.train.trainer.train_step`) on the fixed batch."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        import jax
        import jax.numpy as jnp

        from lingshu_jax.model.vlm import Qwen25VL
        from lingshu_jax.train.optimizer import make_optimizer
        from lingshu_jax.train.trainer import train_step

        model = common.load_ours(spec)
        self.config = model.config
        self.inputs = common.spec_inputs(spec, self.config)
        labels = self.inputs["labels"]
        batch = model.prepare(**{k: v for k, v in self.inputs.items() if k != "labels"})
        batch["labels"] = labels.astype("int32")
        self.batch = jax.device_put({k: v[None] for k, v in batch.items()})  # one micro-batch
        self.module = Qwen25VL(self.config)
        self.tx, _ = make_optimizer(OPTIM, model.params)
        params = model.params
        self.state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": jax.jit(self.tx.init)(params),
            "bad_steps": jnp.zeros((), jnp.int32),
        }
        self.jitted = jax.jit(functools.partial(train_step, self.module, self.tx), donate_argnums=(0,))

    def _step(self) -> float:
        self.state, metrics = self.step_fn(self.state, self.batch)
        return float(metrics["loss"])  # blocks until the step is done

    def first(self) -> dict[str, Any]:
        """Traces + lowers, compiles (each timed), then the first step (step-0 loss). If the step returns a
        state whose dtypes differ from its input's (e.g. bf16 parameters with float32 gradients turn the
        Adam moments into float32), it compiles again for the new state, as `jax.jit` would at step 2, and
        reports it."""
        lower_s, lowered = timed(lambda: self.jitted.lower(self.state, self.batch))
        compile_s, self.step_fn = timed(lowered.compile)
        before = _avals(self.state)
        t, loss = timed(self._step)
        out = {
            "time_s": t,
            "loss": loss,
            "compile_s": compile_s,
            "lower_s": lower_s,
            "hlo_ops": hlo_op_counts(self.step_fn.as_text()),
            "environment": common.jax_environment(),
        }
        changed = [k for k, (a, b) in _zip_avals(before, _avals(self.state)) if a != b]
        if changed:
            more = [f"... {len(changed) - 5} more"] if len(changed) > 5 else []
            out["state_dtype_changed"] = changed[:5] + more
            out["recompile_s"], self.step_fn = timed(
                lambda: self.jitted.lower(self.state, self.batch).compile()
            )
        return out

    def run(self) -> dict[str, Any]:
        t, loss = timed(self._step)
        return {"time_s": t, "loss": loss}

    def device_memory(self):
        from lingshu_jax.bench.harness import jax_device_memory

        return jax_device_memory()

    def breakdown(self, step_s: float, reps: int = 1, budget_s: float | None = None) -> dict[str, Any]:
        """Where a step's time goes, most telling parts first, each its own jitted program, until
        `budget_s` is spent: `attention_probe`, `head_probe`, the vision tower forward, the whole forward
        (loss). `step_s` is the measured whole step (the rounds' median)."""
        import jax

        from lingshu_jax.model.vlm import VISION_KEYS
        from lingshu_jax.train.step import mean_loss

        b = {k: v[0] for k, v in self.batch.items()}
        params = self.state["params"]

        def program(fn):
            def run():
                compiled = jax.jit(fn).lower(params).compile()
                return _median_call(lambda: jax.block_until_ready(compiled(params)), reps)

            return run

        parts = [
            ("vision_attention", lambda: self.attention_probe(reps)),
            ("loss_head", lambda: self.head_probe(reps)),
            (
                "vision_forward",
                program(
                    lambda p: self.module.apply(
                        {"params": p}, *(b[k] for k in VISION_KEYS), method=lambda m, *a: m.visual(*a)
                    )
                ),
            ),
            ("forward", program(lambda p: mean_loss(self.module, p, b))),
        ]
        return _derive(dict(_budgeted(parts, budget_s), step=step_s))

    def head_probe(self, reps: int = 1) -> dict[str, Any]:
        """Forward + backward of the lm_head matmul alone and followed by our cross entropy
        (`train.loss.cross_entropy_sums`), at this batch's [tokens, hidden] x [hidden, vocab] shapes."""
        import jax
        import jax.numpy as jnp

        from lingshu_jax.train.loss import cross_entropy_sums

        (b, s), t = self.inputs["input_ids"].shape, self.config.text
        dtype = jnp.dtype(self.config.dtype)
        kh, kw, kt = jax.random.split(jax.random.key(0), 3)
        h = jax.random.normal(kh, (b, s, t.hidden_size), dtype)
        w = (0.02 * jax.random.normal(kw, (t.hidden_size, t.vocab_size))).astype(dtype)
        targets = jax.random.randint(kt, (b, s), 0, t.vocab_size)

        def head(h, w):  # [B, S, D] -> [B, S, V] as the model's lm_head computes it (one 2-D matmul)
            return (h.reshape(b * s, -1) @ w).reshape(b, s, -1)

        def ce(h, w):
            total, count = cross_entropy_sums(head(h, w), targets)
            return total / count

        out = {"tokens": b * s, "hidden": t.hidden_size, "vocab": t.vocab_size}
        for name, fn in (
            ("matmul_s", lambda h, w: head(h, w).astype(jnp.float32).sum()),
            ("with_loss_s", ce),
        ):
            compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(h, w).compile()
            out[name] = _median_call(lambda compiled=compiled: jax.block_until_ready(compiled(h, w)), reps)
        return out

    def attention_probe(self, reps: int = 1) -> dict[str, Any]:
        """Forward + backward of the vision attention at this batch's shapes, as the model computes it
        (`window_block_attention`: window layers inside 64-patch blocks; `frame_attention`: full layers
        within each of `vision_attention_chunks` chunks or over the key blocks a frame of
        `vision_attention_span` rows reaches) and per window / per image (the same result from independent
        dense blocks, the least work), summed over the tower's window and full blocks."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        from lingshu_jax.model.attention import dot_product_attention, frame_attention, window_block_attention

        v = self.config.vision
        segs = {
            "window": np.asarray(self.batch["window_segments"][0]),
            "full": np.asarray(self.batch["frame_segments"][0]),
        }
        n = segs["window"].shape[0]
        window = v.window_merge_units**2 * v.merge_unit  # as VisionAttention
        spans = {"window": window, "full": self.config.vision_attention_span or n}
        chunks = self.config.vision_attention_chunks
        dtype = jnp.dtype(self.config.vision_dtype or self.config.dtype)
        q = jax.random.normal(jax.random.key(0), (3, n, v.num_heads, v.head_dim), dtype)

        def cost(fn, *args):
            grad = jax.jit(jax.grad(lambda x, *a: fn(x[0], x[1], x[2], *a).astype(jnp.float32).sum()))
            compiled = grad.lower(q, *args).compile()
            return _median_call(lambda: jax.block_until_ready(compiled(q, *args)), reps)

        n_full = len(v.fullatt_block_indexes)
        counts = {"window": v.depth - n_full, "full": n_full}
        out = {
            "patches": int(n),
            "heads": v.num_heads,
            "head_dim": v.head_dim,
            "blocks": counts,
            "spans": spans,
            "chunks": chunks,
        }
        model_total, blocked_total = 0.0, 0.0
        for kind, seg in segs.items():
            if not counts[kind]:
                continue
            if kind == "window":
                attend = lambda a, b, c, sg: window_block_attention(a, b, c, sg, block=window)
            else:
                attend = lambda a, b, c, sg: frame_attention(
                    a, b, c, sg, block=window, span=spans["full"], chunks=chunks
                )
            model = cost(attend, jnp.asarray(seg))
            size = _equal_block_size(seg)
            blocked = None
            if size:
                blocks = lambda x, size=size: x.reshape(n // size, size, v.num_heads, v.head_dim)
                blocked = cost(
                    lambda a, b, c, blocks=blocks: dot_product_attention(
                        blocks(a), blocks(b), blocks(c), None
                    )
                )
            out[kind] = {"model_s": model, "blocked_s": blocked, "block": size}
            model_total += counts[kind] * model
            blocked_total = (
                None if blocked is None or blocked_total is None else blocked_total + counts[kind] * blocked
            )
        out["model_total_s"], out["blocked_total_s"] = model_total, blocked_total
        return out


def _avals(tree) -> dict[str, tuple]:
    import jax

    from lingshu_jax.train.optimizer import path_str

    return {
        path_str(k): (tuple(x.shape), str(x.dtype)) for k, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _zip_avals(a: dict, b: dict):
    return [(k, (a[k], b.get(k))) for k in a]


def _median_call(fn, reps: int) -> float:
    """One warm call, then the median of `reps` timed calls."""
    fn()
    return median([timed(fn)[0] for _ in range(max(1, reps))])


def _equal_block_size(segments) -> int | None:
    """Length of the contiguous, equally long runs of `segments`, or None when the runs differ."""
    import numpy as np

    seg = np.asarray(segments)
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    lengths = np.diff(np.r_[starts, seg.size])
    if len(np.unique(seg)) != len(starts) or len(set(lengths.tolist())) != 1:
        return None
    return int(lengths[0])


class HFTrain(HFPeak):
    """transformers: `loss = model(**batch, labels=...).loss; loss.backward(); clip; AdamW.step()`."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.torch, self.device, dtype = common.torch_setup(spec)
        self.spec_threads = spec.get("torch_threads")
        torch = self.torch
        self.model = common.load_hf(spec, train=True)
        if spec.get("hf_gradient_checkpointing", spec.get("remat_policy", "none") != "none"):
            self.model.gradient_checkpointing_enable()  # transformers' only remat: recompute each layer
        from lingshu_jax.model.config import ModelConfig

        config = ModelConfig.from_pretrained(spec["model_dir"])
        self.inputs = common.torch_inputs(common.spec_inputs(spec, config), self.device, dtype)
        self.optimizer, self.optimizer_impl = _torch_adamw(torch, self.model.parameters())

    def calibrate(self) -> dict[str, Any]:
        """Best torch thread count (CPU) for a proxy of the step: a forward of the batch's first row."""
        if self.device.type != "cpu" or self.spec_threads:
            return {"threads": self.torch.get_num_threads(), "calibrated": False}
        n = self.inputs["image_grid_thw"][0].prod().item()
        row = {k: v[:1] for k, v in self.inputs.items() if k not in ("pixel_values", "image_grid_thw")}
        row.update(
            pixel_values=self.inputs["pixel_values"][:n], image_grid_thw=self.inputs["image_grid_thw"][:1]
        )

        def proxy():
            with self.torch.inference_mode():
                self.model(**row)

        return common.calibrate_torch_threads(self.torch, proxy)

    def _step(self) -> float:
        out = self.model(**self.inputs)
        out.loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach())  # .item(): synchronises on GPU

    def first(self) -> dict[str, Any]:
        t, loss = timed(self._step)
        return {
            "time_s": t,
            "loss": loss,
            "optimizer_impl": self.optimizer_impl,
            "environment": common.torch_environment(),
        }

    def run(self) -> dict[str, Any]:
        t, loss = timed(self._step)
        return {"time_s": t, "loss": loss}

    def device_memory(self):
        from lingshu_jax.bench.harness import torch_device_memory

        return torch_device_memory()

    def breakdown(self, step_s: float, reps: int = 1, budget_s: float | None = None) -> dict[str, Any]:
        """Same parts as ours (autograd on in the forwards, as in a training step), until `budget_s` is
        spent: `head_probe`, vision forward, forward, then the top ops of one profiled step."""
        model, x = self.model, self.inputs
        sync = functools.partial(common.torch_sync, self.device)
        pix, grid = x["pixel_values"], x["image_grid_thw"]

        def vision():
            model.model.visual(pix, grid_thw=grid)
            sync()

        def forward():
            model(**x).loss.detach()
            sync()

        parts = [
            ("loss_head", lambda: self.head_probe(reps)),
            ("vision_forward", lambda: _median_call(vision, reps)),
            ("forward", lambda: _median_call(forward, reps)),
            ("top_ops", lambda: _torch_top_ops(self.torch, self._step)),
        ]
        return _derive(dict(_budgeted(parts, budget_s), step=step_s))

    def head_probe(self, reps: int = 1) -> dict[str, Any]:
        """As ours: lm_head matmul forward + backward, alone and followed by the cross entropy transformers'
        causal-LM loss uses (`F.cross_entropy` on float32 logits)."""
        torch = self.torch
        b, s = self.inputs["input_ids"].shape
        cfg = self.model.config.get_text_config()
        d, v = cfg.hidden_size, cfg.vocab_size
        g = torch.Generator().manual_seed(0)
        dtype = self.model.dtype
        h = torch.randn(b, s, d, generator=g).to(self.device, dtype).requires_grad_()
        w = (0.02 * torch.randn(d, v, generator=g)).to(self.device, dtype).requires_grad_()
        targets = torch.randint(0, v, (b * s,), generator=g).to(self.device)
        sync = functools.partial(common.torch_sync, self.device)

        def run(with_loss: bool):
            logits = h @ w
            loss = (
                torch.nn.functional.cross_entropy(logits.float().view(-1, v), targets)
                if with_loss
                else logits.float().sum()
            )
            loss.backward()
            sync()
            h.grad = w.grad = None

        out = {"tokens": b * s, "hidden": d, "vocab": v}
        for name, flag in (("matmul_s", False), ("with_loss_s", True)):
            out[name] = _median_call(lambda flag=flag: run(flag), reps)
        return out


def _budgeted(parts, budget_s: float | None) -> dict[str, Any]:
    """Runs (name, fn) parts in order; once `budget_s` is spent the rest are listed under 'skipped'."""
    import time

    start, out, skipped = time.perf_counter(), {}, []
    for name, fn in parts:
        if budget_s is not None and time.perf_counter() - start > budget_s:
            skipped.append(name)
        else:
            out[name] = fn()
    if skipped:
        out["skipped"] = skipped
    return out


def _derive(t: dict[str, Any]) -> dict[str, Any]:
    """Adds the parts implied by the nested measurements: text (+ lm_head + loss) forward = forward -
    vision; backward + optimizer = step - forward; and, when forward + backward was timed, backward and
    optimizer (+ clipping, guard) apart. Differences of noisy medians: read them as estimates."""
    out = dict(t)
    if "forward" in t and "vision_forward" in t:
        out["text_forward"] = t["forward"] - t["vision_forward"]
    if "forward" in t:
        out["backward_and_optimizer"] = t["step"] - t["forward"]
    if "forward_backward" in t:
        out["backward"] = t["forward_backward"] - t["forward"]
        out["optimizer"] = t["step"] - t["forward_backward"]
    return out


def _torch_adamw(torch, params):
    """torch.optim.AdamW, the fused kernel when this torch build has one for the device (the fastest
    stock choice, and transformers' default `adamw_torch_fused` where available), else foreach."""
    params = list(params)
    kw = dict(lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    try:
        opt = torch.optim.AdamW(params, fused=True, **kw)
        impl = "fused"
    except (RuntimeError, ValueError, TypeError):
        opt, impl = torch.optim.AdamW(params, foreach=True, **kw), "foreach"
    return opt, impl


def _torch_top_ops(torch, step, k: int = 8) -> list[tuple[str, float]]:
    """(op, self CPU seconds) of the k most expensive ops of one profiled step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:k]
    return [(r.key, r.self_cpu_time_total / 1e6) for r in rows]
