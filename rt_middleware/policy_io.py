"""Writing policy files: atomically (a temp file beside it, then `os.replace`), since stores reload
from them (`PolicyStore.reload`) and must never read half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from rt_middleware.errors import ConfigError
from rt_middleware.policy import PolicyStore, TenantPolicy

__all__ = ["write_policy", "write_policy_file"]


def write_policy_file(path: Path, data: dict[str, Any], *, header: str = "") -> None:
    """Write a policy document as YAML (each `header` line as a comment), atomically.

    Readers see the old file or the new one, never a partial write; the file keeps the mode of the
    file it replaces (0644 for a new one).
    """
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(body) != data:  # e.g. U+0085 written raw reads back as a line break
        body = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)  # every non-ASCII escaped
    try:
        _replace_atomically(path, comment + body)
    except OSError as exc:
        raise ConfigError(f"cannot write the policy file {path}: {exc.strerror or exc}") from exc


def _replace_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_policy(path: Path, tenant: str, policy: TenantPolicy, *, header: str = "") -> PolicyStore:
    """Write (or add/replace `tenant` in) a policy file, then load it back as the router would.

    An existing file keeps its other tenants and its `default_tenant` (or its lack of one: the
    written tenant never becomes the default of an existing file); its `version` is dropped so the
    content hash versions the new policies. A new file gets `tenant` as its `default_tenant`.
    """
    path = Path(path)
    if path.is_file():
        data = PolicyStore.from_file(path).to_dict()
        data.pop("version", None)
    else:
        data = {"default_tenant": tenant, "tenants": {}}
    data["tenants"][tenant] = policy.model_dump(mode="json", exclude_none=True)
    write_policy_file(path, data, header=header)
    return PolicyStore.from_file(path)
