"""`backend.coalesce_requests`: concurrent single requests (invokes, agent turns) share batched forwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from tiny_model import GATE_POLICIES, PROMPTS, build_tiny

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions, HFBackend
from rt_middleware.errors import BackendError, BackendTimeoutError, ConfigError
from rt_middleware.integrations.langchain import RefusalTokenMiddleware
from rt_middleware.messages import ChatMessage

FOREVER_MS = 60_000.0
"""A window no test waits out: batches here start because they are full, so sizes are exact."""


@pytest.fixture
def backend() -> HFBackend:
    model, tok = build_tiny(spread=0.02)
    return HFBackend(model, tok, model_name="tiny")


def router_on(backend: HFBackend) -> RefusalRouter:
    return RefusalRouter(backend=backend, policies=PolicyStore.from_dict(GATE_POLICIES),
                         routes={"clarify": RunnableLambda(lambda _: "ROUTED")},
                         generation=GenerationOptions(max_new_tokens=10))


def prefill_sizes(backend: HFBackend) -> tuple[list[int], Callable[[], None]]:
    sizes: list[int] = []

    def record(_m, _a, kwargs) -> None:
        if kwargs["input_ids"].shape[-1] > 1:  # a prefill, not a generation step
            sizes.append(kwargs["input_ids"].shape[0])

    return sizes, backend.model.register_forward_pre_hook(record, with_kwargs=True).remove


def in_threads(fns: list[Callable[[], Any]]) -> list[Any]:
    out: list[Any] = [None] * len(fns)

    def run(i: int) -> None:
        try:
            out[i] = fns[i]()
        except BaseException as exc:  # returned to the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_invokes_share_prefills_and_answer_as_alone(backend) -> None:
    router = router_on(backend)
    asks = list(zip(PROMPTS[:8], ["open", "block"] * 4, strict=True))
    alone = [router.invoke(p, {"configurable": {"tenant_id": t}}) for p, t in asks]
    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=4)
    sizes, remove = prefill_sizes(backend)
    try:
        got = in_threads([lambda p=p, t=t: router.invoke(p, {"configurable": {"tenant_id": t}})
                          for p, t in asks])
    finally:
        remove()
    assert sizes == [4, 4]
    for g, a in zip(got, alone, strict=True):
        assert g.text == a.text
        assert g.response_metadata["refusal_decision"]["probabilities"] == pytest.approx(
            a.response_metadata["refusal_decision"]["probabilities"], abs=1e-5)


def test_concurrent_agents_share_one_decision_forward(backend) -> None:
    router = router_on(backend)
    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=4)
    tenants = ["block", "open", "open", "block"]

    def agent_turn(tenant: str) -> Callable[[], Any]:
        agent = create_agent(model=GenericFakeChatModel(messages=iter([AIMessage("FAKE ANSWER")])),
                             middleware=[RefusalTokenMiddleware(router)])
        return lambda: agent.invoke({"messages": [HumanMessage(PROMPTS[1])]},
                                    {"configurable": {"tenant_id": tenant}})

    sizes, remove = prefill_sizes(backend)
    try:
        outs = in_threads([agent_turn(t) for t in tenants])
    finally:
        remove()
    assert sizes == [4]
    assert [o["messages"][-1].text for o in outs] == ["NO", "FAKE ANSWER", "FAKE ANSWER", "NO"]


def test_the_window_gives_way_to_a_members_deadline(backend) -> None:
    """A request whose deadline falls inside the window used to wait it out and always time out."""
    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=8)
    assert backend.prefill("hello world", timeout=0.5).distribution.prompt_tokens > 0  # alone
    leader = threading.Thread(target=backend.prefill, args=("hello world",))
    leader.start()
    while not backend._coalescer._open:  # the leader holds the gathering open
        time.sleep(0.001)
    assert backend.prefill("do you love me", timeout=0.5).distribution.prompt_tokens > 0  # starts the batch
    leader.join(5)
    assert not leader.is_alive() and not backend._coalescer._open


def test_a_member_whose_deadline_passes_while_its_batch_runs_times_out(backend) -> None:
    slow = backend.model.register_forward_pre_hook(lambda *_: time.sleep(0.3))  # a forward as slow as a big model's
    backend.coalesce_requests(window_ms=0.0, max_batch_size=8)
    try:
        with pytest.raises(BackendTimeoutError):
            backend.prefill("do you love me", timeout=0.05)
    finally:
        slow.remove()


def test_an_interrupted_leader_leaves_no_batch_open(backend) -> None:
    """Ctrl-C while the leader waited left its batch registered: later requests joined it and hung."""
    import signal

    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=8)
    follower: list[Any] = []

    def join_then_interrupt() -> None:
        while not backend._coalescer._open:  # the main thread leads the batch
            time.sleep(0.001)
        # a real SIGINT, as Ctrl-C sends: it interrupts the leader's timed wait
        threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
        follower.append(_caught(lambda: backend.prefill("do you love me")))

    def ctrl_c(*_: Any) -> None:  # Python's own SIGINT handler, whatever an earlier test installed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ctrl_c)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a library may have blocked it
    joined = threading.Thread(target=join_then_interrupt)
    joined.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.prefill("hello world")  # the leader, waiting for members in the main thread
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, previous)
    joined.join(5)
    assert not joined.is_alive() and isinstance(follower[0], BackendError) and "KeyboardInterrupt" in str(follower[0])
    assert not backend._coalescer._open
    assert backend.prefill("hello world", timeout=5).distribution.prompt_tokens > 0  # a new batch, not the dead one


def _caught(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as exc:  # returned to the test
        return exc


@pytest.mark.parametrize(("window_ms", "size"), [(float("inf"), 4), (float("nan"), 4), (1e15, 4), (2.0, 2.5),
                                                  (2.0, True), (-1.0, 4)])
def test_bad_coalescing_settings_are_config_errors(backend, window_ms: float, size: Any) -> None:
    with pytest.raises(ConfigError):
        backend.coalesce_requests(window_ms=window_ms, max_batch_size=size)
    assert backend._coalescer is None


def test_one_unusable_row_fails_alone_in_its_batch() -> None:
    """NaN logits from one prompt failed every row of the padded batch, other tenants' included."""
    import torch

    model, tok = build_tiny(spread=0.02)
    backend = HFBackend(model, tok, model_name="tiny")
    poison = "zebra zebra zebra"
    prompts = [poison, "hello world", "do you love me"]
    others = {i for p in prompts[1:] for i in backend.encode([ChatMessage("user", p)])}
    bad_id = min(set(backend.encode([ChatMessage("user", poison)])) - others)  # in the poison prompt only
    with torch.no_grad():
        model.get_input_embeddings().weight[bad_id] = float("nan")
    alone = [backend.first_token_distribution(p) for p in prompts[1:]]
    batched = backend.first_token_distributions(prompts, return_exceptions=True)
    assert isinstance(batched[0], BackendError)
    for got, want in zip(batched[1:], alone, strict=True):
        assert got.probabilities == pytest.approx(want.probabilities, abs=1e-5)
    prefills = backend.prefill_batch(prompts, return_exceptions=True)
    assert isinstance(prefills[0], BackendError) and all(not isinstance(p, BaseException) for p in prefills[1:])
    with pytest.raises(BackendError, match="unusable logits"):
        backend.first_token_distributions(prompts)
    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=3)
    outs = in_threads([lambda p=p: backend.first_token_distribution(p) for p in prompts])
    assert isinstance(outs[0], BackendError)
    for got, want in zip(outs[1:], alone, strict=True):
        assert got.probabilities == pytest.approx(want.probabilities, abs=1e-5)


def test_a_failed_batch_applies_every_members_fail_mode() -> None:
    class Broken(HFBackend):
        def _prefill_batch_ids(self, batch, temperature, logit_bias):
            raise RuntimeError("device lost")

    model, tok = build_tiny()
    backend = Broken(model, tok)
    backend.coalesce_requests(window_ms=FOREVER_MS, max_batch_size=2)
    router = RefusalRouter(backend=backend, policies=PolicyStore.from_dict(
        {"tenants": {"closed": {"refusal_message": "DOWN"}}}))
    outs = in_threads([lambda: router.invoke("hello", {"configurable": {"tenant_id": "closed"}})] * 2)
    assert [o.text for o in outs] == ["DOWN", "DOWN"]
    assert {o.response_metadata["refusal_decision"]["reason"] for o in outs} == {"backend_error"}


def test_off_by_default_and_switchable(backend) -> None:
    assert backend._coalescer is None
    backend.coalesce_requests(window_ms=0.0)
    assert backend.prefill("hello world").distribution.prompt_tokens > 0  # alone: no wait
    backend.coalesce_requests(None)
    assert backend._coalescer is None
