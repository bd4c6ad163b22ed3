"""``shoal up``: the web server with the swarm and the embedded model."""

from __future__ import annotations

import asyncio
import secrets

import typer
from rich.console import Console
from rich.panel import Panel

from shoal.config import Env

out = Console()


def up(
    host: str = typer.Option(None, "--host", help="address to listen on (default: server.host in shoal.toml)"),
    port: int = typer.Option(None, "--port", help="port (default: server.port in shoal.toml; 0 picks a free one)"),
    mesh: str = typer.Option(None, "--mesh", help="inprocess or nats (default: [mesh] kind in shoal.toml)"),
) -> None:
    """Start the web UI and API (and create the first admin account if there is none)."""
    asyncio.run(serve(host, port, mesh))


async def serve(host: str | None, port: int | None, mesh: str | None = None) -> None:
    import uvicorn

    from shoal.runtime.swarm import Swarm
    from shoal.server.app import create_app

    env = Env.load()
    if mesh and mesh not in ("inprocess", "nats"):
        from shoal.errors import BadInput

        raise BadInput(f"unknown mesh '{mesh}'", hint="--mesh inprocess or --mesh nats")
    if mesh:  # --mesh nats: the bots' messages go over NATS ([mesh] in shoal.toml, docs/mesh.md)
        env.config.mesh = type(env.config.mesh).model_validate({**env.config.mesh.model_dump(), "kind": mesh})
    cfg = env.config.server
    host = host or cfg.host
    port = cfg.port if port is None else port
    swarm = Swarm(env)
    await swarm.start()
    try:
        notice = await first_admin(swarm)
        with out.status("loading the models…"):
            await swarm.warm_up()
        app = create_app(swarm=swarm)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            ws_max_size=max(cfg.max_frame_bytes * 4, 1 << 20),
            # frames are small JSON events; compressing each costs more CPU than it saves
            ws_per_message_deflate=False,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
        lines = [f"[bold]shoal[/] is up at [link]http://{shown}:{bound}/[/link]", f"API docs: http://{shown}:{bound}/docs"]
        lines.append("[dim]Ctrl-C to stop[/]")
        out.print(Panel("\n".join(lines), border_style="green", expand=False))
        if notice:
            # outside the panel: a password must never be wrapped across lines
            out.print(notice, soft_wrap=True)
        await task
    finally:
        await swarm.stop()


async def first_admin(swarm) -> str | None:  # type: ignore[no-untyped-def]
    """Create an admin with a random password when no one can sign in yet."""
    if await swarm.accounts.count_admins():
        return None
    password = secrets.token_urlsafe(12)
    name = "admin"
    existing = {u.name for u in await swarm.accounts.users()}
    while name in existing:
        name = f"admin{secrets.randbelow(1000)}"
    await swarm.accounts.create_user(name, password, is_admin=True)
    return (
        f"Created the first admin account. Sign in with\n  user:     [bold]{name}[/]\n  password: [bold]{password}[/]\n"
        f"It is shown only this once; change it with `shoal users passwd {name}`."
    )
