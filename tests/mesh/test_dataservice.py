"""The data service: a worker's bots reach history and memory only within their role and the turn grants."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
from pathlib import Path
from typing import AsyncIterator

import pytest

from shoal.config import parse_config
from shoal.errors import NotFound, PermissionDenied
from shoal.memory.store import MemoryStore, NewMemory
from shoal.runtime import nats_wire as wire
from shoal.runtime.dataservice import ROLE_METHODS, SUBJECT, DataService, Grants, RemoteStore
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.nats_mesh import connect
from shoal.store.conversations import Conversation, ConversationStore, User
from shoal.store.db import Database

from .conftest import MESH_CONFIG, NatsServer


def test_every_method_a_role_may_call_exists_on_its_store() -> None:
    stores = {"conversations": ConversationStore, "memories": MemoryStore}
    for role, by_store in ROLE_METHODS.items():
        for store, methods in by_store.items():
            for name in methods:
                fn = getattr(stores[store], name, None)
                assert fn is not None and inspect.iscoroutinefunction(fn), f"{role}: {store}.{name}"


class World:
    def __init__(
        self, db: Database, conversations: ConversationStore, memories: MemoryStore, data: DataService, nc: object,
        server: NatsServer,
    ) -> None:
        self.db, self.conversations, self.memories, self.data, self.nc = db, conversations, memories, data, nc
        self.server = server

    def remote(self, store: str, bot: str) -> RemoteStore:
        return RemoteStore(self.nc, store, bot, timeout=5)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    server = NatsServer(tmp_path / "nats").start()
    db = await Database(tmp_path / "shoal.db").open()
    conversations, memories = ConversationStore(db), MemoryStore(db)
    if memories.vectors:
        await memories.embedder.warm_up()  # the server loads it at start, off the request path
    cfg = MeshConfig(kind="nats", url=server.url)
    host_nc, worker_nc = await connect(cfg, "host"), await connect(cfg, "worker")
    data = DataService(host_nc, conversations, memories, parse_config(MESH_CONFIG), Grants(seconds=60))
    await data.start()
    try:
        yield World(db, conversations, memories, data, worker_nc, server)
    finally:
        await data.stop()
        await worker_nc.close()
        await host_nc.close()
        await db.close()
        server.stop()


async def test_a_worker_bot_reads_and_writes_the_granted_conversation(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    msg = await world.conversations.add_message(conv.id, "user", "I live in York.", user_id=ana.id)
    world.data.grants.give(conv.id, {ana.id})
    convs = world.remote("conversations", "memory")
    assert (await convs.get_conversation(conv.id)).user_id == ana.id
    assert (await convs.get_message(msg.id)).content == "I live in York."
    history = await world.remote("conversations", "thinker").history(conv.id, limit=5)
    assert [m.content for m in history] == ["I live in York."]
    mems = world.remote("memories", "memory")
    m, old = await mems.add(ana.id, "raw", "I live in York.", sources=[msg.id], conversation_id=conv.id)
    assert old is None and (await world.memories.get(m.id)).text == "I live in York."
    assert (await mems.latest_raw(ana.id, conv.id)).id == m.id


async def test_redelivered_memory_writes_store_nothing_twice(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    msg = await world.conversations.add_message(conv.id, "user", "My name is Ana.", user_id=ana.id)
    world.data.grants.give(conv.id, {ana.id})
    mems = world.remote("memories", "memory")
    items = [
        NewMemory(ana.id, "raw", "My name is Ana.", sources=[msg.id], method="message", conversation_id=conv.id),
        NewMemory(ana.id, "fact", "My name is Ana.", "name", "Ana", [msg.id], "rule", None, conv.id, facts=[("name", "Ana")]),
    ]
    first = await mems.add_many(items)
    again = await mems.add_many(items)  # the same turn handled again after a redelivery
    assert [m.id for m, _ in first] == [m.id for m, _ in again]
    assert await world.memories.count(ana.id) == 2


async def two_people(world: World) -> tuple[User, Conversation, User, Conversation]:
    """ana and bob, a conversation each (nothing granted yet)."""
    ana = await world.conversations.ensure_user("ana")
    bob = await world.conversations.ensure_user("bob")
    return ana, await world.conversations.create_conversation(ana.id), bob, await world.conversations.create_conversation(bob.id)


async def test_a_worker_cannot_read_another_users_data(world: World) -> None:
    ana, ana_conv, bob, bob_conv = await two_people(world)
    bob_msg = await world.conversations.add_message(bob_conv.id, "user", "My secret is 42.", user_id=bob.id)
    await world.memories.add(bob.id, "fact", "My secret is 42.", attribute="other", value="42", sources=[bob_msg.id])
    world.data.grants.give(ana_conv.id, {ana.id})  # ana's turn: only ana's conversation is granted
    convs, mems = world.remote("conversations", "memory"), world.remote("memories", "memory")
    with pytest.raises(NotFound):
        await convs.get_conversation(bob_conv.id)
    with pytest.raises(NotFound):
        await convs.get_message(bob_msg.id)
    with pytest.raises(NotFound):
        await mems.facts(bob.id)
    with pytest.raises(NotFound):
        await mems.search(bob.id, "secret")
    with pytest.raises(NotFound):  # bob's id under ana's conversation
        await mems.search(bob.id, "secret", conversation=ana_conv.id)
    with pytest.raises(NotFound):  # a memory for bob slipped into ana's conversation
        await mems.add_many([NewMemory(bob.id, "raw", "x", sources=[], conversation_id=ana_conv.id)])
    with pytest.raises(NotFound):  # bob's pending facts
        await mems.pending(bob_conv.id)
    assert await mems.facts(ana.id) == []
    assert world.data.refused >= 7


async def test_a_bot_calls_only_its_roles_methods(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    world.data.grants.give(conv.id, {ana.id})
    with pytest.raises(PermissionDenied, match="may not call"):
        await world.remote("memories", "thinker").facts(ana.id)  # a thinker reads no memories
    with pytest.raises(PermissionDenied, match="may not call"):
        await world.remote("conversations", "memory").add_message(conv.id, "assistant", "forged")
    with pytest.raises(PermissionDenied, match="may not call"):
        await world.remote("conversations", "primary").history(conv.id, limit=5)  # the primary never runs remotely
    with pytest.raises(PermissionDenied, match="not a bot"):
        await world.remote("conversations", "intruder").history(conv.id, limit=5)


async def test_a_grant_lapses(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    world.data.grants = Grants(seconds=-1)  # already over
    world.data.grants.give(conv.id, {ana.id})
    with pytest.raises(NotFound):
        await world.remote("conversations", "thinker").history(conv.id, limit=5)


async def test_a_call_asked_twice_with_its_id_runs_once_and_gets_the_first_answer(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    msg = await world.conversations.add_message(conv.id, "user", "I am vegan.", user_id=ana.id)
    world.data.grants.give(conv.id, {ana.id})
    kwargs = {"user_id": ana.id, "conversation_id": conv.id, "facts": [], "sources": [msg.id], "bot": "memory",
              "note": "I am vegan."}
    body = json.dumps({"bot": "memory", "store": "memories", "method": "propose", "args": [],
                       "kwargs": wire.to_wire(kwargs), "call": "c0ffee"}).encode()
    first = await world.nc.request(SUBJECT, body, timeout=10)  # type: ignore[attr-defined]
    again = await world.nc.request(SUBJECT, body, timeout=10)  # type: ignore[attr-defined]  # its answer was lost, say
    assert first.data == again.data and world.data.repeated == 1
    assert len(await world.memories.pending(conv.id)) == 1  # proposed once, not twice
    other = json.loads(body)
    other["call"] = "another"  # the same arguments in another call: a call of its own
    await world.nc.request(SUBJECT, json.dumps(other).encode(), timeout=10)  # type: ignore[attr-defined]
    assert len(await world.memories.pending(conv.id)) == 2 and world.data.repeated == 1


async def test_a_call_lost_with_a_nats_server_that_died_is_asked_again_after_the_restart(world: World) -> None:
    ana = await world.conversations.ensure_user("ana")
    conv = await world.conversations.create_conversation(ana.id)
    msg = await world.conversations.add_message(conv.id, "user", "I am vegan.", user_id=ana.id)
    world.data.grants.give(conv.id, {ana.id})
    remote = RemoteStore(world.nc, "memories", "memory", timeout=60)
    assert world.server.proc is not None
    os.kill(world.server.proc.pid, signal.SIGSTOP)  # frozen: what reaches its socket now is never read
    call = asyncio.ensure_future(remote.propose(ana.id, conv.id, [], sources=[msg.id], bot="memory", note="I am vegan."))
    await asyncio.sleep(0.5)  # the client's flusher writes the request into the frozen server's socket
    assert not call.done()
    world.server.stop(hard=True)  # the request dies with it
    world.server.start()  # same port, same store: both clients reconnect
    rows = await asyncio.wait_for(call, 60)
    assert [r["text"] for r in rows] == ["I am vegan."]
    assert [r["text"] for r in await world.memories.pending(conv.id)] == ["I am vegan."]  # and it ran once


async def test_a_thinker_reads_back_only_its_own_thoughts_of_a_granted_conversation(world: World) -> None:
    # a route delivered again: the thinker asks the store whether it already thought about the turn
    ana, ana_conv, _, bob_conv = await two_people(world)
    turn = await world.conversations.add_message(ana_conv.id, "user", "What should I cook?", user_id=ana.id)
    for conv, bot, tid in ((ana_conv.id, "thinker", "t-mine"), (ana_conv.id, "critic", "t-other"), (bob_conv.id, "thinker", "t-bob")):
        await world.conversations.save_thought(tid, conv, bot=bot, turn_id=turn.id, text="...", status="done", started_at=1.0)
    world.data.grants.give(ana_conv.id, {ana.id})
    thinker = world.remote("conversations", "thinker")
    rows = await thinker.thoughts(ana_conv.id, turn_id=turn.id, bot="thinker")
    assert [r["id"] for r in rows] == ["t-mine"]
    with pytest.raises(PermissionDenied, match="only its own thoughts"):  # another bot's, or all of them
        await thinker.thoughts(ana_conv.id, turn_id=turn.id, bot="critic")
    with pytest.raises(PermissionDenied):
        await thinker.thoughts(ana_conv.id, turn_id=turn.id)
    with pytest.raises(NotFound):  # bob's conversation was not granted
        await thinker.thoughts(bob_conv.id, turn_id=turn.id, bot="thinker")
    with pytest.raises(PermissionDenied):  # the memory bot has no business with thoughts
        await world.remote("conversations", "memory").thoughts(ana_conv.id, bot="memory")
