"""Radiology report generation: IU-Xray, MIMIC-CXR, CheXpert Plus.

Format (MedEvalKit's local layout): `test.json`, an array of {id, image, findings, impression} with
`image` a list of file names (IU-Xray, MIMIC-CXR) or one file name (CheXpert Plus), relative to
`images/`. Records whose findings and impression are both empty are skipped, as MedEvalKit does.
The reference report is ``Findings: {findings} Impression: {impression}.``.
"""

from __future__ import annotations

import os

from lingshu_jax.evals.benchmarks.common import check_unique
from lingshu_jax.evals.datafiles import image_path, read_json_records, require
from lingshu_jax.evals.metrics import report_reference
from lingshu_jax.evals.types import EvalItem, LoadOptions


def _load(benchmark: str, data_dir: str, options: LoadOptions) -> list[EvalItem]:
    path = os.path.join(data_dir, "test.json")
    items = []
    for i, (loc, rec) in enumerate(read_json_records(path)):
        findings = str(require(rec, "findings", loc, allow_empty=True))
        impression = str(require(rec, "impression", loc, allow_empty=True))
        if not findings.strip() and not impression.strip():
            continue
        names = require(rec, "image", loc)
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ValueError(f"{loc}: no image")
        images = tuple(image_path(os.path.join(data_dir, "images"), str(n), loc, options) for n in names)
        items.append(
            EvalItem(
                id=str(rec.get("id", i)),
                benchmark=benchmark,
                category="",
                question_type="report",
                images=images,
                question="",
                answer=report_reference(findings, impression),
                meta={"findings": findings, "impression": impression},
            )
        )
    return check_unique(items, path)


def load_iu_xray(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """IU-Xray test reports."""
    return _load("IU_XRAY", data_dir, options)


def load_mimic_cxr(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """MIMIC-CXR test reports."""
    return _load("MIMIC_CXR", data_dir, options)


def load_chexpert_plus(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """CheXpert Plus test reports."""
    return _load("CheXpert_Plus", data_dir, options)
