"""Hypothesis fuzzing of policy documents and `rt route` arguments: accepted, or a typed error.

Documents: mutated valid policies (wrong types, odd keys, aliases, huge and non-finite numbers),
arbitrary nested data, YAML/JSON text with random edits, raw bytes. `-s` prints the counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rt_middleware import PolicyStore
from rt_middleware.errors import PolicyError
from rt_middleware.tokens import CATEGORY_ALIASES, COCONOT_CATEGORIES

COUNTS: Counter[str] = Counter()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from([1e-310, 0.0, 1.0, 0.5, -1, 101, "refuse", "route", "respond",
                                           "closed", "open", "last_turn", "conversation", "default", "reject"]),
)
names = st.one_of(st.sampled_from([*COCONOT_CATEGORIES, *CATEGORY_ALIASES, "respond", "Typo"]), st.text(max_size=8))
rules = st.dictionaries(
    st.sampled_from(["action", "threshold", "message", "route", "extra"]), scalars, max_size=4
)
tenant = st.dictionaries(
    st.sampled_from(["temperature", "fail_mode", "categories", "logit_bias", "refusal_message",
                     "max_new_tokens", "decide_on", "bogus"]),
    st.one_of(scalars, st.dictionaries(names, st.one_of(rules, scalars), max_size=4)),
    max_size=5,
)
documents = st.one_of(
    st.fixed_dictionaries(
        {"tenants": st.dictionaries(st.text(max_size=6), tenant, max_size=3)},
        optional={"version": scalars, "default_tenant": st.one_of(st.text(max_size=6), scalars),
                  "unknown_tenant": scalars, "other": scalars},
    ),
    st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                 st.dictionaries(st.text(max_size=5), kids, max_size=3)),
                 max_leaves=20),
)


def check(raw: bytes, as_json: bool) -> None:
    COUNTS["documents"] += 1
    try:
        PolicyStore.from_text(raw, as_json=as_json)
        COUNTS["accepted"] += 1
    except PolicyError:
        COUNTS["rejected:PolicyError"] += 1
    except Exception as exc:  # pragma: no cover - what this test exists to find
        COUNTS["untyped"] += 1
        raise AssertionError(f"untyped {type(exc).__name__}: {exc!s:.200} for {raw[:200]!r}") from exc


@settings(max_examples=600, deadline=None, database=None)
@given(doc=documents, as_json=st.booleans(), edit=st.tuples(st.integers(0, 10_000), st.binary(max_size=4)),
       mutate=st.booleans())
def test_policy_documents_load_or_raise_policy_error(doc, as_json: bool, edit, mutate: bool) -> None:
    text = json.dumps(doc, allow_nan=True) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    raw = text.encode("utf-8", "surrogatepass")
    if mutate:  # a random byte edit: broken syntax, invalid UTF-8, stray anchors and aliases
        at = edit[0] % (len(raw) + 1)
        raw = raw[:at] + edit[1] + raw[at + len(edit[1]):]
    check(raw, as_json)


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.one_of(st.binary(max_size=200),
                     st.text(st.sampled_from("{}[]:,&*!-? \n\"'ab1#|>%@`"), max_size=120).map(str.encode)),
       as_json=st.booleans())
def test_random_bytes_load_or_raise_policy_error(raw: bytes, as_json: bool) -> None:
    check(raw, as_json)


runner = CliRunner()
options = st.sampled_from(["--tenant", "--policy", "--model", "--json", "--max-new-tokens", "--", "-x", "0", "-1"])
args_strategy = st.lists(st.one_of(options, st.text(st.characters(exclude_categories=()), max_size=20)),
                         max_size=6)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text("default_tenant: a\ntenants: {a: {categories: {safety: {action: refuse}}}}\n")
    return path


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(args=args_strategy)
def test_route_arguments_exit_0_or_2_without_a_traceback(args: list[str], policy_file: Path, tmp_path_factory) -> None:
    from rt_middleware.cli import app

    COUNTS["cli"] += 1
    # a model that cannot load keeps every run fast: what is tested is argument and input handling
    full = ["route", *args, "--policy", str(policy_file), "--model", "/nonexistent/model"]
    if "--" in args:
        full = ["route", "--policy", str(policy_file), "--model", "/nonexistent/model", *args]
    result = runner.invoke(app, full)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        COUNTS["cli-untyped"] += 1
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception} for {full!r}")
    assert result.exit_code in (0, 2), (result.exit_code, full, result.output)
    COUNTS[f"cli-exit-{result.exit_code}"] += 1


def test_report_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\npolicy/CLI fuzz: {dict(sorted(COUNTS.items()))}")
    assert COUNTS["untyped"] == 0 and COUNTS["cli-untyped"] == 0
