"""Input pipeline: grain sources, conversation formats, per-sample transforms, multimodal packing,
mixtures, bad-input policy and checkpointable iterators. Entry point: `make_pipeline`."""

from lingshu_jax.data.config import DataConfig, SourceConfig
from lingshu_jax.data.errors import DataError, ErrorPolicy
from lingshu_jax.data.ops import Ops
from lingshu_jax.data.packing import BatchBuilder, packing_efficiency, unpack_batch
from lingshu_jax.data.pipeline import (
    PipelineIterator,
    make_dataset,
    make_pipeline,
    restore_args,
    restore_state,
    save_args,
    save_state,
)

__all__ = [
    "DataConfig",
    "SourceConfig",
    "DataError",
    "ErrorPolicy",
    "Ops",
    "BatchBuilder",
    "packing_efficiency",
    "unpack_batch",
    "PipelineIterator",
    "make_dataset",
    "make_pipeline",
    "restore_args",
    "restore_state",
    "save_args",
    "save_state",
]
