"""Keep a CPU process's freed memory for reuse (glibc malloc: one arena, no mmap'd chunks, no trimming).

Why: XLA:CPU allocates a train step's temporaries afresh every step and frees them at its end. glibc serves
large blocks with mmap (always, for blocks over an XLA thread arena's 64 MiB), so every step maps, first-touches
and unmaps gigabytes: bench-100m's step (`scripts/benchmark.py --suite cpu`) takes ~975,000 page faults a step.
On a virtual machine whose freed pages go back to the host, each of those faults is much slower when the pages
were last used by another process: the step took 13-15 s (15 s of it system time) right after transformers'
step in the other benchmark process, 6.5 s right after one of its own. Kept in one arena without trimming, the
memory is reused: 0 faults a step, 0.2 s system time, 5.0 s (measured in docs/benchmark_cpu.md).

The price: the process's resident memory stays at its peak (it does not shrink after a step) and all threads
share one malloc arena. `configure("auto")` keeps memory only on a CPU-only host (no TPU / GPU device nodes,
or JAX_PLATFORMS=cpu), where the step's temporaries are host memory; accelerator hosts keep glibc's defaults.
Call it before JAX starts its backend: threads that already have an arena keep theirs.

One arena fragments now and then under XLA's pattern (a step whose heap grows by gigabytes,
docs/benchmark_cpu.md); `process_env("jemalloc")` gives a process about to start jemalloc with its freed
pages kept instead (the benchmark's `--malloc jemalloc`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

# The same settings for a process about to be started (read by glibc at process start).
KEEP_TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
MODES = ("auto", "keep", "default")

# jemalloc (a process about to start: LD_PRELOAD) keeping freed pages for reuse, never purged: no page
# faults for a step's temporaries, as "keep", and jemalloc's size classes do not fragment under XLA's
# pattern the way one glibc arena does (docs/benchmark_cpu.md).
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def jemalloc_library() -> str:
    """The path of libjemalloc.so.2: $LINGSHU_JEMALLOC, else the first of JEMALLOC_PATHS that exists.
    Raises FileNotFoundError saying how to get it."""
    given = os.environ.get("LINGSHU_JEMALLOC")
    if given:
        if not os.path.isfile(given):
            raise FileNotFoundError(f"LINGSHU_JEMALLOC={given}: no such file")
        return given
    for path in JEMALLOC_PATHS:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "jemalloc: libjemalloc.so.2 not found in " + ", ".join(JEMALLOC_PATHS) + "; install it "
        "(Debian/Ubuntu: apt install libjemalloc2) or set LINGSHU_JEMALLOC=/path/to/libjemalloc.so.2"
    )


def resolve_process_mode(mode: str) -> str:
    """ "auto" -> "jemalloc" where its library is found, else "keep"; other modes as they are."""
    if mode != "auto":
        return mode
    try:
        jemalloc_library()
    except FileNotFoundError:
        return "keep"
    return "jemalloc"


def process_env(mode: str) -> dict[str, str]:
    """Environment variables that give a process about to start this allocator setting: "default" (glibc
    as is), "keep" (glibc, `KEEP_TUNABLES`), "jemalloc" (preloaded, `JEMALLOC_CONF`)."""
    if mode == "default":
        return {}
    if mode == "keep":
        return {"GLIBC_TUNABLES": KEEP_TUNABLES}
    if mode == "jemalloc":
        return {"LD_PRELOAD": jemalloc_library(), "MALLOC_CONF": JEMALLOC_CONF}
    raise ValueError(f"malloc={mode!r}: expected default, keep or jemalloc")


# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def cpu_only_host() -> bool:
    """True when JAX will compute on the host CPU: JAX_PLATFORMS=cpu, or no TPU (/dev/accel*, /dev/vfio/*)
    and no NVIDIA GPU (/dev/nvidia[0-9]*) device nodes. Starts no JAX backend."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    accelerators = glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*") + glob.glob("/dev/nvidia[0-9]*")
    return not accelerators


def keep_freed_memory() -> bool:
    """Sets glibc's malloc to `KEEP_TUNABLES` at run time (mallopt); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl, macOS)
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim (mallopt(3))
    return all(mallopt(param, value) == 1 for param, value in settings)


def configure(mode: str = "auto") -> bool:
    """`mode` "keep": keep freed memory; "default": glibc's defaults; "auto": keep on a CPU-only host.
    Returns whether freed memory is kept."""
    if mode not in MODES:
        raise ValueError(f"host_malloc={mode!r}: expected one of {MODES}")
    if mode == "default" or (mode == "auto" and not cpu_only_host()):
        return False
    return keep_freed_memory()
