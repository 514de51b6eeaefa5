"""Suite-wide test setup: 8 simulated CPU devices (meshes), exact float32 matmuls, a shared tiny HF model, and
one persistent XLA compilation cache for the whole run.

The cache is shared by the run's processes (pytest-xdist workers and the scripts and workers that tests
start), so a program is compiled once per run: the demo's train step, say, which every run of a kill /
resume test compiles again. An executable read back from the cache is the one the compiler made, so
results are unchanged; only programs that took at least a second to compile are stored (jax's default).
"""

import os
import shutil
import tempfile

# Must happen before JAX initialises its backends (and is inherited by every process a test starts).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set by the controller for its xdist workers, or by you
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE = tempfile.mkdtemp(prefix="lingshu_test_xla_cache_")
else:
    _OWN_CACHE = None
# A size limit makes jax read and write entries under a file lock: safe with several processes at once.
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL checkpoint saved like a Hub model (weights, config, tokenizer, processor)."""
    from lingshu_jax.testing.hf_models import write_tiny_hf_dir

    return write_tiny_hf_dir(str(tmp_path_factory.mktemp("tiny_hf")), "tiny", seed=0)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None and not hasattr(config, "workerinput"):  # the process that made it
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
