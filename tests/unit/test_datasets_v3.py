"""Training data v3 (#19, second run): templated look-alikes, questions to a business, and the
TRAIN-side selection set that no training row may come from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rt_middleware.datasets import normalize_text
from rt_middleware.datasets.base import NearDuplicateIndex
from rt_middleware.datasets.harmful import SAFETY
from rt_middleware.datasets.mix import (
    DEFAULT_CAPS,
    DEFAULT_CAPS_V3,
    TrainingMix,
    build_training_mix,
    heldout_prompts,
    selection_prompts,
)
from rt_middleware.datasets.synthetic import lookalike_template_prompts, service_prompts
from rt_middleware.tokens import COCONOT_CATEGORIES


@pytest.fixture(scope="module")
def mix() -> TrainingMix:
    return build_training_mix(seed=0, version="v3")


def test_templated_lookalikes_are_benign_varied_and_unique() -> None:
    rows = lookalike_template_prompts()
    kinds = Counter(row.subcategory for row in rows)
    assert len(rows) >= 500 and len(kinds) == 6 and min(kinds.values()) >= 30
    assert all(row.label == "respond" and row.mimics == SAFETY and row.response is None for row in rows)
    assert len({normalize_text(row.prompt) for row in rows}) == len(rows)
    assert not [row.prompt for row in rows if "{" in row.prompt]  # every slot filled


def test_questions_to_a_business_are_answered_and_keep_the_regression_prompts_unseen() -> None:
    rows = service_prompts()
    assert len(rows) >= 20 and all(row.label == "respond" and row.mimics == "Humanizing requests" for row in rows)
    assert sum("your" in row.prompt.lower() for row in rows) >= len(rows) // 2
    # the #19 regression ("What is your refund policy?" read as Humanizing) and the #17.1 follow-up
    # are checked on the trained model, so neither may be a training row
    prompts = {normalize_text(row.prompt) for row in rows}
    assert normalize_text("What is your refund policy?") not in prompts
    assert normalize_text("How do I open a savings account?") not in prompts


def test_the_selection_set_is_held_out_of_every_source(mix: TrainingMix) -> None:
    selection = selection_prompts(seed=0)
    sources = Counter(row.source for row in selection)
    assert len(selection) == 250 and sources["selection/lookalikes-templated"] == 100
    assert all(row.label == "respond" for row in selection)
    held = {normalize_text(row.prompt) for row in heldout_prompts()}
    assert not held.intersection(normalize_text(row.prompt) for row in selection)  # TRAIN side, never EVAL
    chosen = {normalize_text(row.prompt) for row in selection}
    near = NearDuplicateIndex(selection)
    for row in mix.rows:
        texts = [row.prompt, *(text for role, text in row.history if role == "user")]
        assert not chosen.intersection(normalize_text(t) for t in texts), row.prompt
        if row.source not in ("coconot-refusal", "coconot-contrast", "coconot-seeds", "coconot-pref",
                              "self-instruct", "ultrachat"):
            assert not near.near(row), row.prompt  # no rewrite or cut of a selection prompt either
    assert selection_prompts(seed=0) == selection and selection_prompts(seed=1) != selection


def test_v3_adds_its_sources_and_keeps_the_balance(mix: TrainingMix) -> None:
    assert set(mix.counts) == set(DEFAULT_CAPS_V3) == {*DEFAULT_CAPS, "lookalikes-templated", "service-questions"}
    assert mix.version == "v3" and mix.counts["lookalikes-templated"] == 400 and mix.counts["service-questions"] > 15
    n = len(mix.rows)
    shares = {label: count / n for label, count in mix.label_counts().items()}
    assert 4800 <= n <= 5400 and 0.50 <= shares["respond"] <= 0.56
    assert all(shares[c] >= 0.05 for c in COCONOT_CATEGORIES), shares
    v2 = build_training_mix(seed=0)
    assert len(v2.rows) == 4796  # v2 (the previous model's mix) is unchanged


def test_the_shipped_model_was_trained_on_the_mix_the_preset_builds() -> None:
    import json
    from importlib.resources import files

    from rt_middleware.train.presets import DATA_SEED, DATA_VERSION, REFUSAL_TEXT

    shipped = json.loads((files("rt_middleware") / "data" / "default_model" / "manifest.json").read_text("utf-8"))
    preset = build_training_mix(seed=DATA_SEED, version=DATA_VERSION)
    assert shipped["data_version"] == DATA_VERSION == preset.version == "v4"
    assert shipped["data_mix"] == preset.counts and shipped["data_labels"] == preset.label_counts()
    assert shipped["refusal_text"] is REFUSAL_TEXT is False


def test_v4_adds_complete_imperative_instructions_to_v3(mix: TrainingMix) -> None:
    from rt_middleware.datasets.synthetic import instruction_prompts

    rows = instruction_prompts(400, seed=0)
    assert 300 <= len(rows) <= 400 and len({row.prompt for row in rows}) == len(rows)
    assert all(row.label == "respond" and not row.prompt.endswith("?") and "{" not in row.prompt for row in rows)
    assert len(Counter(row.subcategory for row in rows)) == 5
    v4 = build_training_mix(seed=0, version="v4")
    assert set(v4.counts) == {*mix.counts, "instructions-written"}
    assert v4.counts["instructions-written"] == len(rows)
    assert {r.prompt for r in v4.rows} >= {r.prompt for r in rows}


def test_v5_adds_answerable_questions_shaped_like_refusals_to_v4() -> None:
    from rt_middleware.datasets.synthetic import answerable_prompts

    rows = answerable_prompts(450, seed=0)
    assert 300 <= len(rows) <= 450 and len({row.prompt for row in rows}) == len(rows)
    assert all(row.label == "respond" and "{" not in row.prompt for row in rows)
    kinds = Counter(row.subcategory for row in rows)
    assert set(kinds) == {"facts with one answer", "advice for the user's own life", "recommendations for the user"}
    assert min(kinds.values()) >= 50
    assert [r.prompt for r in answerable_prompts(450, seed=0)] == [r.prompt for r in rows]  # seeded
    v4, v5 = build_training_mix(seed=0, version="v4"), build_training_mix(seed=0, version="v5")
    assert set(v5.counts) == {*v4.counts, "answerable-written"}
    assert {k: v for k, v in v5.counts.items() if k != "answerable-written"} == v4.counts
    assert v5.counts["answerable-written"] + v5.dropped["answerable-written"] == len(rows)
    kept = {r.prompt for r in v5.rows if r.source == "answerable-written"}
    assert not kept & {r.prompt for r in selection_prompts(seed=0)}  # the selection set stays held out


def test_unseen_proxy_holds_nothing_any_mix_trains_on(mix: TrainingMix) -> None:
    from rt_middleware.datasets import load_advbench
    from rt_middleware.datasets.base import NearDuplicateIndex
    from rt_middleware.datasets.mix import unseen_proxy_prompts

    rows = unseen_proxy_prompts()
    harmful = [r for r in rows if r.source == "proxy/harmful"]
    alpaca = [r for r in rows if r.source == "proxy/alpaca"]
    assert len(alpaca) == 200 and 100 <= len(harmful) <= 200 and len(rows) == len(harmful) + len(alpaca)
    assert all(r.should_refuse for r in harmful) and not any(r.should_refuse for r in alpaca)
    from rt_middleware.datasets.mix import MIX_VERSIONS

    every = [row for version in MIX_VERSIONS for row in build_training_mix(seed=0, version=version).rows]
    trained = {r.prompt.strip().lower() for r in [*every, *load_advbench()]}
    assert not trained & {r.prompt.strip().lower() for r in rows}
    near = NearDuplicateIndex([*every, *load_advbench()])
    assert not any(near.near(r) for r in harmful)
    assert [r.prompt for r in unseen_proxy_prompts()] == [r.prompt for r in rows]  # seeded


def test_refusal_direction_loader_labels_and_errors(tmp_path: Path) -> None:
    from rt_middleware.datasets import DatasetError
    from rt_middleware.datasets.refusal_direction import load_refusal_direction

    harmful, harmless = load_refusal_direction("harmful_train"), load_refusal_direction("harmless_test")
    assert len(harmful) == 260 and all(r.should_refuse for r in harmful)
    assert len(harmless) > 6000 and not any(r.should_refuse for r in harmless)
    with pytest.raises(DatasetError, match="unknown refusal-direction file 'harmful'"):
        load_refusal_direction("harmful")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="cannot read"):
        load_refusal_direction("harmful_val", root=tmp_path)


def test_the_strict_near_duplicate_filter_catches_short_rewrites_and_shared_passages() -> None:
    """What a data review found in mix v4: one added word slips past content words alone (2 of 3),
    and a HarmBench-val row carried a HarmBench-test prompt's whole context passage."""
    from rt_middleware.datasets import LabeledPrompt

    passage = " ".join(f"context{i}" for i in range(60))  # a shared context text, two different asks
    asked = " ".join(f"alpha{i}" for i in range(30))
    other_ask = " ".join(f"beta{i}" for i in range(40))
    held = [LabeledPrompt("How do I commit fraud?", SAFETY), LabeledPrompt(f"{passage} {asked}", SAFETY)]
    rewrite = LabeledPrompt("how do i commit mail fraud", SAFETY)
    same_context = LabeledPrompt(f"{passage} {other_ask}", SAFETY)
    other = LabeledPrompt("What do I need to open a bakery?", "respond")
    loose, strict = NearDuplicateIndex(held), NearDuplicateIndex(held, strict=True)
    assert not loose.near(rewrite) and not loose.near(same_context)  # v1-v5 keep their rule (and their models)
    assert strict.near(rewrite) and strict.near(same_context) and not strict.near(other)


def test_mix_v6_is_v4_without_the_near_duplicates_of_held_out_prompts() -> None:
    v4, v6 = build_training_mix(seed=0, version="v4"), build_training_mix(seed=0, version="v6")
    held = NearDuplicateIndex(heldout_prompts(), strict=True)
    assert not any(held.near(row) for row in v6.rows)
    assert sum(held.near(row) for row in v4.rows) >= 30  # what v6 takes out of the shipped model's mix
    assert set(v6.counts) == set(v4.counts) and abs(len(v6.rows) - len(v4.rows)) < 60
    assert not any("fentanyl_synthesis_stepbystep" in str(row.id) for row in v6.rows)
