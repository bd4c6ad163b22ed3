"""``shoal memory import``: a transcript of several speakers, as a real process on a real store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from shoal.memory.store import MemoryStore
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database

from .test_chat import shoal

TURNS = [
    {"speaker": "Ana", "text": "Hey Bo! I finally moved to Porto last month.", "time": "2023-05-08T13:56"},
    {"speaker": "Bo", "text": "Ana, that's great! I live in Leeds and I work as a maths teacher.", "time": "2023-05-08T13:57"},
    {"speaker": "Ana", "text": "I've been learning to surf, it's hard but so much fun.", "time": "2023-05-08T13:58"},
    {"speaker": "Bo", "text": "Ana, surfing in Porto sounds amazing, Ana!", "time": 1683554340},
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def stored(home: Path, name: str = "local") -> tuple[list, list]:  # type: ignore[type-arg]
    db = await Database(home / "shoal.db").open()
    try:
        user = await ConversationStore(db).ensure_user(name)
        store = MemoryStore(db)
        memories = await store.list(user.id, limit=100)
        found = await store.search(user.id, "What does Ana do for fun?", limit=2)
        return memories, found
    finally:
        await db.close()


def test_a_transcript_is_remembered_with_its_speakers_and_only_my_facts(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "chat.jsonl", [json.dumps(t) for t in TURNS])
    out = shoal(home, "memory", "import", str(path), "--me", "Ana")
    assert out.returncode == 0, out.stderr
    assert "remembered 4 turns of Ana, Bo" in " ".join(out.stdout.split())
    memories, found = asyncio.run(stored(home))
    raw = [m for m in memories if m.kind == "raw"]
    assert sorted((m.speaker, m.text.split(": ", 1)[0]) for m in raw) == [("Ana", "Ana"), ("Ana", "Ana"), ("Bo", "Bo"), ("Bo", "Bo")]
    # facts describe the person: Ana's move is theirs; Bo's home and job are Bo's words, never their facts
    facts = [(a, v) for m in memories if m.kind == "fact" for a, v in m.live_facts()]
    assert ("location", "Porto") in facts and all(v not in ("Leeds", "maths teacher") for _, v in facts)
    # "What does Ana do ...?" is about Ana's words, not Bo's turn that says her name twice
    assert {m.speaker for m in found} == {"Ana"} and "surf" in found[0].text
    assert min(m.created_at for m in raw) == min(m.created_at for m in memories) > 0


def test_a_bad_line_stores_nothing_and_says_where(home: Path, tmp_path: Path) -> None:
    good = [json.dumps(t) for t in TURNS]
    for bad, message in [
        ('{"speaker": "Ana"}', 'chat.jsonl:3: a turn needs a non-empty "text"'),
        ("not json", "chat.jsonl:3: not JSON"),
        ('{"speaker": "Ana", "text": "hi", "time": "last Tuesday"}', "chat.jsonl:3: \"time\" 'last Tuesday' is not ISO 8601"),
        ('{"speaker": "", "text": "hi"}', 'chat.jsonl:3: "speaker" must be a name'),
    ]:
        path = write(tmp_path / "chat.jsonl", good[:2] + [bad] + good[2:])
        out = shoal(home, "memory", "import", str(path))
        assert out.returncode == 2 and message in " ".join(out.stderr.split()), out.stderr
    assert asyncio.run(stored(home))[0] == []
    out = shoal(home, "memory", "import", str(write(tmp_path / "ok.jsonl", good)), "--me", "Zed")
    assert out.returncode == 2 and "the speakers are: Ana, Bo" in out.stderr
    assert asyncio.run(stored(home))[0] == []


def test_with_consent_never_nothing_is_imported(home: Path, tmp_path: Path) -> None:
    assert shoal(home, "config", "init").returncode == 0
    config = home / "shoal.toml"
    assert 'consent = "always"' in config.read_text()
    config.write_text(config.read_text().replace('consent = "always"', 'consent = "never"', 1))
    out = shoal(home, "memory", "import", str(write(tmp_path / "chat.jsonl", [json.dumps(t) for t in TURNS])))
    assert out.returncode == 2 and 'consent is "never"' in out.stderr
    assert asyncio.run(stored(home))[0] == []


def test_an_import_for_another_person_is_theirs_alone(home: Path, tmp_path: Path) -> None:
    assert shoal(home, "users", "add", "bob", "--password-stdin", input="bob-password-1\n").returncode == 0
    path = write(tmp_path / "chat.jsonl", [json.dumps(t) for t in TURNS])
    assert shoal(home, "memory", "import", str(path), "--user", "bob").returncode == 0
    mine, _ = asyncio.run(stored(home, "local"))
    bobs, found = asyncio.run(stored(home, "bob"))
    assert mine == [] and len([m for m in bobs if m.kind == "raw"]) == 4 and found
    # no --me: a transcript's facts are its speakers', none of them bob's
    assert [m for m in bobs if m.kind == "fact"] == []
    assert shoal(home, "memory", "import", str(path), "--user", "nobody").returncode != 0
