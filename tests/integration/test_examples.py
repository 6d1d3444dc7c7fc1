"""Every example runs as a script; what it prints must match decisions computed here independently.

The default run uses the tiny model (its decisions are arbitrary but deterministic); the slow run
uses the shipped default model and adds what a trained model must get right.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import BaseBackend, HFBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> list[dict[str, str]]:
    """Run examples/<name>.py; each printed `key=value | ...` line becomes a dict."""
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Loading weights" not in done.stderr  # transformers' load bar is noise for a 1 s load
    rows = []
    for line in done.stdout.splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" | ") if "=" in part)
        if fields:
            rows.append(fields)
    assert rows, f"{name} printed nothing:\n{done.stdout}\n{done.stderr[-2000:]}"
    return rows


def example(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


def unquote(text: str) -> str:
    return re.sub(r"^['\"]|['\"]$", "", text)


def default_router(backend: BaseBackend) -> RefusalRouter:
    return RefusalRouter(backend=backend, policies=PolicyStore.default(),
                         routes={"clarify": example("quickstart").build_router(backend).routes["clarify"]})


# ---- one check per example, shared by the tiny and the default-model runs -------------------------
def check_quickstart(model: str, backend: BaseBackend) -> None:
    module = example("quickstart")
    rows = run_example("quickstart", "--model", model)
    header, rows = rows[0], rows[1:]
    assert header["policy_version"] == PolicyStore.default().version
    assert len(rows) == len(module.PROMPTS) * 2
    router = default_router(backend)
    for row, (prompt, tenant) in zip(rows, [(p, t) for p in module.PROMPTS for t in module.TENANTS], strict=True):
        decision = router.decide(prompt, tenant_id=tenant)
        assert (row["tenant"], row["action"], row["category"]) == (tenant, decision.action, str(decision.category))
        if decision.action == "refuse":
            assert unquote(row["answer"]) == decision.message


def check_agent_middleware(model: str, backend: BaseBackend) -> None:
    module = example("agent_middleware")
    rows = run_example("agent_middleware", "--model", model)
    router = default_router(backend)
    for row, (prompt, tenant) in zip(rows, [(p, t) for p in module.PROMPTS for t in module.TENANTS], strict=True):
        # the gate reads what the agent's model sees: its system prompt + the user's message
        decision = router.decide([("system", module.SYSTEM), ("user", prompt)], tenant_id=tenant)
        assert row["action"] == decision.action
        calls = (row["model_calls"], row["tool_calls"])
        assert calls == (("2", "1") if decision.action == "respond" else ("0", "0"))


def check_category_routing(model: str, backend: BaseBackend) -> list[dict[str, str]]:
    module = example("category_routing")
    rows = run_example("category_routing", "--model", model, "--threshold", "0")
    router = RefusalRouter(backend=backend, policies=module.support_policies(backend, 0.0),
                           routes={"clarify": module.clarifying_chain(backend)})
    assert len(rows) == len(module.PROMPTS)
    for row, prompt in zip(rows, module.PROMPTS, strict=True):
        decision = router.decide(prompt, tenant_id="support")
        assert decision.action in ("route", "refuse")  # threshold 0 routes whatever safety does not refuse
        assert row["action"] == decision.action
        assert row["answered_by"] == ("clarify" if decision.action == "route" else "policy")
    return rows


def check_decision_model_router(model: str, backend: BaseBackend) -> None:
    module = example("decision_model_router")
    rows = run_example("decision_model_router", "--model", model)
    labels = ["respond", "Incomplete requests", "Requests with safety concerns"]
    replies = {"Incomplete requests": "What exactly would you like me to do?",
               "Requests with safety concerns": "I can't help with that."}
    for row, prompt in zip(rows, module.PROMPTS, strict=True):
        probabilities = backend.first_token_distribution(prompt).renormalized(labels)
        chosen = max(labels, key=probabilities.__getitem__)
        assert row["route"] == chosen
        assert float(row["confidence"]) == pytest.approx(probabilities[chosen], abs=1e-3)
        if chosen in replies:
            assert unquote(row["answer"]) == replies[chosen]


def check_fallback(model: str, backend: BaseBackend) -> None:
    module = example("fallback_on_refusal")
    rows = run_example("fallback_on_refusal", "--model", model)
    router = default_router(backend)
    for row, prompt in zip(rows, module.PROMPTS, strict=True):
        action = router.decide(prompt, tenant_id="bank").action
        refused = action == "refuse"
        assert row["primary_action"] == ("refuse" if refused else action)
        assert row["answered_by"] == ("fallback" if refused else "primary")
        assert (unquote(row["answer"]) == module.FALLBACK) is refused


def check_local_gguf(gguf: str, hf_backend: BaseBackend) -> None:
    module = example("local_gguf")
    rows = run_example("local_gguf", "--model", gguf)
    assert rows[0]["backend"] == "LlamaCppBackend"
    router = default_router(hf_backend)
    for row, (prompt, tenant) in zip(rows[1:], [(p, t) for p in module.PROMPTS for t in module.TENANTS],
                                     strict=True):
        decision = router.decide(prompt, tenant_id=tenant)  # llama.cpp must agree with transformers
        assert (row["action"], row["category"]) == (decision.action, str(decision.category))
        if decision.action == "refuse":
            assert row["chunks"] == "1" and unquote(row["answer"]) == decision.message


def check_calibrate_then_route(model: str, backend: BaseBackend, out: Path, *targets: str) -> None:
    module = example("calibrate_then_route")
    args = [part for target in targets for part in ("--target", target)]
    rows = run_example("calibrate_then_route", "--model", model, "--out", str(out), *args)
    fits = [row for row in rows if "target" in row]
    [written] = [row for row in rows if "policy_file" in row]
    decided = [row for row in rows if "tenant" in row]
    store = PolicyStore.from_file(out)
    assert written["policy_file"] == str(out) and written["policy_version"] == store.version
    policy = store.get("calibrated")
    for row in fits:
        rule = policy.rule_for(row["category"])
        assert rule is not None and float(row["threshold"]) == pytest.approx(rule.threshold, rel=1e-3)
        assert abs(float(row["calibration_rate"]) - float(row["target"])) <= 1 / int(row["n"]) + 1e-9
    calibrated = RefusalRouter(backend=backend, policies=store)
    default = default_router(backend)
    expected = [(p, t) for p in module.PROMPTS for t in ("default", "calibrated")]
    for row, (prompt, tenant) in zip(decided, expected, strict=True):
        decision = (calibrated if tenant == "calibrated" else default).decide(prompt, tenant_id=tenant)
        assert (row["tenant"], row["action"], row["category"]) == (tenant, decision.action, str(decision.category))


# ---- tiny model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_hf(tiny_dir: Path) -> HFBackend:
    return HFBackend.from_pretrained(tiny_dir)


def test_quickstart(tiny_dir, tiny_hf) -> None:
    check_quickstart(str(tiny_dir), tiny_hf)


def test_agent_middleware(tiny_dir, tiny_hf) -> None:
    check_agent_middleware(str(tiny_dir), tiny_hf)


def test_category_routing(tiny_dir, tiny_hf) -> None:
    rows = check_category_routing(str(tiny_dir), tiny_hf)
    assert any(row["action"] == "route" for row in rows)


def test_decision_model_router(tiny_dir, tiny_hf) -> None:
    check_decision_model_router(str(tiny_dir), tiny_hf)


def test_fallback_on_refusal(tiny_dir, tiny_hf) -> None:
    check_fallback(str(tiny_dir), tiny_hf)


def test_local_gguf(tiny_gguf, tiny_hf) -> None:
    pytest.importorskip("llama_cpp")
    check_local_gguf(str(tiny_gguf), tiny_hf)


def test_calibrate_then_route(tiny_dir, tiny_hf, tmp_path: Path) -> None:
    # a random tiny model cannot separate categories, so one target is what it can meet
    check_calibrate_then_route(str(tiny_dir), tiny_hf, tmp_path / "policy.yaml", "Incomplete requests=0.5")


def test_a_missing_default_model_or_bad_path_exits_with_a_hint(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py"), "--model", str(tmp_path / "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "pass --model" in done.stderr and "Traceback" not in done.stderr


# ---- the shipped default model (slow) -------------------------------------------------------------
@pytest.fixture(scope="module")
def default_backend() -> Any:
    from rt_middleware.default_model import load_default_backend

    return load_default_backend("hf")


@pytest.mark.slow
def test_examples_on_the_default_model(default_backend) -> None:
    check_quickstart("default", default_backend)
    check_agent_middleware("default", default_backend)
    check_category_routing("default", default_backend)
    check_decision_model_router("default", default_backend)
    check_fallback("default", default_backend)


@pytest.mark.slow
def test_calibrate_then_route_on_the_default_model(default_backend, tmp_path: Path) -> None:
    check_calibrate_then_route("default", default_backend, tmp_path / "policy.yaml")


@pytest.mark.slow
def test_local_gguf_on_the_default_model(default_backend) -> None:
    pytest.importorskip("llama_cpp")
    check_local_gguf("default", default_backend)
