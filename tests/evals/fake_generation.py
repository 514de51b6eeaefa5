"""A fake generator factory for the CLI tests (`--generate_fn tests.evals.fake_generation:make_generate_fn`).

It answers every item correctly: the reference letter, yes/no word, short answer, or reference report.
"""


def make_generate_fn(model_path, **kwargs):  # pylint: disable=unused-argument
    def generate(items):
        return [item.answer for item in items]

    return generate
