"""The integration tier runs real models: skipped as a whole without torch and transformers."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from model_fixtures import tiny_backend, tiny_dir, tiny_gguf, tiny_model_and_tokenizer  # noqa: F401
