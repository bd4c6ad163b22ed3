"""``shoal worker``: run some of the swarm's bots here, joined to a server over NATS (docs/mesh.md)."""

from __future__ import annotations

import asyncio
import signal

import typer
from rich.console import Console

from shoal.config import Env
from shoal.errors import BadInput

out = Console()


def worker(
    bots: str = typer.Option(..., "--bots", help="comma-separated bot names to run here, e.g. thinker,memory"),
    nats: str = typer.Option(None, "--nats", help="NATS URL (default: [mesh] url in shoal.toml)"),
    name: str = typer.Option(None, "--name", help="this worker's id (default: host-pid-random)"),
) -> None:
    """Run bots of a shoal server in this process (another process or machine), over NATS."""
    names = [b.strip() for b in bots.split(",") if b.strip()]
    if not names:
        raise BadInput("name at least one bot", hint="shoal worker --bots thinker,memory")
    asyncio.run(run(names, nats, name))


async def run(names: list[str], url: str | None, worker_id: str | None) -> None:
    from shoal.runtime.worker import Worker

    env = Env.load()
    mesh = env.config.mesh
    if url:
        try:
            mesh = type(mesh).model_validate({**mesh.model_dump(), "url": url})
        except ValueError as exc:
            raise BadInput(f"--nats {url!r} is not a NATS URL", hint="e.g. --nats nats://127.0.0.1:4222") from exc
    w = Worker(mesh, names, env.config, worker_id=worker_id)
    with out.status(f"joining the swarm at {mesh.url} and loading the models…"):
        await w.start()
    out.print(f"[bold]worker {w.id}[/] runs {', '.join(names)} for the swarm at {mesh.url} [dim](Ctrl-C to stop)[/]", soft_wrap=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await w.stop()
        out.print("[dim]worker stopped[/]")
