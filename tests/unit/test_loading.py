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


def test_cli_refuses_torch_options_for_llama_cpp(tmp_path: Path) -> None:
    from rt_middleware.cli._options import load_model, runs_on_llamacpp

    assert runs_on_llamacpp("default:llamacpp") and runs_on_llamacpp("m.GGUF")
    assert not runs_on_llamacpp("default") and not runs_on_llamacpp(str(tmp_path))
    with pytest.raises(ConfigError, match="--device/--dtype configure transformers models"):
        load_model(str(tmp_path / "m.gguf"), device="cuda")


def test_a_served_engine_needs_its_tokenizer_from_the_loading_layer() -> None:
    """The backend never reaches up into the default model; load_backend('openai:URL') does."""
    pytest.importorskip("httpx")
    pytest.importorskip("tenacity")
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

    with pytest.raises(ConfigError, match=r"load_backend\('openai:URL'\)"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")
