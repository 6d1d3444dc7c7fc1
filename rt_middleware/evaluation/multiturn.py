"""Multi-turn check: is a benign last turn still answered after an earlier turn was refused?

Why: with ``decide_on: conversation`` the decision reads the whole history, and a model trained only
on single turns can carry an earlier refusal over to an innocent follow-up (issue #19). The
conversations pair each benign prompt of a split with a should-refuse prompt of the same split,
answered by the policy's own refusal message, as a client that sends the history back would.
The same benign prompts alone are the reference, so the figure isolates the history's effect.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from rt_middleware.backends.base import BaseBackend
from rt_middleware.datasets import LabeledPrompt
from rt_middleware.decision import decide
from rt_middleware.evaluation.metrics import Rate
from rt_middleware.messages import ChatMessage
from rt_middleware.policy import TenantPolicy

__all__ = ["refused_history_conversations", "refused_history_report"]


def refused_history_conversations(
    rows: Sequence[LabeledPrompt], policy: TenantPolicy, *, seed: int = 0
) -> list[list[ChatMessage]]:
    """One conversation per benign row: a seeded should-refuse turn, its refusal, then the row."""
    refused = [r for r in rows if r.should_refuse]
    benign = [r for r in rows if not r.should_refuse]
    if not refused or not benign:
        raise ValueError("need both should-refuse and benign rows to build refused-history conversations")
    rng = random.Random(seed)
    conversations = []
    for row in benign:
        earlier = rng.choice(refused)
        rule = policy.categories.get(earlier.label)
        message = rule.message if rule is not None and rule.message else policy.refusal_message
        conversations.append(
            [ChatMessage("user", earlier.prompt), ChatMessage("assistant", message), ChatMessage("user", row.prompt)]
        )
    return conversations


def refused_history_report(
    backend: BaseBackend,
    rows: Sequence[LabeledPrompt],
    policy: TenantPolicy,
    *,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Answer rate of the benign rows after a refused turn, and alone, under `policy` (whole history read)."""
    conversations = refused_history_conversations(rows, policy, seed=seed)
    alone = [[ChatMessage("user", r.prompt)] for r in rows if not r.should_refuse]
    options = {"temperature": policy.temperature, "logit_bias": policy.logit_bias, "batch_size": batch_size}
    after = backend.first_token_distributions(conversations, progress=progress, **options)
    single = backend.first_token_distributions(alone, progress=progress, **options)
    answered_after = sum(decide(d, policy).action == "respond" for d in after)
    answered_alone = sum(decide(d, policy).action == "respond" for d in single)
    n = len(conversations)
    return {
        "definition": "benign last turn answered after a refused earlier turn (decision reads the whole conversation)",
        "n": n,
        "answered_after_refusal": Rate(answered_after, n).to_dict(),
        "answered_alone": Rate(answered_alone, n).to_dict(),
    }
