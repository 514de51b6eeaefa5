"""Pallas splash attention (TPU) for the decoder and the vision tower, inside `shard_map` over the mesh.

`attention_impl="splash"` routes training attention here: causal with segment ids (packed rows, GQA) for the
decoder, bidirectional with frame segment ids for the vision tower's full-attention layers. The kernel
(`jax.experimental.pallas.ops.tpu.splash_attention`) never holds a [queries, keys] buffer: it streams key
blocks with an online softmax, so memory is O(tokens). It runs per device on local shards: batch rows (and
the vision stream's chunks) and heads may be sharded, the sequence may not (the keys of a row must be local).

Off TPU the same kernel runs in Pallas interpret mode (CPU: tests; slow). On GPU use `cudnn`.
Sequences are padded to a multiple of the kernel's block with a segment id of their own, then cut back.
Cost model: XLA sees a Pallas call as a custom call with no FLOPs; `kernel_flops` below counts what the
kernels execute (the AOT report times them with it): every block of a segment mask, only the causal blocks
on or below the diagonal.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash_kernel
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask
from jax.sharding import PartitionSpec as P

LANES = 128  # the kernel's key-block granularity
PAD_SEGMENT = -(2**30)  # segment id of the rows added to reach a whole block


def block_size(seq: int) -> int:
    """The kernel's query / key block for a (padded) sequence: 512 where it divides, else 256 or 128."""
    for b in (512, 256):
        if seq % b == 0:
            return b
    return LANES


def _interpret(mesh) -> bool:
    """Interpret mode unless the mesh's devices (else the default backend) are TPUs; GPU is an error."""
    device = None if mesh is None or mesh.empty else mesh.abstract_device
    platform = device.platform if device is not None else jax.default_backend()
    if platform == "gpu" or platform == "cuda":
        raise ValueError("attention_impl='splash' is a TPU kernel; on GPU use attention_impl='cudnn'")
    return platform != "tpu"


def _kernel(heads: int, seq: int, causal: bool, interpret: bool):
    shape = (seq, seq)
    head_mask = splash_mask.CausalMask(shape) if causal else splash_mask.FullMask(shape)
    b = block_size(seq)
    sizes = splash_kernel.BlockSizes(
        block_q=b,
        block_kv=b,
        block_kv_compute=b,
        block_q_dkv=b,
        block_kv_dkv=b,
        block_kv_dkv_compute=b,
        block_q_dq=b,
        block_kv_dq=b,
    )
    return splash_kernel.make_splash_mha(
        splash_mask.MultiHeadMask([head_mask] * heads),
        block_sizes=sizes,
        head_shards=1,
        q_seq_shards=1,
        interpret=interpret,
    )


def local_splash(q, k, v, q_segments, kv_segments, *, causal: bool, interpret: bool):
    """One device's rows: q [B, S, H, D], k/v [B, S, KVH, D], segments [B, S] int -> [B, S, H, D]."""
    b, s, h, d = q.shape
    pad = -s % LANES
    if pad:
        q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))
        q_segments, kv_segments = (
            jnp.pad(x, ((0, 0), (0, pad)), constant_values=PAD_SEGMENT) for x in (q_segments, kv_segments)
        )
    kernel = _kernel(h, s + pad, causal, interpret)
    heads_major = lambda x: jnp.swapaxes(x, 1, 2)  # [B, S, H, D] -> [B, H, S, D]
    scale = jnp.asarray(d**-0.5, q.dtype)
    segments = splash_kernel.SegmentIds(q=q_segments.astype(jnp.int32), kv=kv_segments.astype(jnp.int32))
    out = jax.vmap(kernel)(heads_major(q * scale), heads_major(k), heads_major(v), segment_ids=segments)
    return heads_major(out)[:, :s].astype(q.dtype)


def mesh_axes_of(name: str | None) -> tuple[str, ...]:
    """The mesh axes (maybe none) that logical `name` maps to under the active rules."""
    spec = nn.logical_to_mesh_axes((name,))
    axes = spec[0] if len(spec) else None
    if axes is None:
        return ()
    return tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)


def axes_size(mesh, axes) -> int:
    """Devices along `axes` of `mesh` (1 for none)."""
    n = 1
    for a in axes:
        n *= mesh.shape[a]
    return n


def splash_attention(
    q, k, v, q_segments, kv_segments, *, causal: bool, token_names=("batch", "seq"), chunked: bool = False
):
    """Splash attention over the active mesh (no mesh: one device).

    q [B, S, H, D], k/v [B, S, KVH, D], segments [B, S] int (equal ids attend; causal within a row when
    `causal`) -> [B, S, H, D]. `token_names`: the logical names of B and S, whose mesh axes shard them;
    heads follow `act_heads`. S must be unsharded, unless `chunked`: then each device's slice of S is
    attended on its own (the caller guarantees no segment crosses a device boundary).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return local_splash(q, k, v, q_segments, kv_segments, causal=causal, interpret=_interpret(None))
    fit = lambda axes, n: axes if n % axes_size(mesh, axes) == 0 else ()  # e.g. init's batch of 1: whole
    batch_axes, seq_axes = (fit(mesh_axes_of(n), d) for n, d in zip(token_names, q.shape[:2]))
    head_axes = mesh_axes_of("act_heads")
    if axes_size(mesh, seq_axes) > 1 and not chunked:
        raise ValueError(
            f"attention_impl='splash' needs whole sequences on each device, but {token_names[1]!r} is "
            f"sharded over mesh axes {seq_axes}; use mesh.sequence=1 or attention_impl='xla'"
        )
    heads, kv_heads = q.shape[2], k.shape[2]
    if heads % axes_size(mesh, head_axes) or kv_heads % axes_size(mesh, head_axes):
        head_axes = ()  # heads that do not divide the tensor axis stay whole on each device
    spec = P(batch_axes or None, seq_axes or None, head_axes or None, None)
    seg_spec = P(batch_axes or None, seq_axes or None)
    fn = functools.partial(local_splash, causal=causal, interpret=_interpret(mesh))
    return jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(spec, spec, spec, seg_spec, seg_spec),
        out_specs=spec,
        check_vma=False,
    )(q, k, v, q_segments, kv_segments)


def splash_stream_attention(q, k, v, segments):
    """The vision stream's full attention: q/k/v [N, H, D], segments [N] int -> [N, H, D]. Each device
    attends within its own chunk of the stream (`vis_tokens` sharding), so every frame must lie in one chunk
    (`data.vision_chunks` = the stream's shards makes the packer guarantee it; the trainer checks)."""
    q, k, v, segments = (x[None] for x in (q, k, v, segments))
    return splash_attention(
        q, k, v, segments, segments, causal=False, token_names=(None, "vis_tokens"), chunked=True
    )[0]


def kernel_flops(
    seq: int, heads: int, head_dim: int, *, causal: bool, backward: bool, recompute: bool
) -> float:
    """Matmul FLOPs the kernels execute for one sequence of `seq` rows (per layer): the forward's QK^T and
    PV over every computed block (causal: the blocks on or below the diagonal; segment masks skip none),
    once more when remat recomputes it, and the backward's 7 matmuls (dq: QK^T, dO V^T, dS K; dkv: QK^T,
    dO V^T, P^T dO, dS^T Q) = 3.5 forwards."""
    padded = seq + (-seq % LANES)
    nb = padded // block_size(padded)
    frac = (nb + 1) / (2 * nb) if causal else 1.0
    fwd = 4.0 * padded * padded * heads * head_dim * frac
    return fwd * (1 + int(recompute) + (3.5 if backward else 0.0))
