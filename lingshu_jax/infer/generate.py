"""Batched generation: one compiled program = prefill (left padding) + KV-cache decode in a while_loop.

    out = generate_ids(config, params, processor_outputs, max_new_tokens=64, sampling=SamplingConfig())
    out["tokens"]   [B, T_new] int32, the stop token included, `pad_token_id` after it (T_new <= max_new_tokens:
                    the loop ends once every row has stopped, as transformers' generate does)
    out["lengths"]  [B] int32, generated tokens per row (the stop token counted)

Host side (numpy): right padding becomes left padding, the prompt is left-padded to a length bucket, the
batch to a multiple of the mesh's batch shards and the vision stream to a patch bucket; M-RoPE ids come from
`prepare_inputs`. Device side: the KV cache holds `cache_len` = round_up(prompt bucket + max_new_tokens,
`Buckets.cache`) slots; the prefill writes slots [0, S), decode step t writes slot S + t - 1 with position
(max prompt position of the row) + t on all three M-RoPE axes (transformers' rope_deltas rule). A program is
jit-compiled once per static key (config, cache length, max_new_tokens, sampling, stop/pad ids, mesh) and
input shapes; `TRACES` counts the compilations.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from lingshu_jax import sharding
from lingshu_jax.infer import batching
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig, fold_in, sample
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.splash import axes_size, mesh_axes_of
from lingshu_jax.model.text import init_cache
from lingshu_jax.model.vlm import Qwen25VL, abstract_params, chunk_stream_rows, prepare_inputs

TRACES: collections.Counter = collections.Counter()  # static key -> times the program was traced (compiled)
CACHE_AXES = ("layers", "batch", None, "kv_heads", None)  # k, v: [L, B, max_len, KVH, Dh]


@dataclasses.dataclass(frozen=True)
class ProgramKey:
    """Everything static about one compiled generation program (hashable)."""

    config: ModelConfig
    cache_len: int
    max_new_tokens: int
    sampling: SamplingConfig
    stop_token_ids: tuple[int, ...]
    pad_token_id: int
    return_logits: bool = False
    mesh: Any = None  # jax.sharding.Mesh or None
    rules: tuple | None = None


TENSOR_PARALLEL_DIMS = ("mlp", "q_heads", "kv_heads", "vocab", "vis_mlp", "vis_qkv", "vis_merge_mlp")


def _axes(axes) -> tuple:
    return () if axes is None else tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)


def generation_rules(rules) -> tuple:
    """Logical rules for generation. The activations' `seq` axis stays unsharded (decode steps have one
    token, which no sequence axis can split). The weights' tensor-parallel dims (heads, mlp, vocab) take
    the FSDP mesh axes (those of `embed`) as well, in rules placed first, so that the embed dims no longer
    get them: each device still holds 1/N of every weight, but the decode loop stops all-gathering whole
    weights at every step (under the training layout the 7B GRPO recipe's generation call moved 23.6 TB per
    chip, docs/tpu.md "GRPO"); activations, a few KB per token, move instead. A dim that does not divide
    falls back to the training rules (`sharding.param_shardings`). Idempotent."""
    rules = sharding.DEFAULT_RULES if rules is None else sharding.rules_from_config(rules)
    fsdp = _axes(dict(rules).get("embed"))
    done = {name for name, axes in rules if fsdp and set(fsdp) <= set(_axes(axes))}
    first = []
    for name, axes in rules:
        if name in TENSOR_PARALLEL_DIMS and fsdp and name not in done:
            first.append((name, tuple(dict.fromkeys(_axes(axes) + fsdp))))
            done.add(name)
    return tuple(first) + tuple((name, None if name == "seq" else axes) for name, axes in rules)


def batch_shards(mesh, rules) -> int:
    """How many ways the mesh splits the `batch` logical axis (1 without a mesh)."""
    return 1 if mesh is None else sharding.logical_shards(mesh, rules, "batch")


def stream_chunks(config: ModelConfig, mesh, rules, hosts: int = 1) -> int:
    """Chunks of the vision stream each of `hosts` processes lays out in its share of a batch: with
    attention_impl="splash" one per device shard of the stream (the vision tower attends within each
    device's chunk), and a multiple of the model's `vision_attention_chunks` (its share of them); else 1.
    ValueError when the stream and the rows are not sharded alike (each device's rows must find their
    images in its own chunk)."""
    model = config.vision_attention_chunks
    if model > 1 and model % hosts:  # 1 = off: no chunks to share out
        raise ValueError(f"model.vision_attention_chunks={model} does not divide over {hosts} processes")
    model = max(1, model // hosts)  # this process's share of the chunks
    if config.attention_impl != "splash" or mesh is None:
        return model
    stream = sharding.logical_shards(mesh, rules, "vis_tokens")
    rows = sharding.logical_shards(mesh, rules, "batch")
    if stream != rows:
        raise ValueError(
            f"attention_impl='splash': the vision stream is split {stream} ways and the batch rows {rows} "
            "ways by the logical rules; they must be split alike (each device's rows take their images "
            "from its own stream chunk)"
        )
    if stream % hosts:
        raise ValueError(f"the vision stream's {stream} device shards do not divide over {hosts} processes")
    return math.lcm(stream // hosts, model)


# ------------------------------------------------------------------------------------------ device side
def _forward_last(module: Qwen25VL, batch, cache):
    """Forward with a cache; logits of the last position only: ([B, V] float32, new cache)."""
    hidden, cache = module(batch, cache=cache, return_hidden=True)
    return vocab_parallel_logits(module, hidden[:, -1]).astype(jnp.float32), cache


def vocab_parallel_logits(module: Qwen25VL, hidden):
    """hidden [B, D] -> logits [B, V] (compute dtype), equal to `module.logits`. When the rows and the vocab
    head's vocab dim share mesh axes (`generation_rules` gives the head's FSDP axes to its vocab dim), the
    rows are all-gathered over them, each device multiplies by its own vocab shard and an all-to-all
    returns each device its rows: activations move, not the [D, V] head (1 GiB for 7B, at every decode
    step if XLA is left to choose)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return module.logits(hidden[:, None])[:, 0]
    kernel, opts = module.vocab_head()
    rows, vocab = mesh_axes_of("batch"), mesh_axes_of("vocab")
    shared = tuple(a for a in rows if a in vocab)
    vocab_dim = 0 if opts["kernel_vd"] else 1
    if (
        not shared
        or hidden.shape[0] % axes_size(mesh, rows)
        or kernel.shape[vocab_dim] % axes_size(mesh, vocab)
    ):
        return module.logits(hidden[:, None])[:, 0]
    dtype, contract = opts["dtype"], 1 if opts["kernel_vd"] else 0

    def local(h, w):  # h [B / rows, D], w: this device's vocab shard
        h = jax.lax.all_gather(h, shared, axis=0, tiled=True)  # [B / (rows - shared), D]
        dims = (((1,), (contract,)), ((), ()))
        # [B / (rows - shared), V / vocab]
        logits = jax.lax.dot_general(h.astype(dtype), w.astype(dtype), dims)
        return jax.lax.all_to_all(logits, shared, split_axis=0, concat_axis=1, tiled=True)

    w_spec = P(vocab, None) if opts["kernel_vd"] else P(None, vocab)
    rest = tuple(a for a in vocab if a not in shared) or None
    return jax.shard_map(
        local, mesh=mesh, in_specs=(P(rows, None), w_spec), out_specs=P(rows, rest), check_vma=False
    )(hidden, kernel)


def _constrain_cache(cache, key: ProgramKey):
    """KV cache sharded over batch and kv_heads on the mesh (dims that do not divide stay replicated)."""
    if key.mesh is None:
        return cache
    out = dict(cache)
    for name, names in (("k", CACHE_AXES), ("v", CACHE_AXES), ("segment_ids", ("batch", None))):
        spec = sharding.logical_sharding(key.mesh, key.rules, names, cache[name].shape)
        out[name] = jax.lax.with_sharding_constraint(cache[name], spec)
    return out


def _is_stop(tokens, stop_token_ids: tuple[int, ...]):
    hit = jnp.zeros(tokens.shape, bool)
    for t in stop_token_ids:
        hit = hit | (tokens == t)
    return hit


def _decode_loop(key: ProgramKey, apply, state, next_pos, rng):
    """while_loop over decode steps 1 .. max_new_tokens - 1; stops early when every row is done."""
    b = next_pos.shape[0]
    ones = jnp.ones((b, 1), jnp.int32)

    def cond(s):
        return (s["step"] < key.max_new_tokens) & ~jnp.all(s["done"])

    def body(s):
        step = s["step"]
        prev = jax.lax.dynamic_index_in_dim(s["tokens"], step - 1, axis=1, keepdims=True)  # [B, 1]
        pos = jnp.broadcast_to((next_pos + step - 1)[None, :, None], (3, b, 1)).astype(jnp.int32)
        logits, cache = apply({"input_ids": prev, "segment_ids": ones, "position_ids": pos}, s["cache"])
        tok = sample(logits, fold_in(rng, step), key.sampling)
        tok = jnp.where(s["done"], key.pad_token_id, tok)
        out = dict(s, step=step + 1, cache=_constrain_cache(cache, key))
        out["tokens"] = jax.lax.dynamic_update_index_in_dim(s["tokens"], tok, step, axis=1)
        out["lengths"] = s["lengths"] + (~s["done"]).astype(jnp.int32)
        out["done"] = s["done"] | _is_stop(tok, key.stop_token_ids)
        if key.return_logits:
            out["logits"] = jax.lax.dynamic_update_index_in_dim(s["logits"], logits, step, axis=1)
        return out

    return jax.lax.while_loop(cond, body, state)


def _run(key: ProgramKey, params, batch, rng):
    """The whole generation program (traced once per key and input shapes)."""
    TRACES[key] += 1
    if not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):  # per-row keys as raw key data [B, 2]
        rng = jax.random.wrap_key_data(rng)
    if key.mesh is not None:  # the generation layout (`generation_rules`), whatever layout params came in
        params = jax.lax.with_sharding_constraint(
            params, generation_param_shardings(key.config, key.mesh, key.rules)
        )
    module = Qwen25VL(key.config)
    apply = functools.partial(module.apply, {"params": params}, method=_forward_last)
    b = batch["input_ids"].shape[0]
    cache = _constrain_cache(init_cache(key.config, b, key.cache_len), key)
    logits, cache = apply(batch, cache)
    live = jnp.max(batch["segment_ids"], axis=1) > 0
    next_pos = jnp.max(batch["position_ids"], axis=(0, 2)).astype(jnp.int32) + 1  # [B]
    tok = jnp.where(live, sample(logits, fold_in(rng, 0), key.sampling), key.pad_token_id)
    state = {
        "step": jnp.ones((), jnp.int32),
        "cache": _constrain_cache(cache, key),
        "tokens": jnp.full((b, key.max_new_tokens), key.pad_token_id, jnp.int32).at[:, 0].set(tok),
        "lengths": live.astype(jnp.int32),
        "done": ~live | _is_stop(tok, key.stop_token_ids),
    }
    if key.return_logits:
        state["logits"] = (
            jnp.zeros((b, key.max_new_tokens, logits.shape[-1]), jnp.float32).at[:, 0].set(logits)
        )
    state = _decode_loop(key, apply, state, next_pos, rng)
    out = {"tokens": state["tokens"], "lengths": state["lengths"], "steps": state["step"]}
    if key.return_logits:
        out["logits"] = state["logits"]
    return out


@functools.lru_cache(maxsize=128)
def compiled_program(key: ProgramKey):
    """The jitted program of one static key (jax caches one executable per input shapes under it)."""
    return jax.jit(functools.partial(_run, key))


@functools.lru_cache(maxsize=16)
def generation_param_shardings(config: ModelConfig, mesh, rules):
    """NamedSharding per parameter under `rules` (`generation_rules(...)`): the generation layout."""
    return sharding.param_shardings(abstract_params(config, boxed=True), mesh, rules)


def place_params(config: ModelConfig, params, mesh, rules=None):
    """Parameters laid out on `mesh` by the logical rules (a no-op for arrays already placed so)."""
    rules = generation_rules(rules)
    return jax.device_put(params, generation_param_shardings(config, mesh, rules))


# -------------------------------------------------------------------------------------------- host side
@dataclasses.dataclass(frozen=True)
class Buckets:
    """Shape buckets: prompt length and vision patches by `batching.bucket_size`; the cache length rounds
    up to a multiple of `cache`."""

    prompt: int = 64
    patches: int = 256
    cache: int = 64


DEFAULT_BUCKETS = Buckets()


def prepare_generation_batch(
    config: ModelConfig,
    inputs: dict,
    pad_token_id: int,
    buckets: Buckets = DEFAULT_BUCKETS,
    batch_multiple: int = 1,
    across_hosts: bool = False,
    vision_chunks: int = 1,
) -> tuple[dict[str, np.ndarray], int]:
    """Processor outputs -> (the model's batch dict, left-padded and bucketed; number of real rows).

    across_hosts: the inputs are this process's share of one global batch; every process must pass the
    same number of rows, and the padded length and patch budget are the largest of any process's (so the
    shares have equal shapes, as `sharding.global_batch` needs).
    vision_chunks: lay the stream out as that many equal chunks, each holding its group of rows' images
    (`prepare_inputs`; `stream_chunks` says how many); the padded rows are a multiple of it."""
    inputs = batching.left_align(batching.to_numpy(inputs))
    rows, length = inputs["input_ids"].shape
    v = config.vision
    n = batching.num_patches(inputs, v.spatial_merge_size, v.window_merge_units)
    padded_rows = batching.round_up(max(rows, 1), math.lcm(batch_multiple, vision_chunks))
    if n and vision_chunks > 1:  # n: the fullest chunk's stream rows
        n = max(chunk_stream_rows(config, inputs, padded_rows // vision_chunks))
    if across_hosts:
        most_rows, fewest_rows, length, n = (int(x) for x in sharding.process_max([rows, -rows, length, n]))
        fewest_rows = -fewest_rows
        if most_rows != fewest_rows:
            raise ValueError(
                f"generation across {jax.process_count()} processes: each must pass the same number of "
                f"rows (this process {rows}; they range from {fewest_rows} to {most_rows})"
            )
        if n and "pixel_values" not in inputs and "pixel_values_videos" not in inputs:
            inputs = {**inputs, **batching.empty_vision(v.patch_dim)}  # another host has images
    inputs = batching.pad_inputs(
        inputs,
        length=batching.bucket_size(length, buckets.prompt),
        rows=padded_rows,
        pad_id=pad_token_id,
    )
    batch = prepare_inputs(
        config,
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs.get("pixel_values"),
        inputs.get("image_grid_thw"),
        inputs.get("pixel_values_videos"),
        inputs.get("video_grid_thw"),
        inputs.get("second_per_grid_ts"),
        patch_budget=batching.bucket_size(n, buckets.patches) * vision_chunks if n else None,
        vision_chunks=vision_chunks,
    )
    return batch, rows


def _stop_and_pad(config: ModelConfig, stop_token_ids, pad_token_id) -> tuple[tuple[int, ...], int]:
    stop = tuple(int(t) for t in (config.eos_token_ids if stop_token_ids is None else stop_token_ids))
    pad = int(pad_token_id) if pad_token_id is not None else (stop[0] if stop else 0)
    return stop, pad


def generate_ids(
    config: ModelConfig,
    params,
    inputs: dict,
    max_new_tokens: int,
    sampling: SamplingConfig = GREEDY,
    rng=None,
    stop_token_ids=None,
    pad_token_id: int | None = None,
    *,
    mesh=None,
    rules=None,
    buckets: Buckets = DEFAULT_BUCKETS,
    return_logits: bool = False,
) -> dict[str, np.ndarray]:
    """Generates up to `max_new_tokens` for each row of a processor-output batch.

    Args:
      config, params: the model (`LingshuModel.config`, `.params`).
      inputs: processor outputs (numpy): input_ids / attention_mask [B, S] (any padding side), optional
        pixel_values + image_grid_thw, pixel_values_videos + video_grid_thw (+ second_per_grid_ts).
      sampling: greedy by default; rng: a jax PRNG key (default key 0), used when sampling, or one key per
        row ([B] key array): a row's samples then depend only on its key, prompt and the parameters, not on
        the other rows of the batch.
      stop_token_ids: a row stops after emitting one (default: config.eos_token_ids; () never stops).
      pad_token_id: written after the stop (default: the first stop id).
      mesh, rules: run sharded (parameters by the logical rules, the KV cache over batch and kv_heads).
        With several processes (multi-host), `inputs` (and per-row keys) are this process's rows of the
        global batch, every process calls with the same number of rows, and it gets its own rows back.
      return_logits: also return the float32 logits each token was chosen from, [B, T_new, V].
    Returns:
      {"tokens": [B, T_new] int32, "lengths": [B] int32} (+ "logits"), numpy.
    """
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 1")
    stop, pad = _stop_and_pad(config, stop_token_ids, pad_token_id)
    rules = generation_rules(rules) if mesh is not None else None
    hosts = jax.process_count() if mesh is not None else 1
    shards = batch_shards(mesh, rules)
    if shards % hosts:
        raise ValueError(
            f"generation across {hosts} processes: the mesh splits the batch {shards} ways, not a multiple "
            "of the process count"
        )
    chunks = stream_chunks(config, mesh, rules, hosts)
    batch, rows = prepare_generation_batch(config, inputs, pad, buckets, shards // hosts, hosts > 1, chunks)
    key = ProgramKey(
        config=config,
        cache_len=batching.round_up(batch["input_ids"].shape[1] + int(max_new_tokens), buckets.cache),
        max_new_tokens=int(max_new_tokens),
        sampling=sampling,
        stop_token_ids=stop,
        pad_token_id=pad,
        return_logits=return_logits,
        mesh=mesh,
        rules=rules,
    )
    rng = jax.random.key(0) if rng is None else rng
    if rng.ndim:  # per-row keys: raw key data [B, 2], padding rows given key 0, sharded like the rows
        if rng.shape != (rows,):
            raise ValueError(f"generate_ids: {rng.shape[0]} per-row keys for {rows} rows")
        data = np.asarray(jax.random.key_data(rng))
        rng = np.zeros((batch["input_ids"].shape[0], *data.shape[1:]), data.dtype)
        rng[:rows] = data
    if mesh is None:
        out = compiled_program(key)(params, batch, rng)
    else:
        with sharding.mesh_context(mesh, rules):
            placed = sharding.global_batch(
                {**batch, **({"row_keys": rng} if np.ndim(rng) else {})}, mesh, rules
            )
            rng = placed.pop("row_keys", rng)
            out = compiled_program(key)(place_params(config, params, mesh, rules), placed, rng)
    steps = int(out["steps"])
    result = {
        "tokens": sharding.host_rows(out["tokens"])[:rows, :steps],
        "lengths": sharding.host_rows(out["lengths"])[:rows],
    }
    if return_logits:
        result["logits"] = sharding.host_rows(out["logits"])[:rows, :steps]
    return result
