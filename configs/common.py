"""Pieces shared by the experiment configs: argument parsing and the base ConfigDict."""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'stage=2,steps=50' -> ConfigDict(stage=2, steps=50, ...) with types taken from the defaults."""
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"config argument {key!r}: known arguments are {sorted(defaults)}")
        kind = type(defaults[key])
        out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return out


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""  # HF directory, lingshu-jax checkpoint, or a previous stage's workdir
    c.assets_dir = ""  # tokenizer + preprocessor files (default: those of init_from)
    c.export_hf = ""  # write a Hugging Face directory here at the end
    c.prepare_demo_data = ""  # build the embedded demo data into this directory first
    # glibc malloc: "auto" keeps freed memory for reuse on a CPU-only host (lingshu_jax/host_memory.py),
    # "keep" always, "default" never
    c.host_malloc = "auto"
    c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1, "sequence": 1})
    # Multi-slice: mesh axis -> number of slices along it, joined by DCN (e.g. --config.mesh.dcn.data=2);
    # the axes above then describe one slice.
    c.mesh.dcn = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1, "sequence": 1})
    c.sharding_rules = ml_collections.config_dict.placeholder(list)
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    c.train = ml_collections.ConfigDict(
        {
            "total_steps": 100,
            "grad_accum": 1,
            "log_every": 10,
            "checkpoint_every": 50,
            "keep_checkpoints": 2,
            "keep_best": 0,
            "best_metric": "eval/accuracy",
            "checkpoint_initial": False,
            "max_bad_steps": 10,
            "progress": True,
            "peak_flops_per_device": 0.0,
        }
    )
    return c


def adamw(groups, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=1.0) -> dict:
    """`config.optim` for AdamW with global-norm clipping; `groups` as `train.optimizer.make_optimizer`
    takes them: ((regex, schedule, name), ...)."""
    return {
        "name": "adamw",
        "b1": b1,
        "b2": b2,
        "eps": eps,
        "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "groups": groups,
    }
