"""Training-set loaders: row counts, roles, and that no held-out prompt reaches the training mix."""

from __future__ import annotations

from collections import Counter

import pytest

from rt_middleware.datasets import DatasetError, load_coconot, normalize_text
from rt_middleware.datasets.benign import (
    load_alpaca_eval,
    load_coconot_pref,
    load_coconot_seeds,
    load_self_instruct,
    load_ultrachat,
)
from rt_middleware.datasets.harmful import (
    SAFETY,
    load_advbench,
    load_do_not_answer,
    load_harmbench,
    load_jailbreakbench,
    load_or_bench,
    load_strongreject,
)
from rt_middleware.datasets.mix import DEFAULT_CAPS, build_training_mix, eval_prompts, heldout_prompts
from rt_middleware.tokens import COCONOT_CATEGORIES


@pytest.mark.parametrize(
    ("load", "rows", "label"),
    [
        (load_advbench, 520, SAFETY),
        (lambda: load_harmbench("val"), 80, SAFETY),
        (lambda: load_harmbench("test"), 320, SAFETY),
        (load_jailbreakbench, 100, SAFETY),
        (load_strongreject, 313, SAFETY),
        (lambda: load_or_bench("hard"), 1319, "respond"),
        (lambda: load_or_bench("toxic"), 655, SAFETY),
        (load_do_not_answer, 939, SAFETY),
        (load_self_instruct, 427, "respond"),
        (load_ultrachat, 385, "respond"),
        (load_coconot_pref, 927, "respond"),
        (load_alpaca_eval, 805, "respond"),
    ],
)
def test_loaders_give_every_row_with_one_label(load, rows: int, label: str) -> None:
    loaded = load()
    assert len(loaded) == rows
    assert {row.label for row in loaded} == {label}
    assert all(row.prompt.strip() for row in loaded)


def test_answers_are_kept_where_a_set_has_them() -> None:
    assert all(row.response for row in load_coconot_pref())
    assert all(row.mimics in COCONOT_CATEGORIES for row in load_coconot_pref())
    assert sum(row.response is not None for row in load_self_instruct()) >= 420


def test_seed_prompts_cover_every_category_and_contrast() -> None:
    counts = Counter(row.label for row in load_coconot_seeds())
    assert set(counts) == {*COCONOT_CATEGORIES, "respond"}
    assert counts["Indeterminate requests"] == 23  # the seeds call the category "Unknowns"
    assert sum(counts.values()) == 220


def test_harmbench_contextual_rows_carry_their_context() -> None:
    contextual = [row for row in load_harmbench("val") if row.subcategory == "contextual"]
    assert len(contextual) == 19 and all("\n\n---\n\n" in row.prompt for row in contextual)


def test_unknown_splits_are_typed_errors() -> None:
    with pytest.raises(DatasetError, match="use val or test"):
        load_harmbench("train")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="use hard or toxic"):
        load_or_bench("mild")  # type: ignore[arg-type]


def test_eval_sets_are_all_there() -> None:
    sources = Counter(row.source for row in eval_prompts())
    assert sources == {
        "coconot-refusal": 400, "coconot-contrast": 151, "xstest": 450, "xstest-completions": 1, "harmbench-test": 320,
        "or-bench-hard": 1319, "or-bench-toxic": 655, "do-not-answer": 939, "alpaca-eval": 805,
    }


def test_no_held_out_prompt_leaks_into_the_training_mix() -> None:
    mix = build_training_mix(seed=0)
    banned = {normalize_text(row.prompt) for row in heldout_prompts()}
    keys = [normalize_text(row.prompt) for row in mix.rows]
    assert not set(keys) & banned
    # no duplicates within the mix either (a multi-turn row may end with a single-turn row's prompt)
    turns = [(*(normalize_text(text) for _, text in row.history), key) for row, key in zip(mix.rows, keys, strict=True)]
    assert len(turns) == len(set(turns))
    # AlpacaEval contains the 252 user-oriented Self-Instruct tasks and UltraChat's Vicuna questions
    assert mix.dropped["self-instruct"] >= 252 and mix.dropped["ultrachat"] >= 80
    assert sum(mix.counts.values()) == len(mix.rows)


def test_training_mix_uses_only_permissive_train_sources() -> None:
    mix = build_training_mix(seed=0)
    assert set(mix.counts) == set(DEFAULT_CAPS)
    sources = {row.source for row in mix.rows}
    assert not sources & {"alpaca-eval", "do-not-answer", "or-bench-hard", "or-bench-toxic", "xstest",
                          "harmbench-test"}
    test_ids = {row.id for row in load_coconot("test")} | {row.id for row in load_coconot("calibration")}
    assert not test_ids & {row.id for row in mix.rows if row.source.startswith("coconot-")}
    assert mix.counts["advbench"] == DEFAULT_CAPS["advbench"] and set(mix.label_counts()) == {*COCONOT_CATEGORIES, "respond"}


def test_the_mix_is_reproducible_for_a_seed() -> None:
    first, again = build_training_mix(seed=5), build_training_mix(seed=5)
    assert [r.prompt for r in first.rows] == [r.prompt for r in again.rows]
    assert [r.prompt for r in build_training_mix(seed=6).rows] != [r.prompt for r in first.rows]
