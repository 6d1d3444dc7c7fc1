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
    checkout_data_dir,
    data_dir,
    dedupe_against,
    load_file,
    normalize_text,
)
from rt_middleware.datasets.benign import (
    load_alpaca_eval,
    load_coconot_pref,
    load_coconot_seeds,
    load_self_instruct,
    load_ultrachat,
)
from rt_middleware.datasets.coconot import load_coconot
from rt_middleware.datasets.harmful import (
    load_advbench,
    load_do_not_answer,
    load_harmbench,
    load_jailbreakbench,
    load_or_bench,
    load_strongreject,
)
from rt_middleware.datasets.mix import TrainingMix, build_training_mix, eval_prompts, heldout_prompts
from rt_middleware.datasets.xstest import load_xstest

__all__ = [
    "DATA_DIR_ENV",
    "DatasetError",
    "LabeledPrompt",
    "TrainingMix",
    "build_training_mix",
    "checkout_data_dir",
    "data_dir",
    "dedupe_against",
    "eval_prompts",
    "heldout_prompts",
    "load_advbench",
    "load_alpaca_eval",
    "load_coconot",
    "load_coconot_pref",
    "load_coconot_seeds",
    "load_do_not_answer",
    "load_file",
    "load_harmbench",
    "load_jailbreakbench",
    "load_or_bench",
    "load_self_instruct",
    "load_strongreject",
    "load_ultrachat",
    "load_xstest",
    "normalize_text",
]
