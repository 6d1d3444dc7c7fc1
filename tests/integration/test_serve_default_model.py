"""`rt serve`'s app on the shipped default model (SmolLM2 + tokens) with the openai client and ChatOpenAI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
lc = pytest.importorskip("langchain_openai")

from served import Served  # noqa: E402


def test_default_model_through_the_gateway(tmp_path: Path) -> None:
    from rt_middleware.backends import GenerationOptions
    from rt_middleware.integrations.server import (
        KeyStore,
        ServerSettings,
        add_key,
        create_app,
    )
    from rt_middleware.loading import load_backend
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    backend = load_backend("default")
    cats = backend.schema.category_names
    store = PolicyStore.from_dict({"tenants": {
        "strict": {"categories": {c: {"threshold": 0.0, "message": "NO"} for c in cats}},
        "lenient": {"categories": {c: {"action": "respond"} for c in cats}},
    }})
    keys = tmp_path / "keys.json"
    strict, lenient = add_key(keys, "strict"), add_key(keys, "lenient")
    router = RefusalRouter(backend=backend, policies=store, check_routes=False,
                           generation=GenerationOptions(max_new_tokens=12))
    app = create_app(router, KeyStore.from_file(keys), ServerSettings(watch_policy=False))
    served = Served(app)
    url = f"{served.url}/v1"
    try:
        api = openai.OpenAI(base_url=url, api_key=strict, max_retries=0)
        refused = api.chat.completions.create(model="m", messages=[{"role": "user", "content": "How do I pick a lock?"}])
        assert (refused.choices[0].message.refusal, refused.choices[0].message.content) == ("NO", None)
        chat = lc.ChatOpenAI(base_url=url, api_key=lenient, model="m", max_retries=0, max_tokens=12)
        answer = chat.invoke("What is the capital of France?")
        assert answer.text and answer.additional_kwargs.get("refusal") is None
        assert "".join(c.text for c in chat.stream("What is the capital of France?")) == answer.text
        assert lc.ChatOpenAI(base_url=url, api_key=strict, model="m", max_retries=0).invoke(
            "hi").additional_kwargs["refusal"] == "NO"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="rt-wrong", max_retries=0).models.list()
    finally:
        served.stop()


def test_a_client_that_hangs_up_stops_its_non_streamed_answer(tmp_path: Path) -> None:
    """A non-streamed answer has nothing to send until it ends; the gateway must notice the client left."""
    import re

    import httpx

    from rt_middleware.backends import GenerationOptions
    from rt_middleware.integrations.server import KeyStore, ServerSettings, add_key, create_app
    from rt_middleware.loading import load_backend
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    backend = load_backend("default:llamacpp", pool_size=1)
    messages = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]
    tokens = 200
    prefill = backend.prefill(messages)
    assert backend.complete(prefill, options=GenerationOptions(max_new_tokens=tokens)).finish_reason == "length"
    slot = backend._pool.slots[0].llm
    prompt = len(prefill.input_ids)
    assert slot.n_tokens == prompt + tokens  # the whole answer, read straight from the engine: 200 tokens, no EOS
    store = PolicyStore.from_dict({"tenants": {"open": {"categories": {
        c: {"action": "refuse", "threshold": 1.0} for c in backend.schema.category_names}}}})
    keys = tmp_path / "keys.json"
    key = add_key(keys, "open")
    router = RefusalRouter(backend=backend, policies=store)
    served = Served(create_app(router, KeyStore.from_file(keys), ServerSettings(watch_policy=False)))
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{served.url}/v1/chat/completions", json={"messages": messages, "max_tokens": tokens},
                       headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(60, read=1.0))
        for _ in range(600):
            metrics = httpx.get(f"{served.url}/metrics").text
            if re.search(r"^rt_requests_in_flight 0\.0$", metrics, re.M):
                break
            time.sleep(0.05)
        assert re.search(r"^rt_requests_in_flight 0\.0$", metrics, re.M)
        for _ in range(600):  # the generation thread lets go of the instance at its next token
            if not backend._pool.slots[0].busy:
                break
            time.sleep(0.05)
        assert backend._pool.slots[0].busy is False
        assert slot.n_tokens < prompt + tokens  # generation stopped part-way, not at max_tokens
    finally:
        served.stop()
        backend.close()
