"""The README's policy example is the first policy file most users copy: it must load as shown."""

from __future__ import annotations

import re
from pathlib import Path

from rt_middleware.policy import PolicyStore
from rt_middleware.tokens import COCONOT_CATEGORIES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_policies_section_example_loads_and_checks_against_the_coconot_schema() -> None:
    section = README.read_text(encoding="utf-8").split("## Policies", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    store = PolicyStore.from_text(block.group(1), source="README.md")
    store.require(categories=COCONOT_CATEGORIES, routes=["clarify"])
    assert store.default_tenant in store.tenants
