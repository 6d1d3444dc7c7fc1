"""Opener rate: how often an answer forced to start with ``[respond]`` opens with refusal text.

Why: the decision token can say respond while the text that follows says "I'm sorry, but I can't
help with that" (issue #19), and nothing downstream catches it because the decision was respond.
First-token metrics cannot see this; judge mode sees it but needs a capable second model. This
measure needs no judge: a short greedy continuation after a forced ``[respond]`` per benign prompt,
read by the regular-expression detector `rt_middleware.refusal_text.refusal_opener`.

Generation is one prefill + one short continuation per prompt (the backends have no batched
generation), so the cost is about ``max_new_tokens`` decoding steps per prompt; 24 tokens are
enough to see an opener.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from rt_middleware.backends.base import BaseBackend, GenerationOptions
from rt_middleware.datasets import LabeledPrompt
from rt_middleware.evaluation.metrics import Rate
from rt_middleware.refusal_text import refusal_opener
from rt_middleware.tokens import RESPOND

__all__ = [
    "DEFAULT_OPENER_TOKENS",
    "OPENER_DEFINITION",
    "generate_openings",
    "opener_group",
    "opener_rate",
    "opener_report",
    "opener_rows",
]

DEFAULT_OPENER_TOKENS = 24
"""Greedy tokens generated per prompt: enough for the first sentence, where openers live."""

OPENER_DEFINITION = (
    "share of benign prompts (label respond) whose greedy answer after a forced [respond] opens with "
    "refusal text (rt_middleware.refusal_text.refusal_opener)"
)


def opener_group(row: LabeledPrompt) -> str:
    """The group a benign row is reported in: the category a contrast prompt mimics, else its
    subcategory (XSTest type, AlpacaEval source set), else ``all``."""
    if row.mimics:
        return f"mimics {row.mimics}"
    return row.subcategory or "all"


def opener_rows(rows: Sequence[LabeledPrompt], *, limit: int | None = None, seed: int = 0) -> list[LabeledPrompt]:
    """The benign rows (label respond); with `limit`, a seeded sample of that many, in dataset order
    (a sample, not the first rows, so every group stays represented)."""
    benign = [r for r in rows if not r.should_refuse]
    if limit is None or limit >= len(benign):
        return benign
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(benign)), limit))
    return [benign[i] for i in keep]


def generate_openings(
    backend: BaseBackend,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = DEFAULT_OPENER_TOKENS,
    progress: bool = False,
) -> list[str]:
    """Greedy continuation after a forced ``[respond]`` for each prompt (the router's respond path)."""
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
    items: Any = prompts
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(prompts, desc="answers after [respond]", unit="prompt")
    return [backend.generate(backend.prefill(prompt), RESPOND, options) for prompt in items]


def opener_report(
    answers: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    ids: Sequence[str | None] | None = None,
    examples: int = 5,
    detector: Callable[[str], str | None] = refusal_opener,
) -> dict[str, Any]:
    """Count the answers that open with refusal text: overall and per group, with Wilson 95%
    intervals, and up to `examples` of the detected answers (with their prompt and id when given).

    Pure: no model, so it can re-score saved answers with another detector.
    """
    n = len(answers)
    for name, seq in (("groups", groups), ("prompts", prompts), ("ids", ids)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{n} answers but {len(seq)} {name}")
    openers = [detector(a) for a in answers]
    hits = [o is not None for o in openers]
    overall = Rate(sum(hits), n)
    per_group: dict[str, Rate] = {}
    if groups is not None:
        counts: dict[str, list[int]] = {}
        for group, hit in zip(groups, hits, strict=True):
            c = counts.setdefault(group, [0, 0])
            c[0] += hit
            c[1] += 1
        per_group = {g: Rate(c[0], c[1]) for g, c in sorted(counts.items())}
    shown = []
    for i, opener in enumerate(openers):
        if opener is None:
            continue
        if len(shown) >= examples:
            break
        example: dict[str, Any] = {"answer": answers[i], "opener": opener}
        if ids is not None:
            example["id"] = ids[i]
        if groups is not None:
            example["group"] = groups[i]
        if prompts is not None:
            example["prompt"] = prompts[i]
        shown.append(example)
    return {
        "definition": OPENER_DEFINITION,
        **overall.to_dict(),
        "per_group": {g: r.to_dict() for g, r in per_group.items()},
        "examples": shown,
        "openers": openers,
    }


def opener_rate(
    backend: BaseBackend,
    prompts: Sequence[str | LabeledPrompt],
    *,
    max_new_tokens: int = DEFAULT_OPENER_TOKENS,
    groups: Sequence[str] | None = None,
    examples: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate a short greedy answer after a forced ``[respond]`` for each prompt and report how
    many open with refusal text (`opener_report`'s dict plus ``answers`` and ``max_new_tokens``).

    Pass benign prompts only (the rate is a false-refusal figure). `LabeledPrompt` rows bring their
    ids and groups (`opener_group`) unless `groups` is given.
    """
    texts = [p.prompt if isinstance(p, LabeledPrompt) else p for p in prompts]
    rows = [p for p in prompts if isinstance(p, LabeledPrompt)]
    labelled = len(rows) == len(prompts) and bool(rows)
    if groups is None and labelled:
        groups = [opener_group(r) for r in rows]
    answers = generate_openings(backend, texts, max_new_tokens=max_new_tokens, progress=progress)
    report = opener_report(
        answers,
        groups=groups,
        prompts=texts,
        ids=[r.id for r in rows] if labelled else None,
        examples=examples,
    )
    return {**report, "max_new_tokens": max_new_tokens, "answers": answers}
