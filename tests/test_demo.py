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
