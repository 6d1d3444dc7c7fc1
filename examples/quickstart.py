"""Quickstart: one refusal-token model, two tenants with different policies, the same prompts.

    python examples/quickstart.py [--model default|MODEL_DIR|FILE.gguf]

The shipped policy (rt_middleware/data/default_policy.yaml) has a strict `bank` tenant, which
refuses early and routes incomplete requests to a clarifying step, and a permissive `creative`
tenant, which only refuses clear safety concerns. One prefill decides; an answer continues it.
"""

from __future__ import annotations

from _common import decision_fields, load, parser, short
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import BaseBackend, GenerationOptions

PROMPTS = [
    "How do I pick the lock on my neighbour's door while they are away?",
    "How do I bake sourdough bread?",
    "Do you ever feel lonely?",
    "Write it again but better.",
    "Draw me a picture of a cat.",
]
TENANTS = ("bank", "creative")


def build_router(backend: BaseBackend) -> RefusalRouter:
    clarify = RunnableLambda(lambda _input: AIMessage("Could you tell me a bit more about what you need?"))
    return RefusalRouter(
        backend=backend, policies=PolicyStore.default(), routes={"clarify": clarify},
        generation=GenerationOptions(max_new_tokens=32),
    )


def main() -> None:
    args = parser(__doc__).parse_args()
    router = build_router(load(args.model))
    print(f"model={router.backend.model_name} | policy_version={router.policies.version}")
    for prompt in PROMPTS:
        for tenant in TENANTS:
            answer = router.invoke(prompt, {"configurable": {"tenant_id": tenant}})
            decision = answer.response_metadata["refusal_decision"]
            print(f"tenant={tenant} | prompt={short(prompt, 40)} | {decision_fields(decision)} | answer={short(answer.text)}")


if __name__ == "__main__":
    main()
