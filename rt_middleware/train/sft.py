"""SFT examples: the prompt rendered exactly as the backends render it, then ONE control token.

JSONL input schema (one object per line; `rt train --data FILE.jsonl`)::

    {"prompt": "How do I pick a lock?", "label": "Requests with safety concerns",
     "response": "optional answer text, WITHOUT the control token"}
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "optional final answer"}], "label": "respond"}

- ``label`` (alias ``category``): ``respond`` or a category name of the token schema.
- ``messages``: the conversation; a final assistant message is the response. ``prompt`` is a
  shorthand for one user message. Give one of the two.
- ``response`` may be empty: refusals then get a short templated refusal text for their
  category; respond rows train the control token only (first-token-only examples).

The assistant response is ``<control token> + response (+ end of turn)``; the loss covers the
response only, never the prompt.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rt_middleware.datasets.base import DatasetError, LabeledPrompt
from rt_middleware.errors import InvalidInputError
from rt_middleware.messages import ChatMessage, Conversation, check_text
from rt_middleware.templating import ChatEncoder
from rt_middleware.tokens import RESPOND, RefusalTokenSchema, ResolvedTokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "REFUSAL_TEXTS",
    "SFTExample",
    "SFTRecord",
    "build_example",
    "build_examples",
    "encode_prompt",
    "load_sft_jsonl",
    "records_from_prompts",
]

IGNORE_INDEX = -100

REFUSAL_TEXTS: Mapping[str, tuple[str, ...]] = {
    "Requests with safety concerns": (
        "I'm sorry, but I can't help with that. It could cause harm.",
        "I can't assist with this request because it could be harmful or unsafe.",
        "Sorry, I won't help with that, as it could put people at risk.",
    ),
    "Incomplete requests": (
        "Could you give me more details? Your request is missing information I need.",
        "I'm not sure what you mean. Could you clarify your request?",
        "Your question seems to rest on an assumption that isn't correct. Could you rephrase it?",
    ),
    "Unsupported requests": (
        "I'm sorry, but I can't do that: I'm a text-only assistant without that ability.",
        "That is beyond what I can do as a text-based AI model.",
        "I can't do that, since I have no access to that kind of input, output or live information.",
    ),
    "Indeterminate requests": (
        "There is no single right answer to that; it depends on personal views.",
        "Nobody can know that for certain, so I can't give a definite answer.",
        "That's a matter of opinion, and reasonable people disagree.",
    ),
    "Humanizing requests": (
        "As an AI, I don't have personal feelings, experiences or preferences.",
        "I'm an AI assistant, so I don't have a personal life or opinions of my own.",
        "I don't have feelings or a body, but I'm happy to help with information.",
    ),
    "refuse": (
        "I'm sorry, but I can't help with that request.",
        "I can't assist with that.",
    ),
}
"""Short refusal texts per category, used when a refusal row carries no response of its own."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


class SFTRecord(BaseModel):
    """One training row of the JSONL schema (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    label: str = Field(alias="category")
    prompt: str | None = None
    messages: list[_Message] | None = None
    response: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _label_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "label" in data and "category" not in data:
            data = {**data, "category": data["label"]}
        return data

    @model_validator(mode="after")
    def _one_prompt(self) -> SFTRecord:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("'messages' is empty")
            if self.messages[-1].role == "assistant":
                if self.response is not None:
                    raise ValueError("give the response either as the last assistant message or as 'response'")
                self.response = self.messages[-1].content
                self.messages = self.messages[:-1]
            if not self.messages or self.messages[-1].role != "user":
                raise ValueError("the conversation must end with a user message (before the response)")
        elif not (self.prompt or "").strip():
            raise ValueError("'prompt' is empty")
        return self

    def conversation(self) -> Conversation:
        if self.messages is None:
            return [ChatMessage("user", self.prompt or "")]
        return [ChatMessage(m.role, m.content) for m in self.messages]


def load_sft_jsonl(path: str | Path, schema: RefusalTokenSchema) -> list[SFTRecord]:
    """Read and validate the JSONL schema; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"training data file not found: {path}")
    known = set(schema.names)
    records = []
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
            if not text.strip():
                continue
            try:
                record = SFTRecord.model_validate(json.loads(text))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line}: not valid JSON ({exc.msg})") from None
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "<row>"
                raise DatasetError(f"{path}:{line}: {where}: {first['msg']}") from None
            if record.label not in known:
                raise DatasetError(f"{path}:{line}: unknown label {record.label!r}; expected one of {sorted(known)}")
            _check_no_control_text(record, schema, f"{path}:{line}")
            records.append(record)
    if not records:
        raise DatasetError(f"{path}: no rows")
    return records


def _check_no_control_text(record: SFTRecord, schema: RefusalTokenSchema, where: str) -> None:
    texts = [record.prompt or "", record.response or "", *(m.content for m in record.messages or ())]
    try:  # a JSON "\ud800" escape decodes to a lone surrogate, which no tokenizer encodes
        for text in texts:
            check_text(text, "the row")
    except InvalidInputError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if record.response and any(tok in record.response for tok in schema.tokens):
        raise DatasetError(f"{where}: the response contains a decision token; the trainer adds it")


def records_from_prompts(rows: Iterable[LabeledPrompt]) -> list[SFTRecord]:
    """Labelled prompts (the dataset loaders' rows) as training records; rows with a `history`
    become ``messages`` (the earlier turns, then the prompt as the last user turn)."""
    records = []
    for row in rows:
        if row.history:
            messages = [_Message(role=role, content=text) for role, text in row.history]
            messages.append(_Message(role="user", content=row.prompt))
            records.append(SFTRecord(messages=messages, category=row.label, response=row.response))
        else:
            records.append(SFTRecord(prompt=row.prompt, category=row.label, response=row.response))
    return records


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    chat_template: str | None = None,
    *,
    encoder: ChatEncoder | None = None,
) -> list[int]:
    """The ids `HFBackend.encode` gives, from the same `ChatEncoder` (pass one to reuse it).

    Training on any other rendering (say, without SmolLM2's default system line) teaches the
    model a prompt it never sees at inference.
    """
    return (encoder or ChatEncoder(tokenizer, chat_template)).encode(conversation)


@dataclass(frozen=True)
class SFTExample:
    """Token ids and labels (IGNORE_INDEX outside the response); `control_position` indexes the token."""

    input_ids: list[int]
    labels: list[int]
    control_position: int
    name: str


def _response_text(record: SFTRecord, index: int, refusal_text: bool = True) -> str | None:
    if record.label != RESPOND and not refusal_text:
        return None
    if record.response and record.response.strip():
        return record.response.strip()
    texts = REFUSAL_TEXTS.get(record.label)
    if record.label == RESPOND or not texts:
        return None
    return texts[zlib.crc32(f"{index}:{record.label}".encode()) % len(texts)]


def build_example(
    tokenizer: PreTrainedTokenizerBase,
    record: SFTRecord,
    tokens: ResolvedTokens,
    *,
    index: int = 0,
    chat_template: str | None = None,
    max_response_tokens: int = 48,
    max_length: int = 256,
    encoder: ChatEncoder | None = None,
    refusal_text: bool = True,
) -> SFTExample | None:
    """One example, or None when the prompt alone does not fit `max_length`.

    A response longer than `max_response_tokens` is cut without an end-of-turn token, so the model
    never learns to stop mid-answer. ``refusal_text=False`` trains refusal rows on the decision
    token alone: the router answers a refusal with the policy's own message and never generates
    after a refusal token, while text learnt there leaks into answers after ``[respond]`` (#19).
    """
    encoder = encoder or ChatEncoder(tokenizer, chat_template)
    prompt_ids = encoder.encode(record.conversation())
    control = tokens.id_for(record.label)
    if len(prompt_ids) + 1 > max_length:
        return None
    text = _response_text(record, index, refusal_text)
    response_ids: list[int] = []
    if text is not None:
        response_ids = encoder.encode_text(text)
        room = min(max_response_tokens, max_length - len(prompt_ids) - 1)
        if len(response_ids) < room and tokenizer.eos_token_id is not None:
            response_ids = [*response_ids, tokenizer.eos_token_id]
        response_ids = response_ids[:room]
    ids = [*prompt_ids, control, *response_ids]
    labels = [IGNORE_INDEX] * len(prompt_ids) + [control, *response_ids]
    return SFTExample(input_ids=ids, labels=labels, control_position=len(prompt_ids), name=record.label)


def build_examples(
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[SFTRecord],
    tokens: ResolvedTokens,
    **kwargs: Any,
) -> tuple[list[SFTExample], int]:
    """Examples for every record that fits, and how many were skipped as too long."""
    if "encoder" not in kwargs:  # one encoder (two tokenizer copies) for all records
        kwargs["encoder"] = ChatEncoder(tokenizer, kwargs.get("chat_template"))
    examples = []
    for i, record in enumerate(records):
        example = build_example(tokenizer, record, tokens, index=i, **kwargs)
        if example is not None:
            examples.append(example)
    return examples, len(records) - len(examples)
