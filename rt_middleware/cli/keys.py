"""`rt keys add`: create an API key for a tenant; only its SHA-256 is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import user_errors

keys_app = typer.Typer(help="API keys of `rt serve` (a key selects exactly one tenant).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="The tenant this key selects (a tenant of the policy file).")],
    keys: Annotated[Path, typer.Option("--keys", help="Keys file (JSON; created if missing).")],
    role: Annotated[str, typer.Option(help="'tenant', or 'admin' for /admin/reload and /admin/policies.")] = "tenant",
) -> None:
    """Create a key for TENANT: prints only the key, stores only its SHA-256 with the tenant and role."""
    from rt_middleware.integrations.server.keys import add_key

    with user_errors():
        key = add_key(keys, tenant, role)  # type: ignore[arg-type]
    typer.echo(key)
