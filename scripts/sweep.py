"""Run a sweep locally in sequence (or print one launch command per run), then tabulate and plot it.

python scripts/sweep.py --sweep=configs/sweeps/demo_lr.py --root=runs/sweep [--print_only] [--summarize_only]
    [--parallel=2 --devices_per_run=1 --platform=cpu|gpu|tpu]

Runs already complete are skipped. --parallel N runs N at a time; with --devices_per_run K each gets its own
K devices of this machine (lingshu_jax.train.sweep.device_env).
"""

import argparse
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, help="a configs/sweeps/<name>.py file with get_sweep(root)")
    ap.add_argument("--root", required=True, help="directory for the runs' workdirs and the results")
    ap.add_argument(
        "--print_only", action="store_true", help="print one launch command per run (e.g. for a pod)"
    )
    ap.add_argument("--summarize_only", action="store_true", help="only (re)build the table and plot")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time on this machine")
    ap.add_argument("--devices_per_run", type=int, default=0, help="devices per concurrent run (0 = all)")
    ap.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"), help="for --devices_per_run")
    args = ap.parse_args()
    from lingshu_jax.train import sweep

    runs = sweep.load_sweep(args.sweep, args.root)
    if args.print_only:
        for run in runs:
            cmds = [sweep.command(run, args.root, "python"), sweep.eval_command(run, args.root, "python")]
            print(" && ".join(shlex.join(c) for c in cmds if c))
        return
    if not args.summarize_only:
        sweep.run_all(runs, args.root, ROOT, args.parallel, args.devices_per_run, args.platform)
    rows = sweep.summarize(runs, args.root)
    paths = sweep.write_results(rows, args.root)
    print(open(paths["markdown"]).read())
    print(f"table: {paths['markdown']}  csv: {paths['csv']}  plot: {paths['plot']}")


if __name__ == "__main__":
    main()
