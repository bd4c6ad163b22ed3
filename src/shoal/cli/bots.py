"""``shoal bots``: the bots in the configuration."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from shoal.config import Env
from shoal.runtime.swarm import bot_classes

app = typer.Typer(help="The bots in your shoal.", no_args_is_help=True)
out = Console()


@app.command("list")
def list_bots() -> None:
    """Show configured bots and the routing rules that reach them."""
    env = Env.load()
    cfg = env.config
    classes = bot_classes()
    table = Table(title=f"bots ({env.settings.config_path if env.settings.config_path.exists() else 'defaults'})")
    for col in ("name", "role", "priority", "server", "model", "history", "rank", "max tokens", "enabled"):
        table.add_column(col)
    from shoal.runtime.workers import runs_on

    where = runs_on(cfg) if cfg.mesh.kind == "nats" else {}  # in-process, every bot runs in the server
    if where:
        table.add_column("runs on")
    for b in cfg.bots:
        server = cfg.server_named(b.server)
        table.add_row(
            b.name,
            b.role,
            classes[b.role].priority.name.lower(),
            f"{server.name} ({server.kind})",
            b.model or server.default_model,
            str(b.history),
            str(b.rank),
            str(b.max_tokens),
            "yes" if b.enabled else "no",
            *([where.get(b.name, "")] if where else []),
        )
    out.print(table)
    rules = Table(title="routing")
    rules.add_column("rule")
    rules.add_column("when")
    rules.add_column("send to")
    rules.add_row("(always)", "every turn", ", ".join(cfg.routing.always))
    for r in cfg.routing.rules:
        when = r.when + (f" /{r.pattern}/" if r.pattern else "") + (f" ≥{r.min_words} words" if r.when == "long" else "")
        rules.add_row(r.name, when, ", ".join(r.send))
    out.print(rules)
