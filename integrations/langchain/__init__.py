"""LangChain integration: a refusal-token decision model, an agent middleware and a chat model.

    from rt_middleware.integrations.langchain import (
        ChatRefusalTokens, RefusalTokenDecisionModel, RefusalTokenMiddleware,
    )

Needs the ``langchain`` extra (`pip install 'rt-middleware[langchain]'`).
"""

from __future__ import annotations

from rt_middleware._extras import require

require("langchain", extra="langchain", feature="rt_middleware.integrations.langchain")
require("langgraph", extra="langchain", feature="rt_middleware.integrations.langchain")

from ._tools import ToolsNotSupportedError  # noqa: E402
from .chat_model import ChatRefusalTokens  # noqa: E402
from .decision_model import (  # noqa: E402
    RefusalTokenDecisionModel,
    UnsupportedQuestionError,
)
from .middleware import (  # noqa: E402
    RefusalTokenMiddleware,
    RefusalTokenState,
)

__all__ = [
    "ChatRefusalTokens",
    "RefusalTokenDecisionModel",
    "RefusalTokenMiddleware",
    "RefusalTokenState",
    "ToolsNotSupportedError",
    "UnsupportedQuestionError",
]
