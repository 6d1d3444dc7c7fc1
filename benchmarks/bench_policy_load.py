"""How long a large policy file takes to load, and how much memory: 60,000 tenants by default.

Writes a block-style YAML policy (one safety rule per tenant, ~10 MB at 60k tenants) and loads it
with `PolicyStore.from_file` in a fresh process, so peak RSS is the load's own. Prints CPU seconds,
peak RSS and the ratio of the C YAML loader to PyYAML's pure-Python one on the same file (the
Python loader is timed through `yaml.load(..., Loader=yaml.SafeLoader)` alone, the parse step the C
loader replaces).

Usage: python benchmarks/bench_policy_load.py [--tenants 60000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

_MEASURE = """
import resource, sys, time
import yaml
start = time.process_time()
if sys.argv[2] == "store":
    from rt_middleware.policy import PolicyStore
    store = PolicyStore.from_file(sys.argv[1])
    n = len(store.tenants)
else:
    with open(sys.argv[1], encoding="utf-8") as f:
        n = len(yaml.load(f, Loader=yaml.SafeLoader)["tenants"])
cpu = time.process_time() - start
print(n, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def write_policy(path: Path, tenants: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("default_tenant: t00000\ntenants:\n")
        for i in range(tenants):
            out.write(
                f"  t{i:05d}:\n    fail_mode: closed\n    categories:\n"
                f"      Requests with safety concerns:\n        action: refuse\n"
                f"        threshold: {0.1 + (i % 800) / 1000:.3f}\n"
                f"        message: \"Tenant {i} cannot help with that request.\"\n"
            )


def measure(path: Path, mode: str) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), mode], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        write_policy(path, args.tenants)
        size_mb = path.stat().st_size / 1e6
        n, store_cpu, store_rss = measure(path, "store")
        _, parse_cpu, parse_rss = measure(path, "python-yaml")
    print(f"policy: {n} tenants, {size_mb:.1f} MB")
    print(f"PolicyStore.from_file (C loader + checks): {store_cpu:.1f} s CPU, peak RSS {store_rss:.0f} MB")
    print(f"PyYAML SafeLoader parse alone:             {parse_cpu:.1f} s CPU, peak RSS {parse_rss:.0f} MB")
    print(f"whole load / pure-Python parse alone: {store_cpu / parse_cpu:.2f}")


if __name__ == "__main__":
    main()
