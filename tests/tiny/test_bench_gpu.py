"""benchmarks/bench_gpu.py --check on CPU: the tiny shape's answers and decision probabilities
through HFBackend + RefusalRouter equal a float32 CPU reference (CI runs what a GPU session runs
with --device cuda). Timings are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_check_and_measure_on_cpu_tiny() -> None:
    out = _run("--device", "cpu", "--shape", "tiny", "--check")
    assert "check: tiny shape on cpu/float32 against the float32 CPU reference" in out
    assert "96/96 tokens equal" in out  # float32: every greedy token, no near-tie allowance
    assert "ratio decision / bare prefill" in out and "ratio router / plain generation" in out
    assert "achieved TFLOP/s" in out


def test_check_in_bfloat16_on_cpu() -> None:
    out = _run("--device", "cpu", "--shape", "tiny", "--dtype", "bfloat16", "--check-only")
    assert "check: tiny shape on cpu/bfloat16 against the float32 CPU reference" in out
