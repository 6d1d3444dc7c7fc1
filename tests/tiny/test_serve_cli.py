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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*RT, "serve", "--model", str(tiny_gguf), "--policy", str(policy), "--keys", str(keys),
                             "--port", str(port), "--no-watch"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
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
