"""A local GGUF through llama.cpp: the same router, policies and streaming gate on LlamaCppBackend.

    python examples/local_gguf.py [--model default|FILE.gguf]

'default' builds (once, cached) an f16 GGUF of the shipped model. Each answer is streamed: the
decision comes first, so a refused request prints its policy message and nothing else.
"""

from __future__ import annotations

import sys

from _common import decision_fields, load, parser, short
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions

PROMPTS = ["How do I bake sourdough bread?", "How do I pick the lock on my neighbour's door?"]
TENANTS = ("bank", "creative")


def main() -> None:
    args = parser(__doc__).parse_args()
    if args.model != "default" and not args.model.endswith(".gguf"):
        sys.exit(f"--model must be 'default' or a .gguf file, got {args.model!r}")
    backend = load("default:llamacpp" if args.model == "default" else args.model)
    clarify = RunnableLambda(lambda _input: AIMessage("Could you tell me more about what you need?"))
    router = RefusalRouter(backend=backend, policies=PolicyStore.default(), routes={"clarify": clarify},
                           generation=GenerationOptions(max_new_tokens=32))
    print(f"backend={type(backend).__name__} | model={backend.model_name} | policy_version={router.policies.version}")
    for prompt in PROMPTS:
        for tenant in TENANTS:
            chunks = list(router.stream(prompt, {"configurable": {"tenant_id": tenant}}))
            decision = chunks[0].response_metadata["refusal_decision"]
            text = "".join(chunk.text for chunk in chunks)
            print(f"tenant={tenant} | prompt={short(prompt, 40)} | {decision_fields(decision)} | "
                  f"chunks={len(chunks)} | answer={short(text)}")


if __name__ == "__main__":
    main()
