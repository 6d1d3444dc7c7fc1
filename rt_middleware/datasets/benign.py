"""Respond-class sets and CoCoNot's training-only files (preference pairs and seed prompts).

TRAIN: self-instruct (Apache-2.0, with answers), ultrachat (MIT, prompts only), coconot ``pref``
(MIT, contrast prompts with a compliant ``chosen`` answer) and the CoCoNot seed prompts.
EVAL only: alpaca-eval (CC BY-NC: never in the shipped model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rt_middleware.datasets.base import DatasetError, LabeledPrompt, data_dir
from rt_middleware.tokens import COCONOT_CATEGORIES

__all__ = [
    "load_alpaca_eval",
    "load_coconot_pref",
    "load_coconot_seeds",
    "load_self_instruct",
    "load_ultrachat",
]

_SEED_CATEGORY = {"Unknowns": "Indeterminate requests"}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_self_instruct(*, root: Path | None = None) -> list[LabeledPrompt]:
    """427 human-written tasks with reference answers; prompt = instruction + input."""
    folder = (root or data_dir()) / "self-instruct"
    rows = []
    for name in ("user_oriented_instructions.jsonl", "seed_tasks.jsonl"):
        for record in _jsonl(folder / name):
            instance = record["instances"][0]
            extra = (instance.get("input") or "").strip()
            prompt = record["instruction"].strip() + (f"\n\n{extra}" if extra else "")
            rows.append(
                LabeledPrompt(
                    prompt=prompt, label="respond", source="self-instruct", id=record["id"],
                    response=(instance.get("output") or "").strip() or None,
                )
            )
    return rows


def load_ultrachat(*, root: Path | None = None) -> list[LabeledPrompt]:
    """385 UltraChat evaluation prompts (no answers); `subcategory` = their class."""
    path = (root or data_dir()) / "ultrachat" / "ultra_eval.json"
    return [
        LabeledPrompt(
            prompt=record["data"], label="respond", source="ultrachat",
            subcategory=record["class"].strip(), id=f"ultrachat-{i}",
        )
        for i, record in enumerate(_json(path))
    ]


def load_coconot_pref(*, root: Path | None = None) -> list[LabeledPrompt]:
    """927 contrast prompts with a compliant answer (``chosen``); `mimics` = the category they resemble."""
    path = (root or data_dir()) / "coconot" / "coconot_pref.jsonl"
    return [
        LabeledPrompt(
            prompt=record["prompt"], label="respond", source="coconot-pref",
            subcategory=record.get("subcategory"), id=record["id"], response=record["chosen"],
            mimics=record["category"],
        )
        for record in _jsonl(path)
    ]


def load_coconot_seeds(*, root: Path | None = None) -> list[LabeledPrompt]:
    """The seed prompts: per-category refusals, plus the safety contrast seeds (respond)."""
    folder = (root or data_dir()) / "coconot"
    rows = []
    for block in _json(folder / "original_seed_prompts.json"):
        category = _SEED_CATEGORY.get(block["category"], block["category"])
        if category not in COCONOT_CATEGORIES:
            raise DatasetError(f"{folder}/original_seed_prompts.json: unknown category {category!r}")
        for sub in block["subcategories"]:
            for i, (prompt, *_) in enumerate(sub["prompts"]):
                rows.append(
                    LabeledPrompt(
                        prompt=prompt, label=category, source="coconot-seeds",
                        subcategory=sub["subcategory"], id=f"seed-{sub['subcategory']}-{i}",
                    )
                )
    for topic, block in _json(folder / "safety_contrast_seed_prompts.json").items():
        for key, label in (("prompts", "Requests with safety concerns"), ("contrast_prompts", "respond")):
            for i, (prompt, *_) in enumerate(block.get(key, [])):
                rows.append(
                    LabeledPrompt(
                        prompt=prompt, label=label, source="coconot-seeds", subcategory=topic,
                        id=f"seed-{topic}-{key}-{i}",
                        mimics="Requests with safety concerns" if label == "respond" else None,
                    )
                )
    return rows


def load_alpaca_eval(*, root: Path | None = None) -> list[LabeledPrompt]:
    """805 everyday instructions (EVAL only, CC BY-NC: never in the shipped model)."""
    path = (root or data_dir()) / "alpaca-eval" / "alpaca_eval.json"
    return [
        LabeledPrompt(
            prompt=record["instruction"], label="respond", source="alpaca-eval",
            subcategory=record.get("dataset"), id=f"alpaca-eval-{i}",
        )
        for i, record in enumerate(_json(path))
    ]
