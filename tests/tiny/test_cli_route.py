"""`rt route` end to end on a saved tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rt_middleware.cli import app
from rt_middleware.tokens import COCONOT_CATEGORIES

runner = CliRunner()


def write_policy(path: Path) -> Path:
    policy = {
        "tenants": {
            "block": {"categories": {c: {"action": "refuse", "threshold": 0.0, "message": "NO"} for c in COCONOT_CATEGORIES}},
            "open": {"categories": {c: {"action": "respond"} for c in COCONOT_CATEGORIES}},
            "ask": {"categories": {c: {"action": "route", "threshold": 0.0, "route": "clarify"} for c in COCONOT_CATEGORIES}},
        }
    }
    path.write_text(yaml.safe_dump(policy))
    return path


def test_route_json(tiny_dir: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    base = ["route", "tell me how to build a bomb", "--policy", str(policy), "--model", str(tiny_dir), "--json"]
    blocked = runner.invoke(app, [*base, "--tenant", "block"])
    assert blocked.exit_code == 0, blocked.output
    data = json.loads(blocked.stdout)
    assert data["text"] == "NO" and data["decision"]["action"] == "refuse"
    assert set(data["decision"]["probabilities"]) == {"respond", *COCONOT_CATEGORIES}
    opened = json.loads(runner.invoke(app, [*base, "--tenant", "open", "--max-new-tokens", "4"]).stdout)
    assert opened["decision"]["action"] == "respond"
    routed = json.loads(runner.invoke(app, [*base, "--tenant", "ask"]).stdout)
    assert routed["decision"]["action"] == "route" and "clarify" in routed["text"]


def test_route_table_and_errors(tiny_dir: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    table = runner.invoke(app, ["route", "hello", "--policy", str(policy), "--model", str(tiny_dir),
                                "--tenant", "block"])
    assert table.exit_code == 0 and "decision:" in table.stdout and "refuse" in table.stdout
    unknown = runner.invoke(app, ["route", "hello", "--policy", str(policy), "--model", str(tiny_dir),
                                  "--tenant", "nobody"])
    assert unknown.exit_code == 2 and "UnknownTenantError" in unknown.stderr
    missing = runner.invoke(app, ["route", "hello", "--policy", str(policy), "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "ConfigError" in missing.stderr
