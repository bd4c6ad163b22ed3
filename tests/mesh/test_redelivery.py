"""A bot acknowledges a durable message only once it has handled it, and one delivered again is not done twice.

The receipts here are the mesh's own (``runtime/mesh.Receipt``), put in the bot's inbox as the NATS mesh puts
them; the bot, the store and the model are the real ones (in-process swarm)."""

from __future__ import annotations

import asyncio
import time

from shoal.config import Env
from shoal.runtime.mesh import Receipt
from shoal.runtime.messages import Route
from shoal.runtime.swarm import Swarm


async def settled_within(settled: list, timeout: float = 120.0) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while not settled:
        assert time.monotonic() < deadline, "the receipt never settled"
        await asyncio.sleep(0.02)


async def test_a_route_is_acknowledged_when_its_thought_ends_and_once_done_is_not_thought_again(env: Env) -> None:
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        msg = await swarm.conversations.add_message(conv.id, "user", "What should I cook tonight?", user_id=user.id)
        thinker = swarm.bots["thinker"]
        route = Route(conversation=conv.id, turn=msg.id, targets=["thinker"], bot="primary", bot_seq=1)

        # first delivery: the thought runs; the route is acknowledged when it has ended, not when it arrived
        settled: list[tuple[bool, bool]] = []
        first = Receipt(lambda ok: settled.append((ok, thinker.is_thinking(conv.id))))
        await thinker.inbox.put((route.subject, route, first))
        await settled_within(settled)
        assert settled == [(True, False)]  # acknowledged, and nothing was thinking about it any more by then
        rows = await swarm.conversations.thoughts(conv.id, turn_id=msg.id)
        assert [r["status"] for r in rows] == ["done"]

        # delivered again (its acknowledgement was lost with the process that sent it): the store shows the
        # thought done, so the route is only acknowledged
        again: list[bool] = []
        await thinker.inbox.put((route.subject, route, Receipt(again.append, redelivered=True)))
        await settled_within(again)
        assert again == [True] and not thinker.is_thinking(conv.id)
        assert await swarm.conversations.thoughts(conv.id, turn_id=msg.id) == rows  # no second thought

        # a thought stopped by a shutdown hands its route back (NAK) for another instance
        other = await swarm.conversations.add_message(conv.id, "user", "And for dessert?", user_id=user.id)
        stopped: list[bool] = []
        third = Route(conversation=conv.id, turn=other.id, targets=["thinker"], bot="primary", bot_seq=2)
        await thinker.inbox.put((third.subject, third, Receipt(stopped.append)))
        deadline = time.monotonic() + 60
        while not thinker.is_thinking(conv.id):
            assert time.monotonic() < deadline and not stopped, stopped
            await asyncio.sleep(0.01)
        await thinker.stop()
        assert stopped == [False]
