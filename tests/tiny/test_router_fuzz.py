"""Hypothesis fuzzing of router inputs on the tiny HF backend: every rejection is a typed error.

Inputs: text with lone surrogates, control characters, private-use and huge strings; odd message
shapes (dicts with odd roles and contents, tuples, content blocks, nested lists, non-messages);
tenant ids of every type. `-s` prints the counts.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.decision import Decision
from rt_middleware.errors import RTError
from rt_middleware.tokens import COCONOT_CATEGORIES

COUNTS: Counter[str] = Counter()

any_char = st.characters(exclude_categories=())  # surrogates (Cs) and control characters included
texts = st.one_of(
    st.text(any_char, max_size=60),
    st.text(st.sampled_from("\ud800\udfff\x00\x07\x1b\u202e\ue000\ue001\ufeff [respond]<|user|>"), max_size=30),
    st.sampled_from(["[respond]", "<|assistant|>", "[Requests with safety concerns]", "\ue0000\ue001",
                     "hello world " * 400, "x" * 20_000, "caf\udce9", " ", ""]),
)
roles = st.sampled_from(["user", "system", "assistant", "human", "ai", "tool", "robot", "", "USER"])
blocks = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
        st.fixed_dictionaries({"type": st.sampled_from(["image", "audio", "tool_call", "weird"]), "url": texts}),
        texts,
    ),
    max_size=3,
)
contents = st.one_of(texts, blocks, st.none(), st.integers(), st.floats())
message = st.one_of(
    st.fixed_dictionaries({"role": roles, "content": contents}),
    st.dictionaries(st.sampled_from(["role", "content", "type", "name"]), contents, max_size=3),
    st.tuples(roles, texts),
    st.builds(HumanMessage, content=st.one_of(texts, blocks)),
    st.builds(SystemMessage, content=texts),
    st.builds(AIMessage, content=texts),
    st.builds(lambda t: ToolMessage(t, tool_call_id="1"), texts),
    st.integers(), st.none(), st.binary(max_size=8), texts,
)
readable = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80)
inputs = st.one_of(
    readable, readable, st.lists(st.one_of(st.tuples(st.sampled_from(["human", "system", "ai"]), readable),
                                           st.builds(HumanMessage, content=readable)), min_size=1, max_size=4),
    texts,
    st.lists(message, max_size=5),
    st.lists(st.lists(message, max_size=2), max_size=2),
    st.dictionaries(texts, texts, max_size=2),
    st.integers(), st.none(), st.binary(max_size=10), st.tuples(message, message),
)
valid_tenant = st.sampled_from(["turn", "conv"])
tenants = st.one_of(valid_tenant, st.one_of(
    st.sampled_from(["nobody", ""]), st.none(), texts, st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.integers()))


@pytest.fixture(scope="module")
def router(tiny_backend) -> RefusalRouter:
    cats = {c: {"action": "refuse", "threshold": 0.3} for c in COCONOT_CATEGORIES}
    store = PolicyStore.from_dict({
        "default_tenant": "turn",
        "tenants": {"turn": {"categories": cats}, "conv": {"categories": cats, "decide_on": "conversation"}},
    })
    return RefusalRouter(backend=tiny_backend, policies=store, generation=GenerationOptions(max_new_tokens=2))


def call(router: RefusalRouter, how: str, value, tenant) -> None:
    config = {"configurable": {"tenant_id": tenant}}
    if how == "decide":
        assert isinstance(router.decide(value, tenant_id=tenant), Decision)
    elif how == "invoke":
        router.invoke(value, config)
    elif how == "stream":
        list(router.stream(value, config))
    else:
        router.batch([value, "hello world"], config, return_exceptions=False)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(value=inputs, tenant=tenants, how=st.sampled_from(["decide", "decide", "invoke", "stream", "batch"]))
def test_router_inputs_never_raise_untyped(router: RefusalRouter, value, tenant, how: str) -> None:
    COUNTS["inputs"] += 1
    try:
        call(router, how, value, tenant)
        COUNTS["accepted"] += 1
    except RTError as exc:
        COUNTS[f"rejected:{type(exc).__name__}"] += 1
    except Exception as exc:  # pragma: no cover - the failure this test exists to find
        COUNTS["untyped"] += 1
        raise AssertionError(f"untyped {type(exc).__name__} from {how}({value!r:.200}, {tenant!r:.50})") from exc


def test_report_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the fuzz test (file order): print what it tried, for the README and notes."""
    with capsys.disabled():
        print(f"\nrouter fuzz: {dict(sorted(COUNTS.items()))}")
    assert COUNTS["untyped"] == 0
