"""REST API under /api: auth, conversations, messages, memories, bots, users, tokens.

Every route resolves the caller first; another user's conversation or
memory is reported exactly like a missing one (404).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shoal.config import BotAccess
from shoal.errors import BadInput, NotFound, PermissionDenied
from shoal.runtime.access import can, redact_instruction, require, visible_event
from shoal.runtime.messages import StopReply
from shoal.runtime.swarm import Swarm
from shoal.server.auth import SESSION_COOKIE, current_user
from shoal.store.conversations import User

router = APIRouter(prefix="/api")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def swarm_of(request: Request) -> Swarm:
    return request.app.state.swarm  # type: ignore[no-any-return]


def user_view(u: User) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "admin": u.is_admin, "created_at": u.created_at}


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("only admins may do this")


# ------------------------------------------------------------------ auth
class LoginIn(_In):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/login", tags=["auth"], summary="Sign in; sets the session cookie")
async def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    swarm = swarm_of(request)
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    limiter.check(client, body.name)
    try:
        user = await swarm.accounts.verify_password(body.name, body.password)
    except Exception:
        limiter.failed(client, body.name)
        raise
    limiter.succeeded(client, body.name)
    days = swarm.config.server.session_days
    sid = await swarm.accounts.create_session(user.id, seconds=days * 86400)
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", max_age=int(days * 86400))
    return {"user": user_view(user)}


@router.post("/auth/logout", tags=["auth"], summary="Sign out")
async def logout(request: Request, response: Response) -> dict[str, bool]:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        await swarm_of(request).accounts.end_session(sid)
    response.delete_cookie(SESSION_COOKIE)
    return {"ok": True}


@router.get("/me", tags=["auth"], summary="Who am I")
async def me(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    return {
        "user": user_view(user),
        "limits": {
            "max_message_chars": swarm.config.server.max_message_chars,
            "max_frame_bytes": swarm.config.server.max_frame_bytes,
        },
    }


# ------------------------------------------------------------------ conversations
class ConversationIn(_In):
    title: str = Field(default="", max_length=200)


async def owned(swarm: Swarm, conversation_id: str, user: User):  # type: ignore[no-untyped-def]
    return await swarm.conversations.get_conversation(conversation_id, user_id=user.id)


def conv_view(c: Any) -> dict[str, Any]:
    return {"id": c.id, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at, "room": c.room}


@router.get("/conversations", tags=["conversations"], summary="Your conversations, newest first")
async def list_conversations(
    request: Request, limit: int = Query(100, ge=1, le=1000), user: User = Depends(current_user)
) -> list[dict[str, Any]]:
    return [conv_view(c) for c in await swarm_of(request).conversations.list_conversations(user.id, limit=limit)]


@router.post("/conversations", tags=["conversations"], status_code=201, summary="Start a conversation")
async def create_conversation(body: ConversationIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    return conv_view(await swarm_of(request).conversations.create_conversation(user.id, body.title))


@router.get("/conversations/{conversation_id}", tags=["conversations"], summary="A conversation and its recent messages")
async def get_conversation(
    conversation_id: str, request: Request, limit: int = Query(50, ge=1, le=1000), user: User = Depends(current_user)
) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    messages = await swarm.conversations.history(conv.id, limit=limit)
    return {**conv_view(conv), "messages": [m.as_dict() for m in messages], "last_seq": await swarm.conversations.max_seq(conv.id)}


def erased_view(out: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"ok": True, "deleted": out.deleted}
    if out.source_messages:
        view["source_messages"] = out.source_messages
        view["note"] = (
            "the message it came from is still in its conversation; delete it too with "
            "DELETE /api/messages/{id} (this also deletes the reply to it)"
        )
    return view


@router.delete(
    "/conversations/{conversation_id}", tags=["conversations"],
    summary="Delete a conversation with everything made from it (owner only)",
)
async def delete_conversation(conversation_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    return erased_view(await swarm.delete_conversation(conv.id, user))


@router.delete(
    "/messages/{message_id}", tags=["conversations"],
    summary="Delete a message, the reply to it, and every memory, thought and event made from them",
)
async def delete_message(message_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    try:
        msg = await swarm.conversations.get_message(message_id)
        await owned(swarm, msg.conversation_id, user)
    except NotFound:
        raise NotFound(f"no message '{message_id}'", hint="open the conversation to see its messages") from None
    return erased_view(await swarm.delete_message(message_id, user))


@router.get("/conversations/{conversation_id}/messages", tags=["conversations"], summary="Messages, oldest first")
async def list_messages(
    conversation_id: str,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    before: str | None = Query(None, max_length=64),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    return [m.as_dict() for m in await swarm.conversations.history(conv.id, limit=limit, before=before)]


class MessageIn(_In):
    text: str = Field(min_length=1)


@router.post(
    "/conversations/{conversation_id}/messages",
    tags=["conversations"],
    status_code=202,
    summary="Send a message; the reply streams on the websocket (or poll /events)",
)
async def send_message(conversation_id: str, body: MessageIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    await owned(swarm, conversation_id, user)
    check_chat(swarm, user)
    turn = await swarm.send(conversation_id, user.id, body.text)
    return {"conversation": conversation_id, "message_id": turn.message_id}


def check_chat(swarm: Swarm, user: User) -> None:
    for bot in swarm.config.bots_with_role("conversation"):
        require(user, bot, "chat")


@router.get(
    "/conversations/{conversation_id}/events", tags=["conversations"],
    summary="Recorded events after a sequence number (page with after = the last seq you got)",
)
async def list_events(
    conversation_id: str,
    request: Request,
    response: Response,
    after: int = Query(0, ge=0, le=2**53),
    limit: int = Query(10_000, ge=1, le=10_000),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    events = await swarm.journal.replay(conv.id, after, limit=limit)
    if len(events) == limit:
        # more may follow: the next page starts after the last seq of this one
        response.headers["X-Next-After"] = str(events[-1].seq)
    shown = (visible_event(user, swarm.config, e) for e in events)
    return [e.model_dump(mode="json") for e in shown if e is not None]


@router.get("/conversations/{conversation_id}/thinking", tags=["conversations"], summary="What the thinkers are thinking")
async def thinking(conversation_id: str, request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    return [st.model_dump(mode="json") for st in await swarm.thinker_status(conv.id, user=user)]


@router.post("/conversations/{conversation_id}/stop", tags=["conversations"], summary="Stop the reply being written")
async def stop_reply(conversation_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    res = await swarm.stop_reply(conv.id)
    return {"stopped": res}


@router.post("/conversations/{conversation_id}/thoughts/cancel", tags=["conversations"], summary="Cancel running thoughts")
async def cancel_thoughts(conversation_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    return {"cancelled": await swarm.cancel_thoughts(conv.id, user=user)}


# ------------------------------------------------------------------ the evolving instruction
@router.get("/conversations/{conversation_id}/instruction", tags=["conversations"], summary="Instruction versions")
async def instruction_versions(conversation_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    versions = await swarm.instruction_versions(conv.id, conv.user_id)
    for v in versions:  # lines drawn from thoughts this person may not see are hidden here too
        v["text"] = redact_instruction(user, swarm.config, v["text"])
    return {"current": versions[-1]["version"] if versions else 0, "versions": versions}


class RevertIn(_In):
    version: int = Field(ge=0, le=1_000_000)


@router.post("/conversations/{conversation_id}/instruction/revert", tags=["conversations"], summary="Restore a version")
async def revert_instruction(
    conversation_id: str, body: RevertIn, request: Request, user: User = Depends(current_user)
) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    if conv.user_id != user.id and not user.is_admin:
        raise PermissionDenied("only the owner of this room (or an admin) may change its instruction")
    version = await swarm.revert_instruction(conv.id, conv.user_id, body.version)
    return {"current": version}


# ------------------------------------------------------------------ rooms
class RoomIn(_In):
    room: str = Field(min_length=1, max_length=64, description="a room declared in shoal.toml")
    members: list[str] = Field(default_factory=list, max_length=64, description="user names to let in")


@router.post("/rooms", tags=["rooms"], summary="Open a room with personas and other people")
async def create_room(body: RoomIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    ids = []
    for name in body.members:
        member = await swarm.accounts.user_by_name(name)
        ids.append(member.id)
    conv = await swarm.create_room(body.room, user.id, ids)
    return {"id": conv.id, "room": body.room, "members": [m.name for m in await swarm.conversations.room_members(conv.id)]}


class PairIn(_In):
    a: str = Field(min_length=1, max_length=64)
    b: str = Field(min_length=1, max_length=64)
    turns: int = Field(default=4, ge=1, le=200)


@router.post("/conversations/{conversation_id}/pair", tags=["rooms"], summary="Let two personas talk to each other")
async def pair(conversation_id: str, body: PairIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    conv = await owned(swarm, conversation_id, user)
    for p in (body.a, body.b):
        require(user, swarm.config.bot(p), "chat")
    return {"said": await swarm.pair_talk(conv.id, user.id, body.a, body.b, turns=body.turns)}


# ------------------------------------------------------------------ memories
@router.get("/memories", tags=["memories"], summary="Your memories; with q, a search")
async def list_memories(
    request: Request,
    q: str | None = Query(None, max_length=2000),
    kind: Literal["raw", "fact", "summary", "observation"] | None = None,
    include_superseded: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    swarm = swarm_of(request)
    if q:
        kinds = [kind] if kind else ["fact", "raw", "summary", "observation"]
        found = await swarm.memories.search(user.id, q, limit=limit, kinds=kinds)
    else:
        found = await swarm.memories.list(
            user.id, kind=kind, include_superseded=include_superseded, limit=limit, offset=offset
        )
    return [m.as_dict() for m in found]


@router.get("/memories/{memory_id}", tags=["memories"], summary="A memory with its provenance")
async def get_memory(memory_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    m = await swarm.memories.get(memory_id, user_id=user.id)
    sources = []
    for sid in m.sources:
        try:
            msg = await swarm.conversations.get_message(sid)
        except NotFound:
            sources.append({"id": sid, "missing": True})
            continue
        sources.append(msg.as_dict())
    history = await swarm.memories.history_of(user.id, m.attribute) if m.kind == "fact" and m.attribute else []
    return {**m.as_dict(), "source_messages": sources, "history": [h.as_dict() for h in history]}


@router.delete(
    "/memories/{memory_id}", tags=["memories"],
    summary="Forget a memory and every copy made from it (its source message stays: see source_messages)",
)
async def forget_memory(memory_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    return erased_view(await swarm_of(request).forget_memory(memory_id, user))


# ------------------------------------------------------------------ bots
def bot_view(swarm: Swarm, user: User, name: str) -> dict[str, Any]:
    bc = swarm.config.bot(name)
    server = swarm.config.server_named(bc.server)
    view: dict[str, Any] = {
        "name": bc.name,
        "role": bc.role,
        "enabled": bc.enabled,
        "server": server.name,
        "server_kind": server.kind,
        "model": bc.model or server.default_model,
        "may": {cap: can(user, bc, cap) for cap in ("chat", "see_thoughts", "configure")},  # type: ignore[arg-type]
    }
    from shoal.runtime.nats_host import placement

    view["placement"] = placement(swarm, bc.name)  # where it runs and whether it is alive (docs/mesh.md)
    if can(user, bc, "configure"):
        view["settings"] = {k: getattr(bc, k) for k in ("instruction", "temperature", "max_tokens", "min_tokens", "history", "tools")}
        view["access"] = bc.access.model_dump()
        view["memory_scopes"] = bc.memory.model_dump()
    return view


@router.get("/bots", tags=["bots"], summary="The bots, with what you may do with each")
async def list_bots(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    swarm = swarm_of(request)
    return [bot_view(swarm, user, b.name) for b in swarm.config.bots]


@router.get("/bots/{name}", tags=["bots"], summary="One bot")
async def get_bot(name: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    return bot_view(swarm_of(request), user, name)


class BotPatch(_In):
    instruction: str | None = Field(default=None, max_length=8000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    min_tokens: int | None = Field(default=None, ge=0, le=8192)
    history: int | None = Field(default=None, ge=0, le=1000)
    enabled: bool | None = None
    access: BotAccess | None = None
    #: tools it may call (docs/tools.md); admins only
    tools: list[str] | None = Field(default=None, max_length=64)


@router.patch("/bots/{name}", tags=["bots"], summary="Change a bot's settings (needs configure permission)")
async def patch_bot(name: str, body: BotPatch, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = swarm_of(request)
    bc = swarm.config.bot(name)
    require(user, bc, "configure")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "access" in changes and not user.is_admin:
        raise PermissionDenied("only admins may change who can use a bot")
    if "tools" in changes and changes["tools"] != bc.tools and not user.is_admin:
        raise PermissionDenied("only admins may change which tools a bot may call", hint="ask an admin")
    if not changes:
        raise BadInput("nothing to change", hint="send one or more of: " + ", ".join(BotPatch.model_fields))
    await swarm.configure_bot(name, changes)
    return bot_view(swarm, user, name)


# ------------------------------------------------------------------ users and tokens
class UserIn(_In):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    admin: bool = False


@router.get("/users", tags=["users"], summary="All accounts (admins)")
async def list_users(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    require_admin(user)
    return [user_view(u) for u in await swarm_of(request).accounts.users()]


@router.post("/users", tags=["users"], status_code=201, summary="Create an account (admins)")
async def create_user(body: UserIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    require_admin(user)
    return user_view(await swarm_of(request).accounts.create_user(body.name, body.password, is_admin=body.admin))


@router.delete("/users/{name}", tags=["users"], summary="Remove an account and everything it owns (admins)")
async def delete_user(name: str, request: Request, user: User = Depends(current_user)) -> dict[str, bool]:
    require_admin(user)
    if name == user.name:
        raise BadInput("you cannot remove your own account")
    swarm = swarm_of(request)
    gone = await swarm.accounts.user_by_name(name)
    await swarm.remove_user(gone.id)
    return {"ok": True}


class TokenIn(_In):
    name: str = Field(default="token", min_length=1, max_length=100)


def token_view(t: Any) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "created_at": t.created_at, "last_used_at": t.last_used_at, "revoked": t.revoked_at is not None}


@router.get("/tokens", tags=["tokens"], summary="Your API tokens")
async def list_tokens(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    return [token_view(t) for t in await swarm_of(request).accounts.tokens(user.id)]


@router.post("/tokens", tags=["tokens"], status_code=201, summary="Create an API token (shown once)")
async def create_token(body: TokenIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    tok, secret = await swarm_of(request).accounts.create_token(user.id, body.name)
    return {**token_view(tok), "token": secret}


@router.delete("/tokens/{token_id}", tags=["tokens"], summary="Revoke one of your API tokens")
async def revoke_token(token_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, bool]:
    await swarm_of(request).accounts.revoke_token(token_id, user_id=user.id)
    return {"ok": True}


__all__ = ["router", "check_chat", "StopReply"]
