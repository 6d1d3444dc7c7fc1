"""Where rt-middleware keeps files it builds: the cache root (one definition for every cache)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "cache_root"]

CACHE_DIR_ENV = "RT_CACHE_DIR"


def cache_root() -> Path:
    """``$RT_CACHE_DIR``, else ``~/.cache/rt-middleware``: the materialised default model and the
    first-token distribution cache live below it."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rt-middleware"
