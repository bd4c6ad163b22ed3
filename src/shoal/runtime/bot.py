"""Bots are message pumps: one bounded inbox, one consumer, named handlers.

A message of type ``UserTurn`` is handled by ``on_user_turn``; messages with
no handler are ignored. Handlers must be quick: long work (a reply, a
thought) is spawned as a task the bot owns, so the inbox keeps moving and
control messages (cancel, status) are answered at once.

A message from a durable subject on NATS comes with a ``Receipt``: it is
acknowledged when the handler has returned and the work spawned with
``self.held()`` is done (docs/mesh.md, "Acknowledged when handled").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, ClassVar

from pydantic import BaseModel

from shoal.backends.base import Backend, generate
from shoal.config import BotConfig, ShoalConfig
from shoal.errors import NotFound
from shoal.runtime.inbox import Inbox
from shoal.runtime.messages import BotError, Control, Event, handler_name
from shoal.runtime.mesh import Delivery, Mesh, Receipt, current_receipt
from shoal.runtime.tasks import TaskOwner
from shoal.types import ChatMessage, Chunk, Completion, GenerateRequest, Priority, SamplingParams

if TYPE_CHECKING:
    from shoal.memory.store import MemoryStore
    from shoal.store.conversations import ConversationStore

log = logging.getLogger(__name__)


@dataclass
class BotContext:
    """What every bot may use: the mesh, the stores, the backends, the config."""

    mesh: Mesh
    conversations: "ConversationStore"
    memories: "MemoryStore"
    backends: Mapping[str, Backend]
    config: ShoalConfig
    #: spawns hot action bots (set by the swarm)
    actions: Any = None
    #: decides who answers in rooms (set by the swarm)
    rooms: Any = None
    #: the tool registry (tools.registry.ToolRegistry; set by the swarm)
    tools: Any = None


class Bot:
    role: ClassVar[str] = ""
    priority: ClassVar[Priority] = Priority.THINKING
    #: subject patterns this bot's inbox receives
    subscribes: ClassVar[tuple[str, ...]] = ()
    #: control requests that only read the stores: the process holding the database may answer them
    #: itself when the bot runs in a worker (the mesh on NATS, docs/mesh.md "Reads answered where the data is")
    reads: ClassVar[tuple[type[Control], ...]] = ()

    def __init__(self, config: BotConfig, ctx: BotContext) -> None:
        self.config = config
        self.name = config.name
        self.ctx = ctx
        # backpressure, never loss: a dropped route would leave a turn unsettled.
        # Handlers are quick (long work is spawned), so the inbox drains fast.
        self.inbox: Inbox[Delivery] = Inbox(config.inbox, "block", name=f"bot.{self.name}")
        self.tasks = TaskOwner(f"bot.{self.name}")
        self._subs: list[Any] = []
        self._consumer: asyncio.Task[None] | None = None
        self._seq = itertools.count(1)
        self.errors = 0
        #: receipts of delivered messages not settled yet (handed back if the bot stops first)
        self._receipts: set[Receipt] = set()

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        for pattern in self.subscribes:
            self._subs.append(self.ctx.mesh.subscribe(pattern, self.inbox, self.handles))
        self._subs.append(self.ctx.mesh.serve(f"bot.{self.name}.control", self._control))
        self._consumer = asyncio.create_task(self._consume(), name=f"bot.{self.name}:inbox")

    async def stop(self) -> None:
        """Stop intake, cancel and await work, in that order."""
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        self.inbox.close()
        if self._consumer:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        await self.tasks.close()
        # what was never handled (still queued, or work cancelled): back to the mesh for another instance
        while (item := self.inbox.get_nowait()) is not None:
            if len(item) > 2:
                self._receipts.add(item[2])  # type: ignore[misc]
        for receipt in list(self._receipts):
            receipt.release(ok=False)
        self._receipts.clear()

    def handles(self, msg: BaseModel) -> bool:
        """Only messages with a handler are queued."""
        return hasattr(self, handler_name(msg))

    async def _consume(self) -> None:
        while True:
            item = await self.inbox.get()
            msg = item[1]
            receipt: Receipt | None = item[2] if len(item) > 2 else None  # type: ignore[misc]
            if receipt is not None:
                self._receipts.add(receipt)
            token = current_receipt.set(receipt)
            try:
                handler = getattr(self, handler_name(msg), None)
                if handler is not None:
                    await handler(msg)
            except asyncio.CancelledError:
                if receipt is not None:
                    receipt.release(ok=False)
                raise
            except Exception as exc:  # a handler bug must not kill the bot
                self.errors += 1
                log.exception("bot %s failed handling %s", self.name, type(msg).__name__)
                if isinstance(msg, Event):
                    await self.emit(BotError(conversation=msg.conversation, turn=msg.turn, error=str(exc)))
            finally:
                current_receipt.reset(token)
                if receipt is not None:
                    receipt.release()  # the handler's hold; work it spawned with held() holds its own
                    if len(self._receipts) > 64:
                        self._receipts = {r for r in self._receipts if not r.settled}

    def held(self) -> Receipt | None:
        """The receipt of the message being handled, held once more for work that outlives the handler.

        Pass it to ``self.tasks.spawn(..., receipt=)`` (released when the task ends) or release it
        yourself; the message is acknowledged only when every hold is released. None in-process.
        """
        receipt = current_receipt.get()
        return receipt.hold() if receipt is not None else None

    async def _control(self, msg: Control) -> BaseModel:
        handler = getattr(self, handler_name(msg), None)
        if handler is None:
            raise NotFound(f"bot '{self.name}' does not handle '{msg.kind}'")
        result: BaseModel = await handler(msg)
        return result

    def reconfigured(self) -> None:
        """The bot's config changed in place (reload, web UI): refresh anything built from it."""

    # -- talking --------------------------------------------------------------
    async def emit(self, event: Event) -> None:
        event.bot = self.name
        event.bot_seq = next(self._seq)
        await self.ctx.mesh.publish(event.subject, event)

    async def ask(self, bot: str, msg: Control, *, timeout: float) -> BaseModel:
        return await self.ctx.mesh.request(f"bot.{bot}.control", msg, timeout=timeout)

    # -- the model ------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        try:
            return self.ctx.backends[self.config.server]
        except KeyError:
            raise NotFound(
                f"bot '{self.name}' uses server '{self.config.server}', which is not in the cluster",
                hint="`shoal cluster status` lists the servers; fix the bot's server in shoal.toml",
            ) from None

    def request(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: tuple[str, ...] = (),
    ) -> GenerateRequest:
        return GenerateRequest(
            messages=messages,
            model=self.config.model,
            sampling=SamplingParams(
                max_tokens=max_tokens or self.config.max_tokens,
                min_tokens=0 if json_schema else self.config.min_tokens,
                temperature=self.config.temperature if temperature is None else temperature,
                stop=stop,
                repeat_penalty=self.config.repeat_penalty,
                presence_penalty=self.config.presence_penalty,
                frequency_penalty=self.config.frequency_penalty,
                dry_multiplier=self.config.dry_multiplier,
            ),
            json_schema=json_schema,
            priority=self.priority,
            rank=self.config.rank,
            owner=self.name,
            adapter=served_adapter(self.name, self.config.adapter),
        )

    def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        return self.backend.stream(req)

    async def stream_text(self, req: GenerateRequest, parts: list[str], delta: Callable[[str], Event] | None = None) -> None:
        """Stream ``req`` into ``parts``, publishing ``delta(text)`` for every piece when given.

        ``parts`` holds what arrived even when the stream ends in an error or
        a cancellation, so the caller can keep the partial text.
        """
        async for chunk in self.stream(req):
            if chunk.text:
                parts.append(chunk.text)
                if delta is not None:
                    await self.emit(delta(chunk.text))

    async def complete(self, req: GenerateRequest) -> Completion:
        return await generate(self.backend, req)


def served_adapter(bot: str, setting: str) -> str:
    """The adapter file a bot generates with ("" = none); a missing one is logged, never fatal (issue 14)."""
    if not setting:
        return ""
    from shoal.learn.adapters import resolve_served

    return resolve_served(bot, setting)
