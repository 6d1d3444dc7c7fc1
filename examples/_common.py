"""What every example shares: the --model option and one printed line per decision."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from rt_middleware import load_backend
from rt_middleware.backends import BaseBackend
from rt_middleware.errors import RTError


def parser(doc: str | None) -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    out.add_argument(
        "--model", default="default",
        help="'default' (the shipped refusal-token model), a transformers model dir, or a .gguf file",
    )
    return out


def load(spec: str) -> BaseBackend:
    """The backend for --model, or exit with the reason and what to pass instead."""
    try:
        return load_backend(spec)  # transformers' "Loading weights" bar is off by default
    except (RTError, OSError) as exc:
        sys.exit(f"cannot load the model {spec!r}: {exc}\n"
                 "pass --model with a refusal-token model (a transformers dir or a .gguf file)")


def short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 3] + "...")


def decision_fields(decision: Mapping[str, Any]) -> str:
    """`action=... category=... p=...`: p is the deciding token's probability."""
    probabilities = decision.get("probabilities") or {}
    name = decision.get("category") or "respond"
    p = probabilities.get(name)
    shown = f"{p:.3f}" if p is not None else "n/a"
    return f"action={decision['action']} | category={decision.get('category')} | p={shown}"
