"""Load test of `rt serve` on loopback: concurrent clients, latency percentiles, and the gateway's
decision rate against the same router called in-process, in one run on one machine.

Every request is one decision: the benchmark tenant refuses every category at threshold 0, so no
answer is generated and both sides do exactly one prefill per request. The gateway (uvicorn in a
thread of this process, the same backend object) is driven by an asyncio httpx client pool; the
in-process side runs the router's `evaluate` from the same number of worker threads.

Usage: python benchmarks/bench_serve.py [--model default] [--clients 32] [--requests 20] [--rounds 4]
Bounded: clients x requests per phase, and --max-seconds per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _timing import PROMPTS, load


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def gateway_phase(url: str, key: str, clients: int, requests: int, max_seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + max_seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=300) as http:

        async def one_client(c: int) -> None:
            for i in range(requests):
                if time.monotonic() > stop_at:
                    return
                body = {"messages": [{"role": "user", "content": PROMPTS[(c + i) % len(PROMPTS)]}]}
                start = time.perf_counter()
                try:
                    r = await http.post("/v1/chat/completions", json=body)
                    ok = r.status_code == 200 and "refusal_decision" in r.json()
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        wall = time.perf_counter() - start
    return {"n": len(latencies), "errors": len(errors), "first_errors": errors[:3], "wall_s": wall,
            "rate": len(latencies) / wall, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99), "latencies": latencies}


def in_process_phase(router, tenant: str, clients: int, requests: int, max_seconds: float) -> dict:
    stop_at = time.monotonic() + max_seconds
    latencies: list[float] = []

    def one_client(c: int) -> None:
        for i in range(requests):
            if time.monotonic() > stop_at:
                return
            start = time.perf_counter()
            router.evaluate(PROMPTS[(c + i) % len(PROMPTS)], tenant_id=tenant)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    return {"n": len(latencies), "wall_s": wall, "rate": len(latencies) / wall,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default', 'tiny', an HF dir or a .gguf")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client and phase")
    parser.add_argument("--rounds", type=int, default=4, help="alternating in-process/gateway phase pairs")
    parser.add_argument("--max-seconds", type=float, default=600, help="cap per phase")
    args = parser.parse_args()


    from rt_middleware.backends import GenerationOptions
    from rt_middleware.integrations.server import KeyStore, ServerSettings, add_key, create_app
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    backend = load(args.model)
    categories = backend.schema.category_names
    store = PolicyStore.from_dict({"tenants": {"bench": {
        "categories": {c: {"action": "refuse", "threshold": 0.0} for c in categories}}}})
    router = RefusalRouter(backend=backend, policies=store, generation=GenerationOptions(max_new_tokens=8))
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    key = add_key(folder / "keys.json", "bench")
    app = create_app(router, KeyStore.from_file(folder / "keys.json"),
                     ServerSettings(max_concurrency=args.clients * 2, deadline_s=600, watch_policy=False))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from served import Served

    served = Served(app)
    url = served.url

    router.evaluate(PROMPTS[0], tenant_id="bench")  # warm-up
    asyncio.run(gateway_phase(url, key, 1, 1, 60))
    # the machine's load drifts: split each client's requests over rounds and alternate the order
    # (in-process first on even rounds, gateway first on odd ones), then pool the rounds
    per_round = max(1, args.requests // args.rounds)
    local_runs, served_runs = [], []
    for r in range(args.rounds):
        phases = [
            lambda: local_runs.append(in_process_phase(router, "bench", args.clients, per_round, args.max_seconds)),
            lambda: served_runs.append(asyncio.run(gateway_phase(url, key, args.clients, per_round, args.max_seconds))),
        ]
        for phase in phases if r % 2 == 0 else phases[::-1]:
            phase()
        shown = {k: v for k, v in served_runs[-1].items() if k != "latencies"}
        print(json.dumps({"round": r, "in_process": local_runs[-1], "gateway": shown,
                          "ratio": served_runs[-1]["rate"] / local_runs[-1]["rate"]}), flush=True)
    served.stop()
    local_rate = sum(x["n"] for x in local_runs) / sum(x["wall_s"] for x in local_runs)
    served_rate = sum(x["n"] for x in served_runs) / sum(x["wall_s"] for x in served_runs)
    latencies = [v for x in served_runs for v in x.pop("latencies")]
    errors = sum(x["errors"] for x in served_runs)
    print(f"model={args.model} clients={args.clients} requests/client={per_round * args.rounds} "
          f"rounds={args.rounds}")
    print(f"gateway: {len(latencies)} requests, errors={errors}, p50={1000 * percentile(latencies, 0.5):.0f} ms, "
          f"p99={1000 * percentile(latencies, 0.99):.0f} ms, {served_rate:.2f} decisions/s")
    print(f"in-process: {sum(x['n'] for x in local_runs)} decisions, {local_rate:.2f} decisions/s")
    print(f"gateway / in-process decisions per second: {served_rate / local_rate:.3f} (goal >= 0.9); "
          f"per round: {[round(s['rate'] / x['rate'], 3) for s, x in zip(served_runs, local_runs, strict=True)]}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
