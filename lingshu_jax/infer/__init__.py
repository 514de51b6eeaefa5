"""Generation: sampling, batched KV-cache decoding in one compiled program, chat, the evaluation adapter.

SamplingConfig, sample                     (infer.sampling)   greedy / temperature / top-k / top-p
generate_ids(config, params, inputs, ...)  (infer.generate)   processor outputs -> tokens, lengths
Generator                                  (infer.generator)  model + processor -> generate_text(), chat()
ChatSession, run_repl                      (infer.chat)       multi-turn conversations
make_generate_fn / make_eval_generate_fn   (infer.eval_adapter) generate_fn(list[EvalItem]) -> list[str]
decode_throughput                          (infer.bench)      ours vs transformers tokens/s
"""

from lingshu_jax.infer.bench import decode_throughput
from lingshu_jax.infer.chat import ChatSession, run_repl
from lingshu_jax.infer.eval_adapter import make_eval_generate_fn, make_generate_fn
from lingshu_jax.infer.generate import Buckets, generate_ids
from lingshu_jax.infer.generator import Generator
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig, sample

__all__ = [
    "GREEDY",
    "Buckets",
    "ChatSession",
    "Generator",
    "SamplingConfig",
    "decode_throughput",
    "generate_ids",
    "make_eval_generate_fn",
    "make_generate_fn",
    "run_repl",
    "sample",
]
