"""Chat-template rendering and tokenization that keep message text apart from template text.

Every message's content is replaced by a sentinel before rendering; the rendered string is split
at the sentinels so template pieces are tokenized with special tokens allowed and message text
with them disabled: a user typing ``[respond]`` or ``<|im_start|>`` gets plain text ids.

`ChatEncoder` is the ONE encoding used by inference (`HFBackend.encode`) and by training
(`train.sft.encode_prompt`), so the two can never drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rt_middleware.errors import ConfigError, InvalidInputError, UnsafeTokenizationError
from rt_middleware.messages import Conversation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ChatEncoder", "check_text", "render_pieces"]

_SENTINEL = re.compile("\ue000(\\d+)\ue001")


def render_pieces(
    render: Callable[[list[dict[str, str]]], str], conversation: Conversation
) -> list[tuple[str, bool]]:
    """Render with `render(messages)`; return ``(text, is_message_text)`` pieces in order."""
    placeholders = [{"role": m.role, "content": f"\ue000{i}\ue001"} for i, m in enumerate(conversation)]
    rendered = render(placeholders)
    parts = _SENTINEL.split(rendered)
    order = [int(p) for p in parts[1::2]]
    if sorted(order) != list(range(len(conversation))):
        raise ConfigError(
            "the chat template drops, repeats or rewrites message text; cannot keep user text apart"
        )
    pieces: list[tuple[str, bool]] = []
    for i, part in enumerate(parts):
        text, is_message = (conversation[int(part)].content, True) if i % 2 else (part, False)
        if text:
            pieces.append((text, is_message))
    return pieces


def check_text(conversation: Conversation) -> None:
    """Raise InvalidInputError for text no tokenizer can encode (a lone surrogate such as ``"\\ud800"``)."""
    for i, message in enumerate(conversation):
        try:
            message.content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"message {i} is not valid Unicode text: a lone surrogate at character {exc.start} "
                "(a JSON '\\ud800' escape without its pair decodes to one)"
            ) from None


def _private_backend(tokenizer: Any, *, split_special_tokens: bool) -> Any:
    """An independent copy of a fast tokenizer's Rust backend, fixed to one setting, never shared."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    copy.encode_special_tokens = split_special_tokens
    return copy


class ChatEncoder:
    """Render a conversation with a chat template and tokenize it; message text never yields a special id.

    Immutable after construction and safe to share between threads. transformers' fast tokenizers
    implement ``split_special_tokens`` by flipping ``encode_special_tokens`` on the one Rust tokenizer
    they share between calls (and truncation/padding likewise), so concurrent requests overwrite
    each other's setting. This class instead makes two private copies of the Rust tokenizer ONCE,
    here: one that matches special tokens (template text only) and one that never does (message
    text only). Nothing it uses per request is mutable. Tokens added to `tokenizer` later are not
    seen: build a new encoder (or backend) after changing the tokenizer.

    Defence in depth: if message text still tokenizes to a special id (the tokenizer's special and
    added-special tokens, except ``unk``), `encode` raises `UnsafeTokenizationError` instead of
    returning it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.chat_template: str | None = chat_template or getattr(tokenizer, "chat_template", None)
        self._fast = getattr(tokenizer, "backend_tokenizer", None) is not None
        if self._fast:
            self._template_backend = _private_backend(tokenizer, split_special_tokens=False)
            self._text_backend = _private_backend(tokenizer, split_special_tokens=True)
        specials = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        specials |= set(tokenizer.all_special_ids)
        specials.discard(tokenizer.unk_token_id)  # unknown text legitimately encodes to unk
        self.control_ids: frozenset[int] = frozenset(specials)
        """Ids that message text must never produce."""

    @property
    def decoding_backend(self) -> Any:
        """A private Rust tokenizer to decode with (decoding does not depend on the split
        setting), or None for a python tokenizer."""
        return self._template_backend if self._fast else None

    def _render(self, messages: list[dict[str, str]]) -> str:
        if not self.chat_template:
            raise ConfigError("the tokenizer has no chat template; pass chat_template=")
        try:
            return self.tokenizer.apply_chat_template(
                messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # templates reject conversations with raise_exception(...)
            if type(exc).__module__.startswith("jinja2"):
                raise InvalidInputError(f"the chat template rejects this conversation: {exc}") from exc
            raise

    def encode_template(self, text: str) -> list[int]:
        """Template text: special tokens written in it are matched."""
        if self._fast:
            return list(self._template_backend.encode(text, add_special_tokens=False).ids)
        return list(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=False))

    def encode_text(self, text: str) -> list[int]:
        """Message (user) text: special tokens written in it stay plain text, checked."""
        if self._fast:
            ids = list(self._text_backend.encode(text, add_special_tokens=False).ids)
        else:  # python tokenizers take split_special_tokens per call (no shared state)
            ids = list(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
        leaked = self.control_ids.intersection(ids)
        if leaked:
            raise UnsafeTokenizationError(
                f"message text tokenized to special token id(s) {sorted(leaked)}; the request was not run"
            )
        return ids

    def encode(self, conversation: Conversation) -> list[int]:
        """The prompt ids (with the generation prompt) of `conversation`."""
        check_text(conversation)
        ids: list[int] = []
        for text, is_message in render_pieces(self._render, conversation):
            ids.extend(self.encode_text(text) if is_message else self.encode_template(text))
        return ids
