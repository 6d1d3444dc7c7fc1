"""API keys -> tenants. The file stores only each key's SHA-256 with its tenant and role, never a key.

File shape (JSON, written by `rt keys add`)::

    {"keys": [{"sha256": "<hex>", "tenant": "bank", "role": "tenant"}, ...]}

A key selects exactly its own tenant; role ``admin`` may also call ``/admin/*``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rt_middleware.errors import ConfigError

__all__ = ["ROLES", "KeyEntry", "KeyStore", "add_key", "hash_key"]

Role = Literal["tenant", "admin"]
ROLES: tuple[str, ...] = ("tenant", "admin")


@dataclass(frozen=True)
class KeyEntry:
    tenant: str
    role: Role = "tenant"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse(path: Path) -> dict[str, KeyEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {}
        for item in data["keys"]:
            digest, tenant, role = str(item["sha256"]).lower(), str(item["tenant"]), item.get("role", "tenant")
            if len(digest) != 64 or role not in ROLES or not tenant:
                raise ValueError(f"bad entry {item!r}")
            entries[digest] = KeyEntry(tenant, role)
        return entries
    except OSError as exc:
        raise ConfigError(f"cannot read the keys file {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the keys file {path} is malformed ({exc}); create it with `rt keys add`") from exc


class KeyStore:
    """Hash -> tenant lookups; `reload` swaps the whole table at once or keeps the old one."""

    def __init__(self, entries: dict[str, KeyEntry], path: Path | None = None) -> None:
        self._entries = dict(entries)
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> KeyStore:
        path = Path(path)
        return cls(_parse(path), path)

    def lookup(self, key: str | None) -> KeyEntry | None:
        if not key:
            return None
        return self._entries.get(hash_key(key))

    def read(self) -> dict[str, KeyEntry] | None:
        """The file's table, parsed but not yet in use (None: this store has no file)."""
        return None if self.path is None else _parse(self.path)

    def install(self, entries: dict[str, KeyEntry] | None) -> int:
        """Swap in a table from `read` (None keeps the current one); returns the number of keys."""
        if entries is not None:
            with self._lock:
                self._entries = dict(entries)
        return len(self._entries)

    def reload(self) -> int:
        return self.install(self.read())

    def __len__(self) -> int:
        return len(self._entries)


def add_key(path: str | Path, tenant: str, role: Role = "tenant") -> str:
    """Create a key for `tenant`, store its hash in `path` (created 0600 if missing), return the key."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {ROLES}, got {role!r}")
    if not tenant.strip():
        raise ConfigError("the tenant name is empty")
    if tenant != tenant.strip():
        raise ConfigError(f"the tenant name {tenant!r} starts or ends with white space; no policy tenant would match it")
    path = Path(path)
    items = []
    if path.exists():
        _parse(path)  # refuse to rewrite a malformed file
        items = json.loads(path.read_text(encoding="utf-8"))["keys"]
    key = "rt-" + secrets.token_urlsafe(32)
    items.append({"sha256": hash_key(key), "tenant": tenant, "role": role})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"keys": items}, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # atomic: a running server never reads half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key
