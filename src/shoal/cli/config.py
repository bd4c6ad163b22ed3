"""``shoal config``: write, locate and check shoal.toml."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from shoal.config import Settings, load_config, write_default_config

app = typer.Typer(help="Write, locate and check the configuration file (shoal.toml).", no_args_is_help=True)
out = Console()


@app.command("init")
def init(
    path: Path = typer.Option(None, "--path", help="where to write it (default: $SHOAL_HOME/shoal.toml)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a commented default shoal.toml."""
    target = path or Settings().config_path
    write_default_config(target, force=force)
    out.print(f"wrote [bold]{target}[/] — edit it, then run [bold]shoal config check[/]")


@app.command("path")
def path_cmd() -> None:
    """Print where shoal reads its configuration."""
    out.print(str(Settings().config_path))


@app.command("check")
def check(path: Path = typer.Option(None, "--path", help="file to check (default: $SHOAL_HOME/shoal.toml)")) -> None:
    """Validate shoal.toml and summarise what it declares."""
    target = path or Settings().config_path
    cfg = load_config(target)
    source = str(target) if target.exists() else "built-in defaults (no shoal.toml yet)"
    out.print(f"[green]ok[/] {source}: {len(cfg.servers)} server(s), {len(cfg.bots)} bot(s), {len(cfg.routing.rules)} routing rule(s)")
