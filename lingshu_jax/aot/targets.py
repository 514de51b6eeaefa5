"""Compile targets: TPU slices as Cloud TPU names them (compile-only devices from libtpu), or this host's
CPU / GPU devices (memory only).

Spellings: `v5p-16` (v4 / v5p count TensorCores: 2 per chip, so v5p-16 = 8 chips = `v5p:2x2x2`), `v6e-16`
and `v5litepod-16` / `v5e-16` (count chips: `v6e:4x4`), or the shape itself `v5p:2x2x2`, `v6e:4x4`,
`v4:2x2x1`, `v5e:2x2`; `num_slices` > 1 adds slices joined by DCN. `cpu` / `gpu`: the local devices.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
    """Per-chip figures from the Cloud TPU documentation (bf16 dense peak; HBM; ICI per chip, all links)."""

    generation: str
    hbm_bytes: float
    peak_flops: float
    hbm_bytes_per_s: float
    ici_bytes_per_s: float
    cores_per_chip: int  # TensorCores a Cloud name counts per chip (v4, v5p: 2)
    dims: int  # torus dimensions


CHIPS = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1228e9, 300e9, 2, 3),
    "v5p": Chip("v5p", 95 * GIB, 459e12, 2765e9, 600e9, 2, 3),
    "v5e": Chip("v5e", 16e9, 197e12, 819e9, 200e9, 1, 2),
    "v6e": Chip("v6e", 31.25 * GIB, 918e12, 1640e9, 448e9, 1, 2),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e"}
ACCELERATOR_TYPE = {"v4": "v4", "v5p": "v5p", "v5e": "v5litepod", "v6e": "v6e"}
DCN_BYTES_PER_S = 25e9  # per host, an assumption (200 Gb/s NICs); printed with every multi-slice report


@dataclasses.dataclass(frozen=True)
class Target:
    """What to compile for: a TPU slice shape (x num_slices) or the local `cpu` / `gpu` devices."""

    platform: str  # tpu | cpu | gpu
    chip: Chip | None = None
    shape: tuple[int, ...] = ()  # chips per torus dimension of one slice
    num_slices: int = 1

    @property
    def chips(self) -> int:
        return math.prod(self.shape) * self.num_slices if self.shape else 0

    @property
    def name(self) -> str:
        if self.platform != "tpu":
            return self.platform
        s = f"{self.chip.generation}:{'x'.join(map(str, self.shape))}"
        return s + (f" x {self.num_slices} slices" if self.num_slices > 1 else "")

    @property
    def cloud_name(self) -> str:
        """The accelerator type of one slice as Cloud TPU spells it (TPU_ACCELERATOR_TYPE)."""
        n = math.prod(self.shape) * self.chip.cores_per_chip
        return f"{ACCELERATOR_TYPE[self.chip.generation]}-{n}"


def parse_target(spec: str, num_slices: int = 1) -> Target:
    """'v5p-16' | 'v5p:2x2x2' | 'v6e-16' | 'v6e:4x4' | 'v5litepod-8' | 'v4-8' | 'cpu' | 'gpu' -> Target."""
    s = spec.strip().lower()
    if s in ("cpu", "gpu"):
        if num_slices != 1:
            raise ValueError(f"--num_slices={num_slices}: only TPU targets have slices")
        return Target(s)
    if num_slices < 1:
        raise ValueError(f"--num_slices={num_slices}: must be >= 1")
    m = re.fullmatch(r"([a-z0-9]+?)(?:[-:])(.+)", s)
    gen = ALIASES.get(m.group(1), m.group(1)) if m else None
    if gen not in CHIPS:
        raise ValueError(
            f"--topology={spec!r}: expected cpu, gpu or a TPU slice such as v5p-16, v5p:2x2x2, v6e-16, "
            f"v6e:4x4, v5litepod-8, v4-8 (generations {sorted(CHIPS)})"
        )
    chip, rest = CHIPS[gen], m.group(2)
    if re.fullmatch(r"\d+(x\d+)+", rest):
        shape = tuple(int(x) for x in rest.split("x"))
        if len(shape) != chip.dims:
            raise ValueError(f"--topology={spec!r}: {gen} slices have {chip.dims} dimensions")
    elif rest.isdigit():
        n = int(rest)
        if n % chip.cores_per_chip:
            raise ValueError(
                f"--topology={spec!r}: {gen}-N counts TensorCores ({chip.cores_per_chip} per chip)"
            )
        shape = default_shape(gen, n // chip.cores_per_chip)
    else:
        raise ValueError(f"--topology={spec!r}: cannot read the slice size {rest!r}")
    return Target("tpu", chip, shape, num_slices)


def default_shape(gen: str, chips: int) -> tuple[int, ...]:
    """Cloud TPU's slice shape for `chips` chips: 3-D (v4, v5p) from 2x2x1 doubling the smallest dimension
    (the last among equals: 2x2x2, 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...); 2-D (v5e, v6e) 1x1, 2x2, 2x4, 4x4, 4x8."""
    if chips < 1 or chips & (chips - 1):
        raise ValueError(f"{gen}: {chips} chips is not a power of two; give the shape (e.g. {gen}:2x2x2)")
    dims = [2, 2, 1] if CHIPS[gen].dims == 3 else [1, 1]
    if chips < math.prod(dims):
        return {1: (1, 1, 1), 2: (1, 2, 1)}[chips] if len(dims) == 3 else (1, 1)
    while math.prod(dims) < chips:
        i = max(j for j in range(len(dims)) if dims[j] == min(dims))
        dims[i] *= 2
    return tuple(dims)


def prepare_environment(target: Target) -> None:
    """Environment libtpu needs to compile without a TPU (read when its plugin first loads): jax on the
    CPU, the accelerator type, a worker list, and leave to share the machine with other libtpu users."""
    if target.platform != "tpu":
        return
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["TPU_ACCELERATOR_TYPE"] = target.cloud_name
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    import jax

    jax.config.update("jax_platforms", "cpu")


def devices(target: Target) -> list:
    """The devices to build the mesh from: compile-only TPU devices for a slice, else the local ones."""
    import jax

    if target.platform != "tpu":
        return list(jax.devices(target.platform))
    try:
        import libtpu  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            "compiling for TPU needs libtpu (the version jax is built against): pip install -e '.[tpu]' "
            f"(libtpu==0.0.42.1 for jax 0.10.2); import failed: {e}"
        ) from e
    from jax.experimental import topologies

    prepare_environment(target)
    topo_name = f"{target.chip.generation}:{'x'.join(map(str, target.shape))}"
    kw = {"num_slices": target.num_slices} if target.num_slices > 1 else {}
    return list(topologies.get_topology_desc(topology_name=topo_name, platform="tpu", **kw).devices)


def hbm_per_device(target: Target, devs: list) -> float | None:
    """HBM of one device: the chip's, split over the devices a chip shows (v4 without megacore: 2)."""
    if target.platform == "tpu":
        return target.chip.hbm_bytes * target.chips / len(devs)
    stats = getattr(devs[0], "memory_stats", lambda: None)()
    return float(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None
