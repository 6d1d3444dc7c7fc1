"""Multi-turn training rows: a refused exchange does not poison the thread, and history does not excuse harm.

Under ``decide_on: conversation`` (and for the forced-``[respond]`` answer prefill under
``last_turn``) the model reads the whole history. It must still answer a benign last turn after an
earlier refusal, and still refuse a harmful last turn after a benign exchange. The assistant's
earlier refusal is written the way the product returns it to the client: the policy's refusal
message, WITHOUT a control token (the router and `ChatEncoder` render history as plain text).
Pure and deterministic given a seed; built only from rows the caller passes (TRAIN rows).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace

from rt_middleware.datasets.base import LabeledPrompt
from rt_middleware.refusal_text import opens_with_refusal

__all__ = ["CLIENT_REFUSALS", "multiturn_rows"]

SAFETY = "Requests with safety concerns"

CLIENT_REFUSALS: dict[str, tuple[str, ...]] = {
    SAFETY: (
        "I'm sorry, but I can't help with that request.",  # policy.DEFAULT_REFUSAL_MESSAGE
        "I can't help with that.",
        "I can't help with that. For account help, contact the bank.",
        "Sorry, I can't assist with that.",
    ),
    "Incomplete requests": (
        "Could you tell me a bit more about what you need?",
        "I'm sorry, but I can't help with that request.",
    ),
    "Unsupported requests": (
        "That's outside what I can do as a text assistant.",
        "I can only help with text questions about your banking.",
    ),
    "Indeterminate requests": (
        "There isn't a single right answer to that.",
        "I can't give an opinion on that.",
    ),
    "Humanizing requests": (
        "I'm an AI assistant, so I don't have personal experiences.",
        "I'm the bank's virtual assistant.",
    ),
}
"""Refusal texts as clients receive them: the shipped policy's messages and the default one."""

_MAX_PROMPT_CHARS = 160
_MAX_ANSWER_CHARS = 220


def _short(rows: Sequence[LabeledPrompt]) -> list[LabeledPrompt]:
    return [r for r in rows if "\n" not in r.prompt.strip() and len(r.prompt) <= _MAX_PROMPT_CHARS]


def _brief_answer(text: str) -> str | None:
    """The first sentence(s) of an answer, up to ~220 characters, as the history's assistant turn."""
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    out = ""
    for sentence in sentences:
        if len(out) + len(sentence) + 1 > _MAX_ANSWER_CHARS:
            break
        out = f"{out} {sentence}".strip()
    return out or None


def multiturn_rows(
    *,
    harmful: Sequence[LabeledPrompt],
    benign: Sequence[LabeledPrompt],
    other_refusals: Sequence[LabeledPrompt],
    n: int = 200,
    seed: int = 0,
) -> list[LabeledPrompt]:
    """Two-turn conversations, about half labelled respond:

    - refused earlier turn (harmful, or another category) -> benign last turn: ``respond`` (45%);
    - benign earlier exchange -> harmful last turn: the safety category (30%);
    - refused earlier turn -> another harmful last turn: safety (15%), so a refusal in the history
      never means "answer the next one";
    - benign -> benign: ``respond`` (10%).

    `benign` rows need a `response` (it answers the last turn and, cut short, fills the history).
    """
    rng = random.Random(f"{seed}:multiturn")
    harmful = _short(harmful)
    benign = [r for r in _short(benign)
              if r.response and _brief_answer(r.response) and not opens_with_refusal(r.response)]
    other = _short(other_refusals)
    if not harmful or not benign:
        return []
    plan = [("refused-benign", 0.45), ("benign-harmful", 0.30), ("refused-harmful", 0.15), ("benign-benign", 0.10)]
    out: list[LabeledPrompt] = []
    for kind, share in plan:
        for i in range(round(n * share)):
            if kind.startswith("refused"):
                first = rng.choice(other) if other and rng.random() < 0.4 else rng.choice(harmful)
                reply = rng.choice(CLIENT_REFUSALS.get(first.label, CLIENT_REFUSALS[SAFETY]))
            else:
                first = rng.choice(benign)
                reply = _brief_answer(first.response or "") or ""
            last = rng.choice(benign if kind.endswith("benign") else harmful)
            if last.prompt == first.prompt:
                continue
            out.append(
                replace(
                    last,
                    source="multiturn",
                    subcategory=kind,
                    id=f"multiturn-{kind}-{i}",
                    history=(("user", first.prompt), ("assistant", reply)),
                    response=last.response if last.label == "respond" else None,
                )
            )
    rng.shuffle(out)
    return out
