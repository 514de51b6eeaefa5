"""AdamW with big_vision-style per-module groups: `[(regex, schedule or None), ...]`, None = frozen.

Config (`config.optim`, a ConfigDict or dict)::

    name: "adamw"
    b1: 0.9, b2: 0.999, eps: 1e-8, weight_decay: 0.0, mu_dtype: None (float32)
    clip_norm: 1.0            # global-norm clipping over the trainable gradients only; None/0 = off
    decay_embeddings: False   # weight decay on `*/embedding` tables (never on `scale` or `bias`)
    schedule: {...}           # optional base schedule config, merged under every group's own config
    groups: [(regex, schedule_cfg | float | None[, name]), ...]
    default_group: None       # name of the group that takes unmatched parameters ("frozen": freeze them)

Parameter paths are the '/'-joined keys of the `params` collection (docs/DESIGN.md), e.g.
`visual/merger/mlp_0/kernel`, `model/layers/self_attn/q_proj/kernel`, `lm_head/kernel`. Each parameter
belongs to the first group whose regex `re.fullmatch`es its path. A group's name defaults to its regex.

The transformation (`tx.update(grads, state, params)`; `params` is required for weight decay)::

    chain(masked(clip_by_global_norm(clip_norm), trainable),          # frozen grads never enter the norm
          multi_transform({group: adamw(schedule_group, mask=decays)   # one AdamW per trainable group
                           frozen_group: set_to_zero()}, labels))

Adam's moments are float32 whatever the parameters' dtype (`mu_dtype` may set the first moment's, e.g.
"bfloat16" to save memory): the state is initialised from float32 placeholders of the parameters, so its
dtypes are those the first update produces from float32 gradients, and a jitted step's state keeps its
avals (no recompilation at step 2; with bf16 parameters optax would otherwise start with bf16 moments and
return a float32 `mu`).

`multi_transform` masks each group's AdamW, so its moments hold `optax.MaskedNode` (no memory) for every
parameter outside the group: frozen parameters get no optimizer state at all, and their update is exactly
zero. Decoupled weight decay as in PyTorch's AdamW: ``p -= lr * (adam_update + wd * p)``.
Errors are raised before anything compiles: a bad regex, a group matching no parameter, a parameter in no
group, an unknown key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from lingshu_jax.train import schedules

FROZEN = "frozen"
_KEYS = (
    "name",
    "b1",
    "b2",
    "eps",
    "weight_decay",
    "mu_dtype",
    "clip_norm",
    "decay_embeddings",
    "schedule",
    "groups",
    "default_group",
)
_NO_DECAY_LEAVES = ("scale", "bias")


# ------------------------------------------------------------------------------ paths and groups
def path_str(keypath: Sequence[Any]) -> str:
    """'/'-joined parameter path from a `jax.tree_util` key path (dict keys, attributes, indices)."""
    parts = []
    for k in keypath:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def param_paths(params: Any) -> list[str]:
    """All parameter paths of a tree (arrays or `jax.ShapeDtypeStruct`s), in tree order."""
    return [path_str(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


@dataclasses.dataclass(frozen=True)
class Group:
    """One parameter group: a regex, its schedule config (None = frozen) and a name for logging."""

    name: str
    regex: str
    schedule: Any  # schedule config for `schedules.make_schedule`, or None

    @property
    def frozen(self) -> bool:
        return self.schedule is None


def parse_groups(
    groups: Sequence[Sequence[Any]], base_schedule: Optional[Mapping[str, Any]] = None
) -> list[Group]:
    """`[(regex, sched | float | None[, name])]` -> Groups. A float is a peak learning rate: with a base
    schedule it replaces the base's `peak`, without one it is a constant learning rate."""
    base = schedules.as_dict(base_schedule) if base_schedule is not None else None
    out, names = [], set()
    for i, g in enumerate(groups or ()):
        if not isinstance(g, (tuple, list)) or len(g) not in (2, 3):
            raise ValueError(f"optim.groups[{i}]={g!r}: expected (regex, schedule or None[, name])")
        regex, sched = g[0], g[1]
        try:
            re.compile(regex)
        except (re.error, TypeError) as e:
            raise ValueError(f"optim.groups[{i}]: invalid regex {regex!r}: {e}") from None
        name = str(g[2]) if len(g) == 3 else regex
        if name in names:
            raise ValueError(f"optim.groups[{i}]: duplicate group name {name!r}")
        names.add(name)
        if sched is not None and base is not None:
            own = {"peak": float(sched)} if isinstance(sched, (int, float)) else schedules.as_dict(sched)
            sched = {**base, **own}
        if sched is not None:
            try:
                schedules.resolve(sched)  # validate now, naming the group
            except ValueError as e:
                raise ValueError(f"optim.groups[{i}] (group {name!r}): {e}") from None
        out.append(Group(name, regex, sched))
    if not out:
        raise ValueError("optim.groups is empty: give at least one (regex, schedule) pair, e.g. ('.*', 1e-5)")
    return out


def assign_groups(
    paths: Sequence[str], groups: Sequence[Group], default_group: Optional[str] = None
) -> dict[str, str]:
    """{param path: group name}; the first group whose regex fullmatches wins. Raises ValueError naming a
    regex that matches no parameter (or only parameters taken by earlier groups) and unmatched params."""
    compiled = [(g, re.compile(g.regex)) for g in groups]
    group_of, matched_any, unmatched = {}, {g.name: False for g in groups}, []
    for p in paths:
        hits = [g for g, rx in compiled if rx.fullmatch(p)]
        for g in hits:
            matched_any[g.name] = True
        if hits:
            group_of[p] = hits[0].name
        else:
            unmatched.append(p)
    taken = set(group_of.values())
    for g in groups:
        if not matched_any[g.name]:
            raise ValueError(
                f"optim.groups: regex {g.regex!r} (group {g.name!r}) matches no parameter; "
                f"parameter paths look like {list(paths[:4])}"
            )
        if g.name not in taken:
            raise ValueError(
                f"optim.groups: every parameter regex {g.regex!r} (group {g.name!r}) matches is "
                "taken by an earlier group (first match wins)"
            )
    if unmatched:
        if default_group is None:
            raise ValueError(
                f"optim.groups: {len(unmatched)} parameter(s) match no group, e.g. {unmatched[:5]}; "
                "add a group or set optim.default_group"
            )
        if default_group != FROZEN and default_group not in matched_any:
            raise ValueError(f"optim.default_group={default_group!r} is not a group name nor {FROZEN!r}")
        group_of.update({p: default_group for p in unmatched})
    return group_of


def decays(path: str, decay_embeddings: bool = False) -> bool:
    """Weight-decay rule: no decay on norm scales and biases (by leaf name: stacked layers make them 2-D),
    nor on embedding tables unless `decay_embeddings`."""
    leaf = path.rsplit("/", 1)[-1]
    if leaf in _NO_DECAY_LEAVES:
        return False
    return decay_embeddings or leaf != "embedding"


# ------------------------------------------------------------------------------ info
@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
    """What `make_optimizer` decided. `labels` / `trainable_mask` / `decay_mask` are trees shaped like
    params (group name / bool leaves); `schedules` holds one optax schedule per trainable group."""

    group_of: dict[str, str]
    groups: tuple[Group, ...]
    frozen_groups: tuple[str, ...]
    schedules: dict[str, optax.Schedule]
    labels: Any
    trainable_mask: Any
    decay_mask: Any
    num_params: dict[str, int]

    def current_lrs(self, step) -> dict[str, Any]:
        """{trainable group: learning rate of the update with count `step`} (step 0 = first update).
        Works on Python ints (returns floats) and on traced step arrays inside jit."""
        out = {name: s(step) for name, s in self.schedules.items()}
        return {k: float(v) for k, v in out.items()} if isinstance(step, int) else out

    def lrs_from_state(self, opt_state) -> dict[str, Any]:
        """{trainable group: learning rate the next update will use}, read from each group's Adam count."""
        inner = opt_state[1].inner_states
        out = {}
        for name, s in self.schedules.items():
            adam = [x for x in jax.tree.leaves(inner[name], is_leaf=_is_adam) if _is_adam(x)]
            out[name] = s(adam[0].count)
        return out

    def summary(self) -> str:
        lines = [f"{'group':<12} {'params':>14}  lr peak"]
        for g in self.groups:
            lr = "frozen" if g.frozen else f"{schedules.peak_value(g.schedule):.3g}"
            lines.append(f"{g.name:<12} {self.num_params.get(g.name, 0):>14,}  {lr}")
        if FROZEN in self.num_params and FROZEN not in {g.name for g in self.groups}:
            lines.append(f"{FROZEN + ' (default)':<12} {self.num_params[FROZEN]:>14,}  frozen")
        return "\n".join(lines)


def _is_adam(x) -> bool:
    return isinstance(x, optax.ScaleByAdamState)


# ------------------------------------------------------------------------------ the optimizer
def float32_state(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its state initialised from float32 versions of the parameters (only shapes, dtypes and,
    under jit, shardings are read; the casts are dead code there). Adam's moments then start in the dtype
    the update keeps them in (float32 gradients), so `update` returns a state with the same avals."""

    def init(params):
        return tx.init(jax.tree.map(_as_float32, params))

    return optax.GradientTransformation(init, tx.update)


def state_shardings(tx: optax.GradientTransformation, params: Any, param_shardings: Any, default: Any) -> Any:
    """Shardings for `tx.init(params)` (a tree like the state): a leaf whose key path ends with a parameter's
    path and has its shape (Adam's mu and nu) takes that parameter's sharding, the rest (counts) `default`.

    Use as `jax.jit(tx.init, out_shardings=...)`: under jit the moments are zeros that depend on no input,
    so without it they come out replicated on every device, however the parameters are sharded."""
    shard_of = {
        path: (tuple(x.shape), s)
        for path, x, s in zip(param_paths(params), jax.tree.leaves(params), jax.tree.leaves(param_shardings))
    }

    def pick(keypath, leaf):
        parts = path_str(keypath).split("/")
        for i in range(len(parts)):
            hit = shard_of.get("/".join(parts[i:]))
            if hit is not None and hit[0] == tuple(leaf.shape):
                return hit[1]
        return default

    return jax.tree_util.tree_map_with_path(pick, jax.eval_shape(tx.init, params))


def _as_float32(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits >= 32:
        return x
    return x.astype(jnp.float32)


def make_optimizer(cfg: Any, params: Any) -> tuple[optax.GradientTransformation, OptimizerInfo]:
    """Builds the grouped AdamW for `params` (arrays or ShapeDtypeStructs: only paths/shapes are read).

    Returns (tx, info). Raises ValueError on any config problem, before compilation."""
    c = schedules.as_dict(cfg)
    unknown = sorted(set(c) - set(_KEYS))
    if unknown:
        raise ValueError(f"optim: unknown keys {unknown}; known: {list(_KEYS)}")
    if c.get("name", "adamw") != "adamw":
        raise ValueError(f"optim.name={c['name']!r}: only 'adamw' is supported")
    groups = parse_groups(c.get("groups"), c.get("schedule"))
    default = c.get("default_group")
    group_of = assign_groups(param_paths(params), groups, default)
    implicit = default == FROZEN and FROZEN not in {g.name for g in groups}
    frozen = tuple(g.name for g in groups if g.frozen) + ((FROZEN,) if implicit else ())
    if all(n in frozen for n in group_of.values()):
        raise ValueError("optim.groups: every parameter is frozen; nothing to train")
    decay_emb = bool(c.get("decay_embeddings", False))
    by_path = lambda fn: jax.tree_util.tree_map_with_path(lambda kp, _: fn(path_str(kp)), params)
    labels = by_path(group_of.__getitem__)
    trainable = by_path(lambda p: group_of[p] not in frozen)
    scheds = {g.name: schedules.make_schedule(g.schedule) for g in groups if not g.frozen}

    def decay_mask_fn(tree):  # called on trees whose out-of-group leaves are MaskedNode (no children)
        return jax.tree_util.tree_map_with_path(lambda kp, _: decays(path_str(kp), decay_emb), tree)

    transforms = {name: optax.set_to_zero() for name in frozen}
    for name, sched in scheds.items():
        transforms[name] = optax.adamw(
            learning_rate=sched,
            b1=float(c.get("b1", 0.9)),
            b2=float(c.get("b2", 0.999)),
            eps=float(c.get("eps", 1e-8)),
            weight_decay=float(c.get("weight_decay", 0.0)),
            mask=decay_mask_fn,
            mu_dtype=c.get("mu_dtype"),
        )
    clip = c.get("clip_norm")
    clip_tx = optax.masked(optax.clip_by_global_norm(float(clip)), trainable) if clip else optax.identity()
    tx = float32_state(optax.chain(clip_tx, optax.multi_transform(transforms, labels)))
    sizes = {p: math.prod(x.shape) for p, x in zip(param_paths(params), jax.tree.leaves(params))}
    num = {}
    for p, g in group_of.items():
        num[g] = num.get(g, 0) + sizes[p]
    info = OptimizerInfo(
        group_of=group_of,
        groups=tuple(groups),
        frozen_groups=frozen,
        schedules=scheds,
        labels=labels,
        trainable_mask=trainable,
        decay_mask=by_path(lambda p: group_of[p] not in frozen and decays(p, decay_emb)),
        num_params=num,
    )
    return tx, info


# ------------------------------------------------------------------------------ Lingshu presets
LINGSHU_REGEX = {"merger": r"visual/merger/.*", "vit": r"visual/.*", "llm": r"(model|lm_head)/.*"}


def lingshu_groups(
    stage: int, lr_llm: float = 1e-5, lr_vit: float = 2e-6, lr_proj: float = 1e-5, **schedule_kwargs
) -> list[tuple[str, Optional[dict], str]]:
    """Lingshu SFT groups (paper Table 5) as `[(regex, schedule_cfg | None, name)]`, first match wins:
    merger (projector, `visual/merger/*`) lr_proj, ViT (the rest of `visual/*`) lr_vit, LLM
    (`model/*` incl. embed_tokens, and `lm_head/*`) lr_llm.

    stage 1: LLM frozen (embedding and lm_head included); stages 2 and 3: everything trains.
    `schedule_kwargs` go into every group's schedule config (defaults: type='cosine', warmup_steps=100;
    give total_steps)."""
    if stage not in (1, 2, 3):
        raise ValueError(f"lingshu_groups: stage={stage!r}, expected 1, 2 or 3 (Table 5 SFT stages)")
    base = {"type": "cosine", "warmup_steps": 100, **schedule_kwargs}
    sched = lambda lr: {**base, "peak": float(lr)}
    return [
        (LINGSHU_REGEX["merger"], sched(lr_proj), "merger"),
        (LINGSHU_REGEX["vit"], sched(lr_vit), "vit"),
        (LINGSHU_REGEX["llm"], None if stage == 1 else sched(lr_llm), "llm"),
    ]
