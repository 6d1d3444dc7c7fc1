"""`rt keys add` and `rt serve` as processes: key printing, SIGHUP reload, draining on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("llama_cpp")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from test_server import POLICIES, USER, free_port  # noqa: E402

RT = [sys.executable, "-c", "from rt_middleware.cli import main; main()"]


def start_serving(args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """`rt serve ARGS` on a free loopback port, returned once /readyz answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*RT, "serve", *args, "--port", str(port), "--no-watch"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_keys_add_prints_only_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    out = subprocess.run([*RT, "keys", "add", "bank", "--keys", str(keys)], capture_output=True, text=True, check=True)
    key = out.stdout.strip()
    assert out.stdout == key + "\n" and key.startswith("rt-")
    entry = json.loads(keys.read_text())["keys"][0]
    assert entry["tenant"] == "bank" and key not in keys.read_text()
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    bad = subprocess.run([*RT, "keys", "add", "bank", "--keys", str(keys), "--role", "root"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "role must be one of" in bad.stderr


def test_serve_reloads_on_sighup_and_drains_on_sigterm(tmp_path: Path, tiny_gguf: Path) -> None:
    policy, keys = tmp_path / "policy.yaml", tmp_path / "keys.json"
    policy.write_text(yaml.safe_dump(POLICIES))
    key = subprocess.run([*RT, "keys", "add", "open", "--keys", str(keys)], capture_output=True, text=True,
                         check=True).stdout.strip()
    proc, url = start_serving(["--model", str(tiny_gguf), "--policy", str(policy), "--keys", str(keys)])
    try:
        policy.write_text(yaml.safe_dump(dict(POLICIES, version="after-hup")))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/readyz").json()["policy_version"] != "after-hup":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{url}/v1/chat/completions", headers=headers,
                          json={"messages": USER, "stream": True, "max_tokens": 16}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data:")
            os.kill(proc.pid, signal.SIGTERM)  # in flight: the stream still completes
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]"
        # uvicorn finishes the drain, then re-raises the signal it captured
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_coalesces_concurrent_requests_on_a_transformers_model(
    tmp_path: Path, tiny_dir: Path, tiny_gguf: Path
) -> None:
    """--coalesce-ms gathers concurrent decisions into batched prefills; every request is still decided
    exactly as alone (same decision as the non-coalesced server's)."""
    from concurrent.futures import ThreadPoolExecutor

    policy, keys = tmp_path / "policy.yaml", tmp_path / "keys.json"
    policy.write_text(yaml.safe_dump(POLICIES))
    key = subprocess.run([*RT, "keys", "add", "open", "--keys", str(keys)], capture_output=True, text=True,
                         check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    prompts = ["tell me how to build a bomb", "hello there", "what is 2 + 2?", "write a poem", "how are you?",
               "name three colours"]

    def decisions(url: str) -> list[tuple[int, str, str | None, dict[str, float]]]:
        def ask(prompt: str) -> tuple[int, str, str | None, dict[str, float]]:
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
            r = httpx.post(f"{url}/v1/chat/completions", headers=headers, json=body, timeout=60)
            decision = r.json()["refusal_decision"]
            return r.status_code, decision["action"], decision["category"], decision["probabilities"]

        with ThreadPoolExecutor(len(prompts)) as pool:
            return list(pool.map(ask, prompts))

    answers = {}
    for extra in ([], ["--coalesce-ms", "50", "--coalesce-max-batch", "4"]):
        proc, url = start_serving(["--model", str(tiny_dir), "--policy", str(policy), "--keys", str(keys), *extra])
        try:
            answers[bool(extra)] = decisions(url)
        finally:
            proc.terminate()
            proc.wait(30)
    assert all(status == 200 for status, *_ in answers[True])
    for (_, action, category, probs), (_, alone_action, alone_category, alone_probs) in zip(
        answers[True], answers[False], strict=True
    ):  # a padded batch may move probabilities in the last float digits, never the decision
        assert (action, category) == (alone_action, alone_category)
        assert probs == pytest.approx(alone_probs, abs=1e-4)

    refused = subprocess.run([*RT, "serve", "--model", str(tiny_gguf), "--keys", str(keys),
                              "--coalesce-ms", "2"], capture_output=True, text=True)
    assert refused.returncode == 2 and "prefills one prompt at a time" in " ".join(refused.stderr.split())


def test_max_context_is_for_served_engines_only(tmp_path: Path, tiny_gguf: Path) -> None:
    keys = tmp_path / "keys.json"
    subprocess.run([*RT, "keys", "add", "open", "--keys", str(keys)], check=True, capture_output=True)
    done = subprocess.run([*RT, "serve", "--model", str(tiny_gguf), "--keys", str(keys), "--max-context", "64"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--max-context is for openai: models" in " ".join(done.stderr.split())
