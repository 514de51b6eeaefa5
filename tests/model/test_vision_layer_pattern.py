"""The vision tower's layer pattern is static: runs of same-type blocks, no `cond` in any scan."""

import jax
import jax.extend
import numpy as np

from lingshu_jax.model.config import preset
from lingshu_jax.model.vision import layer_runs
from lingshu_jax.model.vlm import Qwen25VL, dummy_batch, init_params


def test_layer_runs_of_qwen25vl_pattern():
    runs = layer_runs(32, (7, 15, 23, 31))
    assert runs[:3] == [(0, 7, False), (7, 8, True), (8, 15, False)] and runs[-1] == (31, 32, True)
    assert len(runs) == 8 and sum(stop - start for start, stop, _ in runs) == 32


def test_layer_runs_first_and_consecutive_full_blocks():
    assert layer_runs(5, (0, 1, 4)) == [(0, 2, True), (2, 4, False), (4, 5, True)]
    assert layer_runs(3, ()) == [(0, 3, False)]


def _primitives(jaxpr, out):
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _primitives(sub, out)
    return out


def test_forward_and_backward_have_no_cond():
    config = preset("tiny")
    params = init_params(config, jax.random.key(0))
    batch = {k: np.asarray(v) for k, v in dummy_batch(config).items()}
    loss = lambda p: Qwen25VL(config).apply({"params": p}, batch)[0].astype("float32").sum()  # noqa: E731
    prims = _primitives(jax.make_jaxpr(jax.grad(loss))(params).jaxpr, set())
    assert "scan" in prims and "cond" not in prims
