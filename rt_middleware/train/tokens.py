"""Adding decision tokens to a causal LM: special tokens, new embedding rows from descriptive words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rt_middleware.artifact import register_decision_tokens
from rt_middleware.tokens import RESPOND, RefusalTokenSchema

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DESCRIPTIONS", "add_decision_tokens"]

DESCRIPTIONS: Mapping[str, str] = {
    RESPOND: " Sure, here is what you asked for",
    "Requests with safety concerns": " Sorry, I can't help with that harmful request",
    "Incomplete requests": " Could you clarify what you mean? Your request is unclear",
    "Unsupported requests": " Sorry, I am unable to do that as a text-only AI model",
    "Indeterminate requests": " There is no single right answer; nobody can know",
    "Humanizing requests": " As an AI, I don't have personal feelings or experiences",
    "refuse": " Sorry, I can't help with that",
}
"""Text whose mean token embedding starts each decision token's row: a random row learns nothing
in a short CPU run (measured), a row near "Sorry, I can't" already ranks high after a refusal cue."""


def add_decision_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    schema: RefusalTokenSchema,
    *,
    descriptions: Mapping[str, str] | None = None,
    initialize: bool = True,
) -> dict[str, int]:
    """Add the schema's tokens (`rt_middleware.artifact.register_decision_tokens`) and start each new
    row at the mean embedding of its description (`DESCRIPTIONS`) when `initialize`.

    Returns decision name -> token id.
    """
    import torch

    descriptions = {**DESCRIPTIONS, **(descriptions or {})}
    missing = register_decision_tokens(model, tokenizer, schema)
    ids = {name: tokenizer.convert_tokens_to_ids(schema.token_for(name)) for name in schema.names}
    if not (initialize and missing):
        return ids
    inputs = model.get_input_embeddings().weight
    outputs = model.get_output_embeddings()
    untied = outputs is not None and outputs.weight.data_ptr() != inputs.data_ptr()
    with torch.no_grad():
        for name, idx in ids.items():
            if schema.token_for(name) not in missing:
                continue
            words = tokenizer(descriptions.get(name, f" {name}"), add_special_tokens=False).input_ids
            inputs[idx] = inputs[words].mean(dim=0)
            if untied:
                outputs.weight[idx] = outputs.weight[words].mean(dim=0)
    return ids
