"""Arditi et al.'s harmful / harmless instruction splits (shared/data/refusal-direction): measure only.

Research and evaluation only, never in the shipped model: the harmless files are Alpaca
instructions (CC BY-NC 4.0) and ``harmful_train`` holds MaliciousInstruct rows of unknown licence.
Used to compare training runs on prompts none of them trained on (`datasets.mix.unseen_proxy_prompts`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from rt_middleware.datasets.base import DatasetError, LabeledPrompt, data_dir
from rt_middleware.datasets.harmful import SAFETY
from rt_middleware.tokens import RESPOND

__all__ = ["RefusalDirectionFile", "load_refusal_direction"]

RefusalDirectionFile = Literal[
    "harmful_train", "harmful_val", "harmful_test", "harmless_train", "harmless_val", "harmless_test"
]
_FILES = ("harmful_train", "harmful_val", "harmful_test", "harmless_train", "harmless_val", "harmless_test")


def load_refusal_direction(file: RefusalDirectionFile, *, root: Path | None = None) -> list[LabeledPrompt]:
    """One split file: harmful rows are safety concerns, harmless (Alpaca) rows are ``respond``."""
    if file not in _FILES:
        raise DatasetError(f"unknown refusal-direction file {file!r}; use one of {', '.join(_FILES)}")
    path = (root or data_dir()) / "refusal-direction" / f"{file}.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    label = SAFETY if file.startswith("harmful") else RESPOND
    return [
        LabeledPrompt(prompt=r["instruction"], label=label, source=f"refusal-direction-{file}",
                      subcategory=r.get("category"), id=f"{file}-{i}")
        for i, r in enumerate(records)
    ]
