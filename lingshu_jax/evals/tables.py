"""Results tables in the Lingshu paper's layout (multimodal VQA, text QA, report generation), as Markdown
and CSV, plus a per-benchmark detail table.

Accuracies and report metrics are shown x100 with one decimal; "–" marks a benchmark not evaluated,
"skipped" a metric that was not requested (GREEN without a checkpoint) and "n/c" one not computed.
"Avg." is the macro average of the columns present; when some are missing the header says over how many. The paper has one Medbullets column; we fill it from Medbullets_op5 when it
was evaluated, else from Medbullets_op4, and name the source under the table.
"""

from __future__ import annotations

import csv
import io
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
    ("GREEN", "green"),
    ("SembScore", "sembscore"),
    ("RadCliQ", "radcliq"),
)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _accuracy(metrics: Mapping | None) -> float | None:
    if not metrics:
        return None
    return metrics.get("total", {}).get("acc")


def column_values(columns: Sequence, summary: Mapping[str, Mapping]) -> tuple[list, float | None, list[str]]:
    """(accuracy per paper column or None, macro average of those present, notes on column sources)."""
    values, notes = [], []
    for display, names in columns:
        name = next((n for n in names if n in summary), None)
        values.append(_accuracy(summary.get(name)) if name else None)
        if name and len(names) > 1:
            notes.append(f"{display} column: {name}")
    present = [v for v in values if v is not None]
    return values, (sum(present) / len(present) if present else None), notes


def _qa_table(title: str, columns: Sequence, summary: Mapping[str, Mapping], model: str) -> list[str]:
    values, avg, notes = column_values(columns, summary)
    present = [v for v in values if v is not None]
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


def _report_cell(report: Mapping, key: str) -> str:
    if report.get(key) is not None:
        return _fmt(report[key])
    return "skipped" if str(report.get("not_computed", {}).get(key, "")).startswith("skipped") else "n/c"


def _detail_table(summary: Mapping[str, Mapping]) -> list[str]:
    head = ["Benchmark", "Scoring", "Items", "Acc.", "Closed", "Open", "Notes"]
    lines = ["## Per benchmark (accuracy, %)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in summary.items():
        if "report" in m or "total" not in m:
            continue
        notes = []
        if m.get("num_unmatched_references"):
            notes.append(f"{m['num_unmatched_references']} references match no option")
        if (m.get("judge") or {}).get("used"):
            notes.append(f"judge {m['judge']['model']}, {m['judge']['failures']} failures")
        if m.get("num_missing"):
            notes.append(f"{m['num_missing']} items without prediction")
        cells = [
            name,
            str(m.get("scoring", "default")),
            str(m.get("num_items", "")),
            _fmt(m["total"]["acc"]),
            _fmt((m.get("closed") or {}).get("acc")),
            _fmt((m.get("open") or {}).get("acc")),
            "; ".join(notes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _report_table(summary: Mapping[str, Mapping]) -> list[str]:
    head = ["Dataset", *[d for d, _ in REPORT_METRICS]]
    lines = ["## Report generation (x100)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for display, name in REPORT_ROWS:
        report = (summary.get(name) or {}).get("report")
        if report is None:
            cells = ["–"] * len(REPORT_METRICS)
        else:
            cells = [_report_cell(report, k) for _, k in REPORT_METRICS]
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
    if any("total" in m for m in summary.values()):
        parts.append("\n".join(_detail_table(summary)))
    submissions = [f"{n}: {m['submission_file']}" for n, m in summary.items() if m.get("submission_file")]
    if submissions:
        parts.append("## Predictions for submission (no public answers)\n\n" + "\n".join(submissions))
    return "\n\n".join(parts) + "\n"


def render_csv(summary: Mapping[str, Mapping], model: str = "model") -> str:
    """One row per value: model, table, column (paper order), value (fraction, not %); "Avg." rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", "table", "column", "benchmark", "metric", "value"])
    for table, columns in (("multimodal", MULTIMODAL_COLUMNS), ("text", TEXT_COLUMNS)):
        if not any(n in summary for _, names in columns for n in names):
            continue
        values, avg, _ = column_values(columns, summary)
        for (display, names), value in zip(columns, values):
            name = next((n for n in names if n in summary), "")
            writer.writerow([model, table, display, name, "acc", "" if value is None else value])
        writer.writerow([model, table, "Avg.", "", "acc", "" if avg is None else avg])
    for display, name in REPORT_ROWS:
        report = (summary.get(name) or {}).get("report")
        for label, key in REPORT_METRICS if report else ():
            value = report.get(key)
            writer.writerow([model, "report", display, name, label, "" if value is None else value])
    return out.getvalue()
