"""``shoal edge``: run an edge node, look at its sensors, journal and sync; the hub's view of nodes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from shoal.config import Env

app = typer.Typer(
    help="Edge nodes: sensors, observations, an offline-first journal synced to the hub. "
    "`shoal edge` alone runs this machine as a node (`shoal edge run`, with its options).",
    invoke_without_command=True,
)
out = Console()

NOTE_KINDS = ("observation", "fact", "clock", "event")


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "never"


def _ago(t: float | None) -> str:
    if not t:
        return "never"
    s = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _journal_path(env: Env) -> Path:
    from shoal.edge.node import DB_NAME

    return env.settings.home / DB_NAME


class _Open:
    """The node's journal, opened from a command (the node itself may be running)."""

    def __init__(self, env: Env) -> None:
        self.env = env

    async def __aenter__(self) -> Any:
        from shoal.edge.journal import Journal
        from shoal.errors import NotFound

        path = _journal_path(self.env)
        if not path.exists():
            raise NotFound(f"there is no edge journal in {path.parent}", hint="start the node with `shoal edge run` (SHOAL_HOME picks the node)")
        self.j = await Journal.open(path, node=self.env.config.edge.node_name)
        return self.j

    async def __aexit__(self, *exc: object) -> None:
        await self.j.close()


# ------------------------------------------------------------------------------ the node
@app.callback()
def edge(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # `shoal edge`: the node, as `shoal edge run` with its defaults
        run(dashboard_port=None, quiet=False)


@app.command("run")
def run(
    dashboard_port: int = typer.Option(None, "--dashboard-port", help="the node's own page (default: edge.dashboard.port; 0: off)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="do not print observations as they are noted"),
) -> None:
    """Run this machine as an edge node: read sensors, note what is worth noting, sync when the hub is reachable."""
    env = Env.load()
    if dashboard_port is not None:
        env.config.edge.dashboard.port = dashboard_port
    asyncio.run(_run(env, quiet))


async def _run(env: Env, quiet: bool) -> None:
    from shoal.edge.node import EdgeNode

    node = EdgeNode(env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop_soon)
    await node.start()
    try:
        cfg = env.config.edge
        lines = [f"[bold]edge node {node.name}[/] · journal {node.db_path}"]
        lines.append(f"sensors: {', '.join(node.sensors) or 'none'}")
        for why in node.skipped.values():
            lines.append(f"[yellow]skipped:[/] {why}")
        lines.append(f"hub: {cfg.nats}" if cfg.nats else "hub: none (offline only; set edge.nats to sync)")
        if node.dashboard is not None and node.dashboard.url:
            lines.append(f"dashboard: [link]{node.dashboard.url}[/link]")
        lines.append("[dim]Ctrl-C to stop[/]")
        out.print(Panel("\n".join(lines), border_style="green", expand=False))
        if not quiet:
            node.on_note(lambda e: out.print(_note_line(e)))
        await node.run()
    finally:
        with out.status("stopping: storing the last readings…"):
            await node.stop()


def _note_line(e: Any) -> str:
    b = e.body or {}
    conf = f" [dim](confidence {b['confidence']:.2f}, {b.get('method', '')})[/]" if b.get("confidence") is not None else ""
    style = {"observation": "cyan", "fact": "magenta", "clock": "yellow", "event": "dim"}.get(e.kind_name, "")
    return f"[dim]{_when(e.time)} #{e.seq}[/] [{style}]{e.kind_name}[/] {b.get('text', '')}{conf}"


@app.command("sensors")
def sensors(as_json: bool = typer.Option(False, "--json")) -> None:
    """Read every configured sensor once and print the current values."""
    asyncio.run(_sensors(Env.load(), as_json))


async def _sensors(env: Env, as_json: bool) -> None:
    from shoal.edge.node import sensor_configs
    from shoal.edge.sensors import SensorUnavailable, create_sensor
    from shoal.errors import ShoalError

    rows = []
    for sc in sensor_configs(env.config.edge):
        src = create_sensor(sc, node=env.config.edge.node_name)
        row = {"name": sc.name, "kind": sc.kind, "unit": src.unit, "value": None, "note": ""}
        try:
            await src.start()
            row["unit"] = src.unit
            row["value"] = await src.read_once()
            if row["value"] is None:
                row["note"] = "nothing arrived within 3 s"
        except SensorUnavailable as exc:
            row["note"] = f"skipped: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        except (ShoalError, OSError, asyncio.TimeoutError) as exc:
            row["note"] = f"failed: {getattr(exc, 'message', None) or type(exc).__name__}"
        finally:
            await src.stop()
        rows.append(row)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(title=f"sensors of {env.config.edge.node_name}", title_justify="left")
    for col in ("sensor", "kind", "value", "note"):
        t.add_column(col, overflow="fold")
    for r in rows:
        value = "—" if r["value"] is None else f"[bold]{r['value']:g}[/] {r['unit']}"
        t.add_row(r["name"], r["kind"], value, f"[yellow]{r['note']}[/]" if r["note"] else "")
    out.print(t)


@app.command("logs")
def logs(
    tail: int = typer.Option(20, "--tail", "-n", help="how many of the newest entries"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new entries (Ctrl-C to stop)"),
    kind: str = typer.Option("notes", "--kind", "-k", help="notes (observations, facts, clock, events), all, or a comma list: reading,observation,..."),
    as_json: bool = typer.Option(False, "--json", help="one JSON object a line"),
) -> None:
    """The node's recent observations and facts (or any journal entries), newest last."""
    asyncio.run(_logs(Env.load(), tail, follow, kind, as_json))


async def _logs(env: Env, tail: int, follow: bool, kind: str, as_json: bool) -> None:
    from shoal.edge.journal import KIND_CODES, KIND_NAMES
    from shoal.errors import BadInput

    names = NOTE_KINDS if kind == "notes" else tuple(KIND_NAMES.values()) if kind == "all" else tuple(k.strip() for k in kind.split(","))
    unknown = [k for k in names if k not in KIND_CODES]
    if unknown:
        raise BadInput(f"unknown kind(s) {unknown}", hint=f"one of: notes, all, {', '.join(KIND_CODES)}")
    kinds = [KIND_CODES[k] for k in names]
    async with _Open(env) as j:
        sensors = {s.id: s for s in j.sensors.values()}

        def show(e: Any) -> None:
            if as_json:
                print(json.dumps(e.as_dict(), ensure_ascii=False), flush=True)
            elif e.kind_name == "reading":
                s = sensors.get(e.sensor)
                out.print(f"[dim]{_when(e.time)} #{e.seq}[/] reading {s.name if s else e.sensor} = [bold]{e.value:g}[/] {s.unit if s else ''}")
            else:
                out.print(_note_line(e))

        last = 0
        for e in await j.tail(tail, kinds):
            show(e)
            last = e.seq
        last = max(last, j.head)
        while follow:
            await asyncio.sleep(1.0)
            for e in await j.after(last, kinds):
                show(e)
                last = e.seq
            sensors = {s.id: s for s in j.sensors.values()}


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Backlog, last sync, clock offset, storage per reading, and whether the node is running."""
    asyncio.run(_status(Env.load(), as_json))


def node_status(st: dict[str, str], head: int, storage: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    running = bool(live) and time.time() - float(live.get("updated", 0)) < 30 and _alive(int(live.get("pid", 0)))
    acked = int(st.get("acked", 0))
    return {
        "node": st.get("node"), "uid": st.get("uid"), "running": running, "head": head, "acked": acked,
        "backlog": head - acked, "published": int(st.get("published", 0)),
        "last_sync": float(st["last_sync"]) if st.get("last_sync") else None,
        "offset_ms": int(st["offset_ms"]) if st.get("offset_ms") else None,
        "sync": live.get("sync") if running else None, "disk_full": live.get("disk_full") if running else None,
        "skipped": live.get("skipped", {}) if running else {}, "pending": live.get("pending") if running else None,
        "dropped": live.get("dropped") if running else None, "storage": storage,
    }


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _status(env: Env, as_json: bool) -> None:
    from shoal.edge.log import SensorLog

    from shoal.edge.node import STATUS_NAME, StatusFile

    async with _Open(env) as j:
        st = await j.state()
        storage = await SensorLog(j, env.config.edge.retention, has_hub=bool(env.config.edge.nats)).storage()
        data = node_status(st, j.head, storage, StatusFile.read(env.settings.home / STATUS_NAME))
    data["hub"] = env.config.edge.nats or None
    if as_json:
        out.print_json(json.dumps(data))
        return
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="dim")
    t.add_column()
    t.add_row("node", f"[bold]{data['node']}[/] ({'running' if data['running'] else 'not running'})")
    t.add_row("hub", data["hub"] or "none — offline only (set edge.nats)")
    t.add_row("journal", f"{data['head']:,} entries · {data['acked']:,} acknowledged by the hub")
    if data["hub"]:
        t.add_row("backlog", f"[bold]{data['backlog']:,}[/] entries waiting for the hub")
    else:
        t.add_row("backlog", "— (no hub: everything stays on this node, aged out by edge.retention)")
    t.add_row("last sync", f"{_when(data['last_sync'])} ({_ago(data['last_sync'])})")
    off = data["offset_ms"]
    t.add_row("clock offset", "unknown (never synced)" if off is None else f"the hub's clock is {off / 1000:+.1f} s from this device's")
    if data["sync"]:
        s = data["sync"]
        t.add_row("sync", s["state"] + (f" — [yellow]{s['last_error']}[/]" if s.get("last_error") else ""))
        if s.get("hint"):
            t.add_row("", f"[dim]{s['hint']}[/]")
    if storage.get("entries"):
        t.add_row("storage", f"{storage['used_bytes'] / 1e6:,.1f} MB for {storage['entries']:,} entries "
                             f"({storage['bytes_per_entry']} bytes each) · {storage['free_disk_bytes'] / 1e9:,.1f} GB free")
    if data["disk_full"]:
        t.add_row("[red]disk[/]", f"[red]{data['disk_full']}[/]")
    for why in data["skipped"].values():
        t.add_row("[yellow]skipped[/]", why)
    out.print(t)


@app.command("plot")
def plot(
    sensors: list[str] = typer.Argument(None, help="sensor names (default: all)"),
    hours: float = typer.Option(24.0, "--hours", help="how far back"),
    output: Path = typer.Option(Path("sensors.png"), "--output", "-o", help="the PNG to write"),
) -> None:
    """Write a PNG plot of the node's sensors over the last hours (mean line over a min–max band)."""
    asyncio.run(_plot(Env.load(), sensors or [], hours, output))


async def _plot(env: Env, names: list[str], hours: float, output: Path) -> None:
    from shoal.edge.hlc import physical
    from shoal.edge.log import SensorLog
    from shoal.edge.plot import render
    from shoal.errors import NotFound

    async with _Open(env) as j:
        log_ = SensorLog(j, env.config.edge.retention, has_hub=bool(env.config.edge.nats))
        chosen = [j.sensors[n] for n in names if n in j.sensors] if names else list(j.sensors.values())
        missing = [n for n in names if n not in j.sensors]
        if missing:
            raise NotFound(f"no sensor named {', '.join(missing)}", hint=f"known: {', '.join(j.sensors) or 'none yet'}")
        until = physical(j.clock.last) + 1
        series = []
        for s in chosen:
            pts = await log_.series(s.id, until - int(hours * 3_600_000), until, points=600)
            series.append((s.title, s.unit, [(p.t, p.mean, p.min, p.max) for p in pts]))
    png = await asyncio.to_thread(render, series, title=f"{env.config.edge.node_name} · last {hours:g} h", dark=False)
    output.write_bytes(png)
    out.print(f"wrote {output} ({len(series)} sensor(s), {len(png) // 1024} KB)")


@app.command("search")
def search(query: str, limit: int = typer.Option(10, "--limit", "-n")) -> None:
    """Search the node's observations and facts by meaning and keywords."""
    asyncio.run(_search(Env.load(), query, limit))


async def _search(env: Env, query: str, limit: int) -> None:
    from shoal.edge.search import NoteIndex

    async with _Open(env) as j:
        index = NoteIndex(j)
        index.available = env.config.edge.embed
        hits = await index.search(query, limit)
    if not hits:
        out.print("nothing found")
    for h in hits:
        conf = f" (confidence {h['confidence']:.2f})" if h["confidence"] is not None else ""
        old = " [dim](superseded)[/]" if h["superseded"] else ""
        out.print(f"[dim]{_when(h['time'])} #{h['seq']}[/] {h['kind']}: {h['text']}{conf}{old}")


@app.command("sync")
def sync(timeout: float = typer.Option(600.0, "--timeout", help="give up after this many seconds")) -> None:
    """Send the backlog to the hub now and wait until it has everything (the node need not be running)."""
    env = Env.load()
    ok = asyncio.run(_sync(env, timeout))
    raise typer.Exit(0 if ok else 1)


async def _sync(env: Env, timeout: float) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from shoal.edge.sync import EdgeSync
    from shoal.errors import ConfigError

    if not env.config.edge.nats:
        raise ConfigError("this node has no hub (edge.nats is empty)", field="edge.nats", hint='set edge.nats = "nats://hub:4222"')
    async with _Open(env) as j:
        s = EdgeSync(j, env.config.edge)
        stop = asyncio.Event()
        start_acked, target = j.acked, j.head
        task = asyncio.create_task(s.run(stop, until_caught_up=True))
        with Progress(TextColumn("[bold]sync[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=out, transient=False) as bar:
            t = bar.add_task(env.config.edge.nats, total=max(1, target - start_acked))
            deadline = time.monotonic() + timeout
            while not task.done() and time.monotonic() < deadline:
                bar.update(t, completed=max(0, j.acked - start_acked), description=f"{s.status.state}")
                await asyncio.sleep(0.2)
            bar.update(t, completed=max(0, j.acked - start_acked))
        stop.set()
        ok = await task if task.done() else False
        if not task.done():
            await asyncio.gather(task, return_exceptions=True)
        if ok:
            out.print(f"[green]the hub has every entry[/] (up to #{j.acked:,})")
        else:
            out.print(f"[red]not caught up[/]: the hub has up to #{j.acked:,} of #{target:,}. {s.status.last_error or ''}")
            if s.status.hint:
                out.print(f"[dim]hint:[/] {s.status.hint}")
        return bool(ok)


@app.command("compact")
def compact() -> None:
    """Apply retention now: fold old readings into per-minute/hour aggregates, remove what the hub already has."""
    asyncio.run(_compact(Env.load()))


async def _compact(env: Env) -> None:
    from shoal.edge.log import SensorLog

    async with _Open(env) as j:
        removed = await SensorLog(j, env.config.edge.retention, has_hub=bool(env.config.edge.nats)).apply_retention()
    out.print(f"removed {removed['readings']:,} raw readings, {removed['minutes']:,} minute and {removed['hours']:,} hour aggregates")


# ------------------------------------------------------------------------------ the hub's side
@app.command("hub")
def hub() -> None:
    """Run only the hub's consumer (no web server): node journals into shoal.db. `shoal up` does this too."""
    asyncio.run(_hub(Env.load()))


async def _hub(env: Env) -> None:
    from shoal.edge.hub import EdgeHub
    from shoal.store.db import Database

    env.settings.ensure_home()
    db = await Database(env.settings.db_path).open()
    h = EdgeHub(db, env.config.edge)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await h.start()
    out.print(Panel(f"[bold]edge hub[/] · {env.config.edge.hub_nats} → {env.settings.db_path}\n[dim]Ctrl-C to stop[/]",
                    border_style="green", expand=False))
    try:
        await stop.wait()
    finally:
        await h.stop()
        await db.close()


async def _hubstore(env: Env) -> Any:
    from shoal.edge.hubstore import HubStore
    from shoal.store.db import Database

    env.settings.ensure_home()
    db = await Database(env.settings.db_path).open()
    return db, HubStore(db)


@app.command("nodes")
def nodes(as_json: bool = typer.Option(False, "--json")) -> None:
    """(hub) The nodes this hub holds: last sync, entries, backlog, clock offset, errors."""
    asyncio.run(_nodes(Env.load(), as_json))


async def _nodes(env: Env, as_json: bool) -> None:
    from dataclasses import asdict

    db, store = await _hubstore(env)
    try:
        rows = await store.nodes()
    finally:
        await db.close()
    if as_json:
        out.print_json(json.dumps([{**asdict(n), "backlog": n.backlog} for n in rows]))
        return
    t = Table(title="edge nodes", title_justify="left")
    for col in ("node", "last sync", "entries", "backlog", "offset", "duplicates", "error"):
        t.add_column(col, overflow="fold")
    for n in rows:
        t.add_row(n.name, _ago(n.last_batch), f"{n.contig:,}", f"{n.backlog:,}",
                  "—" if n.offset_ms is None else f"{n.offset_ms / 1000:+.1f} s", str(n.duplicates), n.error or "")
    out.print(t)


@app.command("grant")
def grant(node: str = typer.Argument(..., help="a node name or site:NAME"), user: str = typer.Argument(...)) -> None:
    """(hub) Let a user see a node's observations, readings and facts."""
    asyncio.run(_grant(Env.load(), node, user, True))


@app.command("revoke")
def revoke(node: str = typer.Argument(...), user: str = typer.Argument(...)) -> None:
    """(hub) Stop a user seeing a node."""
    asyncio.run(_grant(Env.load(), node, user, False))


async def _grant(env: Env, node: str, user: str, give: bool) -> None:
    from shoal.store.accounts import Accounts

    db, store = await _hubstore(env)
    try:
        u = await Accounts(db).user_by_name(user)
        if give:
            await store.grant(node, u, by="cli")
            out.print(f"{user} may now see {node}")
        else:
            ok = await store.revoke(node, u)
            out.print(f"{user} may no longer see {node}" if ok else f"{user} had no grant on {node} (grants in shoal.toml stay)")
    finally:
        await db.close()


@app.command("forget")
def forget(node: str, yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """(hub) Remove a node and everything it sent (after its journal was reset on purpose)."""
    if not yes:
        typer.confirm(f"Remove node {node} and all its entries from this hub?", abort=True)

    async def go() -> int:
        db, store = await _hubstore(Env.load())
        try:
            return int(await store.forget(node))
        finally:
            await db.close()

    n = asyncio.run(go())
    out.print(f"removed node {node} ({n:,} entries)")

