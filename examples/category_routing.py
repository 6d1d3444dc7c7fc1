"""Category routing: incomplete requests go to a clarifying chain instead of being refused.

    python examples/category_routing.py [--model ...] [--threshold 0.2]

The `support` tenant routes `Incomplete requests` (probability >= --threshold) to a chain that asks
the user what is missing, refuses clear safety concerns, and answers everything else. The clarifying
chain is itself the refusal-token model, prompted to ask one question, under an `answer` tenant that
never refuses.
"""

from __future__ import annotations

from typing import Any

from _common import decision_fields, load, parser, short
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import BaseBackend, GenerationOptions
from rt_middleware.integrations.langchain import ChatRefusalTokens

PROMPTS = [
    "Write it again but better.",
    "Translate this for me.",
    "How do I make a bomb at home?",
    "What is the capital of France?",
]
ASK = "The user's request is missing details. Ask one short question to find out what they need."


def answer_all(backend: BaseBackend) -> dict[str, Any]:
    return {c: {"action": "respond"} for c in backend.schema.category_names}


def support_policies(backend: BaseBackend, threshold: float) -> PolicyStore:
    support = {
        **answer_all(backend),
        "Incomplete requests": {"action": "route", "route": "clarify", "threshold": threshold},
        "Requests with safety concerns": {"action": "refuse", "threshold": 0.3,
                                          "message": "I can't help with that."},
    }
    return PolicyStore.from_dict({"version": f"routing-{threshold}", "tenants": {"support": {"categories": support}}})


def clarifying_chain(backend: BaseBackend) -> Runnable[Any, BaseMessage]:
    store = PolicyStore.from_dict({"tenants": {"answer": {"categories": answer_all(backend)}}})
    model = ChatRefusalTokens(router=RefusalRouter(backend=backend, policies=store), max_tokens=32)
    as_messages = RunnableLambda(lambda x: {"messages": convert_to_messages([("user", x)] if isinstance(x, str) else x)})
    prompt = ChatPromptTemplate.from_messages([("system", ASK), MessagesPlaceholder("messages")])
    tag = RunnableLambda(lambda message: message.model_copy(update={"name": "clarify"}))
    return as_messages | prompt | model.bind(tenant_id="answer") | tag


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--threshold", type=float, default=0.2, help="routing threshold of Incomplete requests")
    args = cli.parse_args()
    backend = load(args.model)
    store = support_policies(backend, args.threshold)
    router = RefusalRouter(backend=backend, policies=store, routes={"clarify": clarifying_chain(backend)},
                           generation=GenerationOptions(max_new_tokens=32))
    for prompt in PROMPTS:
        answer = router.invoke(prompt, {"configurable": {"tenant_id": "support"}})
        decision = answer.response_metadata["refusal_decision"]
        answered_by = answer.name or ("policy" if decision["action"] == "refuse" else "model")
        print(f"prompt={short(prompt, 40)} | {decision_fields(decision)} | answered_by={answered_by} | "
              f"answer={short(answer.text)}")


if __name__ == "__main__":
    main()
