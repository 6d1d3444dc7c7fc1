"""Reload under load: 8 threads deciding while the store swaps between two opposite policies."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from tiny_model import PROMPTS

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.tokens import COCONOT_CATEGORIES

SWAPS = 240
THREADS = 8


def version(n: int) -> dict:
    action = "refuse" if n % 2 == 0 else "respond"
    rule = {"action": "refuse", "threshold": 0.0} if action == "refuse" else {"action": "respond"}
    return {"version": f"{action}-{n}", "default_tenant": "t",
            "tenants": {"t": {"categories": {c: rule for c in COCONOT_CATEGORIES}}}}


def test_every_decision_matches_the_policy_version_it_reports(tiny_backend, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(version(0)))
    store = PolicyStore.from_file(path)
    router = RefusalRouter(backend=tiny_backend, policies=store)
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def decide(worker: int) -> None:
        k = worker
        while not stop.is_set():
            try:
                d = router.decide(PROMPTS[k % len(PROMPTS)], tenant_id="t" if k % 3 else None)
            except BaseException as exc:  # counted, then the test fails
                errors.append(exc)
                return
            with lock:
                seen.append((d.policy_version, d.action))
            k += 1

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        for n in range(1, SWAPS + 1):
            before = len(seen)
            if n % 2:  # half through replace(), half through an atomic file write + reload()
                store.replace(version(n))
            else:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(version(n)))
                os.replace(tmp, path)
                store.reload()
            deadline = time.monotonic() + 5
            wanted = version(n)["version"]
            while time.monotonic() < deadline and not errors:  # let a decision see each version
                with lock:
                    if any(v == wanted for v, _ in seen[before:]):
                        break
                time.sleep(0.0005)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    mismatched = [(v, a) for v, a in seen if not v.startswith(a + "-")]
    versions = Counter(v for v, _ in seen)
    print(f"\nreload under load: {len(seen)} decisions, {SWAPS} swaps, {len(versions)} versions seen, "
          f"{len(mismatched)} mismatches, {len(errors)} errors")
    assert mismatched == []
    assert len(versions) >= SWAPS // 2  # the swaps really interleaved with the decisions
