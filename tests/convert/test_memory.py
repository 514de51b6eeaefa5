"""Host memory of hf_to_jax is bounded by the largest leaf plus a fixed overhead (run in a subprocess).

The checkpoint (~290 MB fp32) has two 128 MiB tensors (embedding, lm_head); any second full copy of a
leaf would push the peak over the bound. RSS after importing jax + orbax + safetensors and starting the
CPU backend (~190 MiB here) is measured in the child first and subtracted: it is paid by any JAX program.
Allowed overhead, 64 MiB: a 16 MiB read block, the Orbax writer's 32 MiB buffer of small leaves (flushed
before a large leaf is built), and ~16 MiB of Orbax/tensorstore runtime (threads, modules loaded on the
first save); measured peak - baseline is largest leaf + 35 MiB.
"""

import json
import subprocess
import sys

from lingshu_jax.convert.random_checkpoint import write_random_hf_checkpoint
from lingshu_jax.model.config import (
    QWEN_SPECIAL_TOKENS,
    ModelConfig,
    TextConfig,
    VisionConfig,
    qwen_special_token_ids,
)

MIB = 1 << 20
# VmHWM (this process's own peak RSS), not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a
# child of a big pytest process would report the parent's RSS as its peak.
CHILD = """
import json, sys
import psutil, jax, orbax.checkpoint, safetensors
from lingshu_jax.convert import hf_to_jax
def hwm():
  with open("/proc/self/status") as f:
    return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
jax.devices()
base = psutil.Process().memory_info().rss
assert hwm() < base + 64 * 2**20, "the import itself peaked far above its resting RSS"
hf_to_jax(sys.argv[1], out_dir=sys.argv[2], return_params=False)
print(json.dumps({"base": base, "peak": hwm()}))
"""


def test_hf_to_jax_peak_rss_is_largest_leaf_plus_fixed_overhead(tmp_path):
    cfg = ModelConfig(
        text=TextConfig(
            vocab_size=65536,
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,
            mrope_section=(8, 12, 12),
        ),
        vision=VisionConfig(
            depth=1,
            hidden_size=128,
            intermediate_size=256,
            num_heads=2,
            out_hidden_size=512,
            fullatt_block_indexes=(0,),
        ),
        **qwen_special_token_ids(65536 - QWEN_SPECIAL_TOKENS),
    )
    info = write_random_hf_checkpoint(cfg, str(tmp_path / "hf"))
    assert info["largest_leaf"] == 128 * MIB and info["bytes"] > 250e6
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "hf"), str(tmp_path / "jax")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    used = r["peak"] - r["base"]
    print(
        f"baseline {r['base'] / MIB:.0f} MiB, peak {r['peak'] / MIB:.0f} MiB, peak - baseline {used / MIB:.0f} MiB"
    )
    assert used <= info["largest_leaf"] + 64 * MIB, f"{used / MIB:.0f} MiB over the import baseline"
