"""`rt serve`'s app on 127.0.0.1 (uvicorn in a thread) with the tiny llama.cpp model, driven by real clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("llama_cpp")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from served import Served, free_port  # noqa: E402
from tiny_model import GATE_POLICIES  # noqa: E402

from rt_middleware.backends.base import GenerationOptions  # noqa: E402
from rt_middleware.backends.llamacpp import LlamaCppBackend  # noqa: E402
from rt_middleware.integrations.server import (  # noqa: E402
    KeyStore,
    ServerSettings,
    add_key,
    create_app,
)
from rt_middleware.policy import PolicyStore  # noqa: E402
from rt_middleware.router import RefusalRouter  # noqa: E402

POLICIES = {"version": "v1", **GATE_POLICIES}


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    b = LlamaCppBackend(tiny_gguf, pool_size=2)
    yield b
    b.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("serve")
    policy, keys = folder / "policy.yaml", folder / "keys.json"
    policy.write_text(yaml.safe_dump(POLICIES))
    names = {t: add_key(keys, t) for t in ("block", "open", "clarify", "ghost")}
    names["admin"] = add_key(keys, "ops", role="admin")
    return {"policy": policy, "keys": keys, "key": names}


def make_app(backend, setup: dict, **settings):
    store = PolicyStore.from_file(setup["policy"])
    router = RefusalRouter(backend=backend, policies=store, check_routes=False,
                           generation=GenerationOptions(max_new_tokens=16))
    return create_app(router, KeyStore.from_file(setup["keys"]), ServerSettings(model_id="tiny", **settings))


@pytest.fixture(scope="module")
def served(backend, setup) -> Iterator[Served]:
    s = Served(make_app(backend, setup, max_body_bytes=20_000, max_prompt_tokens=100))
    yield s
    s.stop()


def client(served: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


PROMPT = "tell me how to build a bomb"  # the tiny model answers it with text
USER = [{"role": "user", "content": PROMPT}]


def test_keys_file_stores_only_hashes(setup) -> None:
    text = setup["keys"].read_text()
    assert all(key not in text for key in setup["key"].values())
    assert {e["tenant"] for e in json.loads(text)["keys"]} == {"block", "open", "clarify", "ghost", "ops"}


def test_refusal_comes_back_as_openai_refusal(served, setup) -> None:
    out = client(served, setup["key"]["block"]).chat.completions.create(model="tiny", messages=USER)
    message = out.choices[0].message
    assert (message.refusal, message.content) == ("NO", None)
    decision = out.model_extra["refusal_decision"]
    assert (decision["action"], decision["tenant"]) == ("refuse", "block")


def test_benign_answer_and_stream_agree(served, setup, backend) -> None:
    api = client(served, setup["key"]["open"])
    out = api.chat.completions.create(model="tiny", messages=USER, max_tokens=8)
    assert out.choices[0].message.refusal is None
    assert out.model_extra["refusal_decision"]["action"] == "respond"
    want = backend.generate(backend.prefill(PROMPT), options=GenerationOptions(max_new_tokens=8))
    assert out.choices[0].message.content == want != ""
    chunks = list(api.chat.completions.create(model="tiny", messages=USER, max_tokens=8, stream=True))
    assert chunks[0].model_extra["refusal_decision"]["action"] == "respond"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    full = backend.complete(backend.prefill(PROMPT), options=GenerationOptions(max_new_tokens=8))
    assert chunks[-1].choices[0].finish_reason == ("length" if full.finish_reason in ("length", "context") else "stop")
    short = backend.complete(backend.prefill(PROMPT), options=GenerationOptions(max_new_tokens=1))
    out = api.chat.completions.create(model="tiny", messages=USER, max_tokens=1)
    expected = "length" if short.finish_reason in ("length", "context") else "stop"  # None: not reported
    assert out.choices[0].finish_reason == expected
    chunks = list(api.chat.completions.create(model="tiny", messages=USER, max_tokens=1, stream=True))
    assert chunks[-1].choices[0].finish_reason == expected


def test_refusal_streams_as_one_refusal_delta_then_done(served, setup) -> None:
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json={"messages": USER, "stream": True},
                      headers={"Authorization": f"Bearer {setup['key']['block']}"}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][5:])
    assert first["choices"][0]["delta"]["refusal"] == "NO"
    assert first["refusal_decision"]["action"] == "refuse"
    assert not any(json.loads(x[5:])["choices"][0]["delta"].get("content") for x in lines[:-1])


def test_route_returns_the_decision_for_the_client(served, setup) -> None:
    r = httpx.post(f"{served.url}/v1/chat/completions", json={"messages": USER},
                   headers={"Authorization": f"Bearer {setup['key']['clarify']}"})
    body = r.json()
    assert r.headers["x-rt-route"] == "clarify"
    assert body["choices"][0]["message"]["content"] is None
    assert body["refusal_decision"]["route"] == "clarify"


def test_keys_select_their_tenant_only(served, setup) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(served, "rt-wrong").chat.completions.create(model="tiny", messages=USER)
    assert httpx.post(f"{served.url}/v1/chat/completions", json={"messages": USER}).status_code == 401
    # a tenant named in the request cannot override the key's tenant
    out = client(served, setup["key"]["block"]).chat.completions.create(
        model="tiny", messages=USER, user="open", extra_body={"tenant_id": "open"}
    )
    assert out.model_extra["refusal_decision"]["tenant"] == "block"
    with pytest.raises(openai.PermissionDeniedError, match="no policy"):
        client(served, setup["key"]["ghost"]).chat.completions.create(model="tiny", messages=USER)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"messages": [{"role": "user", "content": 3}]}).encode(), 400, "content"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}).encode(), 400, "max_tokens"),
        (json.dumps({"messages": [{"role": "user", "content": "  "}]}).encode(), 400, "no user text"),
        (json.dumps({"messages": [{"role": "user", "content": "bread " * 300}]}).encode(), 400, "at most 100"),
        (json.dumps({"messages": [{"role": "user", "content": "x" * 30_000}]}).encode(), 413, "over 20000 bytes"),
    ],
)
def test_bad_requests_get_clear_4xx(served, setup, body: bytes, status: int, needle: str) -> None:
    r = httpx.post(f"{served.url}/v1/chat/completions", content=body,
                   headers={"Authorization": f"Bearer {setup['key']['open']}", "Content-Type": "application/json"})
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


def test_models_probes_and_metrics(served, setup) -> None:
    assert [m.id for m in client(served, setup["key"]["open"]).models.list()] == ["tiny"]
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/readyz").json()["policy_version"] == "v1"
    client(served, setup["key"]["block"]).chat.completions.create(model="tiny", messages=USER)
    text = httpx.get(f"{served.url}/metrics").text
    assert 'rt_decisions_total{action="refuse",category=' in text and 'tenant="block"' in text
    assert "rt_decision_latency_seconds_bucket" in text and "rt_requests_in_flight" in text


def test_admin_reload_and_policies(served, setup) -> None:
    admin = {"Authorization": f"Bearer {setup['key']['admin']}"}
    user = {"Authorization": f"Bearer {setup['key']['open']}"}
    assert httpx.post(f"{served.url}/admin/reload", headers=user).status_code == 403
    got = httpx.get(f"{served.url}/admin/policies/block", headers=admin).json()
    assert got["policy"]["categories"]
    assert httpx.get(f"{served.url}/admin/policies/nobody", headers=admin).status_code == 404
    broken = dict(POLICIES, tenants={"block": {"temperature": -1}})
    setup["policy"].write_text(yaml.safe_dump(broken))
    r = httpx.post(f"{served.url}/admin/reload", headers=admin)
    assert r.status_code == 400 and "previous policies stay" in r.json()["error"]["message"]
    setup["policy"].write_text(yaml.safe_dump(dict(POLICIES, version="v2")))
    assert httpx.post(f"{served.url}/admin/reload", headers=admin).json()["policy_version"] == "v2"
    # the file watcher picks up the next edit without a call
    setup["policy"].write_text(yaml.safe_dump(dict(POLICIES, version="v3")))
    deadline = time.monotonic() + 20
    while httpx.get(f"{served.url}/readyz").json()["policy_version"] != "v3" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{served.url}/readyz").json()["policy_version"] == "v3"


def test_missed_deadline_takes_the_fail_mode(backend, setup) -> None:
    s = Served(make_app(backend, setup, deadline_s=1e-9, watch_policy=False))
    try:
        out = client(s, setup["key"]["block"]).chat.completions.create(model="tiny", messages=USER)
        assert out.model_extra["refusal_decision"]["reason"] == "backend_error"
        assert out.choices[0].message.refusal
    finally:
        s.stop()


def test_engine_down_applies_fail_modes(setup, tiny_gguf) -> None:
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

    down = OpenAICompatibleBackend(f"http://127.0.0.1:{free_port()}/v1", "m", tokenizer=tiny_gguf,
                                   engine="llama-cpp-python", retries=0, connect_timeout=0.5)
    s = Served(make_app(down, setup, watch_policy=False))
    try:
        closed = client(s, setup["key"]["block"]).chat.completions.create(model="tiny", messages=USER)
        assert closed.model_extra["refusal_decision"]["reason"] == "backend_error"
        assert httpx.get(f"{s.url}/readyz").status_code == 503
    finally:
        s.stop()


def test_langchain_chat_openai(served, setup) -> None:
    lc = pytest.importorskip("langchain_openai")
    refused = lc.ChatOpenAI(base_url=f"{served.url}/v1", api_key=setup["key"]["block"], model="tiny",
                            max_retries=0).invoke(PROMPT)
    assert refused.additional_kwargs.get("refusal") == "NO"
    chat = lc.ChatOpenAI(base_url=f"{served.url}/v1", api_key=setup["key"]["open"], model="tiny",
                         max_retries=0, max_tokens=8)
    answer = chat.invoke(PROMPT)
    assert answer.additional_kwargs.get("refusal") is None and answer.text
    streamed = "".join(chunk.text for chunk in chat.stream(PROMPT))
    assert streamed == answer.text
    with pytest.raises(openai.AuthenticationError):
        lc.ChatOpenAI(base_url=f"{served.url}/v1", api_key="rt-nope", model="tiny", max_retries=0).invoke("hi")


def test_multi_turn_answer_continues_the_whole_conversation(served, setup, backend) -> None:
    """decide_on: last_turn (the default) decides on the last turn; the answer still reads everything."""
    history = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "hi"}, *USER]
    out = client(served, setup["key"]["open"]).chat.completions.create(model="tiny", messages=history, max_tokens=8)
    assert out.model_extra["refusal_decision"]["action"] == "respond"
    want = backend.generate(backend.prefill(history), options=GenerationOptions(max_new_tokens=8))
    assert out.choices[0].message.content == want
