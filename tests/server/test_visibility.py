"""One rule for thoughts on every path: a person without ``see_thoughts`` gets no thinker text anywhere.

The thinker here also proposes instruction lines, so its text could travel in
thought events, monologue steps, the primary's notes (injections), proposals,
instruction changes, the reply to "what are you thinking about?", the REST
event log and the websocket (live and replayed). Each path is checked against
what the store recorded.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import websockets

from shoal.runtime.access import HIDDEN_LINE, thought_line, visible_event
from shoal.runtime.messages import InstructionChanged, parse_event
from shoal.store.conversations import User

from .conftest import open_db, SERVER_CONFIG, LiveServer, auth, make_site, new_conversation, send_and_settle, wait_for

PROPOSING = SERVER_CONFIG.replace(
    'access = { see_thoughts = ["ana"] }', 'access = { see_thoughts = ["ana"] }\nproposes_instruction = true'
)


@pytest.fixture(scope="module")
def proposing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer]]:
    site = make_site(tmp_path_factory.mktemp("visibility"), PROPOSING)
    live = LiveServer(site.env).start()
    yield site, live
    live.stop()


def stored(db: Path, conversation: str) -> list[dict[str, Any]]:
    with open_db(db) as c:
        return [json.loads(r[0]) for r in c.execute("SELECT payload FROM events WHERE conversation_id = ? ORDER BY seq", (conversation,))]


def thought_ended(db: Path, conversation: str) -> None:
    """Wait until a thought about the conversation was recorded (a loaded machine may settle the turn first)."""
    wait_for(lambda: any(e["kind"] == "thought.end" for e in stored(db, conversation)), timeout=240)


def thinker_texts(events: list[dict[str, Any]]) -> list[str]:
    """The thinker's own words as stored: finished thoughts, proposed rules and notes drawn from thoughts."""
    out = [e["text"] for e in events if e["kind"] == "thought.end" and e["text"]]
    out += [e["rule"] for e in events if e["kind"] == "instruction.proposal" and e["rule"]]
    out += [e["text"] for e in events if e["kind"] == "injection" and e.get("from_bot") == "thinker"]
    return out


def leaks(frames: list[dict[str, Any]], texts: list[str], said: list[str]) -> list[str]:
    """Thinker kinds and thinker text in frames (words the person said themselves are theirs, not the thinker's)."""
    texts = [t for t in texts if not any(t.strip(" .!?").lower() in s.lower() for s in said)]
    found = []
    for f in frames:
        if f.get("kind", "").startswith(("thought.", "monologue.")) or f.get("kind") == "instruction.proposal":
            found.append(f["kind"])
        if f.get("kind") == "injection" and f.get("from_bot") == "thinker":
            found.append("injection from the thinker")
        dumped = json.dumps(f)
        found += [t[:40] for t in texts if len(t) > 12 and t in dumped]
    return found


async def ws_frames(live: LiveServer, token: str, conversation: str) -> list[dict[str, Any]]:
    async with websockets.connect(live.ws_url, additional_headers=auth(token), max_size=2**22) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "conversation": conversation}))
        frames = []
        while True:
            f = json.loads(await asyncio.wait_for(ws.recv(), 60))
            frames.append(f)
            if f["type"] == "subscribed":
                return frames


async def test_a_plain_user_gets_no_thinker_text_on_any_path(proposing: tuple[Any, LiveServer]) -> None:
    site, live = proposing
    tok = site.tokens["bob"]
    with httpx.Client(base_url=live.url, timeout=60) as http:
        conv = new_conversation(http, tok)
        # live over the websocket while the turns run
        async with websockets.connect(live.ws_url, additional_headers=auth(tok), max_size=2**22) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe", "conversation": conv}))
            live_frames: list[dict[str, Any]] = []

            async def read() -> None:  # keep reading, as a client does (and so keep-alive pings are answered)
                async for raw in ws:
                    live_frames.append(json.loads(raw))

            reader = asyncio.create_task(read())
            await asyncio.to_thread(send_and_settle, http, tok, conv, "I'm busy, so quick answers please. What should I cook tonight?", 240)
            await asyncio.to_thread(thought_ended, site.env.settings.db_path, conv)
            await asyncio.to_thread(send_and_settle, http, tok, conv, "What are you thinking about?", 240)
            await asyncio.sleep(2)
            reader.cancel()
        rest = http.get(f"/api/conversations/{conv}/events", headers=auth(tok)).json()
        replayed = await ws_frames(live, tok, conv)
        events = stored(site.env.settings.db_path, conv)
        texts = thinker_texts(events)
        assert [e for e in events if e["kind"] == "thought.end" and e["text"]], "the thinker did think"
        messages = http.get(f"/api/conversations/{conv}/messages", headers=auth(tok)).json()
        versions = http.get(f"/api/conversations/{conv}/instruction", headers=auth(tok)).json()["versions"]
        thinking = http.get(f"/api/conversations/{conv}/thinking", headers=auth(tok)).json()
    said = [m["content"] for m in messages if m["role"] == "user"]
    for name, frames in (("websocket live", live_frames), ("websocket replay", replayed), ("REST events", rest)):
        assert leaks(frames, texts, said) == [], name
    # the replay count says how many events bob got, not how many exist
    sub = replayed[-1]
    hidden = {e["seq"] for e in events} - {f["seq"] for f in rest}
    assert sub["replayed"] == len([f for f in replayed if f["type"] == "event"]) == len(rest)
    assert hidden and {e["kind"] for e in events if e["seq"] in hidden} <= {
        "thought.start", "thought.end", "thought.queued", "instruction.proposal", "injection", "monologue.step"
    }
    # the reply to "what are you thinking about?" did not get the thinker's buffer
    starts = [e for e in events if e["kind"] == "reply.start" and not e["interjection"]]
    assert starts[-1]["thinking"] == []
    reply = [m for m in messages if m["role"] == "assistant"][-1]["content"]
    assert not [t for t in texts if len(t) > 12 and t in reply]
    assert all("(thinker)" not in v["text"] for v in versions)
    assert thinking == []


async def test_the_one_who_may_see_thoughts_gets_them_on_every_path(proposing: tuple[Any, LiveServer]) -> None:
    site, live = proposing
    tok = site.tokens["ana"]
    with httpx.Client(base_url=live.url, timeout=60) as http:
        conv = new_conversation(http, tok)
        send_and_settle(http, tok, conv, "I want to plan a trip to Norway in winter. Where should I go?", 240)
        thought_ended(site.env.settings.db_path, conv)
        send_and_settle(http, tok, conv, "What are you thinking about?", 240)
        events = stored(site.env.settings.db_path, conv)
        rest = http.get(f"/api/conversations/{conv}/events", headers=auth(tok)).json()
        replayed = await ws_frames(live, tok, conv)
    ends = [e for e in events if e["kind"] == "thought.end"]
    assert ends and [e["kind"] for e in rest if e["kind"] == "thought.end"] == ["thought.end"] * len(ends)
    assert len([f for f in replayed if f.get("kind") == "thought.end"]) == len(ends)
    starts = [e for e in events if e["kind"] == "reply.start" and not e["interjection"]]
    assert starts[-1]["thinking"] == ["thinker"]


def test_instruction_lines_from_thoughts_are_hidden_from_who_may_not_see_them() -> None:
    from shoal.config import parse_config

    config = parse_config(PROPOSING)
    text = "\n".join(["The user asked you, for the rest of this conversation: \"be brief\"", thought_line("thinker", "Give quick answers.")])
    ev = InstructionChanged(conversation="c", version=2, text=text, bot="primary")
    bob = User("b", "bob", False, 0.0)
    ana = User("a", "ana", False, 0.0)
    shown = visible_event(bob, config, ev)
    assert shown is not None and shown.text.splitlines() == [text.splitlines()[0], HIDDEN_LINE]  # type: ignore[attr-defined]
    assert visible_event(ana, config, ev) is ev
    # an event of a thinker the config does not know is for admins only
    stray = parse_event({"kind": "thought.delta", "conversation": "c", "bot": "ghost", "thought_id": "t", "text": "x"})
    assert visible_event(ana, config, stray) is None
    assert visible_event(User("r", "root", True, 0.0), config, stray) is stray
