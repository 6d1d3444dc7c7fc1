"""Harmful-request sets (all labelled `Requests with safety concerns`) and the EVAL-only refusal sets.

Roles follow shared/data/README.md: advbench, jailbreakbench, strongreject and harmbench ``val`` are
TRAIN (MIT); harmbench ``test``, or-bench and do-not-answer are EVAL only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from rt_middleware.datasets.base import DatasetError, LabeledPrompt, data_dir

__all__ = [
    "SAFETY",
    "load_advbench",
    "load_do_not_answer",
    "load_harmbench",
    "load_jailbreakbench",
    "load_or_bench",
    "load_strongreject",
]

SAFETY = "Requests with safety concerns"


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_advbench(*, root: Path | None = None) -> list[LabeledPrompt]:
    """AdvBench's 520 harmful behaviours (TRAIN, MIT)."""
    path = (root or data_dir()) / "advbench" / "harmful_behaviors.csv"
    return [
        LabeledPrompt(prompt=row["goal"], label=SAFETY, source="advbench", id=f"advbench-{i}")
        for i, row in enumerate(_csv_rows(path))
    ]


def load_harmbench(split: Literal["val", "test"], *, root: Path | None = None) -> list[LabeledPrompt]:
    """HarmBench text behaviours: ``val`` is TRAIN, ``test`` EVAL. Contextual rows get their context first."""
    if split not in ("val", "test"):
        raise DatasetError(f"unknown HarmBench split {split!r}; use val or test")
    path = (root or data_dir()) / "harmbench" / f"harmbench_behaviors_text_{split}.csv"
    rows = []
    for row in _csv_rows(path):
        context = (row.get("ContextString") or "").strip()
        prompt = f"{context}\n\n---\n\n{row['Behavior']}" if context else row["Behavior"]
        rows.append(
            LabeledPrompt(
                prompt=prompt,
                label=SAFETY,
                source=f"harmbench-{split}",
                subcategory=row["FunctionalCategory"],
                id=row["BehaviorID"],
            )
        )
    return rows


def load_jailbreakbench(*, root: Path | None = None) -> list[LabeledPrompt]:
    """JailbreakBench's 100 harmful behaviours (TRAIN, MIT); `subcategory` = its category."""
    path = (root or data_dir()) / "jailbreakbench" / "jailbreakbench.csv"
    return [
        LabeledPrompt(
            prompt=row["Goal"], label=SAFETY, source="jailbreakbench", subcategory=row["Category"],
            id=f"jbb-{i}",
        )
        for i, row in enumerate(_csv_rows(path))
    ]


def load_strongreject(*, root: Path | None = None) -> list[LabeledPrompt]:
    """StrongREJECT's 313 forbidden prompts (TRAIN, MIT); `subcategory` = its category."""
    path = (root or data_dir()) / "strongreject" / "strongreject.csv"
    return [
        LabeledPrompt(
            prompt=row["forbidden_prompt"], label=SAFETY, source="strongreject",
            subcategory=row["category"], id=f"strongreject-{i}",
        )
        for i, row in enumerate(_csv_rows(path))
    ]


def load_or_bench(part: Literal["hard", "toxic"], *, root: Path | None = None) -> list[LabeledPrompt]:
    """OR-Bench (EVAL only): ``hard`` look-alikes to answer, ``toxic`` prompts to refuse."""
    if part not in ("hard", "toxic"):
        raise DatasetError(f"unknown OR-Bench part {part!r}; use hard or toxic")
    name = "or-bench-hard-1k.csv" if part == "hard" else "or-bench-toxic.csv"
    label = "respond" if part == "hard" else SAFETY
    path = (root or data_dir()) / "or-bench" / name
    return [
        LabeledPrompt(
            prompt=row["prompt"], label=label, source=f"or-bench-{part}", subcategory=row["category"],
            id=f"or-bench-{part}-{i}",
        )
        for i, row in enumerate(_csv_rows(path))
    ]


def load_do_not_answer(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Do-Not-Answer's 939 questions (EVAL only, CC BY-NC-SA: never in the shipped model)."""
    path = (root or data_dir()) / "do-not-answer" / "do_not_answer_en.csv"
    return [
        LabeledPrompt(
            prompt=row["question"], label=SAFETY, source="do-not-answer", subcategory=row["types_of_harm"],
            id=f"dna-{row['id']}",
        )
        for row in _csv_rows(path)
    ]
