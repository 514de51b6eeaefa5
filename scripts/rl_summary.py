"""A GRPO run's figures (reward curve first/last fifth, median step timings without compile, compile
seconds) from its metrics.jsonl, as markdown.

    python scripts/rl_summary.py WORKDIR [--skip 1]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.rl.report import markdown, summarize_workdir  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("workdir", help="the RL run's workdir (holds metrics.jsonl)")
    parser.add_argument("--skip", type=int, default=1, help="leading steps left out of the timing medians")
    args = parser.parse_args()
    print(markdown(summarize_workdir(args.workdir, args.skip), args.skip), end="")


if __name__ == "__main__":
    main()
