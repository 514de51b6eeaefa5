"""Benchmark registry: `BENCHMARKS[name] -> BenchmarkSpec`, and `load_benchmark` (items with prompts).

Names are MedEvalKit's. A root data directory holds one folder per benchmark (`BenchmarkSpec.dirnames`
lists the names looked for); a benchmark's own folder may also be given directly.
"""

from __future__ import annotations

import dataclasses
import os

from lingshu_jax.evals.benchmarks import mcvqa, medxpertqa, mmmu, reports, textqa, vqa
from lingshu_jax.evals.benchmarks.common import (
    mc_prompt,
    mc_score,
    mc_score_raw,
    mimic_report_prompt,
    report_prompt,
    report_score,
    slake_score,
    vqa_prompt,
    vqa_score,
)
from lingshu_jax.evals.prompts import build_messages
from lingshu_jax.evals.types import BenchmarkSpec, EvalItem, LoadOptions


def _spec(name, display, group, loader, build_prompt, scorer, dirnames, **kw) -> BenchmarkSpec:
    return BenchmarkSpec(
        name=name,
        display=display,
        group=group,
        loader=loader,
        build_prompt=build_prompt,
        scorer=scorer,
        dirnames=(name, *dirnames),
        **kw,
    )


BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        _spec(
            "MMMU-Medical-val",
            "MMMU-Med",
            "multimodal",
            mmmu.load_mmmu_medical,
            mmmu.mmmu_prompt,
            mmmu.mmmu_score,
            ("MMMU",),
            category_keys=("subfield",),
        ),
        _spec(
            "MMMU-Medical-test",
            "MMMU-Med (test)",
            "multimodal",
            mmmu.load_mmmu_medical_test,
            mmmu.mmmu_prompt,
            mmmu.mmmu_score,
            ("MMMU",),
            has_answers=False,
        ),
        _spec(
            "VQA_RAD",
            "VQA-RAD",
            "multimodal",
            vqa.load_vqa_rad,
            vqa_prompt,
            vqa_score,
            ("VQA-RAD", "vqa-rad"),
            judge_open=True,
        ),
        _spec(
            "SLAKE",
            "SLAKE",
            "multimodal",
            vqa.load_slake,
            vqa.slake_prompt,
            slake_score,
            ("Slake", "slake"),
            category_keys=("modality", "content_type"),
            judge_open=True,
        ),
        _spec(
            "PATH_VQA",
            "PathVQA",
            "multimodal",
            vqa.load_path_vqa,
            vqa_prompt,
            vqa_score,
            ("PathVQA", "path-vqa", "PATH-VQA"),
            judge_open=True,
        ),
        _spec("PMC_VQA", "PMC-VQA", "multimodal", mcvqa.load_pmc_vqa, mc_prompt, mc_score_raw, ("PMC-VQA",)),
        _spec(
            "OmniMedVQA",
            "OmniMedVQA",
            "multimodal",
            mcvqa.load_omnimedvqa,
            mc_prompt,
            mc_score,
            (),
            category_keys=("question_type",),
        ),
        _spec(
            "MedXpertQA-MM",
            "MedXpertQA",
            "multimodal",
            medxpertqa.load_medxpertqa_mm,
            mc_prompt,
            mc_score,
            ("MedXpertQA",),
            category_keys=("question_type", "body_system"),
            multi_image_prefix=True,
        ),
        _spec(
            "MMLU-medical",
            "MMLU-Med",
            "text",
            textqa.load_mmlu_medical,
            mc_prompt,
            mc_score,
            ("MMLU", "mmlu"),
        ),
        _spec("PubMedQA", "PubMedQA", "text", textqa.load_pubmedqa, mc_prompt, mc_score, ("pubmedqa",)),
        _spec("MedMCQA", "MedMCQA", "text", textqa.load_medmcqa, mc_prompt, mc_score, ("medmcqa",)),
        _spec(
            "MedQA_USMLE",
            "MedQA",
            "text",
            textqa.load_medqa_usmle,
            mc_prompt,
            mc_score,
            ("MedQA-USMLE", "MedQA"),
        ),
        _spec(
            "Medbullets_op4",
            "Medbullets-op4",
            "text",
            textqa.load_medbullets_op4,
            mc_prompt,
            mc_score,
            ("Medbullets", "medbullets"),
        ),
        _spec(
            "Medbullets_op5",
            "Medbullets-op5",
            "text",
            textqa.load_medbullets_op5,
            mc_prompt,
            mc_score,
            ("Medbullets", "medbullets"),
        ),
        _spec(
            "MedXpertQA-Text",
            "MedXpertQA",
            "text",
            medxpertqa.load_medxpertqa_text,
            mc_prompt,
            mc_score,
            ("MedXpertQA",),
            category_keys=("question_type", "body_system"),
        ),
        _spec(
            "SuperGPQA",
            "SuperGPQA",
            "text",
            textqa.load_supergpqa,
            mc_prompt,
            mc_score,
            (),
            category_keys=("difficulty",),
        ),
        _spec(
            "MIMIC_CXR",
            "MIMIC-CXR",
            "report",
            reports.load_mimic_cxr,
            mimic_report_prompt,
            report_score,
            ("MIMIC-CXR", "mimic-cxr"),
            multi_image_prefix=True,
        ),
        _spec(
            "CheXpert_Plus",
            "CheXpert Plus",
            "report",
            reports.load_chexpert_plus,
            report_prompt,
            report_score,
            ("CheXpert-Plus", "chexpert_plus"),
        ),
        _spec(
            "IU_XRAY",
            "IU-Xray",
            "report",
            reports.load_iu_xray,
            report_prompt,
            report_score,
            ("IU-Xray", "iu_xray"),
            multi_image_prefix=True,
        ),
    )
}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def canonical_name(name: str) -> str:
    """The registry name of `name`, matched case-insensitively ("-" and "_" alike): vqa_rad -> VQA_RAD.

    Raises a ValueError listing the valid names.
    """
    matches = [n for n in BENCHMARKS if _key(n) == _key(name)]
    if not matches:
        raise ValueError(f"unknown benchmark {name!r}; valid names (any case): {', '.join(BENCHMARKS)}")
    return matches[0]


def get_spec(name: str) -> BenchmarkSpec:
    """The registry entry (name matched as `canonical_name` does), or a ValueError listing the names."""
    return BENCHMARKS[canonical_name(name)]


def resolve_data_dir(spec: BenchmarkSpec, data_dir: str) -> str:
    """`data_dir/<one of spec.dirnames>` when such a folder exists, else `data_dir` itself."""
    for name in spec.dirnames:
        candidate = os.path.join(data_dir, name)
        if os.path.isdir(candidate):
            return candidate
    if not os.path.isdir(data_dir):
        raise ValueError(f"{data_dir}: data directory not found (benchmark {spec.name})")
    return data_dir


def with_prompt(spec: BenchmarkSpec, item: EvalItem, reasoning: bool) -> EvalItem:
    """The item with its prompt and chat messages built."""
    prompt = spec.build_prompt(item, reasoning)
    prefix = True if spec.multi_image_prefix else None
    return dataclasses.replace(item, prompt=prompt, messages=build_messages(prompt, item.images, prefix))


def load_benchmark(
    name: str,
    data_dir: str,
    options: LoadOptions | None = None,
    reasoning: bool = False,
    limit: int | None = None,
) -> list[EvalItem]:
    """Items of one benchmark, prompts built (MedEvalKit wording; `reasoning` asks for \\boxed{}).

    Args:
      name: registry name.
      data_dir: the benchmark's folder, or a root holding it (see `resolve_data_dir`).
      options: image handling (`LoadOptions`).
      reasoning: MedEvalKit's REASONING mode prompts.
      limit: keep the first `limit` items (for smoke runs).
    """
    spec = get_spec(name)
    items = spec.loader(resolve_data_dir(spec, data_dir), options or LoadOptions())
    if limit is not None:
        items = items[:limit]
    return [with_prompt(spec, item, reasoning) for item in items]


__all__ = ["BENCHMARKS", "canonical_name", "get_spec", "load_benchmark", "resolve_data_dir", "with_prompt"]
