"""``shoal tokens``: API tokens for programs (the web API, /v1, the websocket)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from shoal.cli._db import accounts

app = typer.Typer(help="API tokens for programs.", no_args_is_help=True)
out = Console()


@app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="the account the token acts for"),
    name: str = typer.Option("token", "--name", help="a label to recognise it by"),
) -> None:
    """Create a token and print it (it is shown only once)."""

    async def run() -> str:
        async with accounts() as acc:
            u = await acc.user_by_name(user)
            tok, secret = await acc.create_token(u.id, name)
        return secret

    print(asyncio.run(run()))


@app.command("list")
def list_tokens(user: str = typer.Option(None, "--user", help="only this account's tokens")) -> None:
    """Show tokens (never their secrets)."""

    async def run() -> None:
        async with accounts() as acc:
            uid = (await acc.user_by_name(user)).id if user else None
            toks = await acc.tokens(uid)
            names = {u.id: u.name for u in await acc.users()}
        table = Table("id", "user", "name", "created", "last used", "state")
        fmt = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "—"  # noqa: E731
        for t in toks:
            table.add_row(t.id, names.get(t.user_id, "?"), t.name, fmt(t.created_at), fmt(t.last_used_at),
                          "revoked" if t.revoked_at else "active")
        out.print(table)

    asyncio.run(run())


@app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke a token by id (see `shoal tokens list`)."""

    async def run() -> None:
        async with accounts() as acc:
            await acc.revoke_token(token_id)
        out.print(f"revoked {token_id}")

    asyncio.run(run())
