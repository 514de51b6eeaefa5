"""`scripts/aot.py`: the fit report of a training config on a TPU slice (or cpu / gpu), before renting it.

    python scripts/aot.py --config=configs/lingshu/stage2.py:size=7b --topology=v5p:2x2x2 [--config.a.b=v]
        [--num_slices=2] [--json=report.json]
    python scripts/aot.py --recipes [--recipes_out=docs/tpu.md]     every recipe config on its slice

Takes exactly the config and overrides `scripts/train.py` (or, for a GRPO config, `scripts/train_rl.py`)
takes. Without --topology, the config's own
`slice` (recipe configs name theirs) is used.
"""

from __future__ import annotations

import json
import os


def main() -> None:
    from absl import app, flags

    from lingshu_jax.cli import define_config_flag

    define_config_flag(required=False)  # (--recipes needs none)
    flags.DEFINE_string(
        "topology", None, "v5p-16 | v5p:2x2x2 | v6e-16 | v6e:4x4 | v5litepod-8 | v4-8 | cpu | gpu"
    )
    flags.DEFINE_integer("num_slices", 1, "TPU slices joined by DCN (data parallel: mesh.dcn.data).")
    flags.DEFINE_string("json", None, "Also write the report as JSON here.")
    flags.DEFINE_string("hlo_out", None, "Also write the compiled (optimized) HLO text here.")
    flags.DEFINE_bool(
        "recipes", False, "Report every recipe config (lingshu_jax.aot.recipes) into --recipes_out."
    )
    flags.DEFINE_string("recipes_out", "docs/tpu.md", "Markdown file the --recipes reports go into.")
    flags.DEFINE_string("recipes_only", None, "With --recipes: only the recipe specs matching this regex.")

    def run(argv):
        del argv
        f = flags.FLAGS
        if f.recipes:
            from lingshu_jax.aot.recipes import write_recipes_doc

            write_recipes_doc(f.recipes_out, f.recipes_only)
            return
        if f.config is None:
            raise app.UsageError("--config is required (or --recipes)")
        report_one(f.config, f.topology, f.num_slices, f.json, f.hlo_out)

    app.run(run)


def report_one(config, topology: str | None, num_slices: int, json_path: str | None, hlo_out=None) -> dict:
    """The fit report of an SFT config (its train step) or of a GRPO config (one with `config.rl`: the
    programs of a rollout step, `aot/rl.py`)."""
    from lingshu_jax.aot.report import fit_report, format_report
    from lingshu_jax.aot.rl import format_rl_report, rl_fit_report
    from lingshu_jax.aot.targets import parse_target

    spec = topology or config.get("slice")
    if not spec:
        raise ValueError("--topology: needed (the config names no `slice`)")
    target = parse_target(spec, num_slices)
    if "rl" in config:
        if hlo_out:
            raise ValueError("--hlo_out: not supported for GRPO configs (several programs)")
        report = rl_fit_report(config, target)
        print(format_rl_report(report), flush=True)
    else:
        report = fit_report(config, target, hlo_out=hlo_out)
        print(format_report(report), flush=True)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    return report
