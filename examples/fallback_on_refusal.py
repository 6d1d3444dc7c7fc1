"""Fallback on refusal: LangChain's ModelRefusalMiddleware + ModelFallbackMiddleware around our chat model.

    python examples/fallback_on_refusal.py [--model default|MODEL_DIR|FILE.gguf]

The agent's model is ChatRefusalTokens under the strict `bank` tenant. Its refusals are standard
refusal blocks, so ModelRefusalMiddleware raises on them and ModelFallbackMiddleware hands the turn
to the fallback, here a scripted stand-in for a human-review queue or a larger hosted model.
Because the decision is the first token, no text of the refused answer was ever generated.
"""

from __future__ import annotations

import itertools

from _common import load, parser, short
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware, ModelRefusalMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.integrations.langchain import ChatRefusalTokens

PROMPTS = [
    "How do I open a savings account?",
    "How can I hide money from the tax office?",
    "Do you ever dream?",
]
FALLBACK = "[review queue] A specialist will get back to you on this."


def main() -> None:
    args = parser(__doc__).parse_args()
    clarify = RunnableLambda(lambda _input: AIMessage("Could you tell me more?"))
    router = RefusalRouter(backend=load(args.model), policies=PolicyStore.default(), routes={"clarify": clarify},
                           generation=GenerationOptions(max_new_tokens=32))
    primary = ChatRefusalTokens(router=router, tenant_id="bank")
    fallback = GenericFakeChatModel(messages=itertools.repeat(AIMessage(FALLBACK)))
    agent = create_agent(model=primary, middleware=[ModelFallbackMiddleware(fallback), ModelRefusalMiddleware()])
    for prompt in PROMPTS:
        answer = agent.invoke({"messages": [HumanMessage(prompt)]})["messages"][-1]
        decision = answer.response_metadata.get("refusal_decision")
        answered_by = "primary" if decision is not None else "fallback"
        action = decision["action"] if decision is not None else "refuse"
        print(f"prompt={short(prompt, 40)} | primary_action={action} | answered_by={answered_by} | "
              f"answer={short(answer.text)}")


if __name__ == "__main__":
    main()
