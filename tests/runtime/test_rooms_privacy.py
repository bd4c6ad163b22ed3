"""Rooms hold several people: each person's facts are theirs, and no one's private memories reach the others."""

from __future__ import annotations

from pathlib import Path

from shoal.config import Env, Settings, parse_config
from shoal.runtime.swarm import Swarm

from ..conftest import TEST_CONFIG

ROOM = """
[[bots]]
name = "sage"
role = "persona"
instruction = "You are Sage, a calm philosopher."
max_tokens = 12
response_probability = 1.0

[[rooms]]
name = "den"
personas = ["sage"]
"""


def env_for(home: Path) -> Env:
    text = TEST_CONFIG + ROOM
    (home / "shoal.toml").write_text(text)
    return Env(Settings(home=home), parse_config(text))


async def test_in_a_room_facts_belong_to_who_said_them_and_recall_stays_in_the_room(home: Path) -> None:
    async with Swarm(env_for(home)) as swarm:
        ana = await swarm.conversations.ensure_user("ana")
        bob = await swarm.conversations.ensure_user("bob")
        private = (await swarm.conversations.create_conversation(ana.id)).id
        assert (await swarm.run_turn(private, ana.id, "Hi, my name is Ana and I live in Porto.", timeout=240)).settled
        room = await swarm.create_room("den", ana.id, [bob.id])
        said = await swarm.run_turn(room.id, bob.id, "Hello everyone, my name is Bob and I live in Leeds.", timeout=240)
        assert said.settled
        asked = await swarm.run_turn(room.id, ana.id, "Where do I live? Tell me about Porto.", timeout=240)
        assert asked.settled

        ana_facts = {(f.attribute, f.value) for f in await swarm.memories.facts(ana.id)}
        bob_facts = {(f.attribute, f.value) for f in await swarm.memories.facts(bob.id)}
        # Bob's words are Bob's: they did not replace Ana's name or city
        assert {("name", "Ana"), ("location", "Porto")} <= ana_facts
        assert {("name", "Bob"), ("location", "Leeds")} <= bob_facts
        assert not {v for _, v in ana_facts} & {"Bob", "Leeds"}
        # Ana's private chat recalls only her own
        found = await swarm.memories.search(ana.id, "where do I live, what is my name", limit=10)
        assert all("Leeds" not in m.text and "Bob" not in m.text for m in found)
        # what the room sees (every event of it) never carries Ana's private memories
        room_events = await swarm.journal.replay(room.id, 0)
        private_ids = {m.id for m in await swarm.memories.list(ana.id) if m.conversation_id == private}
        for ev in room_events:
            dumped = ev.model_dump_json()
            assert not any(i in dumped for i in private_ids), ev.kind
        recalled = [m for ev in room_events if ev.kind == "memory.done" for m in ev.recalled]  # type: ignore[attr-defined]
        assert all(m.id not in private_ids for m in recalled)
        # a room's replies are nobody's private memory, and its instruction has no "the user is ..." line
        assert all(m.conversation_id != room.id for m in await swarm.memories.list(ana.id, kind="raw") if m.method.startswith("reply"))
        _version, instruction = await swarm.conversations.instruction(room.id)
        assert "Remembered about the user" not in instruction


async def test_a_persona_whose_reply_fails_gives_back_its_speaking_slot(home: Path) -> None:
    from shoal.config import BotConfig, RateLimits
    from shoal.runtime.rooms import RateLimiter, RoomAnalyser

    async with Swarm(env_for(home)) as swarm:
        persona = BotConfig(name="sage", role="persona", rate=RateLimits(per_minute=1))
        analyser = RoomAnalyser(RateLimiter(swarm.conversations), seed=1)
        room = swarm.config.room("den")
        first = await analyser.decide(room, [persona], "What is the meaning of life?", turn="t1")
        assert first.answer == ["sage"]
        assert await analyser.limiter.blocked(persona) == "per_minute limit 1 reached"
        analyser.answered("sage", "t1", ok=False)  # its server failed: the slot comes back
        assert await analyser.limiter.blocked(persona) is None
        second = await analyser.decide(room, [persona], "And the meaning of death?", turn="t2")
        assert second.answer == ["sage"]
        analyser.answered("sage", "t2", ok=True)  # a reply that was written keeps its slot
        assert await analyser.limiter.blocked(persona) == "per_minute limit 1 reached"


async def test_a_limit_counts_messages_by_when_they_were_stored_not_granted(home: Path) -> None:
    """Two per minute: a slow reply granted first and a quick one granted second must both count a minute on
    from when they were stored — counted by grant time, a third landed inside that minute."""
    from shoal.config import BotConfig, RateLimits
    from shoal.runtime.rooms import RateLimiter

    async with Swarm(env_for(home)) as swarm:
        persona = BotConfig(name="sage", role="persona", rate=RateLimits(per_minute=2))
        limiter = RateLimiter(swarm.conversations)
        t0 = 1_000_000.0
        slow = await limiter.reserve(persona, at=t0)
        quick = await limiter.reserve(persona, at=t0 + 1)
        assert slow is not None and quick is not None
        assert await limiter.blocked(persona, at=t0 + 2) == "per_minute limit 2 reached"  # both still being written
        limiter.sent("sage", quick, when=t0 + 2)
        limiter.sent("sage", slow, when=t0 + 30)
        # a minute after the grants, both messages are still inside the last minute
        assert await limiter.blocked(persona, at=t0 + 61) == "per_minute limit 2 reached"
        assert await limiter.blocked(persona, at=t0 + 62.5) is None  # the quick one has left it
        assert await limiter.reserve(persona, at=t0 + 62.5) is not None
        assert await limiter.blocked(persona, at=t0 + 63) == "per_minute limit 2 reached"
