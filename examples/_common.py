"""What every example shares: the --model option and one printed line per decision."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Mapping
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


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers "Loading weights" progress bar for a load that takes a second (restored after)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # a llama.cpp-only install
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load(spec: str) -> BaseBackend:
    """The backend for --model, or exit with the reason and what to pass instead."""
    try:
        with quiet_loading():
            return load_backend(spec)
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
