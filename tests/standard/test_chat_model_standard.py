"""langchain-tests' standard unit suite for ChatRefusalTokens, with honest capability flags."""

from __future__ import annotations

from functools import cache
from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests
from tiny_model import build_tiny

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import HFBackend
from rt_middleware.integrations.langchain import ChatRefusalTokens
from rt_middleware.tokens import RefusalTokenSchema


@cache
def tiny_router() -> RefusalRouter:
    model, tokenizer = build_tiny()
    backend = HFBackend(model, tokenizer, schema=RefusalTokenSchema.coconot(), model_name="tiny")
    return RefusalRouter(backend=backend, policies=PolicyStore.single())


class TestChatRefusalTokensStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatRefusalTokens]:
        return ChatRefusalTokens

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": tiny_router()}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return False
