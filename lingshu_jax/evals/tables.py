"""Markdown results tables in the Lingshu paper's layout (multimodal VQA, text QA, report generation).

Accuracies and report metrics are shown x100 with one decimal; "–" marks a benchmark not evaluated and
"n/c" a metric not computed. "Avg." is the mean of the columns present; when some are missing the
header says over how many. The paper has one Medbullets column; we fill it from Medbullets_op5 when it
was evaluated, else from Medbullets_op4, and name the source under the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MULTIMODAL_COLUMNS = (
    ("MMMU-Med", ("MMMU-Medical-val",)),
    ("VQA-RAD", ("VQA_RAD",)),
    ("SLAKE", ("SLAKE",)),
    ("PathVQA", ("PATH_VQA",)),
    ("PMC-VQA", ("PMC_VQA",)),
    ("OmniMedVQA", ("OmniMedVQA",)),
    ("MedXpertQA", ("MedXpertQA-MM",)),
)
TEXT_COLUMNS = (
    ("MMLU-Med", ("MMLU-medical",)),
    ("PubMedQA", ("PubMedQA",)),
    ("MedMCQA", ("MedMCQA",)),
    ("MedQA", ("MedQA_USMLE",)),
    ("Medbullets", ("Medbullets_op5", "Medbullets_op4")),
    ("MedXpertQA", ("MedXpertQA-Text",)),
    ("SuperGPQA", ("SuperGPQA",)),
)
REPORT_ROWS = (("MIMIC-CXR", "MIMIC_CXR"), ("CheXpert Plus", "CheXpert_Plus"), ("IU-Xray", "IU_XRAY"))
REPORT_METRICS = (
    ("ROUGE-L", "rougel"),
    ("CIDEr-D", "cider"),
    ("BLEU-4", "bleu4"),
    ("METEOR", "meteor"),
    ("RaTE", "rate"),
    ("SembScore", "sembscore"),
    ("RadCliQ", "radcliq"),
)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _accuracy(metrics: Mapping | None) -> float | None:
    if not metrics:
        return None
    return metrics.get("total", {}).get("acc")


def _qa_table(title: str, columns: Sequence, summary: Mapping[str, Mapping], model: str) -> list[str]:
    values, notes = [], []
    for display, names in columns:
        name = next((n for n in names if n in summary), None)
        values.append(_accuracy(summary.get(name)) if name else None)
        if name and len(names) > 1:
            notes.append(f"{display} column: {name}")
    present = [v for v in values if v is not None]
    avg = sum(present) / len(present) if present else None
    avg_head = "Avg." if len(present) == len(columns) else f"Avg. ({len(present)}/{len(columns)})"
    head = ["Model", *[d for d, _ in columns], avg_head]
    lines = [
        f"## {title} (accuracy, %)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| " + " | ".join([model, *[_fmt(v) for v in values], _fmt(avg)]) + " |",
    ]
    return lines + ([""] + [f"{n}." for n in notes] if notes else [])


def _report_table(summary: Mapping[str, Mapping]) -> list[str]:
    head = ["Dataset", *[d for d, _ in REPORT_METRICS]]
    lines = ["## Report generation (x100)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for display, name in REPORT_ROWS:
        report = (summary.get(name) or {}).get("report")
        if report is None:
            cells = ["–"] * len(REPORT_METRICS)
        else:
            cells = ["n/c" if report.get(k) is None else _fmt(report[k]) for _, k in REPORT_METRICS]
        lines.append("| " + " | ".join([display, *cells]) + " |")
    lines += [
        "",
        (
            "CIDEr-D: pycocoevalcap, IDF from the references (MedEvalKit reports CIDEr with COCO IDF); "
            "n/c: not computed (see metrics.json `not_computed`)."
        ),
    ]
    return lines


def render_markdown(summary: Mapping[str, Mapping], model: str = "model") -> str:
    """The three tables for the benchmarks in `summary` (benchmark name -> metrics.json content)."""
    parts = []
    if any(n in summary for _, names in MULTIMODAL_COLUMNS for n in names):
        parts.append("\n".join(_qa_table("Multimodal VQA", MULTIMODAL_COLUMNS, summary, model)))
    if any(n in summary for _, names in TEXT_COLUMNS for n in names):
        parts.append("\n".join(_qa_table("Text QA", TEXT_COLUMNS, summary, model)))
    if any(name in summary for _, name in REPORT_ROWS):
        parts.append("\n".join(_report_table(summary)))
    return "\n\n".join(parts) + "\n"
