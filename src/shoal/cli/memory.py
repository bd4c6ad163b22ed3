"""``shoal memory``: what shoal remembers about you — list, search, forget, export, import."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator

import typer
from rich.console import Console
from rich.table import Table

from shoal.cli._db import person, print_erased
from shoal.errors import BadInput
from shoal.memory.forget import Eraser
from shoal.memory.store import MemoryStore
from shoal.store.conversations import User

app = typer.Typer(help="What shoal remembers: list, search, forget, export, import.", no_args_is_help=True)
out = Console()

USER = typer.Option(None, "--user", help="whose memories (default: the local CLI user)")


@asynccontextmanager
async def opened(user: str | None) -> AsyncIterator[tuple[MemoryStore, User]]:
    async with person(user) as (db, who):
        yield MemoryStore(db), who


def show(memories: list, title: str) -> None:  # type: ignore[type-arg]
    table = Table(title=title)
    for col in ("id", "kind", "memory", "attribute", "from message", "when"):
        table.add_column(col, overflow="fold")
    for m in memories:
        table.add_row(
            m.id,
            m.kind + (" (replaced)" if m.superseded_by else ""),
            m.text,
            f"{m.attribute}: {m.value}" if m.attribute else "",
            ", ".join(m.sources),
            datetime.fromtimestamp(m.created_at).strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command("list")
def list_(
    kind: str = typer.Option(None, "--kind", help="raw, fact, summary or observation"),
    history: bool = typer.Option(False, "--history", help="include facts that were replaced"),
    limit: int = typer.Option(50, "--limit"),
    user: str = USER,
) -> None:
    """List memories, newest first."""

    async def run() -> None:
        async with opened(user) as (store, who):
            show(await store.list(who.id, kind=kind, include_superseded=history, limit=limit), f"memories of {who.name}")

    asyncio.run(run())


@app.command("search")
def search(query: str, limit: int = typer.Option(10, "--limit"), user: str = USER) -> None:
    """Hybrid search (meaning + keywords + recency)."""

    async def run() -> None:
        async with opened(user) as (store, who):
            with out.status("loading the embedding model…"):
                await store.embedder.warm_up()
            show(await store.search(who.id, query, limit=limit), f"memories of {who.name} matching {query!r}")

    asyncio.run(run())


@app.command("forget")
def forget(
    memory_id: str,
    with_message: bool = typer.Option(
        False, "--with-message", help="also delete the message it came from (and the reply to it)"
    ),
    user: str = USER,
) -> None:
    """Forget a memory and every copy made from it; say what was deleted and what was kept."""

    async def run() -> None:
        async with opened(user) as (store, who):
            eraser = Eraser(store.db, store)
            erased = await eraser.forget_memory(memory_id, user_id=who.id)
            print_erased(out, f"forgot {memory_id}", erased, sources=not with_message)
            if with_message:
                for m in erased.source_messages:
                    gone = await eraser.delete_message(m["id"], user_id=who.id, is_admin=who.is_admin)
                    print_erased(out, f"deleted message {m['id']}", gone)

    asyncio.run(run())


@app.command("export")
def export(user: str = USER) -> None:
    """Print every memory (history included) with its source messages, as JSON lines."""

    async def run() -> None:
        async with opened(user) as (store, who):
            for row in await store.export(who.id):
                print(json.dumps(row, ensure_ascii=False))

    asyncio.run(run())


#: longest speaker name and turn an import takes (a turn is one message, as in a chat)
MAX_SPEAKER, MAX_TURN = 80, 16_000


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """The turns of a transcript file, checked before anything is stored: JSON lines of
    ``{"speaker", "text"[, "time", "id"]}``; ``time`` is ISO 8601 or seconds since 1970."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}", hint="a UTF-8 file of JSON lines") from exc
    turns, ids = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: not JSON ({exc.msg})", hint='each line: {"speaker": "Ana", "text": "..."}') from exc
        if not isinstance(d, dict) or not isinstance(d.get("text"), str) or not d["text"].strip():
            raise BadInput(f"{where}: a turn needs a non-empty \"text\"", hint='each line: {"speaker": "Ana", "text": "..."}')
        speaker = d.get("speaker")
        if not isinstance(speaker, str) or not speaker.strip() or len(speaker) > MAX_SPEAKER or ":" in speaker:
            raise BadInput(f"{where}: \"speaker\" must be a name (1-{MAX_SPEAKER} characters, no ':')",
                           hint="who said the turn, as in the transcript")
        if len(d["text"]) > MAX_TURN:
            raise BadInput(f"{where}: a turn of {len(d['text']):,} characters is over {MAX_TURN:,}", hint="split it into turns")
        when = d.get("time")
        try:
            at = None if when is None else float(when) if isinstance(when, (int, float)) else datetime.fromisoformat(when).timestamp()
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{where}: \"time\" {when!r} is not ISO 8601 or seconds", hint='e.g. "2023-05-08T13:56"') from exc
        turn_id = str(d.get("id") or f"{path.stem}:{n}")
        if turn_id in ids:
            raise BadInput(f"{where}: turn id {turn_id!r} comes twice", hint="ids name one turn each")
        ids.add(turn_id)
        turns.append({"id": turn_id, "speaker": speaker.strip(), "text": d["text"].strip(), "time": at})
    if not turns:
        raise BadInput(f"{path} holds no turns", hint='JSON lines: {"speaker": "Ana", "text": "..."}')
    return turns


@app.command("import")
def import_(
    path: Path,
    me: str = typer.Option(None, "--me", help="your own name in the transcript: facts are kept from your turns only"),
    user: str = USER,
) -> None:
    """Remember a transcript — a chat with other people, in JSON lines of {"speaker", "text"[, "time", "id"]}.

    Each turn keeps its speaker, so "What did Ana say about Porto?" searches Ana's words. Facts
    (where you live, your job…) describe you, so they are kept only from your own turns (``--me``):
    Bo's "I live in Leeds" is Bo's, recallable as what Bo said, never your location. The import
    itself is your yes (with memory.consent = "ask" too); with "never" nothing is imported. Every
    line is checked first: one bad line, and nothing is stored.
    """
    from shoal.config import Env
    from shoal.memory.pipeline import ingest

    async def run() -> None:
        if Env.load().config.memory.consent == "never":
            raise BadInput("memory.consent is \"never\" in your shoal.toml: nothing is remembered",
                           hint='set [memory] consent = "always" (or "ask") to import a transcript')
        turns = read_transcript(path)
        speakers = sorted({t["speaker"] for t in turns})
        if me is not None and me not in speakers:
            raise BadInput(f"--me {me!r} says no turn of {path}", hint=f"the speakers are: {', '.join(speakers)}")
        async with opened(user) as (store, who):
            with out.status("loading the embedding model…"):
                await store.embedder.warm_up()
            from rich.progress import Progress

            prev, facts = None, 0
            with Progress(console=out) as progress:
                task = progress.add_task(f"remembering {path.name}", total=len(turns))
                for t in turns:
                    got = await ingest(store, user_id=who.id, conversation_id=None, message_id=t["id"], text=t["text"],
                                       speaker=t["speaker"], previous=prev, created_at=t["time"],
                                       facts_about_speaker=t["speaker"] == me)
                    prev, facts = got.raw or prev, facts + len(got.facts)
                    progress.advance(task)
            out.print(f"remembered {len(turns)} turns of {', '.join(speakers)} for {who.name} "
                      f"({facts} facts about you{'' if me else ': none without --me'}); "
                      f"ask e.g. [bold]shoal memory search \"what did {speakers[0]} say about …\"[/]")

    asyncio.run(run())
