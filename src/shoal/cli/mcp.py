"""``shoal mcp``: shoal as an MCP server (stdio by default, ``--http`` for streamable HTTP)."""

from __future__ import annotations

import asyncio

import typer


def mcp(
    token: str = typer.Option(None, "--token", help="stdio: the API token whose user the tools act for (or SHOAL_TOKEN)"),
    http: bool = typer.Option(False, "--http", help="serve streamable HTTP at /mcp instead of stdio"),
    host: str = typer.Option("127.0.0.1", help="--http: the address to listen on"),
    port: int = typer.Option(8765, help="--http: the port"),
) -> None:
    """Serve memory search/add/forget and "ask the swarm" over MCP, scoped to the token's user."""
    from shoal.config import Env
    from shoal.tools.mcp import serve_http, serve_stdio, token_from_env

    env = Env.load()
    if http:
        asyncio.run(serve_http(env, host, port))
    else:
        asyncio.run(serve_stdio(env, token_from_env(token)))
