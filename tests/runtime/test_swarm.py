"""The whole swarm on the embedded model: real engine, real SQLite, real bots."""

from __future__ import annotations

import asyncio

from shoal.config import Env, Settings, parse_config
from shoal.memory.store import keywords
from shoal.runtime.messages import ReplyDelta, ReplyEnd, ReplyStart, ThoughtDelta, ThoughtEnd, ThoughtStart
from shoal.runtime.swarm import Swarm

BOB = "Hi! My name is Bob and I live in Leeds."


async def test_a_turn_streams_a_reply_thinks_and_remembers_grounded_facts(env: Env) -> None:
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        result = await swarm.run_turn(conv.id, user.id, BOB, timeout=120)

        assert result.settled and result.reply_status == "complete" and result.reply.strip()
        assert result.routed_to == ["memory", "thinker"]
        assert result.thoughts and result.thoughts[0]["bot"] == "thinker" and result.thoughts[0]["text"]
        values = {m["value"] for m in result.memories}
        assert {"Bob", "Leeds"} <= values
        for m in result.memories:
            assert m["source"] == result.turn
            assert keywords(m["text"]) <= keywords(BOB), m  # no word the user did not say

        # everything is in the store, with provenance
        history = await swarm.conversations.history(conv.id, limit=10)
        assert [m.role for m in history] == ["user", "assistant"]
        assert history[1].content == result.reply and history[1].reply_to == result.turn
        thoughts = await swarm.conversations.thoughts(conv.id)
        assert thoughts[0]["status"] == "done" and thoughts[0]["turn_id"] == result.turn
        facts = await swarm.memories.facts(user.id)
        assert {f.value for f in facts} >= {"Bob", "Leeds"}
        assert all(f.sources == [result.turn] for f in facts)
        # the reply's note is written after the reply ends (from the stored message), not before the turn settles
        for _ in range(300):
            raws = await swarm.memories.list(user.id, kind="raw")
            if {r.text for r in raws} >= {BOB, result.reply}:
                break
            await asyncio.sleep(0.1)
        assert {r.text for r in raws} >= {BOB, result.reply}


async def test_after_a_restart_the_conversation_and_its_facts_come_back(env: Env) -> None:
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        first = await swarm.run_turn(conv.id, user.id, BOB, timeout=120)
    assert first.settled

    async with Swarm(Env(Settings(home=env.settings.home), env.config)) as swarm:
        user = await swarm.local_user()
        listener = swarm.listen(conv.id)
        result = await swarm.run_turn(conv.id, user.id, "Where do I live?", timeout=120)
        start = None
        while True:
            ev = await listener.get(timeout=5)
            if isinstance(ev, ReplyStart) and ev.turn == result.turn:
                start = ev
                break
        listener.close()
        history = await swarm.conversations.history(conv.id, limit=10)
    assert history[0].content == BOB and history[0].id == first.turn
    # (a further assistant message may follow: the primary's "I remember" interjection)
    assert [m.role for m in history][:4] == ["user", "assistant", "user", "assistant"]
    assert all(m.role == "assistant" for m in history[4:])
    recalled = {m.value for m in start.recalled}
    assert "Leeds" in recalled, start.recalled


async def test_the_foreground_streams_while_a_thinker_is_still_generating(home, test_config_text) -> None:  # type: ignore[no-untyped-def]
    # a thinker that must think for 160 tokens, so the overlap is certain
    text = test_config_text.replace(
        'name = "thinker"\nrole = "thinker"\nmax_tokens = 48', 'name = "thinker"\nrole = "thinker"\nmax_tokens = 160\nmin_tokens = 160'
    )
    assert text != test_config_text
    env = Env(Settings(home=home), parse_config(text))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        listener = swarm.listen(conv.id)
        first = await swarm.send(conv.id, user.id, "What should I plan for my trip to Japan?")
        thought_id = None
        deltas = 0
        reply1_done = False
        async with asyncio.timeout(60):
            while deltas < 10 or not reply1_done:
                ev = await listener.get()
                if isinstance(ev, ThoughtStart) and ev.turn == first.message_id:
                    thought_id = ev.thought_id
                elif isinstance(ev, ThoughtDelta) and ev.thought_id == thought_id:
                    deltas += 1
                elif isinstance(ev, ReplyEnd) and ev.turn == first.message_id:
                    reply1_done = True
                assert not (isinstance(ev, ThoughtEnd) and ev.thought_id == thought_id), "thought ended too early"
        # the thinker is mid-thought; a new turn that is not routed to it
        second = await swarm.send(conv.id, user.id, "ok")
        order: list[str] = []
        async with asyncio.timeout(90):
            while "thought.end" not in order or "reply.end" not in order:
                ev = await listener.get()
                if isinstance(ev, ReplyDelta) and ev.turn == second.message_id and "reply.delta" not in order:
                    order.append("reply.delta")
                elif isinstance(ev, ReplyEnd) and ev.turn == second.message_id:
                    order.append("reply.end")
                elif isinstance(ev, ThoughtDelta) and ev.thought_id == thought_id and "reply.delta" in order:
                    if "thought.delta after reply" not in order:
                        order.append("thought.delta after reply")
                elif isinstance(ev, ThoughtEnd) and ev.thought_id == thought_id:
                    order.append("thought.end")
        listener.close()
    # the reply began while the thought was still streaming, and the thought went on
    assert order.index("reply.delta") < order.index("thought.end")
    assert "thought.delta after reply" in order


async def test_an_empty_or_oversized_message_is_refused_and_nothing_is_stored(env: Env) -> None:
    from shoal.errors import BadInput

    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        for bad in ("   ", "x" * 20_000):
            try:
                await swarm.send(conv.id, user.id, bad)
            except BadInput as exc:
                assert exc.hint or "empty" in exc.message
            else:
                raise AssertionError("accepted a bad message")
        assert await swarm.conversations.history(conv.id, limit=5) == []


async def test_a_thinker_answers_what_it_is_thinking_from_its_live_buffer(home, test_config_text) -> None:  # type: ignore[no-untyped-def]
    text = test_config_text.replace(
        'name = "thinker"\nrole = "thinker"\nmax_tokens = 48', 'name = "thinker"\nrole = "thinker"\nmax_tokens = 200\nmin_tokens = 200'
    )
    env = Env(Settings(home=home), parse_config(text))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        listener = swarm.listen(conv.id)
        await swarm.send(conv.id, user.id, "Should I learn the piano or the guitar?")
        n = 0
        async with asyncio.timeout(60):
            while n < 8:
                if isinstance(await listener.get(), ThoughtDelta):
                    n += 1
        listener.close()
        thinker = swarm.bots["thinker"]
        assert thinker.is_thinking(conv.id)  # type: ignore[attr-defined]
        [status] = await swarm.thinker_status(conv.id)
        assert status.thinking and status.text.strip()
        partial = status.text
        # asked again later, the buffer has grown: it is live, not a snapshot
        await asyncio.sleep(1.0)
        [later] = await swarm.thinker_status(conv.id)
        assert later.text.startswith(partial) and len(later.text) > len(partial)


async def test_memory_scopes_limit_what_bots_read_and_write(home, test_config_text) -> None:  # type: ignore[no-untyped-def]
    # the conversation bot may not read the user's memories
    blind = test_config_text.replace('name = "conversation"\nrole = "conversation"', 'name = "conversation"\nrole = "conversation"\nmemory = { read = [] }')
    assert blind != test_config_text
    env = Env(Settings(home=home), parse_config(blind))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        await swarm.run_turn(conv.id, user.id, BOB, timeout=120)
        assert {f.value for f in await swarm.memories.facts(user.id)} >= {"Bob", "Leeds"}
        second = await swarm.run_turn(conv.id, user.id, "Where do I live in Leeds?", timeout=120)
        assert second.recalled == []

    # a memory bot that may write nothing stores nothing
    mute = test_config_text.replace('name = "memory"\nrole = "memory"', 'name = "memory"\nrole = "memory"\nmemory = { write = [] }')
    assert mute != test_config_text
    other = home / "other"
    other.mkdir()
    env = Env(Settings(home=other), parse_config(mute))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        result = await swarm.run_turn(conv.id, user.id, BOB, timeout=120)
        assert result.settled and result.memories == []
        assert await swarm.memories.list(user.id, kind=None) == []
