from __future__ import annotations

import json
from pathlib import Path

import pytest

from rt_middleware import MissingTenantError, PolicyError, PolicyStore, UnknownTenantError
from rt_middleware.tokens import COCONOT_CATEGORIES

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
    assert with_default.resolve("nobody")[0] == "other"
    assert with_default.resolve(None)[0] == "other"
    with pytest.raises(PolicyError, match="default_tenant"):
        PolicyStore.from_dict({**GOOD, "default_tenant": "ghost"})


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
