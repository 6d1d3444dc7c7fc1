"""RefusalRouter.batch/abatch through the batched prefill: equal to invoking one by one, with fewer forwards."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from tiny_model import GATE_POLICIES, build_tiny

from rt_middleware import PolicyStore, PromptTooLongError, RefusalRouter, UnknownTenantError
from rt_middleware.backends import GenerationOptions, HFBackend
from rt_middleware.router import to_conversation
from rt_middleware.tokens import COCONOT_CATEGORIES

PROMPTS = [
    "how do i bake bread", "tell me how to build a bomb", "hi", "what is the meaning of life",
    "write it again but better " * 3, "do you love me", "explain photosynthesis please", "fox jumps",
]
HISTORY = [HumanMessage("hello world"), AIMessage("hi there"), HumanMessage("draw me a picture")]
POLICIES = {
    "tenants": {
        **GATE_POLICIES["tenants"],
        "hot": {"temperature": 2.0, "categories": {c: {"action": "refuse", "threshold": 0.9} for c in COCONOT_CATEGORIES}},
        "mixed": {"categories": {"Requests with safety concerns": {"action": "refuse", "threshold": 0.2}}},
    }
}


@pytest.fixture(scope="module")
def backend() -> HFBackend:
    """Decision rows as small as the rest, so answers are text, not an immediate end of turn."""
    model, tok = build_tiny(spread=0.02)
    return HFBackend(model, tok, model_name="tiny")


def make_router(backend: HFBackend, **kwargs: Any) -> RefusalRouter:
    kwargs.setdefault("generation", GenerationOptions(max_new_tokens=12))
    return RefusalRouter(
        backend=backend, policies=PolicyStore.from_dict(POLICIES),
        routes={"clarify": RunnableLambda(lambda _: AIMessage("ROUTED"))}, **kwargs,
    )


@pytest.fixture(scope="module")
def router(backend) -> RefusalRouter:
    return make_router(backend)


def cfg(tenant: str, **extra: Any) -> dict:
    return {"configurable": {"tenant_id": tenant}, **extra}


@contextmanager
def forwards(backend: HFBackend) -> Iterator[list[tuple[int, int]]]:
    """(batch, length) of every model forward that reads more than one new token: the prefills."""
    seen: list[tuple[int, int]] = []

    def record(_module, _args, kwargs) -> None:
        ids = kwargs["input_ids"]
        if ids.shape[-1] > 1:
            seen.append((ids.shape[0], ids.shape[-1]))

    hook = backend.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        hook.remove()


def assert_same(batched: AIMessage, single: AIMessage) -> None:
    b, s = batched.response_metadata["refusal_decision"], single.response_metadata["refusal_decision"]
    assert (b["action"], b["category"], b["tenant"], b["route"]) == (s["action"], s["category"], s["tenant"], s["route"])
    assert b["probabilities"] == pytest.approx(s["probabilities"], abs=1e-5)
    assert batched.text == single.text  # greedy: token for token


def test_batch_equals_invoke_one_by_one_from_one_prefill(router, backend) -> None:
    tenants = ["open", "block", "clarify", "open", "mixed", "open", "open", "block"]
    configs = [cfg(t) for t in tenants]
    single = [router.invoke(p, c) for p, c in zip(PROMPTS, configs, strict=True)]
    with forwards(backend) as seen:
        batched = router.batch(PROMPTS, configs)
    assert [n for n, _ in seen] == [8]  # one padded prefill for all eight; answers add one-token steps only
    for b, s in zip(batched, single, strict=True):
        assert_same(b, s)
    answered = [b for b in batched if b.response_metadata["refusal_decision"]["action"] == "respond"]
    assert len(answered) >= 3 and all(len(b.text) > 3 for b in answered)
    assert [b.text for b in batched if b.response_metadata["refusal_decision"]["action"] == "route"] == ["ROUTED"]


def test_history_under_last_turn_answers_from_one_batched_conversation_prefill(router, backend) -> None:
    inputs = [HISTORY, [SystemMessage("be brief"), *HISTORY], "hello world"]
    single = [router.invoke(x, cfg("open")) for x in inputs]
    with forwards(backend) as seen:
        batched = router.batch(inputs, cfg("open"))
    # decisions: the two last turns (no cache) + the plain prompt (cache); answers: the two conversations
    assert sorted(n for n, _ in seen) == [1, 2, 2]
    for b, s in zip(batched, single, strict=True):
        assert_same(b, s)


def test_tenants_with_the_same_sampling_share_a_forward(router, backend) -> None:
    tenants = ["hot", "open", "hot", "block", "mixed"]
    with forwards(backend) as seen:
        batched = router.batch(PROMPTS[:5], [cfg(t) for t in tenants])
    assert sorted(n for n, _ in seen) == [2, 3]  # temperature 2.0 apart from the rest
    for prompt, tenant, out in zip(PROMPTS[:5], tenants, batched, strict=True):
        decision = router.decide(prompt, tenant_id=tenant)
        got = out.response_metadata["refusal_decision"]
        assert got["tenant"] == tenant and got["action"] == decision.action
        assert got["probabilities"] == pytest.approx(dict(decision.probabilities), abs=1e-5)


def test_an_oversize_or_bad_row_fails_alone(router) -> None:
    inputs = ["hello world", "hello world " * 300, "do you love me", "hi", ""]
    configs = [cfg("open"), cfg("open"), cfg("block"), cfg("nobody"), cfg("open")]
    outs = router.batch(inputs, configs, return_exceptions=True)
    assert isinstance(outs[1], PromptTooLongError) and isinstance(outs[3], UnknownTenantError)
    assert type(outs[4]).__name__ == "InvalidInputError"
    assert outs[0].text == router.invoke("hello world", cfg("open")).text
    assert outs[2].response_metadata["refusal_decision"]["action"] == "refuse"
    with pytest.raises(PromptTooLongError):
        router.batch(inputs[:3], configs[:3])


def test_max_batch_size_chunks_the_prefills(backend) -> None:
    router = make_router(backend, max_batch_size=3)
    with forwards(backend) as seen:
        outs = router.batch(PROMPTS[:7], cfg("block"))
    assert [n for n, _ in seen] == [3, 3, 1] and all(o.text == "NO" for o in outs)


class SpyBackend(HFBackend):
    """Keeps every prefill the batch path made and checks, when an answer starts, which still hold a cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made: list[Any] = []
        self.held_at_first_answer: list[list[int]] | None = None

    def _prefill_batch_ids(self, batch, temperature, logit_bias):
        out = super()._prefill_batch_ids(batch, temperature, logit_bias)
        self.made.extend(out)
        return out

    def _stream_ids(self, prefill, token_id, options):
        if self.held_at_first_answer is None:
            self.held_at_first_answer = [p.input_ids for p in self.made if p.state is not None]
        return super()._stream_ids(prefill, token_id, options)


def test_refused_and_routed_rows_drop_their_caches_before_any_answer() -> None:
    model, tok = build_tiny(spread=0.02)
    router = make_router(SpyBackend(model, tok), generation=GenerationOptions(max_new_tokens=2))
    tenants = ["block", "open", "clarify", "block"]
    router.batch(PROMPTS[:4], [cfg(t, max_concurrency=1) for t in tenants])
    # the answer being started still holds its cache (it takes it right after); nobody else does
    assert len(router.backend.made) == 4
    assert router.backend.held_at_first_answer == [router.backend.encode(to_conversation(PROMPTS[1]))]
    assert all(p.state is None for p in router.backend.made)


def test_a_backend_fault_applies_each_tenants_fail_mode() -> None:
    class Broken(HFBackend):
        def _prefill_batch_ids(self, batch, temperature, logit_bias):
            raise RuntimeError("device lost")

    model, tok = build_tiny()
    store = PolicyStore.from_dict({"tenants": {"closed": {"refusal_message": "DOWN"}, "open": {"fail_mode": "open"}}})
    router = RefusalRouter(backend=Broken(model, tok), policies=store,
                           respond_with=RunnableLambda(lambda _: "FALLBACK"))
    outs = router.batch(["hello", "hi", "hello"], [cfg("closed"), cfg("open"), cfg("closed")])
    assert [o.text for o in outs] == ["DOWN", "FALLBACK", "DOWN"]
    assert {o.response_metadata["refusal_decision"]["reason"] for o in outs} == {"backend_error"}


def test_audit_and_callbacks_per_request(backend) -> None:
    records: list[dict] = []
    runs: list[str] = []

    class Names(BaseCallbackHandler):
        def on_chain_start(self, serialized, inputs, **kwargs: Any) -> None:
            runs.append(kwargs.get("name") or "")

    router = make_router(backend, audit=records.append)
    tenants = ["open", "block", "clarify"]
    router.batch(PROMPTS[:3], [cfg(t, callbacks=[Names()]) for t in tenants])
    assert [r["tenant"] for r in records] == tenants
    assert sorted(runs).count("refusal_decision") == 3 and runs.count("RefusalRouter") == 3


def test_abatch_equals_batch(router) -> None:
    configs = [cfg(t) for t in ("open", "block", "open")]
    batched = router.batch(PROMPTS[:3], configs)
    abatched = asyncio.run(router.abatch(PROMPTS[:3], configs))
    for a, b in zip(abatched, batched, strict=True):
        assert_same(a, b)
    outs = asyncio.run(router.abatch(["hi", "hi"], [cfg("open"), cfg("nobody")], return_exceptions=True))
    assert isinstance(outs[0], AIMessage) and isinstance(outs[1], UnknownTenantError)


def test_concurrent_batches_equal_sequential(router) -> None:
    mixes = [[(p, t) for p in PROMPTS[i : i + 4]] for i, t in zip(range(4), ("open", "block", "mixed", "open"), strict=True)]
    want = [router.batch([p for p, _ in mix], [cfg(t) for _, t in mix]) for mix in mixes]
    got: list[Any] = [None] * len(mixes)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = router.batch([p for p, _ in mixes[i]], [cfg(t) for _, t in mixes[i]])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(mixes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for outs, expected in zip(got, want, strict=True):
        for a, b in zip(outs, expected, strict=True):
            assert_same(a, b)
