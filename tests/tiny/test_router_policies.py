"""Router behaviour per tenant policy on the tiny HF backend: decide_on, token caps, unknown tenants,
fail modes on any backend fault, logging and the decision audit trail."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import InvalidInputError, PolicyStore, RefusalRouter, UnknownTenantError
from rt_middleware.audit import DecisionAudit, prompt_sha256
from rt_middleware.backends import GenerationOptions, HFBackend
from rt_middleware.errors import BackendError
from rt_middleware.messages import ChatMessage
from rt_middleware.tokens import COCONOT_CATEGORIES

CATS = COCONOT_CATEGORIES
OPEN = {c: {"action": "respond"} for c in CATS}
BLOCK = {c: {"action": "refuse", "threshold": 0.0, "message": "NO"} for c in CATS}


class CountingBackend(HFBackend):
    """The real tiny HF backend, counting model calls and recording what each one read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, list[int]]] = []
        self.max_new_tokens: list[int] = []
        self.lock = threading.Lock()

    def _prefill_ids(self, ids, temperature, logit_bias):
        with self.lock:
            self.calls.append(("prefill", list(ids)))
        return super()._prefill_ids(ids, temperature, logit_bias)

    def _distributions_ids(self, batch, temperature, logit_bias):
        with self.lock:
            self.calls.extend(("distribution", list(ids)) for ids in batch)
        return super()._distributions_ids(batch, temperature, logit_bias)

    def _stream_ids(self, prefill, token_id, options):
        self.max_new_tokens.append(options.max_new_tokens)
        return super()._stream_ids(prefill, token_id, options)


@pytest.fixture
def counting(tiny_model_and_tokenizer) -> CountingBackend:
    model, tok = tiny_model_and_tokenizer
    return CountingBackend(model, tok, model_name="tiny")


def make_router(backend, tenants: dict, **kwargs) -> RefusalRouter:
    kwargs.setdefault("generation", GenerationOptions(max_new_tokens=6))
    return RefusalRouter(backend=backend, policies=PolicyStore.from_dict({"tenants": tenants}), **kwargs)


def cfg(tenant: str) -> dict:
    return {"configurable": {"tenant_id": tenant}}


HISTORY = [
    SystemMessage("you are a helpful bank assistant"),
    HumanMessage("tell me how to build a bomb"),
    AIMessage("I can't help with that."),
    HumanMessage("what is the meaning of life"),
]
LAST_TURN = [ChatMessage("system", "you are a helpful bank assistant"), ChatMessage("user", "what is the meaning of life")]


# ---- decide_on (issue 17 item 1) ------------------------------------------------------------

def test_last_turn_decides_on_system_plus_latest_user_message(counting: CountingBackend) -> None:
    router = make_router(counting, {"turn": {"categories": OPEN}, "conv": {"categories": OPEN,
                                                                           "decide_on": "conversation"}})
    turn = router.decide(HISTORY, tenant_id="turn")
    assert counting.calls == [("distribution", counting.encode(LAST_TURN))]
    alone = router.decide(LAST_TURN, tenant_id="conv")
    assert dict(turn.probabilities) == pytest.approx(dict(alone.probabilities))
    counting.calls.clear()
    conv = router.decide(HISTORY, tenant_id="conv")
    full = counting.encode(router_conversation(HISTORY))
    assert counting.calls == [("distribution", full)]
    assert dict(conv.probabilities) != pytest.approx(dict(turn.probabilities))


def router_conversation(messages):
    from rt_middleware.router import to_conversation

    return to_conversation(messages)


def test_one_prefill_when_decided_text_is_what_the_model_answers_from(counting: CountingBackend) -> None:
    router = make_router(counting, {"turn": {"categories": OPEN}, "conv": {"categories": OPEN,
                                                                           "decide_on": "conversation"}})
    single = [SystemMessage("be brief"), HumanMessage("hello world")]
    router.invoke(single, cfg("turn"))
    assert [kind for kind, _ in counting.calls] == ["prefill"]  # single turn with a system prompt
    counting.calls.clear()
    router.invoke(HISTORY, cfg("conv"))
    assert [kind for kind, _ in counting.calls] == ["prefill"]  # conversation mode


def test_history_under_last_turn_answers_from_the_whole_conversation(counting: CountingBackend) -> None:
    router = make_router(counting, {"turn": {"categories": OPEN}, "conv": {"categories": OPEN,
                                                                           "decide_on": "conversation"}})
    answer = router.invoke(HISTORY, cfg("turn"))
    full = counting.encode(router_conversation(HISTORY))
    assert counting.calls == [("distribution", counting.encode(LAST_TURN)), ("prefill", full)]
    # the answer is what the model says after [respond] on the whole conversation
    assert answer.text == router.invoke(HISTORY, cfg("conv")).text
    streamed = "".join(c.text for c in router.stream(HISTORY, cfg("turn")))
    assert streamed == answer.text
    counting.calls.clear()
    evaluation = router.evaluate(HISTORY, tenant_id="turn")
    assert evaluation.decided_on == LAST_TURN and evaluation.needs_answer_prefill
    assert [kind for kind, _ in counting.calls] == ["distribution"]  # guard mode never pays more
    assert evaluation.prefill.input_ids == full  # any consumer of .prefill gets the answer's prefill
    assert [kind for kind, _ in counting.calls] == ["distribution", "prefill"]
    assert counting.generate(evaluation.prefill, "respond", GenerationOptions(max_new_tokens=6)) == answer.text
    lazy = router.evaluate(HISTORY, tenant_id="turn", keep_cache=False)
    assert lazy.needs_answer_prefill and router.act(lazy, HISTORY).text == answer.text


def test_a_refused_turn_does_not_poison_the_next_under_last_turn(counting: CountingBackend) -> None:
    """Block only what the first user turn alone triggers; the next turn is judged on its own."""
    router = make_router(counting, {"probe": {"categories": OPEN, "decide_on": "conversation"}})
    thread = [HumanMessage("tell me how to build a bomb"), AIMessage("NO"), HumanMessage("hello world")]
    first = router.decide(thread[:1], tenant_id="probe")
    second = router.decide(thread[2:], tenant_id="probe")
    both = router.decide(thread, tenant_id="probe")
    cat = max(CATS, key=lambda c: first.probabilities[c] - second.probabilities[c])
    threshold = (first.probabilities[cat] + second.probabilities[cat]) / 2
    rule = {**OPEN, cat: {"action": "refuse", "threshold": threshold, "message": "NO"}}
    router = make_router(counting, {"turn": {"categories": rule},
                                    "conv": {"categories": rule, "decide_on": "conversation"}})
    assert router.decide(thread[:1], tenant_id="turn").action == "refuse"
    assert router.decide(thread, tenant_id="turn").action == "respond"
    conv = router.decide(thread, tenant_id="conv")
    assert conv.action == ("refuse" if both.probabilities[cat] >= threshold else "respond")


def test_tool_results_are_not_the_users_turn(counting: CountingBackend) -> None:
    router = make_router(counting, {"turn": {"categories": OPEN}})
    messages = [HumanMessage("what is the meaning of life"),
                AIMessage("", tool_calls=[{"name": "lookup", "args": {}, "id": "1"}]),
                ToolMessage("42", tool_call_id="1")]
    router.decide(messages, tenant_id="turn")
    assert counting.calls == [("distribution", counting.encode([ChatMessage("user", "what is the meaning of life")]))]


# ---- max_new_tokens is a cap (issue 15 item 7) -------------------------------------------

def test_policy_max_new_tokens_caps_the_callers_limit(counting: CountingBackend) -> None:
    router = make_router(counting, {"big": {"categories": OPEN, "max_new_tokens": 64},
                                    "small": {"categories": OPEN, "max_new_tokens": 3}},
                         generation=GenerationOptions(max_new_tokens=10))
    router.invoke("hello world", cfg("big"))
    router.invoke("hello world", cfg("small"))
    list(router.stream("hello world", cfg("small")))
    assert counting.max_new_tokens == [10, 3, 3]


# ---- tenants (issue 15 item 5) -------------------------------------------------------------

def test_unknown_tenant_is_rejected_unless_the_file_says_default(tiny_backend) -> None:
    tenants = {"a": {"categories": OPEN}, "b": {"categories": BLOCK}}
    strict = RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(
        {"default_tenant": "b", "tenants": tenants}))
    assert strict.decide("hello world").tenant == "b"  # no id: the default tenant
    with pytest.raises(UnknownTenantError):
        strict.decide("hello world", tenant_id="aa")
    lenient = RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(
        {"default_tenant": "b", "unknown_tenant": "default", "tenants": tenants}))
    decision = lenient.decide("hello world", tenant_id="aa")
    assert decision.tenant == "b" and decision.requested_tenant == "aa"
    assert decision.to_dict()["requested_tenant"] == "aa"
    assert "requested_tenant" not in lenient.decide("hello world", tenant_id="a").to_dict()
    assert lenient.invoke("hi", cfg("zz")).response_metadata["refusal_decision"]["requested_tenant"] == "zz"


@pytest.mark.parametrize("tenant", [["a"], {"a": 1}, 7])
def test_non_string_tenant_is_a_typed_error(tiny_backend, tenant) -> None:
    router = make_router(tiny_backend, {"a": {"categories": OPEN}})
    with pytest.raises(InvalidInputError, match="tenant_id"):
        router.invoke("hello", {"configurable": {"tenant_id": tenant}})


# ---- typed input errors (issue 15 item 2) ----------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    ["caf\ud800", [HumanMessage("ok"), HumanMessage("x\udcff")], [{"role": "user", "content": "\ud800"}],
     [("human", "caf\udce9")]],
)
def test_lone_surrogates_are_invalid_input_on_every_entry_point(tiny_backend, bad) -> None:
    router = make_router(tiny_backend, {"a": {"categories": OPEN}})
    for call in (lambda: router.invoke(bad, cfg("a")), lambda: router.decide(bad, tenant_id="a"),
                 lambda: list(router.stream(bad, cfg("a"))), lambda: router.batch([bad], cfg("a"))):
        with pytest.raises(InvalidInputError, match="surrogate"):
            call()


def test_dict_input_names_the_accepted_types(tiny_backend) -> None:
    router = make_router(tiny_backend, {"a": {"categories": OPEN}})
    for bad in ({"messages": [HumanMessage("hi")]}, {"role": "user", "content": "hi"}, 42, b"hi", None):
        with pytest.raises(InvalidInputError, match="str prompt, a list of messages"):
            router.invoke(bad, cfg("a"))  # type: ignore[arg-type]


# ---- fail modes on any backend fault (issue 15 item 4, router side) -------------------------

class FaultyBackend(HFBackend):
    """A real backend whose model calls raise `fault` while it is set (then work again)."""

    fault: BaseException | None = None
    where: str = "prefill"

    def _raise(self, where: str) -> None:
        if self.fault is not None and self.where == where:
            raise self.fault

    def _prefill_ids(self, ids, temperature, logit_bias):
        self._raise("prefill")
        return super()._prefill_ids(ids, temperature, logit_bias)

    def _distributions_ids(self, batch, temperature, logit_bias):
        self._raise("prefill")
        return super()._distributions_ids(batch, temperature, logit_bias)

    def _stream_ids(self, prefill, token_id, options):
        self._raise("stream")
        return super()._stream_ids(prefill, token_id, options)


FAULTS = [TypeError("bad arg"), KeyError("layer"), MemoryError(), ValueError("nan"), OSError(5, "I/O error"),
          RuntimeError("device lost"), IndexError("out of range"), BackendError("typed"), ZeroDivisionError()]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda e: type(e).__name__)
def test_any_backend_exception_applies_fail_mode_and_leaves_the_router_usable(
    tiny_model_and_tokenizer, fault: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    model, tok = tiny_model_and_tokenizer
    backend = FaultyBackend(model, tok)
    router = make_router(
        backend,
        {"closed": {"categories": OPEN, "refusal_message": "DOWN"}, "open": {"categories": OPEN, "fail_mode": "open"}},
        respond_with=None,
    )
    fallback = make_router(backend, {"open": {"categories": OPEN, "fail_mode": "open"}},
                           respond_with=RunnableLambda(lambda _x: "FALLBACK"))
    healthy = router.invoke("hello world", cfg("closed")).text
    for where in ("prefill", "stream"):
        backend.fault, backend.where = fault, where
        with caplog.at_level(logging.WARNING, logger="rt_middleware"):
            caplog.clear()
            closed = router.invoke("hello world", cfg("closed"))
            assert closed.text == "DOWN", where
            meta = closed.response_metadata["refusal_decision"]
            assert meta["reason"] == "backend_error" and meta["extras"]["error"] == type(fault).__name__
            [chunk] = list(router.stream("hello world", cfg("closed")))
            assert chunk.text == "DOWN"
            assert router.decide("hello world", tenant_id="closed").action == ("refuse" if where == "prefill" else "respond")
            assert fallback.invoke("hello world", cfg("open")).text == "FALLBACK"
            with pytest.raises(BackendError):
                router.invoke("hello world", cfg("open"))  # open, but nothing to answer with
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "rt_middleware.router"]
        assert warnings and all(r.fail_mode in ("closed", "open") for r in warnings)
        backend.fault = None
        assert router.invoke("hello world", cfg("closed")).text == healthy  # usable again


# ---- logging and the audit trail (issue 15 item 6) --------------------------------------------

def test_each_decision_is_logged_at_debug_with_structured_fields(tiny_backend, caplog) -> None:
    router = make_router(tiny_backend, {"a": {"categories": BLOCK}})
    with caplog.at_level(logging.DEBUG, logger="rt_middleware"):
        router.decide("tell me how to build a bomb", tenant_id="a")
    [record] = [r for r in caplog.records if r.name == "rt_middleware.router"]
    assert record.levelno == logging.DEBUG
    assert (record.tenant, record.action, record.policy_version) == ("a", "refuse", router.policies.version)
    assert record.category in CATS and record.latency_ms >= 0
    assert "bomb" not in record.getMessage()


def test_audit_jsonl_records_every_decision_with_a_hash_not_the_text(tiny_backend, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    router = make_router(tiny_backend, {"a": {"categories": BLOCK}, "b": {"categories": OPEN}}, audit=path)
    prompts = ["tell me how to build a bomb", "hello world"]

    def work(i: int) -> None:
        for j in range(10):
            router.decide(prompts[j % 2], tenant_id="ab"[i % 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    router.invoke("hello world", cfg("b"))
    router.audit.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # 41 whole lines: no interleaving
    assert len(records) == 41
    assert "bomb" not in path.read_text(encoding="utf-8")
    expected = {prompt_sha256([ChatMessage("user", p)]) for p in prompts}
    assert {r["prompt_sha256"] for r in records} == expected
    assert {r["action"] for r in records} == {"refuse", "respond"}
    assert all(r["policy_version"] == router.policies.version and r["latency_ms"] >= 0 for r in records)


def test_audit_callable_and_opt_in_text(tiny_backend) -> None:
    seen: list[dict] = []
    router = make_router(tiny_backend, {"a": {"categories": OPEN}}, audit=DecisionAudit(seen.append, include_text=True))
    router.decide([SystemMessage("sys"), HumanMessage("hello world")], tenant_id="a")
    assert seen[0]["prompt"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello world"}]
    failing = make_router(tiny_backend, {"a": {"categories": OPEN}}, audit=lambda _r: 1 / 0)
    assert failing.decide("hello world", tenant_id="a").action == "respond"  # a broken sink never fails a request


def test_answers_report_finish_reason(tiny_backend) -> None:
    router = make_router(tiny_backend, {"a": {"categories": OPEN}}, generation=GenerationOptions(max_new_tokens=2))
    out = router.invoke("hello world", cfg("a"))
    assert out.response_metadata["finish_reason"] in ("stop", "length", "context")
    chunks = list(router.stream("hello world", cfg("a")))
    assert chunks[-1].response_metadata["finish_reason"] == out.response_metadata["finish_reason"]
    assert "".join(c.text for c in chunks) == out.text
