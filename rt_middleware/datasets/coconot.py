"""CoCoNot (MIT): should-refuse prompts in 5 categories and contrast prompts to answer.

`splits.json` assigns every eval/contrast id to train (TRAIN), calibration (CALIBRATE only) or
test (EVAL only): a split name here is that role.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from rt_middleware.datasets.base import DatasetError, LabeledPrompt, data_dir

__all__ = ["load_coconot"]

Split = Literal["train", "calibration", "test"]
Part = Literal["refusal", "contrast", "both"]
_FILES = {"refusal": "coconot_eval.jsonl", "contrast": "coconot_contrast_eval.jsonl"}


def load_coconot(split: Split, part: Part = "both", *, root: Path | None = None) -> list[LabeledPrompt]:
    """Rows of one split: refusal rows are labelled with their category, contrast rows ``respond``."""
    folder = (root or data_dir()) / "coconot"
    try:
        splits = json.loads((folder / "splits.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"CoCoNot splits not found in {folder}: {exc}") from None
    if split not in ("train", "calibration", "test"):
        raise DatasetError(f"unknown CoCoNot split {split!r}; use train, calibration or test")
    parts = ["refusal", "contrast"] if part == "both" else [part]
    rows: list[LabeledPrompt] = []
    for name in parts:
        filename = _FILES[name]
        wanted = set(splits[filename][split])
        with (folder / filename).open(encoding="utf-8") as fh:
            for record in map(json.loads, fh):
                if record["id"] not in wanted:
                    continue
                contrast = name == "contrast"
                rows.append(
                    LabeledPrompt(
                        prompt=record["prompt"],
                        label="respond" if contrast else record["category"],
                        source=f"coconot-{name}",
                        subcategory=record.get("subcategory"),
                        id=record["id"],
                        mimics=record["category"] if contrast else None,
                    )
                )
    return rows
