"""The websocket: typed frames in, journal events out (docs/protocol.md).

A bad frame is answered with an error frame that says what was wrong; the
connection and the conversation carry on. A client that subscribes with the
last ``seq`` it saw first receives what it missed from the store, then live
events, with no gap and no duplicate. When a client goes away, the replies
it started and that are still being written are stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.responses import JSONResponse

from shoal.errors import AuthError, ShoalError
from shoal.runtime.access import visible_event
from shoal.runtime.journal import JournalProblem, Listener
from shoal.runtime.messages import Event, ReplyEnd
from shoal.runtime.swarm import Swarm
from shoal.server import frames
from shoal.server.api import check_chat
from shoal.server.auth import authenticate
from shoal.store.conversations import User

log = logging.getLogger(__name__)
router = APIRouter()

#: event frames queued for the socket; beyond this the forwarder waits (and its
#: listener, bounded too, later refills what it had to drop from the store)
OUTBOX = 1000
#: live events a subscription holds while its forwarder waits for the socket; beyond this the
#: oldest go, and are read back from the store (no gap; the client gets a "caught_up" frame)
LISTENER_QUEUE = 10_000
#: replies to the client's own frames (acks, errors, pongs) waiting to be sent; a
#: client that sends this many frames without reading the answers is cut off
CONTROL = 1000


#: an event frame is its event's JSON with these two fields in front
_FRAME_HEAD = '{"v":%d,"type":"event",' % frames.VERSION


class Connection:
    def __init__(self, ws: WebSocket, swarm: Swarm, user: User) -> None:
        self.ws = ws
        self.swarm = swarm
        self.user = user
        self.outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue(CONTROL)
        self._wake = asyncio.Event()
        #: held while a frame is being written to the socket (by the writer or by ``push``)
        self._send_lock = asyncio.Lock()
        self.closed = False
        self.subs: dict[str, tuple[Listener, asyncio.Task[None]]] = {}
        #: conversation -> message ids of turns this connection sent, reply not yet ended
        self.open_turns: dict[str, set[str]] = {}

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a reply to the client's own frame (it goes out before queued events)."""
        try:
            self.control.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("websocket client of %s does not read its replies; closing it", self.user.name)
            self.closed = True
        self._wake.set()

    async def push(self, frame: dict[str, Any] | str) -> None:
        """Send an event frame (or its JSON text), or queue it, waiting for room: events are never dropped here.

        With nothing queued and nothing being sent, the frame goes out at once from
        the caller's task: under load every hand-over to the writer task is one more
        turn of a busy event loop to wait for.
        """
        text = frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False)
        if not self.closed and not self._send_lock.locked() and self.outbox.empty() and self.control.empty():
            async with self._send_lock:
                await self.ws.send_text(text)
            if not (self.outbox.empty() and self.control.empty()):
                self._wake.set()
            return
        await self.outbox.put(text)
        self._wake.set()

    async def writer(self) -> None:
        while not self.closed:
            if self.control.empty() and self.outbox.empty():
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._send_lock:  # one frame at a time, in order, whoever sends it
                if not self.control.empty():
                    await self.ws.send_text(json.dumps(self.control.get_nowait(), ensure_ascii=False))
                elif not self.outbox.empty():
                    await self.ws.send_text(self.outbox.get_nowait())
        await self.ws.close(code=1008, reason="the client does not read what it asked for")

    # -- frames -------------------------------------------------------------
    async def handle(self, raw: str) -> None:
        limit = self.swarm.config.server.max_frame_bytes
        if len(raw.encode("utf-8")) > limit:
            self.send(
                frames.error_frame(
                    "too_large",
                    f"the frame is {len(raw.encode('utf-8'))} bytes; the limit is {limit}",
                    hint="send shorter messages (server.max_frame_bytes)",
                )
            )
            return
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.send(frames.error_frame("bad_json", f"the frame is not JSON: {exc.msg} at position {exc.pos}"))
            return
        ref = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None
        if not isinstance(data, dict) or "type" not in data:
            self.send(frames.error_frame("bad_frame", "a frame is a JSON object with a 'type'", ref=ref))
            return
        if data.get("v", frames.VERSION) != frames.VERSION:
            self.send(
                frames.error_frame(
                    "bad_version", f"protocol version {data.get('v')!r} is not supported; this server speaks {frames.VERSION}", ref=ref
                )
            )
            return
        try:
            frame = frames.CLIENT.validate_python(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            if err["type"] == "union_tag_invalid":
                self.send(
                    frames.error_frame(
                        "unknown_type",
                        f"unknown frame type {data.get('type')!r}",
                        hint="types: subscribe, unsubscribe, send, stop, thinking, cancel_thought, ping",
                        ref=ref,
                    )
                )
            else:
                where = ".".join(str(p) for p in err["loc"][1:])
                self.send(frames.error_frame("bad_frame", f"{where}: {err['msg']}" if where else err["msg"], ref=ref))
            return
        try:
            await getattr(self, "on_" + frame.type)(frame)
        except ShoalError as exc:
            self.send(frames.error_frame(exc.code, exc.message, hint=exc.hint, ref=frame.id))

    async def on_ping(self, f: frames.Ping) -> None:
        self.send({"v": frames.VERSION, "type": "pong", "id": f.id})

    async def on_subscribe(self, f: frames.Subscribe) -> None:
        conv = await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        if conv.id in self.subs:
            await self.on_unsubscribe(frames.Unsubscribe(type="unsubscribe", conversation=conv.id))
        # listen first, then replay: events recorded meanwhile arrive live and
        # are skipped if the replay already covered them
        listener = self.swarm.journal.listen(conv.id, after=f.after, maxsize=LISTENER_QUEUE)
        task = asyncio.create_task(self.forward(listener, conv.id, f.after, f.id), name=f"ws-forward:{conv.id}")
        self.subs[conv.id] = (listener, task)

    async def forward(self, listener: Listener, conversation: str, after: int, ref: str | None) -> None:
        """Replay what the client missed (page by page), say so, then stream live events, in seq order."""
        try:
            last, shown = after, 0
            async for page in self.swarm.journal.pages(conversation, after):
                for ev in page:
                    last = max(last, ev.seq or 0)
                    if (frame := self.event_frame(ev)) is not None:
                        await self.push(frame)
                        shown += 1
            # the reply to "subscribe" goes out after the replayed events (same queue, same order)
            await self.push(
                {"v": frames.VERSION, "type": "subscribed", "id": ref, "conversation": conversation, "replayed": shown, "last_seq": last}
            )
            listener.skip_to(conversation, last)
            refilled = 0
            while True:
                ev = await listener.get()
                if isinstance(ev, JournalProblem):
                    if ev.recovered:
                        self.send({"v": frames.VERSION, "type": "notice", "code": "journal_recovered", "message": ev.message})
                    else:
                        hint = "free disk space or check the database file; shoal keeps retrying"
                        self.send(frames.error_frame("journal", ev.message, hint=hint, conversation=conversation))
                    continue
                if isinstance(ev, ReplyEnd) and ev.turn:
                    self.open_turns.get(ev.conversation, set()).discard(ev.turn)
                if listener.refilled != refilled:
                    # this client fell behind and events were refilled from the store: no gap, but say so
                    gap = listener.refilled - refilled
                    await self.push({"v": frames.VERSION, "type": "caught_up", "conversation": conversation, "refilled": gap})
                    refilled = listener.refilled
                if (frame := self.event_frame(ev)) is not None:
                    await self.push(frame)
        finally:
            listener.close()

    async def on_unsubscribe(self, f: frames.Unsubscribe) -> None:
        entry = self.subs.pop(f.conversation, None)
        if entry:
            entry[0].close()
            entry[1].cancel()

    async def on_send(self, f: frames.Send) -> None:
        await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        check_chat(self.swarm, self.user)
        turn = await self.swarm.accept(f.conversation, self.user.id, f.text)
        self.open_turns.setdefault(f.conversation, set()).add(turn.message_id)
        # acknowledged once stored (it survives anything after this), and
        # before it is published, so the ack precedes every event of the turn
        self.send({"v": frames.VERSION, "type": "ack", "id": f.id, "conversation": f.conversation, "message_id": turn.message_id})
        await self.swarm.publish(turn)

    async def on_stop(self, f: frames.Stop) -> None:
        await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        stopped = await self.swarm.stop_reply(f.conversation)
        self.send({"v": frames.VERSION, "type": "stopped", "id": f.id, "conversation": f.conversation, "stopped": stopped})

    async def on_thinking(self, f: frames.Thinking) -> None:
        await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        statuses = [s.model_dump(mode="json") for s in await self.swarm.thinker_status(f.conversation, user=self.user)]
        self.send({"v": frames.VERSION, "type": "thinking", "id": f.id, "conversation": f.conversation, "statuses": statuses})

    async def on_cancel_thought(self, f: frames.CancelThought) -> None:
        await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        n = await self.swarm.cancel_thoughts(f.conversation, f.thought_id, user=self.user)
        self.send({"v": frames.VERSION, "type": "cancelled", "id": f.id, "conversation": f.conversation, "cancelled": n})

    # -- events -----------------------------------------------------------------
    def event_frame(self, ev: Event) -> str | None:
        """The frame for ``ev`` as this user may see it, as JSON text (None: not for them).

        The event's JSON is made once, by the journal, and spliced into every client's frame."""
        shown = visible_event(self.user, self.swarm.config, ev)
        if shown is None:
            return None
        return _FRAME_HEAD + shown.json_text()[1:]

    async def close(self) -> None:
        for conv in list(self.subs):
            await self.on_unsubscribe(frames.Unsubscribe(type="unsubscribe", conversation=conv))
        # the client went away: stop the replies it asked for
        for conv, turns in self.open_turns.items():
            if turns:
                try:
                    await self.swarm.stop_reply(conv)
                except (ShoalError, asyncio.TimeoutError):
                    pass


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    swarm: Swarm = ws.app.state.swarm
    try:
        user = await authenticate(swarm.accounts, ws.headers, ws.cookies, ws.query_params.get("token"))
    except AuthError as exc:
        await ws.send_denial_response(
            JSONResponse({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}, status_code=401)
        )
        return
    await ws.accept()
    conn = Connection(ws, swarm, user)
    writer = asyncio.create_task(conn.writer(), name="ws-writer")
    conn.send(
        {
            "v": frames.VERSION,
            "type": "welcome",
            "user": {"id": user.id, "name": user.name, "admin": user.is_admin},
            "max_message_chars": swarm.config.server.max_message_chars,
            "max_frame_bytes": swarm.config.server.max_frame_bytes,
        }
    )
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            raw = msg.get("text")
            if raw is None:
                data = msg.get("bytes") or b""
                try:
                    raw = data.decode("utf-8")
                except UnicodeDecodeError:
                    conn.send(frames.error_frame("bad_frame", "binary frames must be UTF-8 JSON"))
                    continue
            await conn.handle(raw)
    except WebSocketDisconnect:
        pass
    finally:
        await conn.close()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
