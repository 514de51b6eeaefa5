"""host_memory: glibc keeps freed memory (one arena, no mmap'd chunks, no trimming) when asked, and "auto"
decides by the host's accelerators without starting a JAX backend."""

import subprocess
import sys
import textwrap

import pytest

from lingshu_jax import host_memory

# Allocates and frees 256 MiB twice in a fresh process; prints the page faults of the second round.
_PROBE = textwrap.dedent(
    """
    import ctypes, resource, sys
    from lingshu_jax import host_memory
    if sys.argv[1] == "keep":
        assert host_memory.configure("keep")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def touch_and_free():
        p = libc.malloc(256 << 20)
        ctypes.memset(p, 1, 256 << 20)
        libc.free(p)
    touch_and_free()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch_and_free()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _second_round_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_kept_memory_is_reused_without_page_faults_and_glibc_defaults_fault_it_in_again():
    assert _second_round_faults("default") > 30_000  # 256 MiB of 4 KiB pages mapped again
    assert _second_round_faults("keep") < 1_000


def test_auto_keeps_memory_on_a_cpu_only_host_and_not_beside_an_accelerator(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert host_memory.cpu_only_host()
    monkeypatch.setenv("JAX_PLATFORMS", "tpu,cpu")
    assert not host_memory.cpu_only_host() and not host_memory.configure("auto")
    monkeypatch.delenv("JAX_PLATFORMS")
    monkeypatch.setattr(
        host_memory.glob, "glob", lambda pattern: ["/dev/accel0"] if "accel" in pattern else []
    )
    assert not host_memory.cpu_only_host()
    monkeypatch.setattr(host_memory.glob, "glob", lambda pattern: [])
    assert host_memory.cpu_only_host()
    assert not host_memory.configure("default")
    with pytest.raises(ValueError, match="host_malloc='always': expected one of"):
        host_memory.configure("always")


def test_process_env_names_each_allocator_setting_and_a_missing_jemalloc_says_how_to_get_it(
    monkeypatch, tmp_path
):
    assert host_memory.process_env("default") == {}
    assert host_memory.process_env("keep") == {"GLIBC_TUNABLES": host_memory.KEEP_TUNABLES}
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    monkeypatch.setenv("LINGSHU_JEMALLOC", str(library))
    assert host_memory.process_env("jemalloc") == {
        "LD_PRELOAD": str(library),
        "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
    }
    monkeypatch.setenv("LINGSHU_JEMALLOC", str(tmp_path / "nothing.so"))
    with pytest.raises(FileNotFoundError, match="LINGSHU_JEMALLOC=.*nothing.so: no such file"):
        host_memory.process_env("jemalloc")
    monkeypatch.delenv("LINGSHU_JEMALLOC")
    monkeypatch.setattr(host_memory, "JEMALLOC_PATHS", (str(tmp_path / "none" / "libjemalloc.so.2"),))
    with pytest.raises(FileNotFoundError, match="apt install libjemalloc2"):
        host_memory.process_env("jemalloc")
    with pytest.raises(ValueError, match="malloc='tcmalloc'"):
        host_memory.process_env("tcmalloc")


def test_auto_process_mode_is_jemalloc_where_found_else_keep(monkeypatch, tmp_path):
    monkeypatch.delenv("LINGSHU_JEMALLOC", raising=False)
    monkeypatch.setattr(host_memory, "JEMALLOC_PATHS", (str(tmp_path / "libjemalloc.so.2"),))
    assert host_memory.resolve_process_mode("auto") == "keep"
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert host_memory.resolve_process_mode("auto") == "jemalloc"
    assert host_memory.resolve_process_mode("default") == "default"
