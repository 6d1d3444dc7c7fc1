from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from rt_middleware import MissingTenantError, PolicyError, PolicyStore, UnknownTenantError
from rt_middleware.errors import InvalidInputError
from rt_middleware.policy import MIN_TEMPERATURE, TenantPolicy
from rt_middleware.tokens import CATEGORY_ALIASES, COCONOT_CATEGORIES

CATS = COCONOT_CATEGORIES
GOOD = {
    "tenants": {
        "acme": {
            "temperature": 1.0,
            "fail_mode": "closed",
            "categories": {
                CATS[0]: {"action": "refuse", "threshold": 0.3, "message": "I can't help with that."},
                CATS[1]: {"action": "route", "threshold": 0.5, "route": "clarify"},
                CATS[4]: {"action": "respond"},
            },
            "logit_bias": {"respond": 0.0},
        },
        "other": {},
    }
}


def test_loads_yaml_and_json(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "p.json").write_text(json.dumps(GOOD))
    a, b = PolicyStore.from_file(tmp_path / "p.yaml"), PolicyStore.from_file(tmp_path / "p.json")
    assert a.version == b.version and a.version.startswith("sha256:")
    assert a.get("acme").categories[CATS[0]].threshold == 0.3
    assert a.tenants == ("acme", "other")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"threshold": 1.5}, f"tenants.acme.categories.{CATS[0]}.threshold"),
        ({"action": "block"}, f"tenants.acme.categories.{CATS[0]}.action"),
        ({"thresold": 0.2}, f"tenants.acme.categories.{CATS[0]}.thresold"),
        ({"action": "route"}, f"tenants.acme.categories.{CATS[0]}"),
    ],
)
def test_invalid_rules_name_the_field(patch: dict, field: str) -> None:
    data = json.loads(json.dumps(GOOD))
    data["tenants"]["acme"]["categories"][CATS[0]].update(patch)
    with pytest.raises(PolicyError) as info:
        PolicyStore.from_dict(data)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("tenant_patch", "field"),
    [
        ({"temperature": 0}, "tenants.acme.temperature"),
        ({"fail_mode": "sideways"}, "tenants.acme.fail_mode"),
        ({"logit_bias": {"respond": 1000}}, "tenants.acme.logit_bias"),
    ],
)
def test_invalid_tenant_fields(tenant_patch: dict, field: str) -> None:
    data = json.loads(json.dumps(GOOD))
    data["tenants"]["acme"].update(tenant_patch)
    with pytest.raises(PolicyError) as info:
        PolicyStore.from_dict(data)
    assert info.value.field == field


def test_unknown_category_and_route_fail_against_a_model() -> None:
    store = PolicyStore.from_dict({"tenants": {"t": {"categories": {"Typo requests": {"action": "refuse"}}}}})
    with pytest.raises(PolicyError, match="Typo requests") as info:
        store.require(categories=CATS)
    assert info.value.field == "tenants.t.categories.Typo requests"
    store = PolicyStore.from_dict(GOOD)
    with pytest.raises(PolicyError, match="clarify"):
        store.require(categories=CATS, routes=[])
    store.require(categories=CATS, routes=["clarify"])


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyStore.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("tenants: [unclosed")
    with pytest.raises(PolicyError, match="not valid"):
        PolicyStore.from_file(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("tenants: {}")
    with pytest.raises(PolicyError, match="at least one tenant"):
        PolicyStore.from_file(tmp_path / "empty.yaml")


def test_unknown_missing_and_default_tenants() -> None:
    store = PolicyStore.from_dict(GOOD)
    with pytest.raises(UnknownTenantError) as info:
        store.resolve("nobody")
    assert info.value.tenant_id == "nobody" and "nobody" in str(info.value)
    with pytest.raises(MissingTenantError):
        store.resolve(None)
    with_default = PolicyStore.from_dict({**GOOD, "default_tenant": "other"})
    assert with_default.resolve(None)[0] == "other"
    # a mistyped id no longer falls open to the default tenant
    with pytest.raises(UnknownTenantError, match="unknown_tenant: default"):
        with_default.resolve("nobody")
    lenient = PolicyStore.from_dict({**GOOD, "default_tenant": "other", "unknown_tenant": "default"})
    assert lenient.resolve("nobody")[0] == "other" and lenient.unknown_tenant == "default"
    with pytest.raises(PolicyError, match="default_tenant"):
        PolicyStore.from_dict({**GOOD, "default_tenant": "ghost"})
    with pytest.raises(PolicyError, match="needs a default_tenant"):
        PolicyStore.from_dict({**GOOD, "unknown_tenant": "default"})
    with pytest.raises(PolicyError, match="unknown_tenant"):
        PolicyStore.from_dict({**GOOD, "unknown_tenant": "sometimes"})


@pytest.mark.parametrize("tenant", [["acme"], {"acme": 1}, 3, b"acme", ("acme",)])
def test_non_string_tenant_ids_are_typed_errors(tenant) -> None:
    store = PolicyStore.from_dict({**GOOD, "default_tenant": "other", "unknown_tenant": "default"})
    with pytest.raises(InvalidInputError, match="tenant_id must be a str"):
        store.resolve(tenant)


def test_unknown_tenant_fallback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = PolicyStore.from_dict({**GOOD, "default_tenant": "other", "unknown_tenant": "default"})
    with caplog.at_level(logging.INFO, logger="rt_middleware"):
        store.resolve("acmee")
    [record] = [r for r in caplog.records if r.name == "rt_middleware.policy"]
    assert record.levelno == logging.INFO and record.requested_tenant == "acmee" and record.tenant == "other"


def test_reload_is_atomic_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**GOOD, "version": "v1"}))
    store = PolicyStore.from_file(path)
    store.require(categories=CATS, routes=["clarify"])
    assert store.version == "v1"
    path.write_text(json.dumps({"version": "v2", "tenants": {"acme": {"temperature": 2.0}}}))
    assert store.reload() == "v2" and store.get("acme").temperature == 2.0
    bad = {"version": "v3", "tenants": {"acme": {"categories": {"Nope": {"action": "refuse"}}}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(PolicyError, match="Nope"):
        store.reload()  # checked against the model's categories bound by require()
    assert store.version == "v2"
    path.write_text("{broken")
    with pytest.raises(PolicyError):
        store.reload()
    assert store.version == "v2"
    with pytest.raises(PolicyError, match="not loaded from a file"):
        PolicyStore.from_dict(GOOD).reload()


def test_shipped_default_policy_loads() -> None:
    store = PolicyStore.default()
    store.require(categories=CATS)
    assert store.default_tenant in store.tenants


def test_reload_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**GOOD, "version": "v1"}))
    store = PolicyStore.from_file(path)
    path.write_text(json.dumps({**GOOD, "version": "v2"}))
    with caplog.at_level(logging.INFO, logger="rt_middleware"):
        store.reload()
    [record] = [r for r in caplog.records if r.name == "rt_middleware.policy"]
    assert "v1 -> v2" in record.getMessage() and record.policy_version == "v2"


# ---- typed errors for hostile or broken files (issue 15 items 2 and 3) -----------------------

def test_non_utf8_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("tenants:\n  caf\xe9: {}\n".encode("latin-1"))
    with pytest.raises(PolicyError, match=r"not UTF-8.*0xe9") as info:
        PolicyStore.from_file(path)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("depth", [40, 5_000, 200_000])
def test_deep_nesting_is_a_policy_error(tmp_path: Path, suffix: str, depth: int) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"tenants": {"t": {"categories": ' + "[" * depth + "]" * depth + "}}}")
    with pytest.raises(PolicyError, match=r"nested|deep"):
        PolicyStore.from_file(path)


@pytest.mark.parametrize("depth", [60, 3_000, 60_000])
def test_deep_block_yaml_is_a_policy_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("tenants:\n  t:\n    categories:\n      " + "- " * depth + "x\n")  # compact sequences
    with pytest.raises(PolicyError, match="nest" if depth > 2_000 else "categories"):
        PolicyStore.from_file(path)


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"tenants: {{t: {{categories: *a{levels}}}}}")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly_and_briefly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))
    assert path.stat().st_size < 1500
    started = time.process_time()
    with pytest.raises(PolicyError, match="alias") as info:
        PolicyStore.from_file(path)
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert len(str(info.value)) < 400
    import traceback

    assert len("".join(traceback.format_exception(info.value))) < 4000
    assert time.process_time() - started < 60  # a generous bound: the unbounded version took 136 s


def test_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("tenants: &x {t: {categories: *x}}\n")
    with pytest.raises(PolicyError, match=r"alias|not valid"):
        PolicyStore.from_file(path)


def test_small_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "tenants:\n  a: {categories: {safety: &strict {action: refuse, threshold: 0.1}}}\n"
        "  b: {categories: {safety: *strict}}\n"
    )
    store = PolicyStore.from_file(path)
    assert store.get("b").categories[CATS[0]].threshold == 0.1


@pytest.mark.parametrize(
    ("suffix", "text", "key"),
    [
        (".yaml", "tenants:\n  a: {}\n  a: {temperature: 2.0}\n", "'a'"),
        (".yaml", "tenants:\n  a:\n    categories:\n      Requests with safety concerns: {action: refuse}\n"
         "      Requests with safety concerns: {action: respond}\n", "'Requests with safety concerns'"),
        (".yaml", "version: v1\ntenants: {a: {}}\nversion: v2\n", "'version'"),
        (".json", '{"tenants": {"a": {}, "a": {"temperature": 2.0}}}', "'a'"),
        (".json", '{"tenants": {"a": {"categories": {"Incomplete requests": {"action": "refuse"}, '
         '"Incomplete requests": {"action": "respond"}}}}}', "'Incomplete requests'"),
        (".json", '{"default_tenant": "a", "tenants": {"a": {}}, "default_tenant": "b"}', "'default_tenant'"),
    ],
)
def test_duplicate_keys_are_named(tmp_path: Path, suffix: str, text: str, key: str) -> None:
    path = tmp_path / f"dup{suffix}"
    path.write_text(text)
    with pytest.raises(PolicyError, match="duplicate key") as info:
        PolicyStore.from_file(path)
    assert key in str(info.value)
    if suffix == ".yaml":  # YAML errors also say where
        assert "line" in str(info.value)


def test_alias_and_full_name_together_are_a_duplicate() -> None:
    data = {"tenants": {"a": {"categories": {"safety": {"action": "refuse"}, CATS[0]: {"action": "respond"}}}}}
    with pytest.raises(PolicyError, match="given twice"):
        PolicyStore.from_dict(data)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"action": "refuse", "threshold": True}, "threshold"),
        ({"action": "refuse", "threshold": "0.5"}, "threshold"),
        ({"action": "refuse", "message": 5}, "message"),
    ],
)
def test_strict_types(rule: dict, field: str) -> None:
    with pytest.raises(PolicyError, match=field):
        PolicyStore.from_dict({"tenants": {"a": {"categories": {CATS[0]: rule}}}})
    with pytest.raises(PolicyError, match="temperature"):
        PolicyStore.from_dict({"tenants": {"a": {"temperature": True}}})
    # ints are still fine where a float is expected, and a numeric version is a label
    store = PolicyStore.from_dict({"version": 3, "tenants": {"a": {"temperature": 2,
                                   "categories": {CATS[0]: {"threshold": 1}}}}})
    assert store.version == "3" and store.get("a").temperature == 2.0


def test_yaml_yes_is_not_a_threshold(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("tenants:\n  a:\n    categories:\n      safety: {threshold: yes}\n")
    with pytest.raises(PolicyError, match="threshold"):
        PolicyStore.from_file(path)


@pytest.mark.parametrize("temperature", [1e-310, 0.001, 0.0, -1.0, float("nan"), float("inf")])
def test_temperature_below_the_minimum_is_rejected_at_load(temperature: float) -> None:
    with pytest.raises(PolicyError, match="temperature"):
        PolicyStore.from_dict({"tenants": {"a": {"temperature": temperature}}})
    assert PolicyStore.from_dict({"tenants": {"a": {"temperature": MIN_TEMPERATURE}}})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    for text in ("- a\n- b\n", "just text\n", "", "42\n"):
        path = tmp_path / "p.yaml"
        path.write_text(text)
        with pytest.raises(PolicyError):
            PolicyStore.from_file(path)


def test_category_aliases_resolve_to_full_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "tenants:\n  a:\n    categories:\n      safety: {action: refuse, threshold: 0.2}\n"
        "      humanizing: {action: respond}\n    logit_bias: {incomplete: -1.0, respond: 0.5}\n"
    )
    policy = PolicyStore.from_file(path).get("a")
    assert set(policy.categories) == {CATS[0], CATS[4]}
    assert policy.logit_bias == {CATS[1]: -1.0, "respond": 0.5}
    assert dict(CATEGORY_ALIASES) == dict(zip(
        ["safety", "incomplete", "unsupported", "indeterminate", "humanizing"], CATS, strict=True))
    store = PolicyStore.from_dict({"tenants": {"t": {"categories": {"unsafe": {"action": "refuse"}}}}})
    with pytest.raises(PolicyError, match=r"\(safety\)"):  # the error lists the aliases too
        store.require(categories=CATS)


def test_decide_on_defaults_to_last_turn() -> None:
    assert TenantPolicy().decide_on == "last_turn"
    assert TenantPolicy.model_validate({"decide_on": "conversation"}).decide_on == "conversation"
    with pytest.raises(PolicyError, match="decide_on"):
        PolicyStore.from_dict({"tenants": {"a": {"decide_on": "everything"}}})


def test_max_new_tokens_is_a_cap() -> None:
    assert TenantPolicy(max_new_tokens=64).cap_tokens(10) == 10
    assert TenantPolicy(max_new_tokens=8).cap_tokens(10) == 8
    assert TenantPolicy().cap_tokens(10) == 10


def test_require_reads_state_under_the_lock() -> None:
    """require() binds the categories of the state it checked: a replace() cannot slip in between."""
    checking, release = threading.Event(), threading.Event()

    class SlowCheck(PolicyStore):
        first = True

        @staticmethod
        def _check(parsed, cats, routes):
            if SlowCheck.first and cats is not None:
                SlowCheck.first = False
                checking.set()
                release.wait(0.5)  # widen the window a racy require() leaves open
            PolicyStore._check(parsed, cats, routes)

    store = SlowCheck(PolicyStore.from_dict(GOOD)._state[0])
    bad = {"tenants": {"acme": {"categories": {"Nope": {"action": "refuse"}}}}}
    outcome: list[object] = []

    def swap() -> None:
        checking.wait(5)
        try:
            outcome.append(store.replace(bad))
        except PolicyError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=swap)
    thread.start()
    store.require(categories=CATS, routes=["clarify"])
    release.set()
    thread.join()
    assert isinstance(outcome[0], PolicyError), "the unchecked version was swapped in"
    assert "Nope" not in store.get("acme").categories


def test_from_text_yaml_and_json() -> None:
    assert PolicyStore.from_text("tenants: {a: {}}\n").tenants == ("a",)
    assert PolicyStore.from_text('{"tenants": {"a": {}}}', as_json=True).tenants == ("a",)
    with pytest.raises(PolicyError, match="duplicate"):
        PolicyStore.from_text('{"tenants": {"a": {}, "a": {}}}', as_json=True)


def test_from_text_with_lone_surrogates_is_a_policy_error() -> None:
    for text in ("tenants: {caf\ud800: {}}\n", "tenants: {caf\udce9: {}}\n"):
        with pytest.raises(PolicyError, match="not UTF-8"):
            PolicyStore.from_text(text)


def test_a_version_yaml_read_as_a_float_must_be_quoted(tmp_path: Path) -> None:
    """`version: 1.10` reaches us as 1.1: two versions would look the same in decisions and audits."""
    path = tmp_path / "p.yaml"
    path.write_text("version: 1.10\ntenants:\n  a: {}\n")
    with pytest.raises(PolicyError, match="quote it"):
        PolicyStore.from_file(path)
    path.write_text("version: '1.10'\ntenants:\n  a: {}\n")
    assert PolicyStore.from_file(path).version == "1.10"


@pytest.mark.parametrize("tenant", [{"categories": {"safety": {"threshold": float("nan")}}},
                                    {"temperature": float("inf")}])
def test_non_finite_numbers_are_named_as_such(tenant: dict) -> None:
    """NaN used to be reported as 'should be less than or equal to 1'."""
    with pytest.raises(PolicyError, match="finite number"):
        PolicyStore.from_dict({"tenants": {"a": tenant}})
