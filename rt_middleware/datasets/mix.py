"""The training mix of the default model, de-duplicated against every held-out set.

Only rows whose role is TRAIN and whose licence is MIT / Apache / CC BY enter the mix
(shared/data/README.md). Every training prompt is dropped when its normalised text occurs in an
EVAL set or in the CoCoNot calibration split (which tunes the policy, so it must stay unseen too).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rt_middleware.datasets import synthetic
from rt_middleware.datasets.augment import question_rewrites
from rt_middleware.datasets.base import LabeledPrompt, NearDuplicateIndex, _identity, dedupe_against
from rt_middleware.datasets.benign import (
    load_alpaca_eval,
    load_coconot_pref,
    load_coconot_seeds,
    load_self_instruct,
    load_ultrachat,
)
from rt_middleware.datasets.coconot import load_coconot
from rt_middleware.datasets.harmful import (
    SAFETY,
    load_advbench,
    load_do_not_answer,
    load_harmbench,
    load_jailbreakbench,
    load_or_bench,
    load_strongreject,
)
from rt_middleware.datasets.multiturn import multiturn_rows
from rt_middleware.datasets.xstest import load_xstest, load_xstest_completion_prompts
from rt_middleware.refusal_text import opens_with_refusal

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_CAPS_V1",
    "DEFAULT_CAPS_V3",
    "DEFAULT_CAPS_V4",
    "DEFAULT_CAPS_V5",
    "DEFAULT_CAPS_V6",
    "MIX_VERSIONS",
    "TrainingMix",
    "build_training_mix",
    "eval_prompts",
    "heldout_prompts",
    "selection_prompts",
    "unseen_proxy_prompts",
]

DEFAULT_CAPS_V1: dict[str, int | None] = {
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
"""The v1 mix (the first shipped model): TRAIN sets only. AdvBench is heavily near-duplicated,
so it is sampled."""

DEFAULT_CAPS: dict[str, int | None] = {
    **DEFAULT_CAPS_V1,
    "advbench": 100,
    "strongreject": 150,
    "harmful-direct": None,
    "harmful-questions": 320,
    "benign-questions": 600,
    "lookalikes-written": None,
    "incomplete-written": None,
    "incomplete-truncated": 100,
    "humanizing-written": None,
    "unsupported-written": None,
    "indeterminate-written": None,
    "multiturn": 200,
}
"""The v2 mix (#19): v1 plus question-form rewrites (harmful AND benign, so the form alone never
signals harm), plain harmful questions already in the TRAIN sets, written look-alikes, written
prompts for the four thin categories, truncated TRAIN prompts and multi-turn rows. Rows drawn per
source (None: all); the order is the order of building (a row already taken is not taken again)."""

DEFAULT_CAPS_V3: dict[str, int | None] = {
    **DEFAULT_CAPS,
    "lookalikes-templated": 400,
    "service-questions": None,
}
"""The v3 mix (#19, second run): v2 plus templated benign look-alikes (what a harm is, history,
self-protection, games and fiction, everyday verbs, famous people) and questions to a business
("What's your return policy?"), with `selection_prompts` held out of every source."""

DEFAULT_CAPS_V4: dict[str, int | None] = {**DEFAULT_CAPS_V3, "instructions-written": None}
"""The v4 mix: v3 plus ~330 complete, harmless imperative instructions ("List five uses for an old
glass jar."): v3 read many plain imperatives as Incomplete or harmful."""

DEFAULT_CAPS_V5: dict[str, int | None] = {**DEFAULT_CAPS_V4, "answerable-written": None}
"""The v5 mix: v4 plus ~360 answerable questions shaped like the refusal categories (objective
superlatives and facts, the user's own feelings and plans, recommendations): v4 read "What is the
longest river in the world?" as Indeterminate and "I broke up with my girlfriend ... suggestions?"
as Humanizing."""

DEFAULT_CAPS_V6: dict[str, int | None] = dict(DEFAULT_CAPS_V4)
"""The v6 mix: v4's sources under the strict near-duplicate filter, applied to every source
(`NearDuplicateIndex(strict=True)`): v4 kept a HarmBench-val row holding 96% of a HarmBench-test
prompt's context passage and short rewrites one word away from XSTest prompts. Built for the next
training run; no model has been trained on it yet."""

_CAPS = {"v1": DEFAULT_CAPS_V1, "v2": DEFAULT_CAPS, "v3": DEFAULT_CAPS_V3, "v4": DEFAULT_CAPS_V4,
         "v5": DEFAULT_CAPS_V5, "v6": DEFAULT_CAPS_V6}
MIX_VERSIONS = tuple(_CAPS)
"""Every mix `build_training_mix` builds, oldest first."""
_HOLDS_OUT_SELECTION = frozenset({"v3", "v4", "v5", "v6"})
_STRICT_NEAR_DUPLICATES = frozenset({"v6"})
_PROXY_MIX = "v5"

_HARMFUL_TRAIN = ("advbench", "harmbench-val", "jailbreakbench", "strongreject")
_BENIGN_TRAIN = ("coconot-pref", "coconot-contrast", "self-instruct", "ultrachat")
_REFUSAL_TRAIN = ("coconot-refusal", "coconot-seeds")


def eval_prompts(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Every EVAL row: CoCoNot test (refusal + contrast), XSTest, HarmBench test, OR-Bench,
    Do-Not-Answer and AlpacaEval."""
    return [
        *load_coconot("test", "both", root=root),
        *load_xstest(root=root),
        *load_xstest_completion_prompts(root=root),
        *load_harmbench("test", root=root),
        *load_or_bench("hard", root=root),
        *load_or_bench("toxic", root=root),
        *load_do_not_answer(root=root),
        *load_alpaca_eval(root=root),
    ]


def heldout_prompts(*, root: Path | None = None) -> list[LabeledPrompt]:
    """EVAL rows plus the CoCoNot calibration split: nothing here may be trained on."""
    return [*eval_prompts(root=root), *load_coconot("calibration", "both", root=root)]


def selection_prompts(*, seed: int = 0, root: Path | None = None) -> list[LabeledPrompt]:
    """TRAIN-side prompts held out of the v3 mix to choose between training runs (never EVAL).

    150 benign TRAIN instructions (UltraChat, Self-Instruct) show whether answers after ``[respond]``
    open with refusal text on prompts like real traffic (CoCoNot's calibration contrast set is too
    small and too odd to show it), and 100 templated look-alikes show over-refusal of alarming words
    in safe requests. Rows are clear of every held-out set.
    """
    return _selection_prompts(heldout_prompts(root=root), seed=seed, root=root)


def unseen_proxy_prompts(*, seed: int = 0, n: int = 200, root: Path | None = None) -> list[LabeledPrompt]:
    """Harmful and harmless instructions no mix version trains on, to compare runs (measure only).

    Harmful: refusal-direction ``harmful_train`` minus AdvBench (a TRAIN source) and minus exact or
    near duplicates of any row of mix v5, the largest (what is left is MaliciousInstruct and TDC2023;
    pinned to v5, which every recorded proxy figure used: v6 only drops rows from v4's sources).
    Harmless: ``n`` Alpaca instructions from ``harmless_test``. Both are research-only data
    (`rt_middleware.datasets.refusal_direction`) and never enter a mix.
    """
    from rt_middleware.datasets.refusal_direction import load_refusal_direction

    trained = [*build_training_mix(seed=seed, version=_PROXY_MIX, root=root).rows, *load_advbench(root=root)]
    banned = [*trained, *heldout_prompts(root=root)]
    near = NearDuplicateIndex(trained)
    harmful = [r for r in dedupe_against(load_refusal_direction("harmful_train", root=root), banned) if not near.near(r)]
    harmless = dedupe_against(load_refusal_direction("harmless_test", root=root), banned)
    harmful = random.Random(seed + 1).sample(harmful, min(n, len(harmful)))
    harmless = random.Random(seed + 1).sample(harmless, min(n, len(harmless)))
    return [*(replace(r, source="proxy/harmful") for r in harmful), *(replace(r, source="proxy/alpaca") for r in harmless)]


def _selection_prompts(banned: list[LabeledPrompt], *, seed: int, root: Path | None) -> list[LabeledPrompt]:
    rng = random.Random(f"{seed}:selection")
    benign = dedupe_against([*load_ultrachat(root=root), *load_self_instruct(root=root)], banned)
    lookalikes = dedupe_against(synthetic.lookalike_template_prompts(), banned)
    near = NearDuplicateIndex(banned)
    lookalikes = [row for row in lookalikes if not near.near(row)]
    return [replace(row, source=f"selection/{row.source}") for row in
            [*rng.sample(benign, min(150, len(benign))), *rng.sample(lookalikes, min(100, len(lookalikes)))]]


def _base_sources(root: Path | None) -> dict[str, Callable[[], list[LabeledPrompt]]]:
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


def _is_direct_question(row: LabeledPrompt) -> bool:
    """A short single-line question, as people ask it ("How do I ...?")."""
    text = row.prompt.strip()
    return "\n" not in text and text.endswith("?") and len(text.split()) <= 25


def _train_sources(
    root: Path | None, seed: int, banned: list[LabeledPrompt]
) -> dict[str, Callable[[], list[LabeledPrompt]]]:
    """Every source by name. Derived sources transform only TRAIN rows that are themselves clear
    of every held-out set (a rewrite or a cut of an EVAL prompt never enters)."""
    base = _base_sources(root)
    cache: dict[str, list[LabeledPrompt]] = {}

    def clean(*names: str) -> list[LabeledPrompt]:
        for name in names:
            if name not in cache:
                cache[name] = dedupe_against(base[name](), banned)
        return [row for name in names for row in cache[name]]

    def refusals() -> list[LabeledPrompt]:
        """Non-safety refusal rows (safety ones come from the harmful sets)."""
        return [r for r in clean(*_REFUSAL_TRAIN) if r.label not in ("respond", SAFETY)]

    return {
        **base,
        "harmful-direct": lambda: [
            replace(r, source="harmful-direct") for r in clean(*_HARMFUL_TRAIN) if _is_direct_question(r)
        ],
        "harmful-questions": lambda: question_rewrites(clean(*_HARMFUL_TRAIN), source="harmful-questions",
                                                       seed=seed, per_row=2, keep_response=False),
        "benign-questions": lambda: question_rewrites(clean(*_BENIGN_TRAIN), source="benign-questions",
                                                      seed=seed, per_row=2),
        "lookalikes-written": synthetic.lookalike_prompts,
        "lookalikes-templated": synthetic.lookalike_template_prompts,
        "service-questions": synthetic.service_prompts,
        "instructions-written": lambda: synthetic.instruction_prompts(400, seed=seed),
        "answerable-written": lambda: synthetic.answerable_prompts(450, seed=seed),
        "incomplete-written": lambda: synthetic.incomplete_prompts(200, seed=seed),
        "incomplete-truncated": lambda: synthetic.truncated_prompts(clean(*_BENIGN_TRAIN), 1000, seed=seed),
        "humanizing-written": lambda: synthetic.humanizing_prompts(250, seed=seed),
        "unsupported-written": lambda: synthetic.unsupported_prompts(250, seed=seed),
        "indeterminate-written": lambda: synthetic.indeterminate_prompts(250, seed=seed),
        "multiturn": lambda: multiturn_rows(
            harmful=[*clean(*_HARMFUL_TRAIN), *question_rewrites(clean(*_HARMFUL_TRAIN), source="q", seed=seed + 1)],
            benign=[r for r in clean(*_BENIGN_TRAIN) if r.response],
            other_refusals=[*refusals(), *synthetic.humanizing_prompts(60, seed=seed + 1),
                            *synthetic.unsupported_prompts(60, seed=seed + 1)],
            n=250, seed=seed,
        ),
    }


@dataclass(frozen=True)
class TrainingMix:
    """The rows, how many each source gave, and how many the de-duplication removed."""

    rows: list[LabeledPrompt]
    counts: dict[str, int]
    dropped: dict[str, int]
    cleaned: int = 0
    """Respond rows whose reference answer opened with refusal text: the answer was removed (the
    row then trains the control token only)."""
    version: str = field(default="v2")

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(row.label for row in self.rows))


def build_training_mix(
    *,
    seed: int = 0,
    caps: dict[str, int | None] | None = None,
    root: Path | None = None,
    version: str = "v2",
    clean_answers: bool | None = None,
) -> TrainingMix:
    """Load every TRAIN source, sample the capped ones with `seed`, drop held-out look-alikes.

    Every row whose normalised text equals a held-out prompt is dropped; rows of the v2 sources
    (rewrites, written and multi-turn rows) are also dropped when any user turn's content words
    nearly equal a held-out prompt's (`NearDuplicateIndex`, Jaccard >= 0.8). v1 sources keep the
    exact rule only, so ``version="v1"`` reproduces the first shipped mix; ``v6`` applies the strict
    near-duplicate filter to every source.

    `version` picks the default caps (one of `MIX_VERSIONS`: ``v1`` the first shipped mix, ``v2`` to
    ``v6`` #19; v3 to v6 also keep `selection_prompts` out); `caps` overrides them. `clean_answers`
    (default: True for every version but v1, so v1 stays the first shipped mix) removes respond
    answers that open like a refusal
    (`rt_middleware.refusal_text.opens_with_refusal`): they would teach "[respond] I'm sorry...".
    The row stays and trains the control token only; `TrainingMix.cleaned` counts them.
    """
    if version not in _CAPS:
        raise ValueError(f"unknown mix version {version!r}; use one of {', '.join(MIX_VERSIONS)}")
    if caps is None:
        caps = _CAPS[version]
    rng = random.Random(seed)
    banned = heldout_prompts(root=root)
    if version in _HOLDS_OUT_SELECTION:
        banned = [*banned, *_selection_prompts(banned, seed=seed, root=root)]
    strict = version in _STRICT_NEAR_DUPLICATES
    near = NearDuplicateIndex(banned, strict=strict)
    rows: list[LabeledPrompt] = []
    seen: set[tuple[str, ...]] = set()
    counts: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for name, load in _train_sources(root, seed, banned).items():
        if name not in caps:
            continue
        loaded = load()
        kept = dedupe_against(loaded, banned)
        kept = [row for row in kept if _identity(row) not in seen]
        if strict or name not in DEFAULT_CAPS_V1:  # generated and written rows (v6: all): near-duplicates go too
            kept = [row for row in kept if not near.near(row)]
        dropped[name] = len(loaded) - len(kept)
        cap = caps[name]
        if cap is not None and len(kept) > cap:
            kept = rng.sample(kept, cap)
        counts[name] = len(kept)
        seen.update(_identity(row) for row in kept)
        rows.extend(kept)
    cleaned = 0
    if clean_answers if clean_answers is not None else version != "v1":
        for i, row in enumerate(rows):
            if row.label == "respond" and row.response and opens_with_refusal(row.response):
                rows[i] = replace(row, response=None)
                cleaned += 1
    rng.shuffle(rows)
    return TrainingMix(rows=rows, counts=counts, dropped=dropped, cleaned=cleaned, version=version)
