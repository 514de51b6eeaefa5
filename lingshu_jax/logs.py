"""Console logging for the command-line tools: our messages at INFO, libraries' (Orbax, grain, JAX) at WARNING."""

import logging


def setup(level: int = logging.INFO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("lingshu_jax").setLevel(level)
