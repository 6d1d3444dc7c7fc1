"""Tiny random models built once per session (no downloads), for the tiers that run a model.

`tests/tiny/conftest.py` and `tests/integration/conftest.py` import these fixtures after skipping
their tier without torch/transformers; `tests/unit` never loads them, so it runs on a core install.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_model import build_tiny, save_tiny

from rt_middleware.tokens import RefusalTokenSchema

__all__ = ["tiny_backend", "tiny_dir", "tiny_gguf", "tiny_model_and_tokenizer"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model directory with the CoCoNot schema tokens."""
    return save_tiny(tmp_path_factory.mktemp("tiny-coconot"))


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    return build_tiny()


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_and_tokenizer):
    from rt_middleware.backends import HFBackend

    model, tok = tiny_model_and_tokenizer
    return HFBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported to an F32 GGUF by our own exporter."""
    pytest.importorskip("gguf")
    from rt_middleware.gguf_export import export_gguf

    return export_gguf(tiny_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf", dtype="f32")
