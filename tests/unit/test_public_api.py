from __future__ import annotations

import subprocess
import sys

import pytest

import rt_middleware
from rt_middleware import errors
from rt_middleware._extras import require


def test_public_names_are_pinned() -> None:
    names = rt_middleware.__all__
    assert names == sorted(names) and len(set(names)) == len(names)  # sorted, no duplicates
    for name in ("RefusalTokenSchema", "TenantPolicy", "PolicyStore", "Decision", "RefusalRouter",
                 "UnknownTenantError", "load_default_backend"):
        assert name in rt_middleware.__all__
        assert getattr(rt_middleware, name) is not None
    from rt_middleware.backends import HFBackend  # noqa: F401


def test_import_stays_light() -> None:
    code = "import sys, rt_middleware; print(any(m in sys.modules for m in ('torch', 'transformers', 'llama_cpp')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_error_tree() -> None:
    assert issubclass(errors.PolicyError, errors.ConfigError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.UnknownTenantError, errors.RequestError)
    assert issubclass(errors.UnknownTenantError, KeyError)
    assert issubclass(errors.MissingExtraError, ImportError)
    assert errors.BackendTimeoutError("x").retryable
    assert not errors.BackendError("x").retryable


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(errors.MissingExtraError, match=r"pip install 'rt-middleware\[llamacpp\]'"):
        require("llama_cpp", extra="llamacpp", feature="LlamaCppBackend", package="llama-cpp-python")


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        _ = rt_middleware.NoSuchThing  # type: ignore[attr-defined]
