"""`rt demo` end to end on a tiny real model (the SmolLM2 default model runs in `make demo`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rt_middleware.cli.app import app
from rt_middleware.cli.common import console
from rt_middleware.cli.demo import DEMO_PROMPTS, TENANTS


def test_demo_routes_every_prompt_for_every_tenant(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 250)  # one table row per prompt line, nothing wrapped
    result = CliRunner().invoke(app, ["demo", "--model", str(tiny_dir), "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    starts = sorted(result.output.index(f"tenant {tenant}:") for tenant in TENANTS)
    sections = [result.output[a:b] for a, b in zip(starts, [*starts[1:], len(result.output)], strict=True)]
    for section in sections:  # every prompt in every tenant's table (the bank's clarifying route may quote it again)
        for _, prompt in DEMO_PROMPTS:
            assert prompt in section
    assert "decision" in result.output and "p(respond)" in result.output


def test_demo_unknown_model_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "neither 'default', a .gguf file nor a model directory" in " ".join(result.output.split())
