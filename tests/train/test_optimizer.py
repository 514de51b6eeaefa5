"""Grouped AdamW: regex groups, frozen groups without state, exact per-group learning rates, decay mask,
clipping over trainable gradients only, and config errors before compilation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lingshu_jax.train.optimizer import FROZEN, decays, lingshu_groups, make_optimizer, param_paths, path_str

# A hand-made tree with docs/DESIGN.md names (layers stacked on axis 0), tiny shapes.
_SHAPES = {
    "visual": {
        "patch_embed": {"kernel": (12, 4)},
        "blocks": {
            "norm1": {"scale": (2, 4)},
            "attn": {"qkv": {"kernel": (2, 4, 12), "bias": (2, 12)}},
            "mlp": {"down_proj": {"kernel": (2, 6, 4), "bias": (2, 4)}},
        },
        "merger": {
            "ln_q": {"scale": (4,)},
            "mlp_0": {"kernel": (16, 16), "bias": (16,)},
            "mlp_2": {"kernel": (16, 8), "bias": (8,)},
        },
    },
    "model": {
        "embed_tokens": {"embedding": (10, 8)},
        "layers": {
            "input_layernorm": {"scale": (2, 8)},
            "self_attn": {"q_proj": {"kernel": (2, 8, 8), "bias": (2, 8)}, "o_proj": {"kernel": (2, 8, 8)}},
            "mlp": {"gate_proj": {"kernel": (2, 8, 12)}},
        },
        "norm": {"scale": (8,)},
    },
    "lm_head": {"kernel": (8, 10)},
}
_STAGE_LRS = {"merger": 1e-5, "vit": 2e-6, "llm": 1e-5}


def _params(seed=0, tied=False, fill=None):
    shapes = {k: v for k, v in _SHAPES.items() if not (tied and k == "lm_head")}
    rng = np.random.default_rng(seed)
    make = lambda s: (
        jnp.full(s, fill, jnp.float32) if fill is not None else jnp.asarray(rng.normal(size=s), jnp.float32)
    )
    return jax.tree.map(make, shapes, is_leaf=lambda x: isinstance(x, tuple))


def _cfg(groups, **kw):
    base = dict(name="adamw", b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None, groups=groups)
    base.update(kw)
    return base


def _exact_cfg(groups, **kw):
    """b1 = b2 = eps = 0: with unit gradients Adam's direction is exactly 1, so the update is -lr."""
    return _cfg(groups, b1=0.0, b2=0.0, eps=0.0, **kw)


def _flat(tree):
    return dict(zip(param_paths(tree), jax.tree.leaves(tree)))


def _moments(opt_state):
    """(Adam states, [(param path, leaf)] of every mu and nu, MaskedNode leaves included, mu first)."""
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
    adams = [x for x in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(x)]
    out = []
    for tree in [a.mu for a in adams] + [a.nu for a in adams]:
        leaves, _ = jax.tree_util.tree_flatten_with_path(
            tree, is_leaf=lambda x: isinstance(x, optax.MaskedNode)
        )
        out += [(path_str(kp), leaf) for kp, leaf in leaves]
    return adams, out


def test_lingshu_stage2_groups_first_match_wins():
    params = _params()
    tx, info = make_optimizer(_cfg(lingshu_groups(2, total_steps=1000)), params)
    assert info.group_of["visual/merger/mlp_0/kernel"] == "merger"
    assert info.group_of["visual/merger/ln_q/scale"] == "merger"
    assert info.group_of["visual/patch_embed/kernel"] == "vit"
    assert info.group_of["visual/blocks/attn/qkv/bias"] == "vit"
    assert info.group_of["model/embed_tokens/embedding"] == "llm"
    assert info.group_of["lm_head/kernel"] == "llm"
    assert info.frozen_groups == ()
    assert set(info.current_lrs(100)) == {"merger", "vit", "llm"}
    assert info.current_lrs(100) == pytest.approx(_STAGE_LRS, rel=1e-6)  # end of the 100-step warmup
    assert info.current_lrs(50) == pytest.approx({k: v / 2 for k, v in _STAGE_LRS.items()}, rel=1e-6)
    assert sum(info.num_params.values()) == sum(x.size for x in jax.tree.leaves(params))
    assert "merger" in info.summary() and "llm" in info.summary()


def test_stage1_frozen_llm_allocates_zero_bytes_of_moments():
    params = _params()
    tx, info = make_optimizer(_cfg(lingshu_groups(1, total_steps=10, warmup_steps=2)), params)
    assert info.frozen_groups == ("llm",)
    assert set(info.current_lrs(0)) == {"merger", "vit"}
    state = tx.init(params)
    adams, moments = _moments(state)
    assert len(adams) == 2  # one AdamW per trainable group, none for the frozen group
    flat = _flat(params)
    frozen = {p for p, g in info.group_of.items() if g == "llm"}
    assert frozen and all(p.startswith(("model/", "lm_head/")) for p in frozen)
    frozen_bytes = sum(
        leaf.nbytes for p, leaf in moments if p in frozen and not isinstance(leaf, optax.MaskedNode)
    )
    assert frozen_bytes == 0
    for p, leaf in moments:  # every frozen parameter appears as a MaskedNode in every Adam state
        if p in frozen:
            assert isinstance(leaf, optax.MaskedNode), p
    trainable_bytes = sum(x.nbytes for p, x in flat.items() if p not in frozen)
    total = sum(leaf.nbytes for _, leaf in moments if not isinstance(leaf, optax.MaskedNode))
    assert total == 2 * trainable_bytes  # mu and nu, once per trainable parameter


def test_frozen_params_bit_identical_after_several_updates():
    params = _params(seed=1)
    tx, info = make_optimizer(
        _cfg(lingshu_groups(1, total_steps=10, warmup_steps=2), weight_decay=0.1, clip_norm=1.0), params
    )
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    new = params
    for i in range(4):
        new, state = step(new, state, _params(seed=10 + i))  # random gradients, frozen ones included
    before, after = _flat(params), _flat(new)
    for p, g in info.group_of.items():
        same = np.array_equal(np.asarray(before[p]).view(np.uint32), np.asarray(after[p]).view(np.uint32))
        assert same == (g == "llm"), p


def test_per_group_lr_follows_schedule_exactly():
    groups = [
        ("visual/merger/.*", {"type": "cosine", "peak": 1e-2, "warmup_steps": 2, "total_steps": 6}, "merger"),
        (
            "visual/.*",
            {
                "type": "linear",
                "peak": 3e-3,
                "warmup_steps": 1,
                "total_steps": 5,
                "end_value": 1e-4,
                "init_value": 1e-3,
            },
            "vit",
        ),
        (".*", None, "llm"),
    ]
    params = _params()
    tx, info = make_optimizer(_exact_cfg(groups), params)
    state = tx.init(params)
    ones = jax.tree.map(jnp.ones_like, params)
    update = tx.update  # eager, like the schedule evaluations below, so both round the same way
    for k in range(7):  # warmup, decay, and the end of the merger's schedule (step 6)
        from_state = info.lrs_from_state(state)
        updates, state = update(ones, state, params)
        lrs = info.current_lrs(k)
        for p, u in _flat(updates).items():
            g = info.group_of[p]
            want = 0.0 if g == "llm" else -np.float32(info.schedules[g](jnp.int32(k)))
            assert np.all(np.asarray(u) == want), (k, p)
            if g != "llm":
                assert np.float32(lrs[g]) == -want and np.float32(from_state[g]) == -want
    # And the schedules are the configured ones (hand values).
    assert info.current_lrs(0) == pytest.approx({"merger": 0.0, "vit": 1e-3}, abs=1e-9)
    assert info.current_lrs(4) == pytest.approx({"merger": 5e-3, "vit": 3e-3 - 2.9e-3 * 0.75}, rel=1e-6)


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_weight_decay_mask_skips_scale_bias_and_embedding(decay_embeddings):
    wd, lr, p0 = 0.1, 0.5, 2.0
    params = _params(fill=p0)
    tx, info = make_optimizer(
        _exact_cfg(
            [(".*", {"type": "constant", "peak": lr}, "all")],
            weight_decay=wd,
            decay_embeddings=decay_embeddings,
        ),
        params,
    )
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    got = {p: float(np.asarray(u).flat[0]) for p, u in _flat(updates).items()}
    no_decay = {p for p in got if p.endswith(("/scale", "/bias"))}
    if not decay_embeddings:
        no_decay.add("model/embed_tokens/embedding")
    assert "visual/blocks/norm1/scale" in no_decay and "model/norm/scale" in no_decay
    for p, u in got.items():
        want = -lr * (1.0 if p in no_decay else 1.0 + wd * p0)
        assert u == pytest.approx(want, rel=1e-6), p
    assert _flat(info.decay_mask) == {p: p not in no_decay for p in got}
    assert decays("lm_head/kernel") and decays("model/layers/mlp/gate_proj/kernel")


def test_clip_norm_counts_trainable_grads_only():
    params = _params()
    tx, info = make_optimizer(_cfg(lingshu_groups(1, total_steps=200), b1=0.0, clip_norm=1.0), params)
    trainable = [p for p, g in info.group_of.items() if g != "llm"]
    n_train = sum(_flat(params)[p].size for p in trainable)
    for norm in (0.5, 2.0):  # global norm of the trainable gradients; the frozen ones are huge
        g_val = norm / np.sqrt(n_train)
        grads = jax.tree_util.tree_map_with_path(
            lambda kp, p, g=g_val: jnp.full(p.shape, 100.0 if info.group_of[path_str(kp)] == "llm" else g),
            params,
        )
        _, state = tx.update(grads, tx.init(params), params)
        adams, _ = _moments(state)
        mu = jax.tree.leaves([a.mu for a in adams])  # b1 = 0: mu is the clipped gradient
        assert sum(m.size for m in mu) == n_train
        np.testing.assert_allclose(
            np.concatenate([np.ravel(m) for m in mu]), g_val * min(1.0, 1.0 / norm), rtol=1e-5
        )


def test_base_schedule_and_float_peaks_and_configdict():
    params = _params()
    cfg = ml_collections.ConfigDict(_cfg([("visual/.*", 2e-6, "vision"), (".*", 1e-5, "text")]))
    cfg.schedule = {"type": "cosine", "warmup_steps": 10, "total_steps": 100}
    _, info = make_optimizer(cfg, params)
    assert info.current_lrs(10) == pytest.approx({"vision": 2e-6, "text": 1e-5}, rel=1e-6)
    assert info.current_lrs(100) == pytest.approx({"vision": 0.0, "text": 0.0}, abs=1e-12)


def test_tied_tree_without_lm_head_works_with_lingshu_groups():
    _, info = make_optimizer(_cfg(lingshu_groups(3, total_steps=200)), _params(tied=True))
    assert "lm_head/kernel" not in info.group_of and info.group_of["model/norm/scale"] == "llm"


def test_default_group_takes_unmatched_params():
    params = _params()
    _, info = make_optimizer(_cfg([("visual/.*", 1e-5, "vision")], default_group=FROZEN), params)
    assert info.group_of["lm_head/kernel"] == FROZEN and info.frozen_groups == (FROZEN,)
    _, info = make_optimizer(
        _cfg([("visual/.*", 1e-5, "vision"), ("lm_head/.*", 1e-4, "head")], default_group="vision"), params
    )
    assert info.group_of["model/norm/scale"] == "vision" and info.group_of["lm_head/kernel"] == "head"


@pytest.mark.parametrize(
    "cfg_kw, msg",
    [
        (dict(groups=[("visual/.*", 1e-5), ("vision_tower/.*", 1e-5), (".*", None)]), r"'vision_tower/\.\*'"),
        (dict(groups=[("visual/.*", 1e-5), ("model/.*", 1e-5)]), "lm_head/kernel"),
        (dict(groups=[(".*", 1e-5), ("visual/.*", None)]), r"taken by an earlier group"),
        (dict(groups=[("visual/(", 1e-5)]), "invalid regex"),
        (dict(groups=[(".*", None)]), "nothing to train"),
        (
            dict(
                groups=[(".*", {"type": "cosine", "peak": 1e-5})],
            ),
            "total_steps",
        ),
        (dict(groups=[(".*", 1e-5)], name="sgd"), "adamw"),
        (dict(groups=[(".*", 1e-5)], clipnorm=1.0), "clipnorm"),
        (dict(groups=[("visual/.*", 1e-5)], default_group="nope"), "nope"),
        (dict(groups=[("visual/.*", 1e-5, "a"), (".*", 1e-5, "a")]), "duplicate"),
    ],
)
def test_config_errors_raise_before_compiling(cfg_kw, msg):
    with pytest.raises(ValueError, match=msg):
        make_optimizer(_cfg(**cfg_kw), _params())


def test_lingshu_groups_table5():
    s1, s2 = lingshu_groups(1, total_steps=50), lingshu_groups(2, total_steps=50)
    assert [g[2] for g in s1] == ["merger", "vit", "llm"]
    assert s1[2][1] is None and s2[2][1]["peak"] == 1e-5
    assert s1[0][1] == {"type": "cosine", "warmup_steps": 100, "total_steps": 50, "peak": 1e-5}
    assert s1[1][1]["peak"] == 2e-6
    with pytest.raises(ValueError, match="stage"):
        lingshu_groups(4)
