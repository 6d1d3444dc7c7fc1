"""`load_backend` passes backend options through to the backend the spec selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from rt_middleware import load_backend
from rt_middleware.backends import HFBackend


def test_options_reach_hf_from_pretrained(tiny_dir: Path) -> None:
    backend = load_backend(tiny_dir, dtype="float64", max_context=64, model_name="tiny-f64")
    assert isinstance(backend, HFBackend)
    assert str(backend.model.dtype) == "torch.float64"
    assert backend.max_context == 64 and backend.model_name == "tiny-f64"


def test_options_reach_llamacpp(tiny_gguf: Path) -> None:
    pytest.importorskip("llama_cpp")
    backend = load_backend(tiny_gguf, n_ctx=96, model_name="tiny-gguf")
    try:
        assert backend.max_context == 96 and backend.model_name == "tiny-gguf"
    finally:
        backend.close()


def test_cli_device_and_dtype_reach_the_model(tiny_dir: Path) -> None:
    """`rt eval/calibrate/demo --device --dtype` go through cli._options.load_model."""
    from rt_middleware.cli._options import load_model

    backend = load_model(str(tiny_dir), device="cpu", dtype="float64")
    assert str(backend.model.dtype) == "torch.float64" and backend.model.device.type == "cpu"
    assert str(load_model(str(tiny_dir)).model.dtype) == "torch.float32"  # nothing given: the default
