"""`python -m lingshu_jax.bench --suite cpu`: see lingshu_jax/bench/cli.py."""

import sys

from lingshu_jax.bench.cli import main

sys.exit(main())
