"""`rt route`: decide one prompt for one tenant and print probabilities, decision and answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rt_middleware.cli._options import DeviceOption, DtypeOption, load_model
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
    device: DeviceOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Decide PROMPT for a tenant, then refuse, route or answer.

    The tenant's ``decide_on`` applies (a single prompt is one turn either way). A route decision
    names the route that fired; the CLI binds no runnable to routes, so nothing answers it.
    """
    from rt_middleware.backends import GenerationOptions
    from rt_middleware.messages import check_text
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    with user_errors():
        check_text(prompt)  # a non-UTF-8 argv byte arrives as a lone surrogate: refuse before loading
        store = PolicyStore.from_file(policy) if policy else PolicyStore.default()
        backend = load_model(model, device=device, dtype=dtype)
        router = RefusalRouter(
            backend=backend, policies=store, routes=_unbound_routes(store),
            generation=GenerationOptions(max_new_tokens=max_new_tokens),
        )
        config = {"configurable": {"tenant_id": tenant}} if tenant else {}
        message = router.invoke(prompt, config)
    decision = message.response_metadata["refusal_decision"]
    routed = decision["action"] == "route"
    if as_json:
        out = {"decision": decision, "text": None if routed else message.text}
        if routed:
            out["note"] = ROUTE_NOTE.format(route=decision["route"])
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    print_decision(decision, message.text)


ROUTE_NOTE = (
    "route {route!r} fired; `rt route` binds no runnable to routes, so nothing answered "
    "(in code: RefusalRouter(routes={{{route!r}: runnable}}))"
)


def _unbound_routes(store):
    """Placeholders for every route a policy names (the router checks they exist); never answer."""
    from langchain_core.runnables import RunnableLambda

    names = {
        rule.route
        for tenant in store.tenants
        for rule in store.get(tenant).categories.values()
        if rule.route
    }
    return {name: RunnableLambda(lambda _x: "") for name in names}


def _label(name: str) -> str:
    from rt_middleware.tokens import category_alias

    alias = category_alias(name)
    return f"{name} ({alias})" if alias else name


def print_decision(decision: dict, text: str) -> None:
    """A probabilities table, the decision line and the answer (or the route that fired)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    title = f"tenant {decision['tenant']} · policy {decision['policy_version']}"
    if decision.get("requested_tenant"):
        title += f" · requested {decision['requested_tenant']}"
    table = Table(title=Text(title))  # names from the policy file are text, never markup
    table.add_column("decision token")
    table.add_column("probability", justify="right")
    for name, p in sorted(decision["probabilities"].items(), key=lambda kv: -kv[1]):
        table.add_row(Text(_label(name)), f"{p:.4f}")
    console.print(table)
    what = decision["action"] + (f" ({_label(decision['category'])})" if decision["category"] else "")
    console.print(f"[bold]decision:[/] {escape(what)}  [dim]reason={decision['reason']}[/]", highlight=False)
    if decision["action"] == "route":
        console.print(f"[bold]route:[/] {escape(ROUTE_NOTE.format(route=decision['route']))}", highlight=False)
    else:
        console.print("[bold]answer:[/] ", end="", highlight=False)
        console.print(text, highlight=False, markup=False)
