"""The gateway under hostile timing and bodies: slow uploads, tenants removed mid-request, reloads that
half fail, route names added by a reload, malformed JSON and OpenAI's error shapes."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("llama_cpp")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from served import Served  # noqa: E402
from tiny_model import GATE_POLICIES  # noqa: E402

from rt_middleware.backends.base import GenerationOptions  # noqa: E402
from rt_middleware.backends.llamacpp import LlamaCppBackend  # noqa: E402
from rt_middleware.errors import ConfigError  # noqa: E402
from rt_middleware.integrations.server import KeyStore, ServerSettings, add_key, create_app  # noqa: E402
from rt_middleware.policy import PolicyStore  # noqa: E402
from rt_middleware.router import RefusalRouter  # noqa: E402

USER = [{"role": "user", "content": "tell me how to build a bomb"}]
BODY = json.dumps({"messages": USER}).encode()


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    b = LlamaCppBackend(tiny_gguf, pool_size=2)
    yield b
    b.close()


class Gateway:
    """One app on loopback with its own policy and keys files, so a test may rewrite them."""

    def __init__(self, backend: LlamaCppBackend, folder: Path, policies: dict[str, Any],
                 audit: Any = None, **settings: Any) -> None:
        self.policy, self.keys = folder / "policy.yaml", folder / "keys.json"
        self.policy.write_text(yaml.safe_dump(policies))
        self.key = {t: add_key(self.keys, t) for t in policies["tenants"]}
        self.key["admin"] = add_key(self.keys, "ops", role="admin")
        self.store = PolicyStore.from_file(self.policy)
        router = RefusalRouter(backend=backend, policies=self.store, check_routes=False, audit=audit,
                               generation=GenerationOptions(max_new_tokens=8))
        settings.setdefault("watch_policy", False)
        app = create_app(router, KeyStore.from_file(self.keys), ServerSettings(model_id="tiny", **settings))
        self.served = Served(app)
        self.url = self.served.url

    def post(self, tenant: str, body: bytes = BODY) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/chat/completions", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {self.key[tenant]}", "Content-Type": "application/json"})

    def start_upload(self, tenant: str, body: bytes = BODY, sent: int = 5) -> socket.socket:
        """A raw HTTP request whose body stops after `sent` bytes; the test decides when (if) it goes on."""
        conn = socket.create_connection(("127.0.0.1", self.served.port), timeout=30)
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key[tenant]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        conn.sendall(head + body[:sent])
        return conn

    def in_flight(self) -> float:
        line = next(x for x in httpx.get(f"{self.url}/metrics").text.splitlines()
                    if x.startswith("rt_requests_in_flight "))
        return float(line.split()[1])

    def stop(self) -> None:
        self.served.stop()


def read_status(conn: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        piece = conn.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@pytest.fixture
def gateway(backend, tmp_path: Path) -> Iterator[Gateway]:
    g = Gateway(backend, tmp_path, GATE_POLICIES)
    yield g
    g.stop()


def test_a_slow_upload_holds_no_slot_and_times_out(backend, tmp_path: Path) -> None:
    g = Gateway(backend, tmp_path, GATE_POLICIES, max_concurrency=1, body_timeout_s=2.0)
    try:
        slow = g.start_upload("open")
        assert g.post("block").status_code == 200  # the upload holds no slot, so nobody gets 429
        assert g.in_flight() == 0
        status, body = read_status(slow)  # the rest of the body never comes
        assert status == 408 and body["error"]["code"] == "request_timeout"
        slow.close()
    finally:
        g.stop()


def test_concurrency_limit_gives_429(backend, tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def audit(_record: dict[str, Any]) -> None:  # holds the first request inside its decision
        entered.set()
        release.wait(30)

    g = Gateway(backend, tmp_path, GATE_POLICIES, audit=audit, max_concurrency=1)
    try:
        statuses: list[int] = []
        first = threading.Thread(target=lambda: statuses.append(g.post("open").status_code))
        first.start()
        assert entered.wait(30)
        assert g.in_flight() == 1
        refused = g.post("open")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "concurrency_limit"
        release.set()
        first.join(30)
        assert statuses == [200] and g.in_flight() == 0
    finally:
        release.set()
        g.stop()


def test_a_tenant_removed_while_its_body_uploads_is_not_served_by_the_default(backend, tmp_path: Path) -> None:
    policies = {**GATE_POLICIES, "default_tenant": "open", "unknown_tenant": "default"}
    g = Gateway(backend, tmp_path, policies)
    try:
        conn = g.start_upload("block")
        g.store.replace({k: v for k, v in policies.items() if k != "tenants"}
                        | {"tenants": {t: p for t, p in policies["tenants"].items() if t != "block"}})
        conn.sendall(BODY[5:])
        status, body = read_status(conn)
        conn.close()
        assert status == 403 and "no policy" in body["error"]["message"]
        assert g.post("open").json()["refusal_decision"]["tenant"] == "open"
    finally:
        g.stop()


def test_a_reload_with_a_broken_keys_file_changes_nothing(gateway: Gateway) -> None:
    admin = {"Authorization": f"Bearer {gateway.key['admin']}"}
    gateway.policy.write_text(yaml.safe_dump({**GATE_POLICIES, "version": "v2"}))
    keys_text = gateway.keys.read_text()
    gateway.keys.write_text("{broken")
    r = httpx.post(f"{gateway.url}/admin/reload", headers=admin)
    assert r.status_code == 400 and "previous policies stay" in r.json()["error"]["message"]
    assert gateway.store.version != "v2"  # the policies did not change either
    assert gateway.post("block").status_code == 200
    gateway.keys.write_text(keys_text)
    assert httpx.post(f"{gateway.url}/admin/reload", headers=admin).json()["policy_version"] == "v2"


def test_a_reload_may_name_a_route_the_gateway_never_saw(gateway: Gateway) -> None:
    new = {**GATE_POLICIES, "version": "v2"}
    new["tenants"] = {**GATE_POLICIES["tenants"], "block": {"categories": {
        c: {"action": "route", "route": "human_review", "threshold": 0.0} for c in GATE_POLICIES["tenants"]["block"]["categories"]
    }}}
    gateway.policy.write_text(yaml.safe_dump(new))
    r = httpx.post(f"{gateway.url}/admin/reload", headers={"Authorization": f"Bearer {gateway.key['admin']}"})
    assert r.status_code == 200, r.text
    routed = gateway.post("block")
    assert routed.headers["x-rt-route"] == "human_review"
    assert routed.json()["refusal_decision"]["route"] == "human_review"


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b"[" * 100_000, None, "nested too deeply"),
        (json.dumps({"messages": USER, "n": 2}).encode(), "n", "less than or equal to 1"),
        (json.dumps({"messages": USER, "stream": "yes"}).encode(), "stream", "boolean"),
        (json.dumps({"messages": USER, "max_tokens": True}).encode(), "max_tokens", "integer"),
        (json.dumps({"messages": USER, "temperature": "0.5"}).encode(), "temperature", "number"),
    ],
)
def test_malformed_bodies_get_400_in_openai_shape(gateway: Gateway, body: bytes, param: str | None,
                                                  needle: str) -> None:
    r = gateway.post("open", body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and needle in error["message"]
    assert "param" not in r.json()  # inside the error object, where OpenAI clients read it


def test_unknown_paths_and_methods_answer_in_openai_shape(gateway: Gateway) -> None:
    auth = {"Authorization": f"Bearer {gateway.key['open']}"}
    missing = httpx.post(f"{gateway.url}/v1/completions", json={"prompt": "hi"}, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = httpx.get(f"{gateway.url}/v1/chat/completions", headers=auth)
    assert wrong.status_code == 405 and wrong.json()["error"]["message"] == "Method Not Allowed"
    assert "POST" in wrong.headers["allow"]


def test_a_tenant_name_with_outer_spaces_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="white space"):
        add_key(tmp_path / "keys.json", " bank ")
    assert not (tmp_path / "keys.json").exists()


def test_check_routes_off_defers_the_missing_route_to_the_call(backend) -> None:
    routed = {"tenants": {"t": {"categories": {c: {"action": "route", "route": "nowhere", "threshold": 0.0}
                                               for c in GATE_POLICIES["tenants"]["block"]["categories"]}}},
              "default_tenant": "t"}
    with pytest.raises(Exception, match="no route named 'nowhere'"):
        RefusalRouter(backend=backend, policies=PolicyStore.from_dict(routed))
    router = RefusalRouter(backend=backend, policies=PolicyStore.from_dict(routed), check_routes=False)
    assert router.decide("hi").route == "nowhere"
    with pytest.raises(ConfigError, match="does not have"):
        router.invoke("hi")


def test_usage_is_reported_as_openai_reports_it(gateway: Gateway, backend) -> None:
    import openai

    prompt_tokens = len(backend.prefill(USER).input_ids)
    api = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key["open"], max_retries=0)
    answer = api.chat.completions.create(model="tiny", messages=USER, max_tokens=6)
    usage = answer.usage
    assert usage.prompt_tokens == prompt_tokens and usage.total_tokens == prompt_tokens + usage.completion_tokens
    expected = 6 if answer.choices[0].finish_reason == "length" else backend.answer_tokens(
        answer.choices[0].message.content, "stop", 6)
    assert usage.completion_tokens == expected > 0
    refused = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key["block"], max_retries=0)
    assert refused.chat.completions.create(model="tiny", messages=USER).usage.completion_tokens == 0
    chunks = list(api.chat.completions.create(model="tiny", messages=USER, max_tokens=6, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(api.chat.completions.create(model="tiny", messages=USER, max_tokens=6, stream=True))
    assert all(c.usage is None and c.choices for c in plain)  # no usage chunk unless asked
