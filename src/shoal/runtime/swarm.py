"""The swarm: store, backends, mesh, journal and bots, started and stopped as one.

Shutdown order is fixed: stop intake (bots unsubscribe), cancel and await
their work, let the journal record what was published, then close backends
and the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collections.abc import Mapping

from shoal.backends.base import Backend
from shoal.config import Env, ShoalConfig
from shoal.errors import BadInput, NotFound
from shoal.memory.store import MemoryStore
from shoal.runtime.access import can
from shoal.runtime.bot import Bot, BotContext
from shoal.runtime.journal import Journal, Listener
from shoal.runtime.mesh import InProcessMesh, Mesh
from shoal.runtime.messages import (
    Event,
    Injection,
    MemoryWrite,
    ReplyEnd,
    ReplyStart,
    StatusQuery,
    StatusResult,
    StopReply,
    ThinkerStatus,
    ThoughtEnd,
    TurnSettled,
    UserTurn,
)
from shoal.store.accounts import Accounts
from shoal.store.conversations import ConversationStore, User
from shoal.store.db import Database

if TYPE_CHECKING:
    from shoal.config import BotConfig
    from shoal.memory.forget import Erased, Eraser

log = logging.getLogger(__name__)


def bot_classes() -> dict[str, type[Bot]]:
    from shoal.bots.conversation import ConversationBot
    from shoal.bots.memory import MemoryBot
    from shoal.bots.primary import PrimaryBot
    from shoal.bots.alarm import AlarmBot
    from shoal.bots.persona import PersonaBot
    from shoal.bots.thinker import ThinkerBot
    from shoal.bots.timer import TimerBot

    return {
        "conversation": ConversationBot,
        "primary": PrimaryBot,
        "thinker": ThinkerBot,
        "memory": MemoryBot,
        "timer": TimerBot,
        "alarm": AlarmBot,
        "persona": PersonaBot,
    }


@dataclass
class TurnResult:
    """Everything one user turn produced, once the background settled."""

    conversation: str
    turn: str
    reply: str = ""
    reply_status: str = ""
    thoughts: list[dict[str, Any]] = field(default_factory=list)
    memories: list[dict[str, Any]] = field(default_factory=list)
    injections: list[dict[str, Any]] = field(default_factory=list)
    interjections: list[str] = field(default_factory=list)
    routed_to: list[str] = field(default_factory=list)
    #: memories the conversation bot was given for its reply
    recalled: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = False
    seconds: float = 0.0
    #: bots the turn was routed to that nobody ran (their worker died)
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "turn": self.turn,
            "reply": self.reply,
            "reply_status": self.reply_status,
            "thoughts": self.thoughts,
            "memories": self.memories,
            "injections": self.injections,
            "interjections": self.interjections,
            "routed_to": self.routed_to,
            "recalled": self.recalled,
            "settled": self.settled,
            "seconds": round(self.seconds, 3),
        }


class ClusterViews(Mapping[str, Backend]):
    """Each server as a bot sees it: the cluster, preferring that server — always the servers of now."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def __getitem__(self, server: str) -> Backend:
        if server not in self.cluster.members:
            raise KeyError(server)
        return self.cluster.view(server)  # type: ignore[no-any-return]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.cluster.members)

    def __len__(self) -> int:
        return len(self.cluster.members)


class Swarm:
    def __init__(self, env: Env | None = None, *, mesh: Mesh | None = None) -> None:
        self.env = env or Env.load()
        self.config = self.env.config
        #: the server's side of the mesh on NATS (docs/mesh.md); None on the in-process mesh
        self.host: Any = None
        if mesh is None and self.config.mesh.kind == "nats":
            from shoal.runtime.nats_host import MeshHost

            self.host = MeshHost(self)
            mesh = self.host.mesh
        self.mesh: Mesh = mesh or InProcessMesh()
        self.db = Database(self.env.settings.db_path)
        self.conversations = ConversationStore(self.db)
        self.memories = MemoryStore(self.db)
        self.accounts = Accounts(self.db)
        self.cluster: Any = None
        self.bots: dict[str, Bot] = {}
        self.journal = Journal(self.mesh, self.conversations)
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def backends(self) -> dict[str, Backend]:
        """The cluster's servers' backends, by server name (the cluster owns and closes them)."""
        if self.cluster is None:
            return {}
        return {name: m.backend for name, m in self.cluster.members.items()}

    async def __aenter__(self) -> "Swarm":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.env.settings.ensure_home()
        await self.db.open()
        if self.host is not None:
            await self.host.connect()
        await self._apply_bot_settings()
        # bots reach their models through the cluster: their own server is
        # preferred, the others take over when it is down or busy (docs/cluster.md).
        # The cluster owns every backend; a changed shoal.toml comes to the swarm,
        # which re-points bots and hands the servers on to the cluster.
        from shoal.cluster.core import Cluster

        self.cluster = Cluster(self.config, config_path=self.env.settings.config_path, on_reload=self.reload)
        await self.cluster.start()
        self._ctx = ctx = BotContext(self.mesh, self.conversations, self.memories, ClusterViews(self.cluster), self.config)
        from shoal.bots.action import ActionPool
        from shoal.runtime.rooms import RateLimiter, RoomAnalyser

        ctx.actions = self.actions = ActionPool(ctx)
        ctx.rooms = self.rooms = RoomAnalyser(RateLimiter(self.conversations))
        from shoal.tools.mcp import connect_servers  # issue 17: the tool registry, with outside MCP servers' tools
        from shoal.tools.registry import build_registry

        ctx.tools = self.tools = build_registry(self.config.tools)
        await connect_servers(self.tools, self.config.tools.mcp)
        ctx.placement = self.host  # type: ignore[attr-defined]
        enabled_servers = {s.name for s in self.config.servers if s.enabled}
        for bc in self.config.bots:
            if bc.enabled and bc.server not in enabled_servers:
                raise NotFound(f"bot '{bc.name}' uses server '{bc.server}', which is disabled")
            if bc.enabled and bc.role != "action" and self._runs_here(bc.name):  # an action is a template
                self.bots[bc.name] = self._make_bot(bc)
        await self.journal.start()
        for bot in self.bots.values():
            await bot.start()
        if self.host is not None:
            await self.host.started()
        self._started = True
        # the embedding model takes seconds to load: do it now, off the request path,
        # then index any memory written before vectors existed
        self._prepare = asyncio.create_task(self._prepare_memory(), name="swarm:memory-warm-up")

    async def _prepare_memory(self) -> None:
        try:
            if self.memories.vectors:
                await self.memories.embedder.warm_up()
                n = await self.memories.reindex()
                if n:
                    log.info("indexed %d memories written before vector search existed", n)
        except Exception as e:  # the swarm runs without vectors rather than not at all
            log.warning(
                "memory search falls back to keywords: the embedding model did not load (%s: %s); "
                "hint: run `make install` to install torch and sentence-transformers",
                type(e).__name__, e,
            )
            log.debug("embedder warm-up failure", exc_info=True)

    #: bot fields that can be changed at run time (web UI / API), persisted in bot_settings
    TUNABLE = ("instruction", "temperature", "max_tokens", "min_tokens", "history", "enabled", "access", "tools")

    async def _apply_bot_settings(self) -> None:
        from shoal.config import BotConfig

        saved = await self.accounts.bot_settings()
        for i, bc in enumerate(self.config.bots):
            changes = {k: v for k, v in saved.get(bc.name, {}).items() if k in self.TUNABLE}
            if changes:
                self.config.bots[i] = BotConfig.model_validate({**bc.model_dump(), **changes})

    async def configure_bot(self, name: str, changes: dict[str, Any]) -> "BotConfig":
        """Change a bot's settings now and for later runs (validated like shoal.toml)."""
        from shoal.config import BotConfig

        unknown = set(changes) - set(self.TUNABLE)
        if unknown:
            raise BadInput(f"cannot change {', '.join(sorted(unknown))} at run time", hint=f"tunable: {', '.join(self.TUNABLE)}")
        current = self.config.bot(name)
        try:
            updated = BotConfig.model_validate({**current.model_dump(), **changes})
        except Exception as exc:
            raise BadInput(f"invalid bot settings: {exc}") from exc
        if current.role in ("conversation", "primary") and not updated.enabled:
            raise BadInput(f"the {current.role} bot cannot be disabled")
        await self.accounts.save_bot_settings(name, {k: updated.model_dump()[k] for k in changes})
        was_enabled = current.enabled
        # mutate in place: every bot holds a reference to its config object
        for field_name in changes:
            setattr(current, field_name, getattr(updated, field_name))
        if was_enabled and not current.enabled and name in self.bots:
            await self.bots.pop(name).stop()
        elif not was_enabled and current.enabled and self._started and name not in self.bots and current.role != "action" and self._runs_here(name):
            bot = self._make_bot(current)
            self.bots[name] = bot
            await bot.start()
        elif name in self.bots:
            self.bots[name].reconfigured()
        return current

    def _make_bot(self, bc: "BotConfig") -> Bot:
        return bot_classes()[bc.role](bc, self._ctx)

    def _running(self) -> list[tuple[str, Any]]:
        """(name, bot) of every bot running now: here, or in a live worker (as its role and config)."""
        here: list[tuple[str, Any]] = list(self.bots.items())
        if self.host is not None:
            from types import SimpleNamespace

            here += [
                (b.name, SimpleNamespace(role=b.role, config=b)) for b in self.config.bots
                if b.name not in self.bots and self.host.registry.alive(b.name)
            ]
        return here

    def _runs_here(self, name: str) -> bool:
        """False for a bot a worker runs (the mesh on NATS, docs/mesh.md)."""
        return self.host is None or self.host.runs_here(name)

    async def reload(self, new: ShoalConfig) -> tuple[list[str], list[str]]:
        """Apply an edited shoal.toml while running: bots, routing, memory, rooms, servers, engine.

        A bot keeps its config object (every part holds a reference) and takes
        the new values; a bot added, removed, enabled, disabled or given
        another role is started or stopped. Settings changed in the web UI
        (``bot_settings``) still win over the file. Returns (what changed,
        what needs a restart to take effect).
        """
        from shoal.config import BotConfig

        cfg = self.config
        changed: list[str] = []
        restart: list[str] = []
        if (new.server.host, new.server.port) != (cfg.server.host, cfg.server.port):
            restart.append(
                f"[server] host/port ({cfg.server.host}:{cfg.server.port} -> {new.server.host}:{new.server.port}): "
                "restart `shoal up` to listen there"
            )
        saved = await self.accounts.bot_settings()
        current = {b.name: b for b in cfg.bots}
        bots: list[BotConfig] = []
        for nb in new.bots:
            overrides = {k: v for k, v in saved.get(nb.name, {}).items() if k in self.TUNABLE}
            if overrides:
                nb = BotConfig.model_validate({**nb.model_dump(), **overrides})
            cur = current.pop(nb.name, None)
            if cur is None:
                bots.append(nb)
                changed.append(f"bot {nb.name} added")
                continue
            if cur != nb:
                changed.append(f"bot {nb.name} updated")
            role_changed = cur.role != nb.role
            running = self.bots.get(cur.name)
            if running is not None and (role_changed or not nb.enabled):
                await self.bots.pop(cur.name).stop()
                running = None
            for name in BotConfig.model_fields:
                setattr(cur, name, getattr(nb, name))
            if running is not None:
                running.reconfigured()
            bots.append(cur)
        for gone in current.values():
            if gone.name in self.bots:
                await self.bots.pop(gone.name).stop()
            changed.append(f"bot {gone.name} removed")
        # the rest of the file: in place, so every bot's view of the config sees it
        for section in ("server", "routing", "memory", "rooms", "engine", "cluster", "servers"):
            if getattr(cfg, section) != getattr(new, section):
                changed.append(f"[{section}]")
            setattr(cfg, section, getattr(new, section))
        cfg.bots = bots
        done, later = self.cluster.apply(new)
        changed += [c for c in done if c not in changed]
        restart += later
        for bc in cfg.bots:
            if bc.enabled and bc.role != "action" and bc.name not in self.bots and self._runs_here(bc.name):
                bot = self._make_bot(bc)
                self.bots[bc.name] = bot
                await bot.start()
        return changed, restart

    async def warm_up(self) -> None:
        """Load the models now (LLMs and the embedder) rather than on the first request."""
        starts = [b.start() for b in self.backends.values() if hasattr(b, "start")]
        await asyncio.gather(*starts, asyncio.shield(self._prepare))

    async def stop(self) -> None:
        if not self._started:
            await self.db.close()
            return
        self._started = False
        self._prepare.cancel()
        await asyncio.gather(self._prepare, return_exceptions=True)
        for bot in self.bots.values():
            await bot.stop()
        await self.journal.stop()
        if getattr(self, "tools", None) is not None:
            await self.tools.aclose()
        if self.host is not None:
            await self.host.stop()
        await self.cluster.stop()
        await self.mesh.close()
        await self.db.close()

    # -- people and conversations ------------------------------------------------------
    async def local_user(self) -> User:
        """The user of a single-person install (the CLI without accounts)."""
        return await self.conversations.ensure_user("local", is_admin=True)

    async def send(self, conversation_id: str, user_id: str, text: str) -> UserTurn:
        """Store the user's message, then publish it. Returns once it is durable."""
        turn = await self.accept(conversation_id, user_id, text)
        await self.publish(turn)
        return turn

    async def publish(self, turn: UserTurn) -> None:
        """Hand an accepted turn to the bots."""
        await self.mesh.publish(turn.subject, turn)

    async def accept(self, conversation_id: str, user_id: str, text: str) -> UserTurn:
        """Validate and store the user's message (durable on return); not yet published."""
        text = text.strip()
        if not text:
            raise BadInput("the message is empty")
        limit = self.config.server.max_message_chars
        if len(text) > limit:
            raise BadInput(
                f"the message is {len(text)} characters; the limit is {limit}",
                hint="split it into several messages (or raise server.max_message_chars)",
            )
        room = (await self.conversations.get_conversation(conversation_id, user_id=user_id)).room
        author = (await self.conversations.get_user(user_id)).name if room else ""
        # in a room the message keeps its author's name (personas see who said what); every
        # message keeps its author's id (a fact belongs to the person who said it)
        msg = await self.conversations.add_message(conversation_id, "user", text, bot=author or None, user_id=user_id)
        return UserTurn(
            conversation=conversation_id, bot="user", turn=msg.id, message_id=msg.id, user_id=user_id, text=text,
            author=author, room=room,
        )

    # -- forgetting ------------------------------------------------------------------------
    def eraser(self) -> "Eraser":
        from shoal.memory.forget import Eraser

        return Eraser(self.db, self.memories, summary_chars=self.config.memory.summary_chars)

    async def forget_memory(self, memory_id: str, user: User) -> "Erased":
        """Forget one of ``user``'s memories and every copy derived from it (its source message stays)."""
        out = await self.eraser().forget_memory(memory_id, user_id=user.id)
        await self._after_erasure(out)
        return out

    async def delete_message(self, message_id: str, user: User) -> "Erased":
        """Delete a message (the author's or, in their conversation, the owner's) with everything made from it."""
        msg = await self.conversations.get_message(message_id)
        await self._quiet(msg.conversation_id, user)
        out = await self.eraser().delete_message(message_id, user_id=user.id, is_admin=user.is_admin)
        await self._after_erasure(out)
        return out

    async def delete_conversation(self, conversation_id: str, user: User) -> "Erased":
        """Delete a conversation (only its owner, or an admin in it) with everything made from it."""
        await self._quiet(conversation_id, user)
        out = await self.eraser().delete_conversation(conversation_id, user_id=user.id, is_admin=user.is_admin)
        await self._after_erasure(out)
        return out

    async def remove_user(self, user_id: str) -> "Erased":
        out = await self.eraser().remove_user(user_id)
        await self._after_erasure(out)
        return out

    async def _quiet(self, conversation_id: str, user: User) -> None:
        """Stop what is being written in a conversation before it is erased."""
        conv = await self.conversations.get_conversation(conversation_id, user_id=user.id)
        if not self._started:
            return
        await self.stop_reply(conv.id)
        await self.cancel_thoughts(conv.id)

    async def _after_erasure(self, out: "Erased") -> None:
        """Bots drop forgotten words they hold in memory; rewritten instructions are announced."""
        from shoal.runtime.messages import InstructionChanged, Scrub

        if not self._started:
            return
        if out.terms:
            for name, bot in self._running():
                if bot.role == "thinker":
                    await self.mesh.request(f"bot.{name}.control", Scrub(terms=out.terms), timeout=5)
        primary = next((b.name for b in self.bots.values() if b.role == "primary"), "primary")
        for conversation, version, text in out.instructions:
            if conversation in out.deleted_conversations:
                continue
            ev = InstructionChanged(
                conversation=conversation, version=version, text=text, reason="a memory was forgotten", bot=primary
            )
            await self.mesh.publish(ev.subject, ev)

    # -- rooms -----------------------------------------------------------------------------
    async def create_room(self, name: str, owner_id: str, members: list[str] | None = None) -> Any:
        """Open a room declared in shoal.toml for ``owner_id`` and ``members`` (user ids)."""
        self.config.room(name)
        for uid in members or []:
            await self.conversations.get_user(uid)
        return await self.conversations.create_room(name, owner_id, members or [])

    async def pair_talk(self, conversation_id: str, user_id: str, a: str, b: str, *, turns: int) -> list[dict[str, Any]]:
        """Plug two personas together: they talk in turn, bounded by the room and their rate limits."""
        room_name = (await self.conversations.get_conversation(conversation_id, user_id=user_id)).room
        if room_name is None:
            raise BadInput("two bots can only talk to each other in a room", hint="create one with `create_room`")
        room = self.config.room(room_name)
        for p in (a, b):
            if p not in room.personas:
                raise BadInput(f"'{p}' is not a persona of room '{room_name}' ({', '.join(room.personas)})")
        if a == b:
            raise BadInput("a persona cannot talk to itself")
        bound = min(turns, room.max_bot_turns)
        said: list[dict[str, Any]] = []
        from shoal.runtime.messages import Speak, Spoken

        for i in range(bound):
            speaker = self.config.bot(a if i % 2 == 0 else b)
            if not await self.rooms.take_slot(speaker, None):
                said.append({"bot": speaker.name, "skipped": await self.rooms.limiter.blocked(speaker)})
                break
            res = await self.mesh.request(
                f"bot.{speaker.name}.control", Speak(conversation=conversation_id, reason=f"talking with {a if speaker.name == b else b}"),
                timeout=self.config.routing.settle_timeout,
            )
            if isinstance(res, Spoken):
                said.append({"bot": speaker.name, "text": res.text, "status": res.status, "message_id": res.message_id})
        return said

    # -- outside events ---------------------------------------------------------------------
    async def fire_alarm(self, hook: str, conversation_id: str, user_id: str, text: str, data: dict[str, Any] | None = None) -> None:
        """Deliver a webhook payload to the alarm bot ``hook`` for one of the user's conversations."""
        from shoal.runtime.messages import FireAlarm

        bot = self.config.bot(hook)
        if bot.role != "alarm" or hook not in self.bots:
            raise NotFound(f"no alarm named '{hook}'", hint="declare a [[bots]] entry with role = \"alarm\"")
        await self.conversations.get_conversation(conversation_id, user_id=user_id)
        await self.mesh.request(
            f"bot.{hook}.control", FireAlarm(conversation=conversation_id, text=text, data=data or {}), timeout=15
        )

    # -- the evolving instruction -------------------------------------------------------------
    async def instruction_versions(self, conversation_id: str, user_id: str) -> list[dict[str, Any]]:
        await self.conversations.get_conversation(conversation_id, user_id=user_id)
        return await self.conversations.instruction_versions(conversation_id)

    async def revert_instruction(self, conversation_id: str, user_id: str, version: int) -> int:
        """Restore an earlier version (0: the bot's own instruction alone) as a new version."""
        versions = await self.instruction_versions(conversation_id, user_id)
        if version == 0:
            text = ""
        else:
            found = [v for v in versions if v["version"] == version]
            if not found:
                raise NotFound(f"no instruction version {version} in this conversation", hint=f"versions: 0..{len(versions)}")
            text = found[0]["text"]
        primary = next(b for b in self.bots.values() if b.role == "primary")
        return await primary.set_instruction(  # type: ignore[attr-defined]
            conversation_id, None, text, reason=f"reverted to version {version}", append=False, source="user"
        )

    async def cancel_thoughts(self, conversation_id: str, thought_id: str | None = None, *, user: "User | None" = None) -> int:
        """Cancel running (and queued) thoughts; returns how many. With ``user``, only thinkers whose
        thoughts that person may see are touched (the one rule for the UI, the API and the CLI)."""
        from shoal.runtime.messages import Ack, CancelThought

        n = 0
        for name, bot in self._running():
            if bot.role != "thinker" or (user is not None and not can(user, bot.config, "see_thoughts")):
                continue
            res = await self.mesh.request(
                f"bot.{name}.control", CancelThought(conversation=conversation_id, thought_id=thought_id), timeout=5
            )
            if isinstance(res, Ack):
                n += res.count
        return n

    def listen(self, conversation_id: str | None = None) -> Listener:
        return self.journal.listen(conversation_id)

    async def stop_reply(self, conversation: str) -> bool:
        """Stop the reply being written in ``conversation``; True when one was."""
        stopped = False
        for name, bot in self.bots.items():
            if bot.role == "conversation":
                res = await self.mesh.request(f"bot.{name}.control", StopReply(conversation=conversation), timeout=15)
                stopped = stopped or bool(getattr(res, "ok", False))
        return stopped

    async def thinker_status(self, conversation: str | None = None, *, user: "User | None" = None) -> list[ThinkerStatus]:
        """What the thinkers are thinking (their live buffers); with ``user``, only what that person may see."""
        out: list[ThinkerStatus] = []
        for name, bot in self._running():
            if bot.role != "thinker" or (user is not None and not can(user, bot.config, "see_thoughts")):
                continue
            res = await self.mesh.request(f"bot.{name}.control", StatusQuery(conversation=conversation), timeout=2)
            if isinstance(res, StatusResult):
                out += res.statuses
        return out

    async def run_turn(self, conversation_id: str, user_id: str, text: str, *, timeout: float = 120.0) -> TurnResult:
        """Send one turn and collect what it produced until the background settles.

        Waits for the reply, the primary's ``TurnSettled`` and any
        interjection that settling triggered, at most ``timeout`` seconds.
        """
        t0 = time.monotonic()
        listener = self.listen(conversation_id)
        try:
            turn = await self.send(conversation_id, user_id, text)
            result = TurnResult(conversation=conversation_id, turn=turn.message_id)
            reply_done = settled = False
            #: in a room the personas the primary chose answer (perhaps none); elsewhere the conversation bot
            answering: set[str] | None = None if turn.room is None else set()
            open_interjections = 0
            deadline = t0 + timeout
            while not ((reply_done or answering == set()) and settled and open_interjections == 0):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    ev = await listener.get(timeout=left)
                except asyncio.TimeoutError:
                    break
                self._collect(result, ev, turn.message_id)
                if turn.room is not None and ev.kind == "route" and ev.turn == turn.message_id:
                    answering = {t for t in getattr(ev, "targets", []) if t in {b.name for b in self.config.bots_with_role("persona")}}
                if isinstance(ev, ReplyEnd) and ev.turn == turn.message_id and answering:
                    answering.discard(ev.bot)
                if isinstance(ev, ReplyEnd) and ev.turn == turn.message_id:
                    if ev.interjection:
                        open_interjections = max(0, open_interjections - 1)
                    else:
                        reply_done = True
                elif isinstance(ev, Injection) and ev.turn == turn.message_id and ev.mode == "interject":
                    # the conversation bot interjects only between replies (one in flight keeps the
                    # injection for the next reply), and never in a room: wait only for what will come
                    if self.config.bots_with_role("conversation")[0].interject and reply_done and turn.room is None:
                        open_interjections += 1
                elif isinstance(ev, ReplyStart) and ev.turn == turn.message_id and ev.interjection \
                        and open_interjections == 0:
                    open_interjections = 1  # it interjected after all: wait for its end
                elif isinstance(ev, TurnSettled) and ev.turn == turn.message_id:
                    settled, result.missing = True, list(ev.missing)
            for m in result.memories:
                m["source_text"] = turn.text
            result.settled = settled
            result.seconds = time.monotonic() - t0
            return result
        finally:
            listener.close()

    @staticmethod
    def _collect(result: TurnResult, ev: Event, turn: str) -> None:
        if ev.turn != turn:
            return
        if isinstance(ev, ReplyStart) and not ev.interjection:
            result.recalled = [{"id": m.id, "text": m.text, "attribute": m.attribute, "value": m.value} for m in ev.recalled]
        elif isinstance(ev, ReplyEnd):
            if ev.interjection:
                result.interjections.append(ev.text)
            else:
                result.reply, result.reply_status = ev.text, ev.status
        elif isinstance(ev, ThoughtEnd):
            result.thoughts.append({"bot": ev.bot, "text": ev.text, "status": ev.status, "id": ev.thought_id})
        elif isinstance(ev, MemoryWrite):
            if ev.item.kind == "fact":
                result.memories.append(
                    {
                        "id": ev.item.id,
                        "text": ev.item.text,
                        "attribute": ev.item.attribute,
                        "value": ev.item.value,
                        "method": ev.item.method,
                        "source": ev.item.sources[0] if ev.item.sources else None,
                        "sources": ev.item.sources,
                        "supersedes": ev.item.supersedes,
                    }
                )
        elif isinstance(ev, Injection):
            result.injections.append({"bot": ev.bot, "text": ev.text, "reason": ev.reason, "mode": ev.mode})
        elif ev.kind == "route":
            result.routed_to = list(getattr(ev, "targets", []))
