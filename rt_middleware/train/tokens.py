"""Adding decision tokens to a causal LM: special tokens, new embedding rows from descriptive words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rt_middleware.errors import TokenSchemaError
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
    """Add the schema's tokens as special tokens and size the embeddings to the new vocabulary.

    Special tokens stay one id, render as their text when decoded with special tokens shown, and
    user text can never produce them (the backends tokenize message text with specials split).
    Returns decision name -> token id. Tokens that already exist must already be special.
    """
    import torch

    descriptions = {**DESCRIPTIONS, **(descriptions or {})}
    existing = {t.content: (i, t.special) for i, t in tokenizer.added_tokens_decoder.items()}
    missing = []
    for token in schema.tokens:
        if token in existing:
            if not existing[token][1]:
                raise TokenSchemaError(f"{token!r} is already in the vocabulary as a non-special token", token=token)
        else:
            missing.append(token)
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    ids = {name: tokenizer.convert_tokens_to_ids(schema.token_for(name)) for name in schema.names}
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
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
