"""Each loader on its fixture (the benchmark's published format), the registry, and malformed-data errors."""

import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lingshu_jax.evals.benchmarks import BENCHMARKS, get_spec, load_benchmark
from lingshu_jax.evals.types import LoadOptions


def _load(name, fixtures_dir, opts, sub=None):
    return load_benchmark(name, os.path.join(fixtures_dir, sub) if sub else fixtures_dir, opts)


def test_registry_covers_every_benchmark_family():
    assert set(BENCHMARKS) == {
        "MMMU-Medical-val",
        "MMMU-Medical-test",
        "VQA_RAD",
        "SLAKE",
        "PATH_VQA",
        "PMC_VQA",
        "OmniMedVQA",
        "MedXpertQA-MM",
        "MMLU-medical",
        "PubMedQA",
        "MedMCQA",
        "MedQA_USMLE",
        "Medbullets_op4",
        "Medbullets_op5",
        "MedXpertQA-Text",
        "SuperGPQA",
        "MIMIC_CXR",
        "CheXpert_Plus",
        "IU_XRAY",
    }
    with pytest.raises(ValueError, match="unknown benchmark 'NOPE'; valid names .*VQA_RAD, SLAKE"):
        get_spec("NOPE")
    assert get_spec("vqa_rad").name == "VQA_RAD" and get_spec("path-vqa").name == "PATH_VQA"


@pytest.mark.parametrize(
    "name,count",
    [
        ("MMMU-Medical-val", 5),
        ("VQA_RAD", 4),
        ("SLAKE", 4),
        ("PATH_VQA", 3),
        ("PMC_VQA", 2),
        ("OmniMedVQA", 2),
        ("MedXpertQA-MM", 2),
        ("MMLU-medical", 9),
        ("PubMedQA", 2),
        ("MedMCQA", 2),
        ("MedQA_USMLE", 2),
        ("Medbullets_op4", 2),
        ("Medbullets_op5", 2),
        ("MedXpertQA-Text", 1),
        ("SuperGPQA", 2),
        ("MIMIC_CXR", 2),
        ("CheXpert_Plus", 1),
        ("IU_XRAY", 2),
    ],
)
def test_every_loader_reads_its_fixture_with_prompts_and_existing_images(
    name, count, fixtures_dir, load_opts
):
    items = _load(name, fixtures_dir, load_opts)
    assert len(items) == count
    assert len({it.id for it in items}) == count
    for it in items:
        assert it.benchmark == name and it.prompt and it.messages
        assert all(os.path.isfile(p) for p in it.images)
        if it.question_type == "mc":
            assert it.answer in "ABCDEFGHIJ"[: len(it.options)]


def test_vqa_rad_hf_parquet_closed_is_yes_no_and_images_are_extracted(fixtures_dir, load_opts):
    items = _load("VQA_RAD", fixtures_dir, load_opts)
    assert [it.question_type for it in items] == ["yesno", "yesno", "open", "open"]
    assert items[0].prompt.endswith("Please output 'yes' or 'no'(no extra output).")
    assert items[2].prompt.endswith("Please answer the question concisely.")
    assert items[0].images[0].startswith(load_opts.cache_dir)


def test_vqa_rad_original_osf_json_keeps_only_test_phrases(fixtures_dir, load_opts):
    items = _load("VQA_RAD", fixtures_dir, load_opts, "VQA_RAD_osf")
    assert [(it.id, it.question_type, it.category) for it in items] == [
        ("2", "yesno", "HEAD"),
        ("3", "open", "HEAD"),
    ]


def test_slake_closed_questions_get_the_short_answer_prompt_and_language(fixtures_dir, load_opts):
    items = {it.id: it for it in _load("SLAKE", fixtures_dir, load_opts)}
    assert items["11"].question_type == "open" and items["11"].prompt.endswith("concisely.")
    assert items["12"].question_type == "closed" and items["12"].prompt.endswith("single word or phrase.")
    assert items["13"].question_type == "closed"
    assert items["14"].category == "zh" and items["14"].prompt.endswith("请用一个单词或者短语回答该问题。")


def test_pmc_vqa_lists_its_options_as_the_csv_cells(fixtures_dir, load_opts):
    # PMC_VQA.py:44-47: the Choice cells go into the prompt as they are ("A:text"), not re-lettered.
    item = _load("PMC_VQA", fixtures_dir, load_opts)[1]
    assert item.options == ("Giemsa", "H&E", "PAS", "Trichrome") and item.answer == "B"
    assert "\nA:Giemsa \nB:H&E \nC:PAS \nD:Trichrome \n" in item.prompt


def test_omnimedvqa_text_answer_becomes_its_letter(fixtures_dir, load_opts):
    items = _load("OmniMedVQA", fixtures_dir, load_opts)
    assert [(it.answer, len(it.options), it.category) for it in items] == [
        ("B", 4, "Dermoscopy"),
        ("A", 2, "Dermoscopy"),
    ]


def test_mmmu_uses_image_1_and_open_questions(fixtures_dir, load_opts):
    items = {it.category: it for it in _load("MMMU-Medical-val", fixtures_dir, load_opts)}
    assert items["Pharmacy"].question_type == "open" and items["Pharmacy"].answer == "500"
    assert (
        len(items["Clinical_Medicine"].images) == 1
        and "(B) Pneumothorax" in items["Clinical_Medicine"].prompt
    )


def test_medxpertqa_mm_prefixes_every_image(fixtures_dir, load_opts):
    items = _load("MedXpertQA-MM", fixtures_dir, load_opts)
    assert items[1].messages[0]["content"][0] == {"type": "text", "text": "<image_1>: "}
    assert len(items[0].images) == 2 and items[0].options[-1] == "Fracture"


def test_mmlu_reads_hf_parquet_too(tmp_path, fixtures_dir, load_opts):
    root = tmp_path / "MMLU"
    shutil.copytree(os.path.join(fixtures_dir, "MMLU"), root)
    os.makedirs(root / "anatomy")
    pq.write_table(
        pa.table(
            {
                "question": ["Q1", "Q2"],
                "subject": ["anatomy"] * 2,
                "choices": [["a", "b", "c", "d"]] * 2,
                "answer": [0, 3],
            }
        ),
        root / "anatomy" / "test-00000-of-00001.parquet",
    )
    items = load_benchmark("MMLU-medical", str(root), load_opts)
    anatomy = [it for it in items if it.category == "anatomy"]
    assert [it.answer for it in anatomy] == ["A", "D"] and len(items) == 10


def test_medmcqa_original_dev_json_is_one_based(fixtures_dir, load_opts):
    items = _load("MedMCQA", fixtures_dir, load_opts)
    assert [it.answer for it in items] == ["B", "C"] and items[0].category == "Anatomy"


def test_pubmedqa_puts_the_context_before_the_question(fixtures_dir, load_opts):
    item = _load("PubMedQA", fixtures_dir, load_opts)[1]
    assert item.prompt.startswith("Context: Mixed evidence.\n\nQuestion: Is coffee")
    assert item.answer == "C"


def test_pubmedqa_reads_the_original_pqal_dict(tmp_path, load_opts):
    (tmp_path / "pqal_test_set.json").write_text(
        json.dumps({"111": {"QUESTION": "Q?", "CONTEXTS": ["c1", "c2"], "final_decision": "no"}})
    )
    item = load_benchmark("PubMedQA", str(tmp_path), load_opts)[0]
    assert (item.id, item.answer, item.options) == ("111", "B", ("yes", "no", "maybe"))


def test_supergpqa_keeps_medicine_only(fixtures_dir, load_opts):
    items = _load("SuperGPQA", fixtures_dir, load_opts)
    assert [it.id for it in items] == ["u1", "u3"] and len(items[0].options) == 10


def test_report_loaders_skip_empty_reports_and_build_the_reference(fixtures_dir, load_opts):
    items = _load("IU_XRAY", fixtures_dir, load_opts)
    assert [it.id for it in items] == ["CXR1", "CXR3"]
    assert items[1].answer == (
        "Findings: Mild cardiomegaly. Small left pleural effusion. "
        "Impression: Cardiomegaly with small effusion.."
    )
    assert items[0].messages[0]["content"][0]["text"] == "<image_1>: "
    chexpert = _load("CheXpert_Plus", fixtures_dir, load_opts)[0]
    assert chexpert.messages[0]["content"][0]["type"] == "image"


def test_reasoning_mode_asks_for_boxed(fixtures_dir, load_opts):
    item = load_benchmark("MedQA_USMLE", fixtures_dir, load_opts, reasoning=True)[0]
    assert item.prompt.endswith('put the letter in one "\\boxed{}".')


def test_scoring_mode_needs_no_images(tmp_path, fixtures_dir):
    opts = LoadOptions(cache_dir=str(tmp_path / "never"), need_images=False)
    items = load_benchmark("PATH_VQA", fixtures_dir, opts)
    assert items[0].images[0].endswith("test-00000-of-00001.parquet[0]:image")
    assert not (tmp_path / "never").exists()


# ------------------------------------------------------------------ malformed data


def _slake_copy(tmp_path, fixtures_dir, mutate):
    root = tmp_path / "SLAKE"
    shutil.copytree(os.path.join(fixtures_dir, "SLAKE"), root)
    records = json.loads((root / "test.json").read_text())
    mutate(records)
    (root / "test.json").write_text(json.dumps(records, indent=1))  # record i starts on line 2 + 18 * i
    return str(root)


def test_missing_field_names_the_file_and_record(tmp_path, fixtures_dir, load_opts):
    root = _slake_copy(tmp_path, fixtures_dir, lambda r: r[2].pop("answer"))
    with pytest.raises(ValueError, match=r"test\.json:38: missing field 'answer'"):
        load_benchmark("SLAKE", root, load_opts)


def test_missing_image_names_the_record(tmp_path, fixtures_dir, load_opts):
    root = _slake_copy(tmp_path, fixtures_dir, lambda r: r[1].update(img_name="nope/x.png"))
    with pytest.raises(ValueError, match=r"test\.json:20: image .*nope/x\.png not found"):
        load_benchmark("SLAKE", root, load_opts)


def test_bad_json_line_names_the_line(tmp_path, load_opts):
    (tmp_path / "test.jsonl").write_text(
        '{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}\n{oops\n'
    )
    with pytest.raises(ValueError, match=r"test\.jsonl:2: invalid JSON"):
        load_benchmark("MedQA_USMLE", str(tmp_path), load_opts)


def test_answer_not_among_options_is_an_error(tmp_path, load_opts):
    (tmp_path / "test.jsonl").write_text(
        '{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}\n'
    )
    with pytest.raises(ValueError, match=r"test\.jsonl:1: answer 'E' is neither an option letter"):
        load_benchmark("MedQA_USMLE", str(tmp_path), load_opts)


def test_missing_folder_or_file_is_reported(tmp_path, load_opts):
    with pytest.raises(ValueError, match="not found"):
        load_benchmark("SLAKE", str(tmp_path / "absent"), load_opts)
    with pytest.raises(ValueError, match=r"test\.json: file not found"):
        load_benchmark("SLAKE", str(tmp_path), load_opts)
    with pytest.raises(ValueError, match="MMMU subject folders missing"):
        load_benchmark("MMMU-Medical-val", str(tmp_path), load_opts)


def test_mimic_cxr_prompt_is_wrapped_like_medevalkits_triple_quoted_string(fixtures_dir, load_opts):
    # MIMIC_CXR.py:85-87: a newline and 8 spaces before and after the report sentence; IU-Xray and
    # CheXpert Plus use question_formats.get_report_generation_prompt() as it is.
    mimic = _load("MIMIC_CXR", fixtures_dir, load_opts)[0].prompt
    iu = _load("IU_XRAY", fixtures_dir, load_opts)[0].prompt
    assert mimic == "\n        " + iu + "\n        " and iu.startswith("You are a helpful assistant.")


@pytest.mark.parametrize(
    "name,line",
    [
        ("MedQA_USMLE", "A. Escherichia coli"),  # MedQA_USMLE.py:43: "A. x"
        ("PubMedQA", "A.yes"),  # PubMedQA.py:44: "A.x"
        ("Medbullets_op4", "A."),  # Medbullets_op4.py:36
        ("SuperGPQA", "A."),  # SuperGPQA.py:44
    ],
)
def test_multiple_choice_options_are_lettered_as_each_medevalkit_loader_does(
    name, line, fixtures_dir, load_opts
):
    item = _load(name, fixtures_dir, load_opts)[0]
    first = item.meta["choices"][0]
    assert first.startswith(line) and first in item.prompt
    assert not first.startswith("A. ") or line.startswith("A. ")


def test_mmmu_gives_no_image_when_the_options_name_several(tmp_path, fixtures_dir, load_opts):
    # data_utils.py:95-97: more than one <img='...'> in the options -> 'image': None
    from lingshu_jax.evals.benchmarks.mmmu import record_item  # pylint: disable=import-outside-toplevel

    rec = {
        "id": "validation_X_1",
        "question": "Which one? <image 1>",
        "options": "[\"<img='a.png'>\", \"<img='b.png'>\"]",
        "answer": "A",
        "question_type": "multiple-choice",
        "image_1": {"bytes": b"\x89PNG\r\n\x1a\nxx", "path": "a.png"},
    }
    assert record_item("Pharmacy", "loc", rec, load_opts, "validation").images == ()
    rec["options"] = "['one', 'two']"
    assert len(record_item("Pharmacy", "loc", rec, load_opts, "validation").images) == 1


def test_mmmu_open_parser_treats_an_empty_tail_as_no_candidate_like_mmmu():
    # eval_utils.py:147-153: `if not shortest_key_response` -> an empty tail ("... is ") is replaced by
    # the next indicator's tail ("answer " -> "is"), so "neuron" is not found.
    from lingshu_jax.evals.benchmarks.mmmu import eval_open, parse_open  # pylint: disable=import-outside-toplevel

    text = " mg1e3500Neuron</answer>the answer is . "
    assert parse_open(text) == ["is"] and not eval_open("neuron", parse_open(text))
