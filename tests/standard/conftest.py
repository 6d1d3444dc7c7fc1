"""The langchain-tests suites run the chat model on a tiny real model: skipped without torch."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
