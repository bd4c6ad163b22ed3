"""REST for learning (issue 14): rate a reply, correct it, have it written again, see the adapters.

Same rules as the rest of /api: the caller is resolved first; a reply in
someone else's conversation is reported exactly like a missing one (404); in
a room only the person a reply answers may judge it (403).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shoal.errors import BadInput, NotFound
from shoal.learn.feedback import MAX_CORRECTION_CHARS, FeedbackStore
from shoal.runtime.access import require
from shoal.server.auth import current_user
from shoal.store.conversations import User

router = APIRouter(prefix="/api", tags=["learn"])


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["good", "bad", "none"] | None = Field(
        default=None, description="good (👍), bad (👎), none (take the rating back); omitted: keep it"
    )
    correction: str | None = Field(
        default=None, max_length=MAX_CORRECTION_CHARS,
        description="the reply you wanted instead (the training target); empty removes it; omitted: keep it",
    )


def feedback_of(request: Request) -> FeedbackStore:
    state = request.app.state
    store = getattr(state, "learn_feedback", None)
    if store is None:
        store = state.learn_feedback = FeedbackStore(state.swarm.db)
    return store  # type: ignore[no-any-return]


async def _checked(request: Request, message_id: str, user: User) -> FeedbackStore:
    store = feedback_of(request)
    msg = await store.reply_for(message_id, user)
    config = request.app.state.swarm.config
    if msg.bot and any(b.name == msg.bot for b in config.bots):
        require(user, config.bot(msg.bot), "chat")
    return store


@router.put("/messages/{message_id}/feedback", summary="Rate a reply (👍/👎) and/or correct it into what you wanted")
async def put_feedback(message_id: str, body: FeedbackIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    if body.rating is None and body.correction is None:
        raise BadInput("nothing to record", hint='send {"rating": "good"|"bad"|"none"} and/or {"correction": "..."}')
    store = await _checked(request, message_id, user)
    fb = await store.rate(
        message_id, user,
        rating=body.rating if body.rating in ("good", "bad") else None,  # type: ignore[arg-type]
        correction=body.correction,
        clear_rating=body.rating == "none",
    )
    return fb.as_dict()


@router.get("/messages/{message_id}/feedback", summary="Your verdict on a reply")
async def get_feedback(message_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    store = await _checked(request, message_id, user)
    fb = await store.get(message_id, user)
    if fb is None:
        raise NotFound(f"you have not rated message '{message_id}'", hint="PUT a rating first")
    return fb.as_dict()


@router.delete("/messages/{message_id}/feedback", summary="Take your verdict on a reply back")
async def delete_feedback(message_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, bool]:
    store = await _checked(request, message_id, user)
    return {"deleted": await store.remove(message_id, user)}


@router.post(
    "/messages/{message_id}/regenerate", status_code=202,
    summary="Have a reply written again; the old one stays as a rejected alternative (the new one streams on /ws)",
)
async def regenerate_reply(message_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.learn.regenerate import regenerate

    return (await regenerate(request.app.state.swarm, message_id, user)).as_dict()


@router.get("/feedback", summary="Every verdict you gave, oldest first (optionally in one conversation)")
async def list_feedback(
    request: Request,
    limit: int = Query(1000, ge=1, le=100_000),
    conversation: str | None = Query(None, max_length=64, description="only verdicts on replies in this conversation"),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    store = feedback_of(request)
    if conversation is not None:
        # someone else's conversation is reported like a missing one
        await store.conversations.get_conversation(conversation, user_id=user.id)
    return [f.as_dict() for f in await store.of_user(user.id, limit=limit, conversation=conversation)]
