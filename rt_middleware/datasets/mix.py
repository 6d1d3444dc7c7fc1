"""The training mix of the default model, de-duplicated against every held-out set.

Only rows whose role is TRAIN and whose licence is MIT / Apache / CC BY enter the mix
(shared/data/README.md). Every training prompt is dropped when its normalised text occurs in an
EVAL set or in the CoCoNot calibration split (which tunes the policy, so it must stay unseen too).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rt_middleware.datasets.base import LabeledPrompt, dedupe_against
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
from rt_middleware.datasets.xstest import load_xstest

__all__ = ["DEFAULT_CAPS", "TrainingMix", "build_training_mix", "eval_prompts", "heldout_prompts"]

DEFAULT_CAPS: dict[str, int | None] = {
    "coconot-refusal": None,
    "coconot-contrast": None,
    "coconot-seeds": None,
    "coconot-pref": None,
    "self-instruct": None,
    "ultrachat": None,
    "advbench": 150,
    "harmbench-val": None,
    "jailbreakbench": None,
    "strongreject": 200,
}
"""Rows drawn per source (None: all). AdvBench is heavily near-duplicated, so it is sampled."""


def eval_prompts(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Every EVAL row: CoCoNot test (refusal + contrast), XSTest, HarmBench test, OR-Bench,
    Do-Not-Answer and AlpacaEval."""
    return [
        *load_coconot("test", "both", root=root),
        *load_xstest(root=root),
        *load_harmbench("test", root=root),
        *load_or_bench("hard", root=root),
        *load_or_bench("toxic", root=root),
        *load_do_not_answer(root=root),
        *load_alpaca_eval(root=root),
    ]


def heldout_prompts(*, root: Path | None = None) -> list[LabeledPrompt]:
    """EVAL rows plus the CoCoNot calibration split: nothing here may be trained on."""
    return [*eval_prompts(root=root), *load_coconot("calibration", "both", root=root)]


def _train_sources(root: Path | None) -> dict[str, Callable[[], list[LabeledPrompt]]]:
    return {
        "coconot-refusal": lambda: load_coconot("train", "refusal", root=root),
        "coconot-contrast": lambda: load_coconot("train", "contrast", root=root),
        "coconot-seeds": lambda: load_coconot_seeds(root=root),
        "coconot-pref": lambda: load_coconot_pref(root=root),
        "self-instruct": lambda: load_self_instruct(root=root),
        "ultrachat": lambda: load_ultrachat(root=root),
        "advbench": lambda: load_advbench(root=root),
        "harmbench-val": lambda: load_harmbench("val", root=root),
        "jailbreakbench": lambda: load_jailbreakbench(root=root),
        "strongreject": lambda: load_strongreject(root=root),
    }


@dataclass(frozen=True)
class TrainingMix:
    """The rows, how many each source gave, and how many the de-duplication removed."""

    rows: list[LabeledPrompt]
    counts: dict[str, int]
    dropped: dict[str, int]

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(row.label for row in self.rows))


def build_training_mix(
    *, seed: int = 0, caps: dict[str, int | None] | None = None, root: Path | None = None
) -> TrainingMix:
    """Load every TRAIN source, sample the capped ones with `seed`, drop held-out look-alikes."""
    caps = DEFAULT_CAPS if caps is None else caps
    rng = random.Random(seed)
    banned = heldout_prompts(root=root)
    rows: list[LabeledPrompt] = []
    counts: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for name, load in _train_sources(root).items():
        if name not in caps:
            continue
        loaded = load()
        kept = dedupe_against(loaded, banned, rows)
        dropped[name] = len(loaded) - len(kept)
        cap = caps[name]
        if cap is not None and len(kept) > cap:
            kept = rng.sample(kept, cap)
        counts[name] = len(kept)
        rows.extend(kept)
    rng.shuffle(rows)
    return TrainingMix(rows=rows, counts=counts, dropped=dropped)
