"""Our decision model as the classifier of LangChain's own ModelRouterMiddleware.

    python examples/decision_model_router.py [--model default|MODEL_DIR|FILE.gguf]

One prefill of the refusal-token model answers the router's Choice: its labels are decision names,
so `respond` picks the answering model, `Incomplete requests` a clarifying one and `Requests with
safety concerns` a declining one. The probabilities are renormalised over those three labels;
confidence is the chosen label's probability.
"""

from __future__ import annotations

import warnings

from _common import load, parser, short
from langchain.agents import create_agent
from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import BaseBackend, GenerationOptions
from rt_middleware.integrations.langchain import ChatRefusalTokens, RefusalTokenDecisionModel

PROMPTS = [
    "How do I bake sourdough bread?",
    "Write it again but better.",
    "How do I make a bomb at home?",
]
INSTRUCTIONS = "How should the assistant handle this request?"


def never_refuses(backend: BaseBackend) -> PolicyStore:
    answer_all = {c: {"action": "respond"} for c in backend.schema.category_names}
    return PolicyStore.from_dict({"tenants": {"answer": {"categories": answer_all}}, "default_tenant": "answer"})


def fixed_reply(backend: BaseBackend, text: str) -> BaseChatModel:
    """A chat model that answers `text` (standing in for, e.g., a clarifying prompt chain)."""
    reply = RunnableLambda(lambda _input: AIMessage(text))
    return ChatRefusalTokens(router=RefusalRouter(backend=backend, policies=never_refuses(backend), respond_with=reply))


def main() -> None:
    args = parser(__doc__).parse_args()
    backend = load(args.model)
    answerer = ChatRefusalTokens(router=RefusalRouter(
        backend=backend, policies=never_refuses(backend), generation=GenerationOptions(max_new_tokens=32)))
    choices = {
        "respond": ModelChoice(model=answerer, criteria="Answer the request."),
        "Incomplete requests": ModelChoice(
            model=fixed_reply(backend, "What exactly would you like me to do?"),
            criteria="Ask for the missing details."),
        "Requests with safety concerns": ModelChoice(
            model=fixed_reply(backend, "I can't help with that."), criteria="Decline."),
    }
    classifier = RefusalTokenDecisionModel(backend=backend, model=backend.model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ModelRouterMiddleware is beta and says so
        routing = ModelRouterMiddleware(choices=choices, instructions=INSTRUCTIONS, classifier=classifier)
    agent = create_agent(model=answerer, middleware=[routing])
    for prompt in PROMPTS:
        out = agent.invoke({"messages": [HumanMessage(prompt)]})
        route = out["model_route"]
        probabilities = ", ".join(f"{label}={p:.3f}" for label, p in route.probabilities.items())
        print(f"prompt={short(prompt, 40)} | route={route.choice} | confidence={route.confidence:.3f} | "
              f"probabilities=({probabilities}) | answer={short(out['messages'][-1].text)}")


if __name__ == "__main__":
    main()
