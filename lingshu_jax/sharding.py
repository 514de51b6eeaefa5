"""Meshes, logical axis rules and placement: the pjit model, small enough to read.

Every parameter and the activations at block boundaries carry logical axis names (see docs/DESIGN.md).
One rules table, `[(logical_name, mesh_axis or tuple or None), ...]`, from the experiment config maps
them onto mesh axes `data`, `fsdp`, `tensor`, `sequence`; ablations change the table, not the model.
A parameter dimension that does not divide its mesh axes falls back to replication, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

# FSDP over `fsdp` (weights' embed dims), tensor parallelism over heads / mlp / vocab, data parallelism
# over `data` and `fsdp` for the batch. Activations' `seq` maps to `sequence` (context parallelism).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("seq", "sequence"),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("norm", None),
    ("vis_tokens", ("data", "fsdp")),
    ("vis_patch", None),
    ("vis_embed", "fsdp"),
    ("vis_mlp", "tensor"),
    ("vis_qkv", "tensor"),
    ("vis_merge", "fsdp"),
    ("vis_merge_mlp", "tensor"),
    ("vis_norm", None),
)


def shard(x, names: tuple[str | None, ...]):
    """Sharding constraint on an activation by logical names; a no-op outside a mesh + rules context."""
    return nn.with_logical_constraint(x, names)


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
    """Config rules (list of [name, axis|list|None]) -> the tuple form Flax expects."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for item in rules:
        name, axes = item[0], item[1]
        if isinstance(axes, list):
            axes = tuple(axes)
        for a in axes if isinstance(axes, tuple) else (axes,):
            if a is not None and a not in MESH_AXES:
                raise ValueError(
                    f"sharding rule {name!r}: unknown mesh axis {a!r}; mesh axes are {MESH_AXES}"
                )
        out.append((name, axes))
    return tuple(out)


# ------------------------------------------------------------------------------------------- meshes
def mesh_shape(mesh_cfg, num_devices: int) -> dict[str, int]:
    """Resolves `-1` (at most one) so the product equals `num_devices`; errors name the key."""
    shape = {a: int(mesh_cfg.get(a, 1)) for a in MESH_AXES}
    free = [a for a, n in shape.items() if n == -1]
    if len(free) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {free}")
    fixed = math.prod(n for n in shape.values() if n != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"mesh: {num_devices} devices not divisible by the fixed axes {shape}")
        shape[free[0]] = num_devices // fixed
    if math.prod(shape.values()) != num_devices:
        raise ValueError(
            f"mesh: {shape} needs {math.prod(shape.values())} devices but {num_devices} are "
            f"available (config.mesh.*)"
        )
    return shape


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A Mesh with axes (data, fsdp, tensor, sequence). With `mesh_cfg.dcn` (axis -> number of slices, the
    product > 1), a multi-slice mesh: the other axes describe one slice (ICI), and each mesh axis is
    dcn[axis] slices x the slice's size along it (slice-major), as `create_hybrid_device_mesh` builds it.
    Devices without a `slice_index` (CPU, one GPU host) are split into consecutive slices in order."""
    devices = list(devices if devices is not None else jax.devices())
    dcn = {a: int(v) for a, v in dict(mesh_cfg.get("dcn", None) or {}).items()}
    unknown = sorted(set(dcn) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"mesh.dcn: unknown axes {unknown}; mesh axes are {MESH_AXES}")
    dcn_shape = [dcn.get(a, 1) for a in MESH_AXES]
    n_slices = math.prod(dcn_shape)
    if n_slices > 1:
        if len(devices) % n_slices:
            raise ValueError(f"mesh.dcn={dcn}: {n_slices} slices do not divide {len(devices)} devices")
        ici = mesh_shape(mesh_cfg, len(devices) // n_slices)
        ici_shape = [ici[a] for a in MESH_AXES]
        if all(getattr(d, "slice_index", None) is not None for d in devices):
            arr = mesh_utils.create_hybrid_device_mesh(ici_shape, dcn_shape, devices)
        else:
            arr = hybrid_layout(np.asarray(devices).reshape(n_slices, -1), ici_shape, dcn_shape)
        return Mesh(arr, MESH_AXES)
    shape = mesh_shape(mesh_cfg, len(devices))
    try:
        arr = mesh_utils.create_device_mesh([shape[a] for a in MESH_AXES], devices)
    except (ValueError, NotImplementedError, AssertionError):
        arr = np.asarray(devices).reshape([shape[a] for a in MESH_AXES])
    return Mesh(arr, MESH_AXES)


def hybrid_layout(slices: np.ndarray, ici_shape: Sequence[int], dcn_shape: Sequence[int]) -> np.ndarray:
    """[n_slices, devices per slice] -> the device array of shape dcn_shape * ici_shape (per axis), slice
    s = ravel index of its position in dcn_shape; along every axis the slice index is the major part."""
    k = len(ici_shape)
    arr = slices.reshape(*dcn_shape, *ici_shape)  # [d0..dk-1, i0..ik-1]
    order = [j for pair in zip(range(k), range(k, 2 * k)) for j in pair]  # d0, i0, d1, i1, ...
    return arr.transpose(order).reshape([d * i for d, i in zip(dcn_shape, ici_shape)])


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules):
    """Activates the mesh and the logical rules so `shard()` constraints inside the model take effect."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


# --------------------------------------------------------------------------------------- shardings
_WARNED: set = set()


def _warn_once(msg, *args):
    if (msg, args) not in _WARNED:
        _WARNED.add((msg, args))
        log.warning(msg, *args)


def _spec_for(shape, names, mesh: Mesh, rules, path: str) -> P:
    """The PartitionSpec of an array with logical `names`. A dim that does not divide its mesh axes falls
    back to the next rule for its name (rules may list a name twice, e.g. `generation_rules`), else is
    replicated."""
    rules = tuple(rules)
    spec = nn.logical_to_mesh_axes(names, rules)
    out = []
    for dim, axes, name in zip(shape, spec, names):
        axes_t = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
        size = math.prod(mesh.shape[a] for a in axes_t)
        if size > 1 and dim % size:
            rule = (name, axes)
            if sum(r[0] == name for r in rules) > 1 and rule in rules:  # the name's next rule
                return _spec_for(shape, names, mesh, tuple(r for r in rules if r != rule), path)
            _warn_once(
                "sharding: %s dim %s=%d does not divide mesh axes %s (size %d); replicating it",
                path,
                name,
                dim,
                axes_t,
                size,
            )
            axes = None
        out.append(axes)
    return P(*out)


def param_shardings(boxed_abstract_params, mesh: Mesh, rules) -> Any:
    """NamedSharding per parameter from the logical names in its metadata (non-divisible dims replicate)."""

    def one(path, leaf):
        names = leaf.names if isinstance(leaf, nn.LogicallyPartitioned) else (None,) * len(leaf.shape)
        value = leaf.value if isinstance(leaf, nn.LogicallyPartitioned) else leaf
        key = "/".join(str(getattr(k, "key", k)) for k in path)
        return NamedSharding(mesh, _spec_for(value.shape, names, mesh, rules, key))

    return jax.tree_util.tree_map_with_path(
        one, boxed_abstract_params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )


def logical_sharding(mesh: Mesh, rules, names: tuple[str | None, ...], shape=None) -> NamedSharding:
    """NamedSharding for an input/activation given its logical names."""
    if shape is None:
        return NamedSharding(mesh, nn.logical_to_mesh_axes(names, rules))
    return NamedSharding(mesh, _spec_for(shape, names, mesh, rules, "/".join(map(str, names))))


def logical_shards(mesh: Mesh, rules, name: str) -> int:
    """How many ways the mesh splits logical axis `name` under `rules` (1: not at all)."""
    spec = logical_sharding(mesh, rules, (name,)).spec
    axes = spec[0] if len(spec) else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    return int(np.prod([mesh.shape[a] for a in axes])) if axes else 1


# Logical names of every model input (docs/DESIGN.md "Model inputs").
BATCH_AXES = {
    "input_ids": ("batch", "seq"),
    "segment_ids": ("batch", "seq"),
    "labels": ("batch", "seq"),
    "loss_mask": ("batch", "seq"),
    "vision_token_index": ("batch", "seq"),
    "position_ids": (None, "batch", "seq"),
    "pixel_values": ("vis_tokens", None),
    "vision_pos": ("vis_tokens", None),
    "window_segments": ("vis_tokens",),
    "frame_segments": ("vis_tokens",),
    "pixel_scale": (None,),  # per-column normalisation of uint8 pixel_values: small, replicated
    "pixel_offset": (None,),
}


def _batch_names(key: str, ndim: int, micro_axis: bool) -> tuple:
    if micro_axis:
        return (None,) + BATCH_AXES.get(key, ("batch",) + (None,) * (ndim - 2))[: ndim - 1]
    return BATCH_AXES.get(key, ("batch",) + (None,) * (ndim - 1))[:ndim]


def batch_shardings(batch: dict, mesh: Mesh, rules, micro_axis: bool = False, num_hosts: int = 1) -> dict:
    """Shardings of a batch's arrays; `micro_axis`: every leaf has a leading micro-batch axis [K, ...].
    `num_hosts`: the batch holds one host's rows / vision stream, so those dims are num_hosts x larger
    globally (divisibility is checked on the global shape)."""
    out = {}
    for k, v in batch.items():
        names = _batch_names(k, np.ndim(v), micro_axis)
        shape = [
            n * num_hosts if name in ("batch", "vis_tokens") else n for n, name in zip(np.shape(v), names)
        ]
        out[k] = logical_sharding(mesh, rules, names, tuple(shape))
    return out


def global_batch(local_batch: dict, mesh: Mesh, rules, micro_axis: bool = False) -> dict[str, jax.Array]:
    """Per-host numpy batch -> global jax.Arrays (jax.make_array_from_process_local_data).

    Rows are split across processes; so is the vision stream: the global stream is the hosts' streams
    concatenated in process order, with each host's token indices and segment ids offset
    (`offset_host_vision`) so they stay unique and point into the global stream.
    """
    local_batch = offset_host_vision(local_batch, jax.process_index(), micro_axis)
    shardings = batch_shardings(local_batch, mesh, rules, micro_axis, num_hosts=jax.process_count())
    out = {}
    for k, v in local_batch.items():
        v = np.asarray(v)
        s = shardings[k]
        if s.is_fully_replicated or jax.process_count() == 1:
            out[k] = jax.make_array_from_process_local_data(s, v, v.shape)
        else:
            out[k] = jax.make_array_from_process_local_data(s, v)
    return out


def offset_host_vision(batch: dict, host: int, micro_axis: bool = False) -> dict:
    """Shifts host `host`'s vision token indices by host * (its merged tokens) and its segment ids by
    host * (its patches); a no-op for host 0 and text-only batches."""
    if host == 0 or "pixel_values" not in batch:
        return batch
    n = np.shape(batch["pixel_values"])[1 if micro_axis else 0]
    out = dict(batch)
    idx = np.asarray(batch["vision_token_index"])
    out["vision_token_index"] = np.where(idx >= 0, idx + host * (n // 4), idx).astype(idx.dtype)
    for k in ("window_segments", "frame_segments"):
        out[k] = (np.asarray(batch[k]) + host * n).astype(np.int32)
    return out


def merge_host_batches(batches: list[dict]) -> dict:
    """What the global batch of several hosts' local batches is, assembled on one host (tests, debugging)."""
    shifted = [offset_host_vision(b, i) for i, b in enumerate(batches)]
    out = {}
    for k in shifted[0]:
        axis = 1 if k == "position_ids" else 0
        out[k] = np.concatenate([np.asarray(b[k]) for b in shifted], axis=axis)
    return out


# ------------------------------------------------------------------------------------- multi-host
def initialize_distributed(cfg=None) -> None:
    """jax.distributed.initialize from explicit flags, or auto-detected (TPU pods, SLURM, Open MPI).

    cfg: optional dict-like with coordinator_address, num_processes, process_id, local_device_ids.
    Without a coordinator address we only initialise when a cluster environment is detected.
    """
    cfg = dict(cfg or {})
    if cfg.get("coordinator_address"):
        jax.distributed.initialize(
            coordinator_address=cfg["coordinator_address"],
            num_processes=int(cfg["num_processes"]),
            process_id=int(cfg["process_id"]),
            local_device_ids=cfg.get("local_device_ids"),
        )
        return
    cluster_env = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "MEGASCALE_COORDINATOR_ADDRESS")
    tpu_workers = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if any(os.environ.get(k) for k in cluster_env) or len(tpu_workers) > 1:  # one TPU worker: nothing to join
        jax.distributed.initialize()


def process_max(values) -> np.ndarray:
    """Elementwise max of `values` (numbers, equal length on every process) over the processes: what
    several hosts agree on for shapes they must share (the values themselves with one process)."""
    v = np.asarray(values)
    if jax.process_count() == 1:
        return v
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(v)).max(axis=0)


def process_concat(x) -> np.ndarray:
    """Each process's host-local array [n, ...] (equal shapes) -> [processes * n, ...] in process order,
    on every process (the array itself with one process): global metrics from host-local values."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a global array whose leading axis holds the processes' rows in process
    order (as `global_batch` builds it, and any result computed row by row from such a batch); with one
    process, the whole array. Gathers the array on every process (for small results: tokens, log-probs)."""
    if jax.process_count() == 1 or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    full = np.asarray(multihost_utils.process_allgather(x, tiled=True))
    n = full.shape[0] // jax.process_count()
    return full[jax.process_index() * n : (jax.process_index() + 1) * n]


# ------------------------------------------------------------------------------------- inspection
def abstract_mesh(mesh_cfg, num_devices: int) -> jax.sharding.AbstractMesh:
    """A device-less mesh of `num_devices` (to plan shardings of a pod from a laptop)."""
    shape = mesh_shape(mesh_cfg, num_devices)
    return jax.sharding.AbstractMesh(tuple(shape[a] for a in MESH_AXES), MESH_AXES)


def describe_shardings(boxed_abstract_params, mesh, rules) -> list[dict]:
    """One row per parameter: path, shape, partition spec, per-device shard shape and bytes."""
    shardings = param_shardings(boxed_abstract_params, mesh, rules)
    values = nn.meta.unbox(boxed_abstract_params)
    rows = []
    for (path, leaf), s in zip(
        jax.tree_util.tree_leaves_with_path(values), jax.tree_util.tree_leaves(shardings)
    ):
        shard = s.shard_shape(leaf.shape)
        rows.append(
            {
                "path": "/".join(str(getattr(k, "key", k)) for k in path),
                "shape": tuple(leaf.shape),
                "spec": tuple(s.spec),
                "shard_shape": tuple(shard),
                "bytes_per_device": math.prod(shard) * np.dtype(leaf.dtype).itemsize,
                "bytes": math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize,
            }
        )
    return rows
