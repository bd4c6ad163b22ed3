"""REST for µLMs (issue 15): training runs with their live curves, and swarm searches with the verifier's verdicts.

Who sees what: admins see every run and search; anyone else the runs they
started (from the web UI) and the searches they asked for. Someone else's run
or search is reported exactly like a missing one (404). Starting a run is for
admins and the people in ``[ulm] users``; stopping one, for whoever may see it.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shoal.errors import BadInput, PermissionDenied
from shoal.server.auth import current_user
from shoal.store.conversations import User


@asynccontextmanager
async def _trainer_lifespan(app: Any) -> AsyncIterator[None]:
    """The trainer lives as long as the app; stopping the server interrupts a run (it resumes from its checkpoint)."""
    state = app.state
    if getattr(state, "ulm_trainer", None) is not None:  # a second lifespan on the same app
        yield
        return
    from shoal.ulm.runs import Trainer

    swarm = state.swarm
    trainer = state.ulm_trainer = Trainer(swarm.env.settings.home, threads=swarm.config.ulm.threads)
    try:
        yield
    finally:
        await trainer.close()
        state.ulm_trainer = None


router = APIRouter(prefix="/api/ulm", tags=["ulm"], lifespan=_trainer_lifespan)


def _home(request: Request) -> Any:
    return request.app.state.swarm.env.settings.home


def _trainer(request: Request) -> Any:
    trainer = getattr(request.app.state, "ulm_trainer", None)
    if trainer is None:
        raise BadInput("the µLM trainer is not running", hint="the server is starting or stopping; try again")
    return trainer


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str | None = Field(default=None, max_length=64, description="a built-in recipe: smoke, char, harness")
    toml: str | None = Field(default=None, max_length=20_000, description="or a recipe's TOML (corpus: shakespeare or harness)")
    name: str | None = Field(default=None, max_length=64, description="the run's name (default: recipe-date-time)")
    iters: int | None = Field(default=None, ge=1, le=1_000_000, description="override train.iters")


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: str = Field(max_length=64)
    env: str | None = Field(default=None, max_length=32, description="a world: arith, lists, chain")
    level: int | None = Field(default=None, ge=1, le=16)
    index: int = Field(default=0, ge=0, le=999, description="which held-out task of env at level")
    text: str | None = Field(default=None, max_length=200, description='or a task in words: "sort 3 1 2", "12*34"')
    n: int = Field(default=8, ge=1, le=32, description="samples")
    temperature: float = Field(default=1.0, gt=0, le=2.0)
    max_new: int = Field(default=128, ge=8, le=512, description="token budget per sample")
    seed: int = Field(default=0, ge=0)


@router.get("/runs", summary="µLM training runs you may see (yours; admins: all), newest first")
async def list_runs(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    from shoal.ulm.runs import visible

    return await asyncio.to_thread(visible, _home(request), user)


@router.get("/runs/{name}", summary="One run: state, every step's loss (thinned), train/val loss per evaluation")
async def get_run(name: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.ulm.runs import detail, find

    run = find(_home(request), name, user)
    out = await asyncio.to_thread(detail, run)
    out["may_stop"] = _trainer(request).running == name and out["state"] in ("queued", "running")
    return out


@router.post("/runs", status_code=202, summary="Start training a µLM (admins and the people in ulm.users)")
async def start_run(body: RunIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.runtime.access import allowed
    from shoal.ulm.runs import summary, web_recipe

    if not allowed(user, request.app.state.swarm.config.ulm.users):
        raise PermissionDenied("only admins and the people in ulm.users may train µLMs", hint="an admin can add you to [ulm] users")
    recipe = web_recipe(body.recipe, body.toml, body.iters)
    run = await _trainer(request).start(recipe, user, body.name)
    return summary(run)


@router.post("/runs/{name}/stop", summary="Interrupt a run that is training (the same recipe resumes it)")
async def stop_run(name: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.ulm.runs import find, summary

    run = find(_home(request), name, user)
    stopped = await _trainer(request).stop(name)
    return {**summary(run), "stopped": stopped}


@router.post("/searches", status_code=201, summary="Swarm search: N samples of a run's µLM on one task, each verified")
async def start_search(body: SearchIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.ulm.runs import find
    from shoal.ulm.searches import search, task_for

    home = _home(request)
    run = find(home, body.run, user)
    task = task_for(body.env, body.level, body.index, body.text)
    threads = request.app.state.swarm.config.ulm.threads or 1
    return await asyncio.to_thread(
        search, run, task, user, home, n=body.n, temperature=body.temperature, max_new=body.max_new, seed=body.seed,
        threads=threads,
    )


@router.get("/searches", summary="Swarm searches you asked for (admins: all), newest first")
async def list_searches(
    request: Request, run: str | None = Query(None, max_length=64), limit: int = Query(50, ge=1, le=500),
    user: User = Depends(current_user),
) -> list[dict[str, Any]]:
    from shoal.ulm.searches import visible

    return await asyncio.to_thread(visible, _home(request), user, run, limit)


@router.get("/searches/{search_id}", summary="One search: the task, the greedy answer, every candidate with its verdict")
async def get_search(search_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    from shoal.ulm.searches import find

    return find(_home(request), search_id[:40], user)
