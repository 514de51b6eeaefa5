"""One method per benchmark section; each starts its framework workers, interleaves their runs, and
returns raw timings, medians, memory and FLOP figures (see suite.py for the order and the budget)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

from lingshu_jax.bench import harness
from lingshu_jax.bench.harness import Worker, close_all, median, summarize
from lingshu_jax.model.vision_inputs import stream_rows

# Share of the time budget each section needs at least (what later sections keep in reserve).
SHARE = {"peak": 0.04, "train": 0.5, "prefill": 0.15, "decode": 0.12, "data": 0.08}
TARGETS = {"train": 1.5, "decode": 3.0, "data": 3.0}


class NoGPUError(RuntimeError):
    pass


class DeviceProbe:
    """What a worker sees: JAX's backend and device kind, torch's CUDA."""

    def __init__(self):
        from lingshu_jax.bench import common

        self.jax = common.jax_environment()
        self.torch = common.torch_environment()

    def info(self) -> dict[str, Any]:
        return {"jax": self.jax, "torch": self.torch}


@dataclasses.dataclass
class Context:
    opts: Any
    sizes: dict
    env: dict
    tmp: str
    deadline: Any
    log: Callable[[str], None]
    config: Any = None
    model_dir: str | None = None
    peak_flops: float | None = None
    measured_peak_flops: float | None = None  # best matmul rate of this run (differs from peak_flops on GPU)
    infer: dict | None = None
    plan: dict | None = None
    peak_result: dict | None = None
    data_files: Any = None
    infer_threads: dict = dataclasses.field(default_factory=dict)

    # ---------------------------------------------------------------------------------------- helpers
    @property
    def on_gpu(self) -> bool:
        return self.opts.suite == "gpu" and not self.opts.allow_cpu

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.opts.suite == "gpu" else "float32"

    @property
    def attention_impl(self) -> str:
        return self.opts.attention or ("cudnn" if self.on_gpu else "xla")

    def spec(self) -> dict[str, Any]:
        s, dtype = self.sizes, self.dtype
        return {
            "model_dir": self.model_dir,
            "dtype": dtype,
            "param_dtype": dtype,
            "attention_impl": self.attention_impl,
            "remat_policy": self.opts.text_remat or self.opts.remat,
            "hf_gradient_checkpointing": self.opts.remat != "none",
            "vision_remat_policy": self.opts.vision_remat or self.opts.remat,
            "unroll_layers": self.opts.unroll_layers,
            "vision_unroll_layers": self.opts.vision_unroll_layers,
            "hf_attn": self.opts.hf_attn,
            "device": "cuda" if self.on_gpu else "cpu",
            "torch_threads": self.opts.torch_threads,
            "seed": 0,
            "batch": s["batch"],
            "seq": s["seq"],
            "image_side": s["image_side"],
            "decode_batch": s["decode_batch"],
            "vision_attention_span": stream_rows(
                [[1, s["image_side"] // 14, s["image_side"] // 14]],
                spatial_merge_size=2,
                window_merge_units=4,
            ),  # one image
            # one image per row: each row's chunk of the stream holds exactly its image
            "vision_attention_chunks": s["batch"] if self.opts.vision_chunks == "row" else 1,
            "decode_prompt": s["decode_prompt"],
            "peak_n": s["peak_n"],
            "peak_dtype": dtype,
        }

    def reserve(self, section: str) -> float:
        """Seconds to keep for the sections after `section`."""
        names = list(self.opts.sections)
        later = names[names.index(section) + 1 :] if section in names else []
        return self.deadline.budget_s * sum(SHARE.get(n, 0.0) for n in later)

    def pair(self, section: str, ours: str, theirs: str, spec: dict) -> dict[str, Worker]:
        """Both workers of a section, built concurrently (building is not timed: our compilation happens
        in the first timed call)."""
        workers = {
            "ours": Worker.start(f"{section}-ours", ours, spec, env=self.env, wait=False),
            "transformers": Worker.start(f"{section}-transformers", theirs, spec, env=self.env, wait=False),
        }
        try:
            for w in workers.values():
                w.ready()
        except BaseException:
            close_all(workers)
            raise
        return workers

    def rounds(self, workers, method: str, section: str, rounds: int | None = None, **kw) -> dict[str, list]:
        return harness.interleaved_rounds(
            workers, method, rounds or self.sizes["rounds"], self.deadline, self.reserve(section), **kw
        )

    def want_breakdown(self, ratio: float | None, target: float) -> bool:
        mode = self.opts.breakdown
        return mode == "always" or (mode == "auto" and (ratio is None or ratio < target))

    # ---------------------------------------------------------------------------------------- model
    def prepare_model(self) -> dict[str, Any]:
        """The config, its parameter / FLOP counts, and the shared random HF checkpoint."""
        from lingshu_jax.bench.inputs import bench_config
        from lingshu_jax.train import flops

        s = self.sizes
        self.config = bench_config(s["preset"], s.get("layers"), s.get("vision_layers"))
        c = self.config
        grids = [(1, s["image_side"] // 14, s["image_side"] // 14)] * s["batch"]
        out = {
            "model": {
                "preset": s["preset"],
                "text_layers": c.text.num_hidden_layers,
                "hidden": c.text.hidden_size,
                "vocab": c.text.vocab_size,
                "vision_depth": c.vision.depth,
                "vision_hidden": c.vision.hidden_size,
                "params": flops.param_count(c),
                "image_token_id": c.image_token_id,
            },
            "train_flops_per_step": flops.train_flops_breakdown(c, (s["batch"], s["seq"]), grids),
            "prefill_flops": flops.train_flops_per_step(c, (s["batch"], s["seq"]), grids, trainable=()),
            "attention_impl": self.attention_impl,
            "flops_formula": "lingshu_jax/train/flops.py module docstring (vision included, causal text "
            "attention counts s(s+1)/2 pairs)",
        }
        self.plan = out
        if self.opts.suite == "gpu":
            probe = Worker.start("probe", "lingshu_jax.bench.sections:DeviceProbe", env=self.env)
            try:
                out["devices"] = probe.call("info")
            finally:
                probe.close()
            if out["devices"]["jax"]["backend"] != "gpu" and not self.opts.allow_cpu:
                raise NoGPUError(
                    f"no GPU found: JAX backend is {out['devices']['jax']['backend']!r}, torch CUDA "
                    f"available: {out['devices']['torch']['cuda']} (use --suite cpu, or --allow-cpu "
                    "to run this suite's code path on CPU)"
                )
        if "data" in self.opts.sections:  # untimed set-up, built while the checkpoint is written
            self.data_files = self._start_data_files()
        self.model_dir = os.path.join(self.tmp, "hf_model")
        w = Worker.start(
            "checkpoint",
            "lingshu_jax.bench.inputs:write_checkpoint",
            c.to_hf_dict(),
            self.model_dir,
            self.dtype,  # bf16 on GPU: half the bytes to write and load, the same weights after the cast
            env=self.env,
        )
        w.close()
        return out

    # ---------------------------------------------------------------------------------------- sections
    def peak(self) -> dict[str, Any]:
        workers = self.pair(
            "peak", "lingshu_jax.bench.peak:OursPeak", "lingshu_jax.bench.peak:HFPeak", self.spec()
        )
        try:
            return self._peak_with(workers)
        finally:
            close_all(workers)

    def _peak_with(self, workers: dict[str, Worker]) -> dict[str, Any]:
        """Interleaved matmul rates in both workers; sets `self.peak_flops` (the MFU denominator)."""
        from lingshu_jax.train.flops import peak_flops_per_device

        start = time.perf_counter()
        runs = self.rounds(workers, "peak", "peak", rounds=3)
        envs = {n: w.call("environment") for n, w in workers.items()}
        out: dict[str, Any] = {n: summarize(v) for n, v in runs.items()}
        out["environment"] = envs
        measured = max(max(runs["ours"]), max(runs["transformers"]))
        vendor = peak_flops_per_device(envs["ours"]["device_kind"]) if self.on_gpu else None
        self.peak_flops = vendor or measured
        self.measured_peak_flops = measured
        out["machine_peak_flops"] = self.peak_flops
        out["source"] = (
            "vendor dense bf16 peak of " + envs["ours"]["device_kind"]
            if vendor
            else f"measured: the larger of JAX's and torch's best {self.spec()['peak_dtype']} "
            f"{self.sizes['peak_n']}^3 matmul rate in this run"
        )
        out["wall_s"] = time.perf_counter() - start
        self.peak_result = out
        return out

    def train(self) -> dict[str, Any]:
        from lingshu_jax.bench import train as train_lib

        s = self.sizes
        workers = self.pair(
            "train", "lingshu_jax.bench.train:OursTrain", "lingshu_jax.bench.train:HFTrain", self.spec()
        )
        try:
            if "peak" in self.opts.sections:
                self._peak_with(workers)
            threads = workers["transformers"].call("calibrate")
            first = {n: w.call("first") for n, w in workers.items()}
            runs = self.rounds(workers, "run", "train")
            memory = {n: w.call("memory") for n, w in workers.items()}
            ratio = harness.speedup(
                median([r["time_s"] for r in runs["ours"]]),
                median([r["time_s"] for r in runs["transformers"]]),
                higher_is_better=False,
            )
            breakdown = None
            if self.want_breakdown(ratio, TARGETS["train"]):
                self.log("[bench] train: target missed; timing the parts of a step on both sides")
                budget = max(60.0, (self.deadline.left() - self.reserve("train")) / 2)
                breakdown = {
                    n: w.call(
                        "breakdown", step_s=median([r["time_s"] for r in runs[n]]), reps=1, budget_s=budget
                    )
                    for n, w in workers.items()
                }
        finally:
            close_all(workers)
        tokens = s["batch"] * s["seq"]
        flops = self._train_flops()
        out: dict[str, Any] = {
            "tokens_per_step": tokens,
            "flops_per_step": flops,
            "optimizer": train_lib.OPTIM,
            "torch_threads": threads,
            "loss0": {n: first[n]["loss"] for n in first},
            "loss0_abs_diff": abs(first["ours"]["loss"] - first["transformers"]["loss"]),
            "breakdown": breakdown,
        }
        for n in workers:
            times = [r["time_s"] for r in runs[n]]
            side = {
                "step_s": summarize(times),
                "tokens_per_s": summarize([tokens / t for t in times]),
                "losses": [r["loss"] for r in runs[n]],
                "first_step_s": first[n]["time_s"],
                "first_step_overhead_s": first[n]["time_s"] - median(times),
                "memory": memory[n],
                "environment": first[n]["environment"],
            }
            keys = ("compile_s", "lower_s", "hlo_ops", "optimizer_impl", "state_dtype_changed", "recompile_s")
            side.update({k: first[n][k] for k in keys if k in first[n]})
            side.update(self._mfu(flops, median(times)))
            side["model_flops_per_s"] = flops / median(times)
            out[n] = side
        return out

    def _train_flops(self, trainable=None) -> int:
        from lingshu_jax.train import flops

        s = self.sizes
        grids = [(1, s["image_side"] // 14, s["image_side"] // 14)] * s["batch"]
        if trainable is None:
            return flops.train_flops_per_step(self.config, (s["batch"], s["seq"]), grids)
        return flops.train_flops_per_step(self.config, (s["batch"], s["seq"]), grids, trainable=trainable)

    def _inference_workers(self) -> dict[str, Worker]:
        if self.infer is None:
            self.infer = self.pair(
                "inference",
                "lingshu_jax.bench.decode:OursInference",
                "lingshu_jax.bench.decode:HFInference",
                self.spec(),
            )
            self.infer_threads = self.infer["transformers"].call("calibrate")
        return self.infer

    def _close_inference(self, section: str) -> None:
        names = list(self.opts.sections)
        if self.infer is not None and not (
            section == "prefill" and "decode" in names[names.index(section) :]
        ):
            close_all(self.infer)
            self.infer = None

    def prefill(self) -> dict[str, Any]:
        try:
            workers = self._inference_workers()
            first = {n: w.call("prefill_first") for n, w in workers.items()}
            runs = self.rounds(workers, "prefill", "prefill")
            memory = {n: w.call("memory") for n, w in workers.items()}
        except BaseException:
            self._close_inference("decode")
            raise
        self._close_inference("prefill")
        import numpy as np

        flops = self._train_flops(trainable=())
        diff = float(np.abs(first["ours"]["last_logits"] - first["transformers"]["last_logits"]).max())
        scale = float(np.abs(first["transformers"]["last_logits"]).max())
        out: dict[str, Any] = {
            "flops": flops,
            "last_logits_max_abs_diff": diff,
            "logits_max_abs": scale,
            "torch_threads": self.infer_threads.get("prefill"),
        }
        for n in workers:
            times = [r["time_s"] for r in runs[n]]
            side = {
                "time_s": summarize(times),
                "first_s": first[n]["time_s"],
                "memory": memory[n],
                "environment": first[n]["environment"],  # the report's versions when `peak` did not run
            }
            if n == "ours":
                side["host_s"] = summarize([r["host_s"] for r in runs[n]])
            side.update(self._mfu(flops, median(times)))
            out[n] = side
        return out

    def _mfu(self, flops: float, seconds: float) -> dict[str, float]:
        """`mfu` against the machine peak (the vendor's on GPU) and, where that is not the measured rate,
        `mfu_measured_peak` against this run's best matmul rate."""
        out = {}
        if self.peak_flops:
            out["mfu"] = flops / (seconds * self.peak_flops)
        if self.measured_peak_flops and self.measured_peak_flops != self.peak_flops:
            out["mfu_measured_peak"] = flops / (seconds * self.measured_peak_flops)
        return out

    def decode(self) -> dict[str, Any]:
        from lingshu_jax.bench import decode as decode_lib

        if not decode_lib.generate_available():
            self._close_inference("decode")
            return {"pending": "lingshu_jax.infer.generate is not importable yet (developed separately)"}
        s = self.sizes
        n_new, batch = s["max_new_tokens"], s["decode_batch"]
        try:
            workers = self._inference_workers()
            first = {n: w.call("decode_first", max_new_tokens=n_new) for n, w in workers.items()}
            runs = self.rounds(workers, "decode", "decode", max_new_tokens=n_new)
            memory = {n: w.call("memory") for n, w in workers.items()}
            ours = median([r["full_s"] - r["one_s"] for r in runs["ours"]])
            theirs = median([r["full_s"] - r["one_s"] for r in runs["transformers"]])
            breakdown = None
            if self.want_breakdown(harness.speedup(ours, theirs, higher_is_better=False), TARGETS["decode"]):
                breakdown = {n: w.call("breakdown", max_new_tokens=n_new) for n, w in workers.items()}
        finally:
            self._close_inference("decode")
        out: dict[str, Any] = {
            "batch": batch,
            "prompt_len": s["decode_prompt"],
            "max_new_tokens": n_new,
            "torch_threads": self.infer_threads.get("decode"),
            "breakdown": breakdown,
            "agreement": decode_lib.token_agreement(first["ours"]["tokens"], first["transformers"]["tokens"]),
        }
        flops = self._decode_flops(batch, s["decode_prompt"], n_new)
        for n in first:
            r = decode_lib.rates(runs[n], batch, n_new)
            side = {
                "runs": runs[n],
                "decode_tok_s": summarize(r["decode_tok_s"]),
                "e2e_tok_s": summarize(r["e2e_tok_s"]),
                "step_s": summarize(r["step_s"]),
                "first_call_s": first[n]["full_s"],
                "memory": memory[n],
                "environment": first[n]["environment"],
            }
            step = side["step_s"]["median"]
            if self.peak_flops and step:
                side["mfu"] = flops / (step * (n_new - 1) * self.peak_flops)
            out[n] = side
        return out

    def _decode_flops(self, batch: int, prompt: int, n_new: int) -> int:
        """FLOPs of decode steps 1..N-1 (step 0 is the prefill): the token fed at step t attends to prompt + t
        keys (itself included)."""
        from lingshu_jax.train.flops import decode_flops_per_token

        return batch * sum(decode_flops_per_token(self.config, prompt + t) for t in range(1, n_new))

    def _start_data_files(self) -> Worker:
        s = self.sizes
        root = os.path.join(self.tmp, "data")
        os.makedirs(root, exist_ok=True)
        return Worker.start(
            "data-files",
            "lingshu_jax.bench.data:DataFiles",
            root,
            s["data_samples"],
            s["data_image"],
            s["data_tokens"],
            env=self.env,
            wait=False,
        )

    def data(self) -> dict[str, Any]:
        s = self.sizes
        files, self.data_files = self.data_files or self._start_data_files(), None
        try:
            spec = dict(
                files.ready().call("paths"),
                samples=s["data_samples"],
                data_workers=2,
                seq_len=s["data_seq_len"],
            )
        finally:
            files.close()
        workers = self.pair("data", "lingshu_jax.bench.data:OursData", "lingshu_jax.bench.data:HFData", spec)
        try:
            runs = self.rounds(workers, "run", "data", rounds=s["data_rounds"])
            memory = {n: w.call("memory") for n, w in workers.items()}
        finally:
            close_all(workers)
        out: dict[str, Any] = {
            "samples": s["data_samples"],
            "image_side": s["data_image"],
            "tokens_per_sample": s["data_tokens"],
            "source": "lingshu_jax.bench.data_measure",
            "ours_reads": "first half JSONL + JPEG files, rest Parquet (images embedded); every 4th record a "
            "video (mp4 file or frame folder)",
        }
        for n in workers:
            rates = [r["samples_per_s"] for r in runs[n]]
            cpu = [r["cpu_s"] / r["samples"] for r in runs[n] if r.get("cpu_s") is not None]
            side = {
                "samples_per_s": summarize(rates),
                "runs": runs[n],
                "memory": memory[n],
                "cpu_ms_per_sample": 1e3 * median(cpu) if cpu else None,
            }
            out[n] = side
        return out
