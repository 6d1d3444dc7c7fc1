"""`rt route` end to end on a saved tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
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
    assert routed["decision"]["action"] == "route" and routed["text"] is None
    assert "'clarify' fired" in routed["note"] and "binds no runnable" in routed["note"]


def test_route_decision_names_the_route_instead_of_an_empty_answer(tiny_dir: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    out = runner.invoke(app, ["route", "hello", "--policy", str(policy), "--model", str(tiny_dir), "--tenant", "ask"])
    assert out.exit_code == 0, out.output
    assert "route: route 'clarify' fired" in out.stdout and "answer:" not in out.stdout
    assert "(safety)" in out.stdout  # categories shown with their short aliases


def test_aliases_and_decide_on_in_a_cli_policy(tiny_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("tenants:\n  t:\n    decide_on: conversation\n    categories:\n"
                      "      safety: {action: refuse, threshold: 0.0, message: 'NO'}\n"
                      + "".join(f"      {a}: {{action: respond}}\n"
                                for a in ("incomplete", "unsupported", "indeterminate", "humanizing")))
    out = runner.invoke(app, ["route", "hi", "--policy", str(policy), "--model", str(tiny_dir), "--tenant", "t", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["decision"]["category"] == COCONOT_CATEGORIES[0] and data["text"] == "NO"


def run_rt(*args: str | bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from rt_middleware.cli import main; main()", *args],
                          capture_output=True, timeout=300)


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """Through the real entry point (argv bytes included), never a traceback."""
    bad_policy = tmp_path / "latin1.yaml"
    bad_policy.write_bytes(b"tenants:\n  caf\xe9: {}\n")
    dup = tmp_path / "dup.json"
    dup.write_text('{"tenants": {"a": {}, "a": {}}}')
    cases = [
        (["route", b"caf\xe9"], b"InvalidInputError"),  # non-UTF-8 argv -> surrogateescape
        (["route", "hello", "--policy", str(bad_policy)], b"PolicyError"),
        (["route", "hello", "--policy", str(dup)], b"duplicate key"),
    ]
    for args, expected in cases:
        out = run_rt(*args)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.decode("utf-8", "replace").strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert expected in out.stderr and b"Traceback" not in out.stderr


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


def test_route_takes_device_and_dtype(tiny_dir: Path, tmp_path: Path) -> None:
    """#16.1: `rt route --device/--dtype` reach the transformers model (an unknown dtype is one line, exit 2)."""
    policy = write_policy(tmp_path / "p.yaml")
    base = ["route", "how do i bake bread", "--policy", str(policy), "--model", str(tiny_dir), "--json",
            "--tenant", "block"]
    plain = json.loads(runner.invoke(app, base).stdout)["decision"]["probabilities"]
    wide = runner.invoke(app, [*base, "--device", "cpu", "--dtype", "float64"])
    assert wide.exit_code == 0, wide.output
    wide_probs = json.loads(wide.stdout)["decision"]["probabilities"]
    assert wide_probs.keys() == plain.keys()
    assert all(abs(wide_probs[k] - plain[k]) < 1e-4 for k in plain)
    bad = runner.invoke(app, [*base, "--dtype", "float7"])
    assert bad.exit_code == 2 and "float7" in bad.output and "Traceback" not in bad.output


def test_names_from_the_policy_are_printed_as_text_not_rich_markup(tiny_dir: Path, tmp_path: Path) -> None:
    """A version, tenant or route holding "[/]" crashed the table (MarkupError); "[i]" vanished."""
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({"version": "v1 [/]", "tenants": {
        "[i]ask": {"categories": {c: {"action": "route", "threshold": 0.0, "route": "clarify[/]"}
                                  for c in COCONOT_CATEGORIES}},
    }}))
    out = runner.invoke(app, ["route", "hello", "--policy", str(policy), "--model", str(tiny_dir), "--tenant", "[i]ask"])
    assert out.exit_code == 0, out.output
    assert "tenant [i]ask · policy v1 [/]" in out.stdout
    assert "route 'clarify[/]' fired" in out.stdout
