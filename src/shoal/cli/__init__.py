"""The ``shoal`` command: noun groups with verbs; each parses, calls one library function, prints."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from shoal.errors import ShoalError

app = typer.Typer(
    name="shoal",
    help="shoal — a Cluster of Little Action Models: a local swarm of small language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _register() -> None:
    from shoal.cli import bots, chat, config, memory, tokens, up, users

    app.command("chat")(chat.chat)
    app.command("up")(up.up)
    app.add_typer(config.app, name="config")
    app.add_typer(bots.app, name="bots")
    app.add_typer(users.app, name="users")
    app.add_typer(tokens.app, name="tokens")
    app.add_typer(memory.app, name="memory")
    from shoal.cli import cluster, conversations

    app.add_typer(cluster.app, name="cluster")
    app.add_typer(conversations.app, name="conversations")
    app.add_typer(conversations.messages, name="messages")
    from shoal.cli import edge

    app.add_typer(edge.app, name="edge")
    from shoal.cli import learn

    app.add_typer(learn.app, name="learn")
    from shoal.cli import mcp

    app.command("mcp")(mcp.mcp)  # issue 17: shoal as an MCP server
    from shoal.cli import ulm

    app.add_typer(ulm.app, name="ulm")
    from shoal.cli import worker

    app.command("worker")(worker.worker)


def setup_logging() -> None:
    from shoal.config import Settings

    level = Settings().log_level.upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    _register()
    setup_logging()
    try:
        app()
    except ShoalError as exc:
        err.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}")
        sys.exit(2 if exc.code in ("config", "bad_input") else 1)
    except KeyboardInterrupt:
        err.print("[dim]interrupted[/]")
        sys.exit(130)
