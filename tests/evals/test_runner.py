"""Runner end to end with a fake generate_fn: outputs, resume, judge accounting (MedEvalKit defects fixed)."""

import json
import os

import pytest

from lingshu_jax.evals.judge import LLMJudge
from lingshu_jax.evals.runner import evaluate, read_predictions, score_predictions

NO_METEOR = {"compute_meteor": False}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def oracle(items):
    """Answers every item with its reference."""
    return [it.answer for it in items]


def scripted(answers):
    """Answers item ids from a dict, the reference otherwise."""
    return lambda items: [answers.get(it.id, it.answer) for it in items]


class FakeJudge:
    """Judge stand-in: fixed verdict, remembers what it was asked."""

    model = "fake"

    def __init__(self, verdict=True):
        self.verdict, self.asked = verdict, []

    def judge_many(self, triples):
        self.asked.extend(triples)
        return [self.verdict] * len(triples)


def test_evaluate_end_to_end_writes_predictions_scores_metrics_and_table(tmp_path, fixtures_dir):
    out = str(tmp_path / "out")
    summary = evaluate(
        oracle,
        ["VQA_RAD", "MMMU-Medical-val", "MedQA_USMLE", "IU_XRAY"],
        fixtures_dir,
        out,
        batch_size=3,
        report_kwargs=NO_METEOR,
        model_name="oracle",
        progress=False,
    )
    assert summary["VQA_RAD"]["total"] == {"total": 4, "right": 4, "acc": 1.0}
    assert summary["MMMU-Medical-val"]["total"]["acc"] == 1.0
    assert summary["MedQA_USMLE"]["total"]["acc"] == 1.0
    assert summary["IU_XRAY"]["report"]["rougel"] == pytest.approx(1.0, abs=1e-6)
    assert summary["IU_XRAY"]["report"]["bleu4"] == pytest.approx(1.0)
    for name in summary:
        assert os.path.isfile(os.path.join(out, name, "metrics.json"))
        assert (
            len(read_predictions(os.path.join(out, name, "predictions.jsonl"))) == summary[name]["num_items"]
        )
    scored = [json.loads(line) for line in _read(os.path.join(out, "VQA_RAD", "scored.jsonl")).splitlines()]
    assert [r["split"] for r in scored] == ["closed", "closed", "open", "open"]
    table = _read(os.path.join(out, "results.md"))
    assert "| oracle | 100.0 | 100.0 | – | – | – | – | – | 100.0 |" in table  # MMMU-Med, VQA-RAD, Avg.
    assert "| IU-Xray | 100.0 |" in table and "n/c" in table
    assert json.loads(_read(os.path.join(out, "summary.json"))).keys() == summary.keys()


def test_per_category_metrics_are_reported(tmp_path, fixtures_dir):
    summary = evaluate(scripted({"mcq-1": "A"}), ["MedMCQA"], fixtures_dir, str(tmp_path), progress=False)
    cats = summary["MedMCQA"]["categories"]["category"]
    assert cats == {
        "Anatomy": {"total": 1, "right": 0, "acc": 0.0},
        "Pharmacology": {"total": 1, "right": 1, "acc": 1.0},
    }


def test_evaluate_resumes_skipping_items_already_predicted(tmp_path, fixtures_dir):
    out = str(tmp_path / "out")
    calls = []

    def crash_after_first_batch(items):
        calls.append([it.id for it in items])
        if len(calls) > 1:
            raise RuntimeError("preempted")
        return oracle(items)

    with pytest.raises(RuntimeError, match="preempted"):
        evaluate(crash_after_first_batch, ["PATH_VQA"], fixtures_dir, out, batch_size=1, progress=False)
    assert list(read_predictions(os.path.join(out, "PATH_VQA", "predictions.jsonl"))) == ["0"]

    seen = []
    summary = evaluate(
        lambda items: seen.extend(it.id for it in items) or oracle(items),
        ["PATH_VQA"],
        fixtures_dir,
        out,
        batch_size=1,
        progress=False,
    )
    assert seen == ["1", "2"]
    assert summary["PATH_VQA"]["total"]["right"] == 3
    assert len(_read(os.path.join(out, "PATH_VQA", "predictions.jsonl")).splitlines()) == 3


def test_resume_drops_a_line_torn_by_the_interruption_and_names_other_bad_lines(tmp_path, fixtures_dir):
    out = tmp_path / "out"
    path = out / "PATH_VQA" / "predictions.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "0", "response": "yes"}\n{"id": "1", "resp')  # killed mid-write
    seen = []
    recorder = lambda items: seen.extend(i.id for i in items) or oracle(items)
    evaluate(recorder, ["PATH_VQA"], fixtures_dir, str(out), progress=False)
    assert seen == ["1", "2"] and len(path.read_text().splitlines()) == 3
    path.write_text('{"id": "0", "response": "yes"}\nnot json\n')
    with pytest.raises(ValueError, match=r"predictions\.jsonl:2: invalid JSON"):
        evaluate(oracle, ["PATH_VQA"], fixtures_dir, str(out), progress=False)


def test_pathvqa_closed_count_not_reset_when_judge_on(tmp_path, fixtures_dir):
    # MedEvalKit issue #30: with the judge on, PATH_VQA zeroes the closed (and total) right counts.
    judge = FakeJudge(verdict=True)
    m = evaluate(
        scripted({"2": "a granuloma"}), ["PATH_VQA"], fixtures_dir, str(tmp_path), judge=judge, progress=False
    )["PATH_VQA"]
    assert m["closed"] == {"total": 2, "right": 2, "acc": 1.0}
    assert m["open"]["right"] == 1 and m["open"]["rule_right"] == 0
    assert m["total"] == {"total": 3, "right": 3, "acc": 1.0}
    assert [t[2] for t in judge.asked] == ["a granuloma"]


def test_slake_closed_questions_counted_once_when_judge_on(tmp_path, fixtures_dir):
    # MedEvalKit's SLAKE sends closed questions to the judge too and adds them to the rule count.
    judge = FakeJudge(verdict=True)
    m = evaluate(
        scripted({"11": "brain tissue", "12": "No"}),
        ["SLAKE"],
        fixtures_dir,
        str(tmp_path),
        judge=judge,
        progress=False,
    )["SLAKE"]
    assert len(judge.asked) == 1  # only the open question
    assert m["closed"] == {"total": 3, "right": 2, "acc": pytest.approx(2 / 3)}
    assert m["open"]["total"] == 1 and m["open"]["right"] == 1
    assert m["total"] == {"total": 4, "right": 3, "acc": 0.75}
    assert m["categories"]["category"]["zh"]["right"] == 1


def test_vqa_rad_open_answer_counted_once_when_exact_and_judged_correct(tmp_path, fixtures_dir):
    # MedEvalKit's VQA_RAD keeps exact-match hits in the total and adds the judge's hits on top.
    m = evaluate(oracle, ["VQA_RAD"], fixtures_dir, str(tmp_path), judge=FakeJudge(True), progress=False)[
        "VQA_RAD"
    ]
    assert m["total"] == {"total": 4, "right": 4, "acc": 1.0}


def test_open_accuracy_is_not_divided_by_the_count_twice(tmp_path, fixtures_dir):
    # MedEvalKit divides every open metric, acc included, by the open count once more (issue #37: 0.00135).
    m = evaluate(scripted({"3": "right lobe"}), ["VQA_RAD"], fixtures_dir, str(tmp_path), progress=False)[
        "VQA_RAD"
    ]
    assert m["open"]["acc"] == 0.5 and m["open"]["em"] == 0.5
    assert 0 < m["open"]["f1"] < 1 and m["judge"] == {"used": False}


def test_judge_failures_count_as_wrong_and_are_reported(tmp_path, fixtures_dir):
    m = evaluate(oracle, ["VQA_RAD"], fixtures_dir, str(tmp_path), judge=FakeJudge(None), progress=False)[
        "VQA_RAD"
    ]
    assert m["open"]["right"] == 0 and m["judge"]["failures"] == 2 and m["closed"]["right"] == 2


def test_real_judge_over_local_fake_server_decides_open_questions(tmp_path, fixtures_dir, fake_server):
    judge = LLMJudge(
        f"http://127.0.0.1:{fake_server.server_address[1]}/v1", "fake", api_key_env=None, timeout=5
    )
    m = evaluate(
        scripted({"2": "BRAIN", "3": "right lobe"}),
        ["VQA_RAD"],
        fixtures_dir,
        str(tmp_path),
        judge=judge,
        progress=False,
    )["VQA_RAD"]
    assert m["open"]["right"] == 1 and m["total"]["right"] == 3 and len(fake_server.requests) == 2


def test_generate_fn_must_return_one_string_per_item(tmp_path, fixtures_dir):
    with pytest.raises(ValueError, match="returned 1 outputs for a batch of 2"):
        evaluate(lambda items: ["x"], ["PubMedQA"], fixtures_dir, str(tmp_path), progress=False)


def _write_preds(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_score_predictions_made_elsewhere(tmp_path, fixtures_dir):
    preds = tmp_path / "vllm.jsonl"
    _write_preds(
        preds,
        [
            {"id": "0", "prediction": "Yes"},
            {"id": "1", "prediction": "no"},
            {"id": "2", "prediction": "<think>hmm</think>granuloma"},
            {"id": "zzz", "prediction": "?"},
        ],
    )
    m = score_predictions("PATH_VQA", fixtures_dir, str(preds), str(tmp_path / "res"))
    assert m["total"] == {"total": 3, "right": 3, "acc": 1.0} and m["num_unmatched_predictions"] == 1
    assert os.path.isfile(tmp_path / "res" / "PATH_VQA" / "metrics.json")
    assert "PathVQA" in (tmp_path / "res" / "results.md").read_text()


def test_score_predictions_missing_items_error_unless_allowed(tmp_path, fixtures_dir):
    preds = tmp_path / "p.jsonl"
    _write_preds(preds, [{"id": "0", "response": "yes"}])
    with pytest.raises(ValueError, match="no prediction for 2 of 3 PATH_VQA items"):
        score_predictions("PATH_VQA", fixtures_dir, str(preds))
    m = score_predictions("PATH_VQA", fixtures_dir, str(preds), allow_missing=True)
    assert m["num_missing"] == 2 and m["total"]["total"] == 1


def test_prediction_records_without_id_or_response_are_rejected(tmp_path):
    bad = tmp_path / "bad.jsonl"
    _write_preds(bad, [{"id": "1"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: prediction record without one of"):
        read_predictions(str(bad))


VAL_SHARD = "validation-00000-of-00001.parquet"


def _mmmu_test_split(tmp_path, fixtures_dir):
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    root = tmp_path / "MMMU"
    for subject in sorted(os.listdir(os.path.join(fixtures_dir, "MMMU"))):
        table = pq.read_table(os.path.join(fixtures_dir, "MMMU", subject, VAL_SHARD))
        rows = table.to_pylist()
        for row in rows:  # the test split publishes no answers
            row["answer"], row["id"] = "?", row["id"].replace("validation_", "test_")
        (root / subject).mkdir(parents=True)
        pq.write_table(pa_table(rows, table.schema), str(root / subject / "test-00000-of-00001.parquet"))
    return str(tmp_path)


def pa_table(rows, schema):
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    return pa.Table.from_pylist(rows, schema=schema)


def test_mmmu_test_split_writes_a_submission_file_instead_of_crashing(tmp_path, fixtures_dir):
    # MedEvalKit crashes on it (its issue #38: data_utils.py:169 indexes the options with the answer "?").
    data = _mmmu_test_split(tmp_path / "data", fixtures_dir)
    out = tmp_path / "out"
    summary = evaluate(
        scripted({"test_Pharmacy_1": "It is 500 mg."}), ["mmmu-medical-test"], data, str(out), progress=False
    )
    sub = json.loads(_read(out / "MMMU-Medical-test" / "submission.json"))
    # the oracle answered "?" to the multiple-choice ones: MMMU's parser still returns a letter
    assert len(sub) == 5 and sub["test_Pharmacy_1"] == ["500 mg", 500.0]  # parse_open_response after "is "
    assert all(sub[k] in "ABCD" for k in sub if k != "test_Pharmacy_1")
    assert "total" not in summary["MMMU-Medical-test"]
    assert "MMMU-Medical-test: " in _read(out / "results.md")
    # eval_test.py:45 parses open answers in MedEvalKit too: the same file in medevalkit mode
    evaluate(oracle, ["MMMU-Medical-test"], data, str(tmp_path / "mek"), progress=False, scoring="medevalkit")
    mek = json.loads(_read(tmp_path / "mek" / "MMMU-Medical-test" / "submission.json"))
    assert mek["test_Pharmacy_1"] == [" ?", "? "]  # one character: normalize_str pads it (eval_utils.py:104)


def test_omnimedvqa_unmatched_reference_is_counted_and_the_run_goes_on(tmp_path, fixtures_dir):
    import shutil  # pylint: disable=import-outside-toplevel

    root = tmp_path / "OmniMedVQA"
    shutil.copytree(os.path.join(fixtures_dir, "OmniMedVQA"), root)
    path = root / "QA_information" / "Open-access" / "ToyDerm.json"
    recs = json.loads(path.read_text())
    recs[0]["gt_answer"] = "melanoma"  # equals no option exactly (OmniMedVQA.py:96 compares with ==)
    path.write_text(json.dumps(recs))
    m = evaluate(oracle, ["OmniMedVQA"], str(tmp_path), str(tmp_path / "out"), progress=False)["OmniMedVQA"]
    assert m["num_unmatched_references"] == 1 and m["unmatched_reference_ids"] == ["ToyDerm/ToyDerm_000"]
    # scored as MedEvalKit does: the response "melanoma" equals the lower-cased answer text (utils.py:115)
    assert m["total"] == {"total": 2, "right": 2, "acc": 1.0}
    assert "1 references match no option" in _read(tmp_path / "out" / "results.md")
