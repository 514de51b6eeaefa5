"""Qwen2.5 decoder: GQA with q/k/v bias, M-RoPE, RMSNorm, SwiGLU; layers under nn.scan; KV cache.

One code path serves training (no cache) and generation (a cache of fixed length `max_len`, written at
`cache_index` with dynamic_update_slice, so prefill and each decode step compile once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.ad_checkpoint import checkpoint_name

from lingshu_jax.model import rope
from lingshu_jax.model.attention import dot_product_attention, segment_mask
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.layers import RMSNorm, SwiGLU, compute_dtypes, dense, maybe_remat
from lingshu_jax.model.remat import ATTN_OUT, QKV_PROJ
from lingshu_jax.model.splash import splash_attention
from lingshu_jax.sharding import shard

# Training attention (no cache, "xla") runs as this many causal query blocks (when they divide the sequence).
# bench-100m's CPU step (4 x 512 tokens), CPU seconds in one process: 8 blocks -1.6% (remat none) and -3.8%
# (text and vision save_dots) against 4; 16 no better than 8 (docs/benchmark_cpu.md).
CAUSAL_BLOCKS = 8


def causal_block_attention(q, k, v, mask, *, blocks: int):
    """Causal self-attention as `blocks` query blocks, block i attending only keys [0, (i + 1) S / blocks):
    the keys after a block are masked for all its queries anyway, so the result is `dot_product_attention`'s
    for every query with a visible key, at (blocks + 1) / (2 blocks) of the logits (62.5% for 4 blocks,
    56% for 8; with 4, bench-100m's text backward took 0.4 s less of 4.2 s on CPU than with 1). Queries with no visible key (padding) still get a
    finite average, over their block's keys.

    q [B, S, H, Dh], k/v [B, S, KVH, Dh], mask [B, 1, S, S] (causal) -> [B, S, H, Dh]."""
    s = q.shape[1]
    if blocks <= 1 or s % blocks or k.shape[1] != s:
        return dot_product_attention(q, k, v, mask)
    size = s // blocks
    outs = []
    for i in range(blocks):
        lo, hi = i * size, (i + 1) * size
        outs.append(dot_product_attention(q[:, lo:hi], k[:, :hi], v[:, :hi], mask[:, :, lo:hi, :hi]))
    return jnp.concatenate(outs, axis=1)  # [B, S, H, Dh]


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, cos, sin, mask, kv_cache, cache_index):
        t = self.config.text
        dtype, _, pdtype = compute_dtypes(self.config)
        b, s, _ = x.shape
        kw = {"dtype": dtype, "param_dtype": pdtype}
        q = dense(
            t.num_attention_heads * t.head_dim, ("embed", "q_heads"), use_bias=True, name="q_proj", **kw
        )(x)
        k = dense(
            t.num_key_value_heads * t.head_dim, ("embed", "kv_heads"), use_bias=True, name="k_proj", **kw
        )(x)
        v = dense(
            t.num_key_value_heads * t.head_dim, ("embed", "kv_heads"), use_bias=True, name="v_proj", **kw
        )(x)
        q, k, v = (checkpoint_name(a, QKV_PROJ) for a in (q, k, v))  # what remat "save_qkv_*" keeps
        q = rope.apply_rotary(q.reshape(b, s, t.num_attention_heads, t.head_dim), cos, sin)
        k = rope.apply_rotary(k.reshape(b, s, t.num_key_value_heads, t.head_dim), cos, sin)
        v = v.reshape(b, s, t.num_key_value_heads, t.head_dim)
        q = shard(q, ("batch", "seq", "act_heads", None))
        new_cache = None
        if kv_cache is not None:  # write this step's keys/values at cache_index, attend over the whole cache
            k = jax.lax.dynamic_update_slice(
                kv_cache["k"], k.astype(kv_cache["k"].dtype), (0, cache_index, 0, 0)
            )
            v = jax.lax.dynamic_update_slice(
                kv_cache["v"], v.astype(kv_cache["v"].dtype), (0, cache_index, 0, 0)
            )
            new_cache = {"k": k, "v": v}
        k, v = k.astype(dtype), v.astype(dtype)
        if kv_cache is None and self.config.attention_impl == "splash":  # mask: segment ids [B, S]
            out = splash_attention(q, k, v, mask, mask, causal=True)
        elif kv_cache is None and self.config.attention_impl == "xla":
            out = causal_block_attention(q, k, v, mask, blocks=CAUSAL_BLOCKS)
        else:
            out = dot_product_attention(q, k, v, mask, impl=self.config.attention_impl)
        out = checkpoint_name(out, ATTN_OUT)
        out = dense(t.hidden_size, ("q_heads", "embed"), use_bias=False, name="o_proj", **kw)(
            out.reshape(b, s, t.num_attention_heads * t.head_dim)
        )
        return out, new_cache


class DecoderLayer(nn.Module):
    """Scanned: carry = hidden [B, S, D]; per-layer input/output = this layer's KV cache (or None)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, kv_cache, cos, sin, mask, cache_index):
        t = self.config.text
        dtype, _, pdtype = compute_dtypes(self.config)
        norm = lambda name: RMSNorm(t.rms_norm_eps, dtype, pdtype, "norm", name=name)
        h, new_cache = Attention(self.config, name="self_attn")(
            norm("input_layernorm")(x), cos, sin, mask, kv_cache, cache_index
        )
        x = x + h
        x = x + SwiGLU(
            t.hidden_size, t.intermediate_size, False, ("embed", "mlp"), dtype, pdtype, name="mlp"
        )(norm("post_attention_layernorm")(x))
        return shard(x, ("batch", "seq", "act_embed")), new_cache


class TextModel(nn.Module):
    """Embeddings + decoder stack + final norm. `embed` and `decode` are separate so the VLM can scatter
    vision tokens in between."""

    config: ModelConfig

    def setup(self):
        t = self.config.text
        dtype, _, pdtype = compute_dtypes(self.config)
        self.embed_tokens = nn.Embed(
            t.vocab_size,
            t.hidden_size,
            dtype=dtype,
            param_dtype=pdtype,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")),
        )
        layer = maybe_remat(DecoderLayer, self.config.remat_policy, self.config.unroll_layers)
        self.layers = nn.scan(
            layer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            length=t.num_hidden_layers,
            unroll=t.num_hidden_layers if self.config.unroll_layers else 1,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(self.config)
        self.norm = RMSNorm(t.rms_norm_eps, dtype, pdtype, "norm")

    def embed(self, input_ids):
        return self.embed_tokens(input_ids)

    def attend(self, hidden):
        """Tied head: hidden [B, S, D] @ embedding.T -> [B, S, V]."""
        return self.embed_tokens.attend(hidden)

    def __call__(self, embeds, position_ids, segment_ids, cache=None):
        """embeds [B, S, D], position_ids [3, B, S], segment_ids [B, S] (0 = pad) -> (hidden, new_cache).

        cache: None, or {"k","v": [L, B, max_len, KVH, Dh], "segment_ids": [B, max_len], "index": int32 []}.
        """
        t = self.config.text
        dtype = compute_dtypes(self.config)[0]
        cos, sin = rope.mrope_cos_sin(position_ids, t.head_dim, t.rope_theta, t.mrope_section, dtype)
        x = shard(embeds.astype(dtype), ("batch", "seq", "act_embed"))
        if cache is None:  # splash takes the segment ids themselves, every other path a [B, 1, S, S] mask
            splash = self.config.attention_impl == "splash"
            mask = segment_ids if splash else segment_mask(segment_ids, segment_ids, causal=True)
            x, _ = self.layers(x, None, cos, sin, mask, 0)
            return self.norm(x), None
        index = cache["index"]
        k_segments = jax.lax.dynamic_update_slice(
            cache["segment_ids"], segment_ids.astype(jnp.int32), (0, index)
        )
        q_slots = index + jnp.arange(x.shape[1])
        mask = segment_mask(segment_ids, k_segments, causal=True, q_slots=q_slots)
        x, kv = self.layers(x, {"k": cache["k"], "v": cache["v"]}, cos, sin, mask, index)
        new_cache = {"k": kv["k"], "v": kv["v"], "segment_ids": k_segments, "index": index + x.shape[1]}
        return self.norm(x), new_cache


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=None):
    """Empty KV cache for `batch` rows of up to `max_len` tokens."""
    t = config.text
    dtype = dtype or compute_dtypes(config)[0]
    shape = (t.num_hidden_layers, batch, max_len, t.num_key_value_heads, t.head_dim)
    return {
        "k": jnp.zeros(shape, dtype),
        "v": jnp.zeros(shape, dtype),
        "segment_ids": jnp.zeros((batch, max_len), jnp.int32),
        "index": jnp.zeros((), jnp.int32),
    }
