"""Labelled prompt sets: the user FILE schema plus loaders for the sets in ``shared/data``.

Every loader returns `LabeledPrompt` rows whose `label` is a decision name: a category of the
CoCoNot schema, or ``respond`` for prompts that should be answered. Which rows may train, calibrate
or only evaluate is each set's `role` (see shared/data/README.md); loaders never mix roles.
"""

from __future__ import annotations

from rt_middleware.datasets.base import (
    DATA_DIR_ENV,
    DatasetError,
    LabeledPrompt,
    data_dir,
    dedupe_against,
    load_file,
    normalize_text,
)
from rt_middleware.datasets.coconot import load_coconot
from rt_middleware.datasets.xstest import load_xstest

__all__ = [
    "DATA_DIR_ENV",
    "DatasetError",
    "LabeledPrompt",
    "data_dir",
    "dedupe_against",
    "load_coconot",
    "load_file",
    "load_xstest",
    "normalize_text",
]
