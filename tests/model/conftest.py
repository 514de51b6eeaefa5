"""A tiny random HF checkpoint (with tokenizer and preprocessor config) shared by the model tests."""
import pytest

from lingshu_jax.testing.hf_models import write_tiny_hf_dir


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    return write_tiny_hf_dir(str(tmp_path_factory.mktemp("tiny_hf")), "tiny", seed=0)
