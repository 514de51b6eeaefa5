"""Suite-wide test setup: 8 simulated CPU devices (meshes), exact float32 matmuls, a shared tiny HF model."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL checkpoint saved like a Hub model (weights, config, tokenizer, processor)."""
    from lingshu_jax.testing.hf_models import write_tiny_hf_dir

    return write_tiny_hf_dir(str(tmp_path_factory.mktemp("tiny_hf")), "tiny", seed=0)
