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
from shoal.runtime.journal import Listener
from shoal.runtime.messages import CancelThought, Event, ReplyEnd
from shoal.runtime.swarm import Swarm
from shoal.server import frames
from shoal.server.api import check_chat, visible
from shoal.server.auth import authenticate
from shoal.server.permissions import can
from shoal.store.conversations import User

log = logging.getLogger(__name__)
router = APIRouter()

#: frames queued for a slow client before it is told it fell behind
OUTBOX = 5000


class Connection:
    def __init__(self, ws: WebSocket, swarm: Swarm, user: User) -> None:
        self.ws = ws
        self.swarm = swarm
        self.user = user
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX)
        self.subs: dict[str, tuple[Listener, asyncio.Task[None]]] = {}
        #: conversation -> message ids of turns this connection sent, reply not yet ended
        self.open_turns: dict[str, set[str]] = {}

    def send(self, frame: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("websocket client of %s is too slow; dropping a frame", self.user.name)

    async def writer(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                return
            await self.ws.send_text(json.dumps(frame, ensure_ascii=False))

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
        listener = self.swarm.listen(conv.id)
        replay = await self.swarm.journal.replay(conv.id, f.after)
        last = f.after
        for ev in replay:
            last = max(last, ev.seq or 0)
            if visible(self.swarm, self.user, ev):
                self.send(self.event_frame(ev))
        self.send(
            {"v": frames.VERSION, "type": "subscribed", "id": f.id, "conversation": conv.id, "replayed": len(replay), "last_seq": last}
        )
        task = asyncio.create_task(self.forward(listener, last), name=f"ws-forward:{conv.id}")
        self.subs[conv.id] = (listener, task)

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
        statuses = [
            s.model_dump(mode="json")
            for s in await self.swarm.thinker_status(f.conversation)
            if can(self.user, self.swarm.config.bot(s.bot), "see_thoughts")
        ]
        self.send({"v": frames.VERSION, "type": "thinking", "id": f.id, "conversation": f.conversation, "statuses": statuses})

    async def on_cancel_thought(self, f: frames.CancelThought) -> None:
        await self.swarm.conversations.get_conversation(f.conversation, user_id=self.user.id)
        n = 0
        for name, bot in self.swarm.bots.items():
            if bot.role == "thinker" and can(self.user, bot.config, "see_thoughts"):
                res = await self.swarm.mesh.request(
                    f"bot.{name}.control", CancelThought(conversation=f.conversation, thought_id=f.thought_id), timeout=2
                )
                n += int(getattr(res, "ok", False))
        self.send({"v": frames.VERSION, "type": "cancelled", "id": f.id, "conversation": f.conversation, "cancelled": n})

    # -- events -----------------------------------------------------------------
    @staticmethod
    def event_frame(ev: Event) -> dict[str, Any]:
        return {"v": frames.VERSION, "type": "event", **ev.model_dump(mode="json")}

    async def forward(self, listener: Listener, after: int) -> None:
        try:
            async for ev in listener:
                if (ev.seq or 0) <= after:
                    continue
                if isinstance(ev, ReplyEnd) and ev.turn:
                    self.open_turns.get(ev.conversation, set()).discard(ev.turn)
                if visible(self.swarm, self.user, ev):
                    self.send(self.event_frame(ev))
        finally:
            listener.close()

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
        conn.outbox.put_nowait(None) if not conn.outbox.full() else None
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
