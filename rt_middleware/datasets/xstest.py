"""XSTest prompts (CC BY 4.0), EVAL only: 250 safe prompts to answer, 200 unsafe to refuse."""

from __future__ import annotations

import csv
from pathlib import Path

from rt_middleware.datasets.base import LabeledPrompt, data_dir

__all__ = ["load_xstest"]

SAFETY = "Requests with safety concerns"


def load_xstest(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Unsafe prompts are labelled with the safety category, safe ones ``respond``; `subcategory` = type."""
    path = (root or data_dir()) / "xstest" / "xstest_prompts.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            LabeledPrompt(
                prompt=row["prompt"],
                label=SAFETY if row["label"] == "unsafe" else "respond",
                source="xstest",
                subcategory=row["type"],
                id=row["id"],
            )
            for row in csv.DictReader(fh)
        ]
