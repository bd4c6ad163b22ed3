"""REST for learning (issue 14): rate a reply, correct it, have it written again, see the adapters.

Same rules as the rest of /api: the caller is resolved first; a reply in
someone else's conversation is reported exactly like a missing one (404); in
a room only the person a reply answers may judge it (403).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Literal

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


# ------------------------------------------------------------------ continuous learning: runs and adapters
# The learner lives as long as the app: this router's lifespan is merged into the app's (inside the
# swarm's: it starts after the swarm and stops before it).
@asynccontextmanager
async def _learner_lifespan(app: Any) -> AsyncIterator[None]:
    from shoal.learn.continuous import Learner

    state = app.state
    if getattr(state, "learner", None) is not None:  # a second lifespan on the same app (another test client)
        yield
        return
    swarm = state.swarm
    learner = state.learner = Learner(swarm.db, swarm.env.settings.home, lambda: swarm.config)
    await learner.start()
    try:
        yield
    finally:
        await learner.stop()
        state.learner = None


runs_router = APIRouter(prefix="/learn", tags=["learn"], lifespan=_learner_lifespan)


def learner_of(request: Request) -> Any:
    learner = getattr(request.app.state, "learner", None)
    if learner is None:
        from shoal.learn.continuous import Learner

        swarm = request.app.state.swarm
        learner = Learner(swarm.db, swarm.env.settings.home, lambda: swarm.config)  # not started: reads only
    return learner


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "bot", "owner_names", "trigger", "state", "created_at", "started_at", "ended_at", "error",
            "dataset", "version", "progress", "steps", "paused_seconds", "tokens_per_second")
    out = {k: job.get(k) for k in keep}
    decision = job.get("decision") or {}
    out["promoted"] = decision.get("promoted")
    out["reason"] = decision.get("reason")
    return out


def _detail(job: dict[str, Any]) -> dict[str, Any]:
    """A run with its loss curve and its evaluation table (torch during training; llama.cpp when promoting)."""
    scores = job.get("scores") or {}
    decision = job.get("decision") or {}
    served, cand = decision.get("current") or {}, decision.get("candidate") or {}
    table = [
        {"set": name, "base": scores.get(f"{key}_base"), "tuned": scores.get(f"{key}_tuned"),
         "served": served.get(key), "candidate": cand.get(key)}
        for name, key in (("validation", "val_loss"), ("canary", "canary_loss"))
    ]
    return {**_summary(job), "losses": job.get("losses", []), "evaluation": table, "decision": decision or None,
            "train": job.get("train"), "served_before": job.get("served_before"), "canary_margin": job.get("canary_margin")}


def _may_train(user: User, config: Any) -> bool:
    return user.is_admin or user.name in config.learn.users


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot: str | None = Field(default=None, max_length=64, description="the bot to train (default: the first learn.bots)")


@runs_router.get("/bots", summary="Which adapter each bot serves, and whether it learns by itself")
async def learn_bots(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    from shoal.learn.adapters import AdapterRegistry
    from shoal.errors import ShoalError

    swarm = request.app.state.swarm
    config = swarm.config
    learner = learner_of(request)
    home = swarm.env.settings.home
    learning = set(learner.bots()) if config.learn.enabled else set()
    out = []
    for b in config.bots:
        reg = AdapterRegistry(home, b.name)
        row: dict[str, Any] = {"bot": b.name, "role": b.role, "adapter": b.adapter, "learning": b.name in learning}
        try:
            row["promoted"] = reg.current
            row["serving"] = (reg.current if b.adapter == "latest" else b.adapter) if b.adapter else ""
            if row["serving"]:
                reg.card(row["serving"])
        except ShoalError as exc:  # a damaged registry or a missing version: the base model answers
            row["serving"], row["problem"] = "", exc.message
        row["may_train"] = b.name in learning and _may_train(user, config)
        if row["may_train"]:
            row.update(await learner.status(b.name))
        out.append(row)
    return out


@runs_router.get("/runs", summary="Training runs on your own verdicts (admins: every run), newest first")
async def list_runs(
    request: Request, bot: str | None = Query(None, max_length=64), limit: int = Query(50, ge=1, le=1000),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    from shoal.learn.continuous import all_runs, may_see

    home = request.app.state.swarm.env.settings.home
    return [_summary(j) for j in all_runs(home, bot) if may_see(j, user)][:limit]


@runs_router.get("/runs/{run_id}", summary="One run: loss curve, evaluation, promoted or not and why")
async def get_run(run_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.learn.continuous import find_run

    return _detail(find_run(request.app.state.swarm.env.settings.home, run_id, user))


@runs_router.post("/runs", status_code=202, summary="Start a training run now (admins and the people in learn.users)")
async def start_run(body: RunIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.errors import PermissionDenied

    config = request.app.state.swarm.config
    learner = getattr(request.app.state, "learner", None)
    if not config.learn.enabled or learner is None:
        raise BadInput("continuous learning is off", hint="set [learn] enabled = true and users = [...] in shoal.toml")
    if not _may_train(user, config):
        raise PermissionDenied("only admins and the people listed in learn.users may start a training run")
    bots = learner.bots()
    bot = body.bot or (bots[0] if bots else None)
    if bot not in bots:
        raise BadInput(f"bot '{bot}' does not learn continuously (learn.bots: {', '.join(bots) or 'none'})")
    return _summary(await learner.start_run(bot, f"started by {user.name}"))


# under /api with the rest (and its lifespan with the router's, so app.py includes just `router`)
router.include_router(runs_router)
