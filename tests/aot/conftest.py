"""The AOT tool sets libtpu's environment (TPU_ACCELERATOR_TYPE, TPU_WORKER_HOSTNAMES, ...) in its own process,
as a user's `scripts/aot.py` run should; in the test process it must not leak into later tests (the trainer
would take TPU_WORKER_HOSTNAMES for a pod and call jax.distributed.initialize)."""

import os

import pytest


@pytest.fixture(autouse=True)
def restore_environment():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
