"""``shoal users``: accounts."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from shoal.cli._db import accounts
from shoal.errors import BadInput

app = typer.Typer(help="Accounts: who may sign in.", no_args_is_help=True)
out = Console()


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        pw = sys.stdin.readline().rstrip("\n")
    else:
        pw = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(pw) < 8:
        raise BadInput("the password is too short", hint="use at least 8 characters")
    return pw


@app.command("add")
def add(
    name: str,
    admin: bool = typer.Option(False, "--admin", help="may manage users and configure every bot"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Create an account (asks for its password)."""
    pw = read_password(password_stdin)

    async def run() -> None:
        async with accounts() as acc:
            user = await acc.create_user(name, pw, is_admin=admin)
        out.print(f"created {'admin ' if user.is_admin else ''}[bold]{user.name}[/]")

    asyncio.run(run())


@app.command("passwd")
def passwd(name: str, password_stdin: bool = typer.Option(False, "--password-stdin")) -> None:
    """Set an account's password."""
    pw = read_password(password_stdin)

    async def run() -> None:
        async with accounts() as acc:
            await acc.set_password(name, pw)
        out.print(f"password changed for [bold]{name}[/]")

    asyncio.run(run())


@app.command("list")
def list_users() -> None:
    """Show accounts."""

    async def run() -> None:
        async with accounts() as acc:
            users = await acc.users()
        table = Table("name", "role", "can sign in", "created")
        for u in users:
            table.add_row(u.name, "admin" if u.is_admin else "user", "yes" if u.name != "local" else "no (CLI user)",
                          datetime.fromtimestamp(u.created_at).strftime("%Y-%m-%d %H:%M"))
        out.print(table)

    asyncio.run(run())


@app.command("remove")
def remove(name: str, yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation")) -> None:
    """Remove an account with its conversations and memories."""
    if not yes:
        typer.confirm(f"remove {name} and everything they own?", abort=True)

    async def run() -> None:
        async with accounts() as acc:
            await acc.remove_user(name)
        out.print(f"removed [bold]{name}[/]")

    asyncio.run(run())
