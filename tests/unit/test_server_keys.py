"""The gateway's key file: only hashes stored, malformed files refused, atomic reload (no server started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from rt_middleware.errors import ConfigError
from rt_middleware.integrations.server import KeyStore, add_key, hash_key


def test_lookup_by_hash_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "bank")
    store = KeyStore.from_file(path)
    assert store.lookup(key).tenant == "bank" and store.lookup("rt-other") is None and store.lookup(None) is None
    assert json.loads(path.read_text())["keys"] == [{"sha256": hash_key(key), "tenant": "bank", "role": "tenant"}]
    admin = add_key(path, "ops", role="admin")
    assert store.lookup(admin) is None and store.reload() == 2 and store.lookup(admin).role == "admin"


@pytest.mark.parametrize("text", ["{", '{"keys": [{"sha256": "ab", "tenant": "x"}]}', '{"keys": [{"tenant": "x"}]}',
                                  '{"keys": [{"sha256": "' + "a" * 64 + '", "tenant": "x", "role": "root"}]}'])
def test_malformed_files_are_refused_and_the_old_table_stays(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "bank")
    store = KeyStore.from_file(path)
    path.write_text(text)
    with pytest.raises(ConfigError, match="malformed"):
        store.reload()
    assert store.lookup(key).tenant == "bank"
    with pytest.raises(ConfigError, match="malformed"):
        add_key(path, "other")  # never rewrites a file it cannot read


def test_bad_role_or_tenant(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="role"):
        add_key(tmp_path / "k.json", "bank", role="root")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        add_key(tmp_path / "k.json", " ")
