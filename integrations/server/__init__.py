"""`rt serve`: a multi-tenant, OpenAI-compatible gateway in front of any backend.

    from rt_middleware.integrations.server import ServerSettings, create_app

Needs the ``server`` extra (`pip install 'rt-middleware[server]'`).
"""

from __future__ import annotations

from rt_middleware._extras import require

for _module in ("fastapi", "uvicorn", "prometheus_client", "watchfiles"):
    require(_module, extra="server", feature="rt_middleware.integrations.server")

from .app import ServerSettings, create_app  # noqa: E402
from .keys import KeyEntry, KeyStore, add_key, hash_key  # noqa: E402

__all__ = ["KeyEntry", "KeyStore", "ServerSettings", "add_key", "create_app", "hash_key"]
