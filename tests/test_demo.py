"""The SFT demo's stage-3 reasoning conversations are what the RL demo asks for and rewards in full."""

from lingshu_jax.demo import REASONING_PROMPT, SYSTEM, reasoning_conversations
from lingshu_jax.rl.data import parse_record
from lingshu_jax.rl.rewards import LINGSHU_REWARDS, combine_rewards


def test_stage3_reasoning_targets_name_the_image_and_get_full_format_and_accuracy_rewards(tmp_path):
    questions = ["What shape is in the image?", "What color is the shape?", "Is there a circle?", "Shape?"]
    answers = ["circle", "teal", "yes", "triangle"]
    images = [7, 7, 7, 9]  # image 9: no colour question, so its reasoning names the shape only
    convs = reasoning_conversations(questions, answers, images, "train")
    targets = [c["messages"][2]["content"][0]["text"] for c in convs]
    assert targets == [
        "<think>teal circle</think><answer>circle</answer>",
        "<think>teal circle</think><answer>teal</answer>",
        "<think>teal circle</think><answer>yes</answer>",
        "<think>triangle</think><answer>triangle</answer>",
    ]
    references, prompts = [], []
    for q, a, i in zip(questions, answers, images):
        record = {
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"<image>{q}"}],
            "images": [f"train/images/{i}.png"],
            "answer": a,
            "question_type": "yes_no" if a in ("yes", "no") else "closed",
        }  # as `rl.data.prepare_easy_vqa_prompts` writes it
        prompt = parse_record(record, "t", str(tmp_path), REASONING_PROMPT)
        references.append(prompt.reference)
        prompts.append(prompt.messages[-1]["content"][-1]["text"])
    assert prompts == [c["messages"][1]["content"][1]["text"] for c in convs]  # the RL prompt = the SFT one
    total, per = combine_rewards(LINGSHU_REWARDS)(targets, references)
    assert list(per["format"]) == [1.0] * 4 and list(per["accuracy"]) == [1.0] * 4


def test_demo_images_are_upscaled_to_16_merged_tokens_and_stage1_trains_the_random_llm(tmp_path):
    """docs/rl_cpu.md section 6: at 56x56 (4 merged tokens) or with a frozen random LLM in stage 1, the demo
    model never read the image; the demo's assets and stage-1 groups must keep both fixes."""
    import numpy as np
    from PIL import Image

    from configs import demo
    from lingshu_jax.demo import prepare_demo_data
    from lingshu_jax.processing import Processor

    processor = Processor.from_pretrained(
        prepare_demo_data(str(tmp_path / "demo"), eval_questions=4)["assets"]
    )
    image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))  # easy-VQA's image size
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "?"}]}
    ]
    enc = processor([messages])
    assert np.asarray(enc["image_grid_thw"]).tolist() == [[1, 8, 8]]  # 112x112 px: 64 patches, 16 tokens
    groups = {name: sched for _, sched, name in demo.get_config("stage=1,root=/r").optim.groups}
    assert groups["llm"] is not None and groups["llm"]["peak"] > 0
    frozen = {
        name: sched for _, sched, name in demo.get_config("stage=1,root=/r,stage1_llm=false").optim.groups
    }
    assert frozen["llm"] is None


def test_rl_demo_freezes_the_vision_tower_and_trains_the_llm_unless_given_vision_rates():
    """docs/rl_cpu.md section 8: GRPO on the demo updates the LLM only (the ViT and merger, whose features
    the SFT demo had to protect with slow rates, stay as stage 3 left them); lr_vit / lr_proj train them."""
    import jax
    import ml_collections
    import numpy as np
    import optax

    from configs import rl_demo
    from lingshu_jax.model.config import preset
    from lingshu_jax.model.vlm import abstract_params
    from lingshu_jax.train.optimizer import make_optimizer, param_paths

    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_params(preset("tiny")))
    grads = jax.tree.map(np.ones_like, params)

    def moved(arg):
        optim = ml_collections.ConfigDict(rl_demo.get_config(arg).optim)
        tx, _ = make_optimizer(optim, params)
        step = jax.jit(lambda p: optax.apply_updates(p, tx.update(grads, tx.init(p), p)[0]))
        leaves = jax.tree.leaves(step(params))
        return {p: bool(np.any(np.asarray(v) != 0)) for p, v in zip(param_paths(params), leaves)}

    default = moved("root=/r,warmup=0")
    visual = [p for p in default if p.startswith("visual/")]
    assert visual and any(p.startswith("visual/merger/") for p in visual)
    assert not any(default[p] for p in visual)
    assert all(v for p, v in default.items() if p not in visual)
    assert all(moved("root=/r,warmup=0,lr_vit=1e-4,lr_proj=1e-4").values())


def test_rl_demo_docstring_states_the_defaults_its_measured_figures_were_taken_with():
    """configs/rl_demo.py quotes the three-seed figures of docs/rl_cpu.md section 9 "with the defaults (N
    steps, LLM lr X after a W-update warmup, k3 KL K)": those must be what get_config() gives."""
    import re

    from configs import rl_demo

    m = re.search(
        r"with the defaults \((\d+) steps, LLM lr (\S+) after a (\d+)-update warmup, k3\s+KL (\S+)\)",
        rl_demo.__doc__,
    )
    assert m, "configs/rl_demo.py docstring no longer states its defaults"
    steps, lr, warmup, kl = int(m[1]), float(m[2]), int(m[3]), float(m[4])
    c = rl_demo.get_config("root=/r")
    assert c.train.total_steps == steps
    assert c.rl.kl_coef == kl
    llm = [g for g in c.optim.groups if g[2] == "llm"][0][1]
    assert (llm["peak"], llm["warmup_steps"]) == (lr, warmup)
