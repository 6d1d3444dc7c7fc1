"""Loading by name lives above the backends (`rt_middleware.loading`); no model is loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

import rt_middleware
import rt_middleware.backends
from rt_middleware.errors import ConfigError
from rt_middleware.loading import load_backend


def test_load_backend_is_public_at_the_top_and_not_in_backends() -> None:
    assert rt_middleware.load_backend is load_backend
    assert "load_backend" in rt_middleware.__all__
    assert not hasattr(rt_middleware.backends, "load_backend")
    assert "load_backend" not in rt_middleware.backends.__all__


def test_unknown_specs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither 'default'"):
        load_backend(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match="GGUF file not found"):
        load_backend(tmp_path / "missing.gguf", n_gpu_layers=-1)

