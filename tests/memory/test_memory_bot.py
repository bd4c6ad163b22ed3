"""The memory pipeline through the whole swarm: supersession, consent, crushing, slots."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from shoal.bots.primary import fact_line_prefix
from shoal.config import Env, Settings, parse_config
from shoal.runtime.messages import MemoryConsent, MemoryProposed, ReplyStart
from shoal.runtime.swarm import Swarm

from ..conftest import TEST_CONFIG


def env_with(home: Path, extra: str = "", **replace: str) -> Env:
    text = TEST_CONFIG
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    text += extra
    return Env(Settings(home=home), parse_config(text))


async def reply_start(swarm: Swarm, conv: str, user: str, text: str) -> tuple[ReplyStart, object]:
    listener = swarm.listen(conv)
    result = await swarm.run_turn(conv, user, text, timeout=120)
    start = None
    while start is None:
        ev = await listener.get(timeout=10)
        if isinstance(ev, ReplyStart) and ev.turn == result.turn and not ev.interjection:
            start = ev
    listener.close()
    return start, result


async def test_a_move_from_leeds_to_york_recalls_york_and_keeps_leeds_as_history(home: Path) -> None:
    async with Swarm(env_with(home)) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        await swarm.run_turn(conv.id, user.id, "I live in Leeds.", timeout=120)
        moved = await swarm.run_turn(conv.id, user.id, "Big news: I moved to York last month.", timeout=120)
        assert [m["supersedes"] is not None for m in moved.memories if m["attribute"] == "location"] == [True]
        start, _ = await reply_start(swarm, conv.id, user.id, "Where do I live now?")
        locations = [m.value for m in start.recalled if m.attribute == "location"]
        assert locations == ["York"]
        history = await swarm.memories.history_of(user.id, "location")
        assert [(h.value, h.superseded_by is None) for h in history] == [("York", True), ("Leeds", False)]

        # the facts evolved the foreground instruction: York replaced Leeds, each change a version
        versions = await swarm.instruction_versions(conv.id, user.id)
        location = fact_line_prefix("location")
        assert [v["text"] for v in versions] == [f"{location} Leeds", f"{location} York"]
        assert [v["source"] for v in versions] == ["memory", "memory"]
        assert versions[1]["reason"] == f"memory: location (fact {history[0].id})"
        # "where do I live?" is answered from the stored facts; a reply the model writes is built on the instruction
        assert "York" in start.recalled[0].text and not start.instruction_version
        written, _ = await reply_start(swarm, conv.id, user.id, "Any ideas for this weekend?")
        assert written.instruction_version == 2
        # and it is reversible, as a new version
        assert await swarm.revert_instruction(conv.id, user.id, 1) == 3
        assert await swarm.conversations.instruction(conv.id) == (3, f"{location} Leeds")


async def test_with_consent_ask_facts_wait_for_a_yes(home: Path) -> None:
    env = env_with(home, **{"[routing]": '[memory]\nconsent = "ask"\n\n[routing]'})
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        listener = swarm.listen(conv.id)
        first = await swarm.run_turn(conv.id, user.id, "I live in Leeds.", timeout=120)
        assert first.memories == [] and await swarm.memories.facts(user.id) == []
        asks = [i for i in first.injections if "may remember" in i["text"]]
        assert asks and "I live in Leeds" in asks[0]["text"]
        await swarm.run_turn(conv.id, user.id, "Yes, that's fine.", timeout=120)
        facts = await swarm.memories.facts(user.id)
        assert [(f.value, "consented" in f.method) for f in facts] == [("Leeds", True)]
        seen = []
        while True:
            try:
                ev = await listener.get(timeout=2)
            except TimeoutError:
                break
            if isinstance(ev, (MemoryProposed, MemoryConsent)):
                seen.append(ev)
        listener.close()
        assert isinstance(seen[0], MemoryProposed) and isinstance(seen[-1], MemoryConsent) and seen[-1].approved

        # the yes stored the raw note of that message too
        assert any("Leeds" in m.text for m in await swarm.memories.list(user.id, kind="raw"))

        # and a no drops them — the facts and the raw note: nothing of it is recallable
        await swarm.run_turn(conv.id, user.id, "I work as a glassblower.", timeout=120)
        await swarm.run_turn(conv.id, user.id, "No, please don't.", timeout=120)
        assert [f.value for f in await swarm.memories.facts(user.id)] == ["Leeds"]
        assert await swarm.memories.pending(conv.id) == []
        assert all("glassblower" not in m.text for m in await swarm.memories.list(user.id, limit=1000))
        assert await swarm.memories.search(user.id, "what is my job, glassblower", limit=10) == [] or all(
            "glassblower" not in m.text for m in await swarm.memories.search(user.id, "what is my job, glassblower", limit=10)
        )
        proposed = [e for e in await swarm.journal.replay(conv.id, 0) if e.kind == "memory.proposed"]
        assert proposed and "glassblower" not in proposed[-1].model_dump_json()


async def test_with_consent_never_nothing_of_a_message_is_remembered(home: Path) -> None:
    env = env_with(home, **{"[routing]": '[memory]\nconsent = "never"\n\n[routing]'})
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        result = await swarm.run_turn(conv.id, user.id, "My name is Zed and I live in Quuxton.", timeout=120)
        assert result.settled and result.memories == []
        assert await swarm.memories.count(user.id) == 0
        assert await swarm.memories.pending(conv.id) == []
        assert all("Quuxton" not in m.text for m in await swarm.memories.search(user.id, "where do I live Quuxton", limit=10))
        # the conversation itself is kept: consent is about memory, not about the chat
        assert [m.content for m in await swarm.conversations.history(conv.id, limit=10) if m.role == "user"] == [
            "My name is Zed and I live in Quuxton."
        ]


async def test_a_long_conversation_is_crushed_into_a_summary_the_reply_keeps(home: Path) -> None:
    env = env_with(
        home,
        **{"history = 8": "history = 2", "[routing]": "[memory]\ncrush_after = 2\nwanted_slots = []\n\n[routing]"},
    )
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        for text in ("I am planning a garden.", "I want tomatoes and beans.", "The soil is clay."):
            await swarm.run_turn(conv.id, user.id, text, timeout=120)
        # crushing runs after the turn settles: wait for it
        summaries = []
        async with asyncio.timeout(60):
            while not summaries:
                await asyncio.sleep(0.2)
                summaries = await swarm.memories.list(user.id, kind="summary")
        first_user = (await swarm.conversations.history(conv.id, limit=100))[0]
        assert first_user.id in summaries[-1].sources
        assert len(summaries[-1].sources) >= 2
        # the originals stay in the store
        assert len(await swarm.conversations.history(conv.id, limit=100)) >= 6
        start, _ = await reply_start(swarm, conv.id, user.id, "What should I do next?")
        # the reply was given the running summary, made of the crushed summaries
        assert start.summary
        crushed = " ".join(m.text for m in await swarm.memories.list(user.id, kind="summary"))
        assert all(part.strip() in crushed for part in re.split(r"(?<=[.!?])\s+", start.summary) if part.strip())


async def test_an_unknown_wanted_slot_is_asked_for_once(home: Path) -> None:
    async with Swarm(env_with(home)) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        first = await swarm.run_turn(conv.id, user.id, "What a sunny day.", timeout=120)
        assert [i["reason"] for i in first.injections].count("slot:name") == 1
        second = await swarm.run_turn(conv.id, user.id, "Do you like sunny days?", timeout=120)
        assert "slot:name" not in [i["reason"] for i in second.injections]
        # the note reached the next reply
        rows = await swarm.conversations.injections(conv.id)
        slot = next(r for r in rows if r["reason"] == "slot:name")
        assert slot["consumed_by"] is not None
