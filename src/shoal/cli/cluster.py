"""``shoal cluster``: the inference servers as one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.console import Console

from shoal.cluster.status import fetch, probe, table
from shoal.config import Env

app = typer.Typer(help="The inference cluster: servers, health, models, load.", no_args_is_help=True)
out = Console()


@app.command("status")
def status(
    url: str = typer.Option(
        None, "--url", help="a running shoal server (e.g. http://127.0.0.1:8420): live queue and in-flight numbers"
    ),
    token: str = typer.Option(None, "--token", envvar="SHOAL_TOKEN", help="API token for --url"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Servers, health, loaded models, memory, queue depth and requests in flight.

    Without --url, probes every server in shoal.toml from here (queue and in-flight are then this
    process's: zero); with --url, asks a running shoal server.
    """
    data: dict[str, Any] = asyncio.run(fetch(url, token) if url else probe(Env.load().config))
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(table(data))
    if not url:
        out.print("[dim]probed from this process; pass --url to see a running server's queue and in-flight requests[/]")
    err = data.get("reload", {}).get("error")
    if err:
        out.print(f"[red]shoal.toml has a problem the server ignored:[/] {err}")
