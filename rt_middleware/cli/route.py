"""`rt route`: decide one prompt for one tenant and print probabilities, decision and answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import console, user_errors


@app.command()
def route(
    prompt: Annotated[str, typer.Argument(help="The user prompt.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id (default: the policy's default_tenant).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (YAML or JSON); default: the shipped one.")] = None,
    model: Annotated[str, typer.Option(help="HF model dir, a .gguf file, or 'default'.")] = "default",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Cap on the answer's length.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"decision": ..., "text": ...}.')] = False,
) -> None:
    """Decide PROMPT for a tenant, then refuse, route or answer."""
    from rt_middleware.backends import GenerationOptions
    from rt_middleware.loading import load_backend
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    with user_errors():
        backend = load_backend(model)
        store = PolicyStore.from_file(policy) if policy else PolicyStore.default()
        routes = _echo_routes(store)
        router = RefusalRouter(
            backend=backend, policies=store, routes=routes,
            generation=GenerationOptions(max_new_tokens=max_new_tokens),
        )
        config = {"configurable": {"tenant_id": tenant}} if tenant else {}
        message = router.invoke(prompt, config)
    decision = message.response_metadata["refusal_decision"]
    if as_json:
        typer.echo(json.dumps({"decision": decision, "text": message.text}, ensure_ascii=False))
        return
    print_decision(decision, message.text)


def _echo_routes(store):
    """On the command line a route has no chain behind it: say which route would answer."""
    from langchain_core.runnables import RunnableLambda

    names = {
        rule.route
        for tenant in store.tenants
        for rule in store.get(tenant).categories.values()
        if rule.route
    }
    return {name: RunnableLambda(lambda _x, n=name: f"[routed to '{n}']") for name in names}


def print_decision(decision: dict, text: str) -> None:
    """A probabilities table, the decision line and the answer."""
    from rich.table import Table

    table = Table(title=f"tenant {decision['tenant']} · policy {decision['policy_version']}")
    table.add_column("decision token")
    table.add_column("probability", justify="right")
    for name, p in sorted(decision["probabilities"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{p:.4f}")
    console.print(table)
    what = decision["action"] + (f" ({decision['category']})" if decision["category"] else "")
    console.print(f"[bold]decision:[/] {what}  [dim]reason={decision['reason']}[/]", highlight=False)
    console.print(f"[bold]answer:[/] {text}", highlight=False)
