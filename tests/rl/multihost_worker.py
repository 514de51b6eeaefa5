"""One process of a GRPO run over jax.distributed processes on 127.0.0.1 (driven by tests/rl/test_multihost.py):

python -m tests.rl.multihost_worker PORT PROCESS_ID NUM_PROCESSES LOCAL_DEVICES DATA_DIR WORKDIR [RESUMED_WORKDIR]

A random tiny model, prompts with one, two or no images, a graded reward plugin (so the untrained policy's
groups have non-zero advantages), 2 steps with a metrics row and a checkpoint each. Every process of a run
passes the same workdir (shared, as on a pod); process 0 writes the metrics. With RESUMED_WORKDIR the same
processes then run again there from WORKDIR's step-1 checkpoint: the resumed run's step 2.
"""

import json
import os
import shutil
import sys

STEPS = 2


def write_data(root: str) -> dict:
    """Prompts and tokenizer assets under `root`. 8 prompts, taken in file order: each step's 4 are two
    text-only prompts (host 0's block with two hosts: its generation and update batches carry an empty
    vision stream, host 1's carry images), one with two images and one with one image; so every step has
    the same shapes and each program compiles once."""
    from lingshu_jax.demo import write_demo_assets
    from tests.rl import toy

    images = toy.write_images(root, per_colour=2)
    records = []
    for i, (image, colour) in enumerate(images):
        n = (0, 0, 2, 1)[i % 4]
        records.append(
            {
                "messages": [
                    {"role": "user", "content": "<image>" * n + ("Colour?" if n else "Name a colour.")}
                ],
                "images": [image] * n,
                "answer": toy.LETTERS[colour],
                "question_type": "closed",
            }
        )
    with open(os.path.join(root, "rl.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return {"rl": os.path.join(root, "rl.jsonl"), "root": root, "assets": write_demo_assets(f"{root}/assets")}


def config(paths: dict, distributed: dict | None):
    from tests.rl import toy

    c = toy.rl_config(paths, "", STEPS, group_size=4, rollout_prompts=4, mini_batch_prompts=2)
    c.assets_dir = paths["assets"]
    c.mesh = {"fsdp": -1}
    c.train.log_every = 1
    c.train.checkpoint_every = 1  # step 1's checkpoint is what the resumed run starts from
    c.train.log_samples = 2
    c.data.shuffle = False
    c.rewards = (("test_text_length", 1.0), ("format", 0.5))
    c.reward_modules = ("tests.rl.plugins",)
    c.rl.update({"micro_batch_rows": 4, "max_new_tokens": 8, "rows_per_generate": 16, "epochs": 1})
    # buckets that give every step the same shapes: each program compiles once
    c.rl.update({"prompt_bucket": 64, "response_bucket": 8, "patch_bucket": 128, "check_logprobs": True})
    c.optim.groups = [(".*", {"type": "constant", "peak": 1e-2}, "policy")]  # large: steps must differ
    if distributed:
        c.distributed = distributed
    return c


def resume_from_step_1(paths: dict, workdir: str, resumed: str):
    """`workdir`'s step-1 checkpoint (state, prompt position) copied into `resumed` by process 0, then the
    same command there: every process restores step 1 and runs step 2. The processes stay joined
    (jax.distributed is initialised once per process), so the config has no `distributed` this time."""
    import jax
    from jax.experimental import multihost_utils

    from lingshu_jax.rl.trainer import train

    if jax.process_index() == 0:
        shutil.copytree(os.path.join(workdir, "checkpoints", "1"), os.path.join(resumed, "checkpoints", "1"))
    multihost_utils.sync_global_devices("step-1 checkpoint copied")
    train(config(paths, None), resumed)


def main():
    port, pid, nproc, data, workdir = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[5],
        sys.argv[6],
    )
    resumed = sys.argv[7] if len(sys.argv) > 7 else None
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[4]}"  # before jax starts
    import jax

    from lingshu_jax.rl.trainer import train

    jax.config.update("jax_default_matmul_precision", "highest")
    paths = {"rl": os.path.join(data, "rl.jsonl"), "root": data, "assets": os.path.join(data, "assets")}
    dist = None
    if nproc > 1:
        dist = {"coordinator_address": f"127.0.0.1:{port}", "num_processes": nproc, "process_id": pid}
    train(config(paths, dist), workdir)
    if resumed:
        resume_from_step_1(paths, workdir, resumed)
    print(
        json.dumps(
            {"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count()}
        )
    )


if __name__ == "__main__":
    main()
