"""The FastAPI application: REST under /api, websocket at /ws, OpenAI at /v1, the UI at /."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

import shoal
from shoal.config import Env
from shoal.errors import ShoalError
from shoal.runtime.swarm import Swarm
from shoal.server import api, cluster_api, hooks, nodes_api, openai_compat, ws
from shoal.server.auth import LoginLimiter, RateLimited

STATIC = Path(__file__).parent / "static"

STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "bad_input": 400,
    "config": 400,
    "context_overflow": 400,
    "capacity": 503,
    "rate_limited": 429,
    "backend_unavailable": 503,
    "backend": 502,
    "backend_protocol": 502,
    "cancelled": 499,
    "model": 500,
}


def create_app(env: Env | None = None, *, swarm: Swarm | None = None) -> FastAPI:
    """The app; its lifespan starts and stops the swarm (unless one is passed in, started)."""
    own = swarm is None
    the_swarm = swarm or Swarm(env)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a second lifespan on the same app (another test client) must not
        # restart or stop a swarm someone else is running
        starting = own and not the_swarm.started
        if starting:
            await the_swarm.start()
            if any(b.role == "memory" for b in the_swarm.config.bots):
                from shoal.memory.embed import shared_embedder

                shared_embedder().warm()  # before the first message needs it
        try:
            yield
        finally:
            if starting:
                await the_swarm.stop()

    app = FastAPI(
        title="shoal",
        version=shoal.__version__,
        description="A Cluster of Little Action Models. REST API, websocket (/ws, see docs/protocol.md) "
        "and an OpenAI-compatible front (/v1). Authenticate with a session cookie (POST /api/auth/login) "
        "or `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.swarm = the_swarm
    app.state.login_limiter = LoginLimiter(the_swarm.config.server.login_attempts_per_minute)

    @app.exception_handler(ShoalError)
    async def shoal_error(request: Request, exc: ShoalError) -> JSONResponse:
        if request.url.path.startswith("/v1/"):
            return openai_compat.openai_error(openai_compat.translate(exc))
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if exc.code == "unauthorized":
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}},
            status_code=STATUS.get(exc.code, 500),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        if request.url.path.startswith("/v1/"):
            return JSONResponse(
                {"error": {"message": message, "type": "invalid_request_error", "param": where or None, "code": None}},
                status_code=400,
            )
        return JSONResponse(
            {"error": {"code": "bad_input", "message": message, "hint": None, "details": _jsonable(errors)}},
            status_code=422,
        )

    app.include_router(api.router)
    app.include_router(openai_compat.router)
    app.include_router(cluster_api.router)
    app.include_router(ws.router)
    app.include_router(hooks.router)
    app.include_router(nodes_api.router)  # edge nodes (issue 16): the hub and /api/nodes
    from shoal.server import learn_api

    app.include_router(learn_api.router)  # learning (issue 14): feedback on replies, adapters
    from shoal.server import ulm_api

    app.include_router(ulm_api.router)  # µLMs (issue 15): training runs with live curves, swarm searches
    from shoal.server import ollama_compat, openai_more, tools_api  # issue 17: /v1 rest, Ollama API, /api/tools

    app.include_router(openai_more.router)
    app.include_router(ollama_compat.router)
    app.include_router(tools_api.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        from shoal.memory.embed import shared_embedder

        # "loading" while the embedding model loads at start: memory works, the first write waits for it
        return {"status": "ok", "version": shoal.__version__, "embedder": "ready" if shared_embedder().ready else "loading"}

    if (STATIC / "index.html").exists():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _jsonable(errors: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for e in errors:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))})
    return out
