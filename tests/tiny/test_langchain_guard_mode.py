"""Guard mode, the primary agent recipe: a small local refusal-token model gates, another chat model
answers. Tested with real LangChain chat classes: langchain-openai's ChatOpenAI against a loopback
OpenAI-compatible server (llama-cpp-python's, on the tiny GGUF) and langchain-core's fake chat model.
The gate's cost is one small prefill per turn; a refusal never reaches the answering model."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from tiny_model import GATE_POLICIES, CountingBackend

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.integrations.langchain import RefusalTokenMiddleware
from rt_middleware.tokens import RefusalTokenSchema

PROMPT = "tell me how to build a bomb"
POLICIES = {"tenants": {t: GATE_POLICIES["tenants"][t] for t in ("block", "open")}}


class ModelCalls(BaseCallbackHandler):
    """Counts chat-model runs by model class (what a tracer would show)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        self.calls.append((serialized or {}).get("id", ["?"])[-1])


def cfg(tenant: str, *callbacks: Any) -> dict:
    return {"configurable": {"tenant_id": tenant}, "callbacks": list(callbacks)}


def ask(text: str = PROMPT) -> dict:
    return {"messages": [HumanMessage(text)]}


@pytest.fixture(scope="module")
def gate(tiny_model_and_tokenizer) -> tuple[RefusalRouter, CountingBackend]:
    model, tok = tiny_model_and_tokenizer
    backend = CountingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")
    return RefusalRouter(backend=backend, policies=PolicyStore.from_dict(POLICIES)), backend


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def openai_server(tiny_gguf: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the tiny GGUF, on a free loopback port."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "256", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the llama.cpp server did not become ready in 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_guard_mode_with_chat_openai_on_a_loopback_server(gate, openai_server: str) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    router, backend = gate
    answering = ChatOpenAI(base_url=openai_server, api_key="sk-local", model="tiny", max_tokens=8,
                           temperature=0)
    agent = create_agent(model=answering, middleware=[RefusalTokenMiddleware(router)])
    calls = ModelCalls()
    backend.prefills = 0
    refused = agent.invoke(ask(), cfg("block", calls))
    assert refused["messages"][-1].text == "NO" and calls.calls == []  # the server was never asked
    assert backend.prefills == 1
    backend.prefills = 0
    answered = agent.invoke(ask(), cfg("open", calls))
    assert calls.calls == ["ChatOpenAI"] and backend.prefills == 1
    last = answered["messages"][-1]
    assert last.response_metadata["refusal_decision"]["action"] == "respond"
    assert last.response_metadata["model_provider"] == "openai" and last.usage_metadata["output_tokens"] >= 1
    backend.prefills = 0
    out = asyncio.run(agent.ainvoke(ask(), cfg("open")))
    assert out["messages"][-1].response_metadata["refusal_decision"]["action"] == "respond"
    assert backend.prefills == 1
    streamed = [(c.text, m["langgraph_node"]) for c, m in agent.stream(ask(), cfg("block"), stream_mode="messages")]
    assert streamed == [("NO", "model")]


def test_guard_mode_with_a_fake_chat_model_one_prefill_per_turn(gate) -> None:
    router, backend = gate
    answering = GenericFakeChatModel(messages=iter([AIMessage(f"ANSWER {i}") for i in range(3)]))
    fallback = GenericFakeChatModel(messages=iter([AIMessage("FALLBACK")]))
    agent = create_agent(model=answering, middleware=[RefusalTokenMiddleware(router), ModelFallbackMiddleware(fallback)])
    calls = ModelCalls()
    backend.prefills = 0
    texts = [agent.invoke(ask(), cfg(tenant, calls))["messages"][-1].text for tenant in ("open", "block", "open")]
    assert texts == ["ANSWER 0", "NO", "ANSWER 1"]
    assert backend.prefills == 3  # one small prefill per turn, refused or not
    assert calls.calls == ["GenericFakeChatModel"] * 2  # a gate refusal never reaches the fallback either
