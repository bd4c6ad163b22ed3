"""The cluster in the server: its life cycle, ``GET /api/cluster`` and ``GET /metrics``.

The router's lifespan runs inside the app's (after the swarm started, before
it stops): it builds a ``Cluster`` from the swarm's config around the
swarm's own backends (so the embedded model is loaded once), starts health
checks and the shoal.toml watcher, and stops them at shutdown. A swarm that
already has a ``cluster`` attribute is used as it is (its owner starts and
stops it).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse

from shoal.cluster import Cluster
from shoal.cluster.status import prometheus
from shoal.errors import BackendUnavailable, PermissionDenied
from shoal.server.auth import authenticate


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    swarm = app.state.swarm
    cluster: Cluster | None = getattr(swarm, "cluster", None)
    own = cluster is None
    if cluster is None:
        cluster = Cluster(swarm.config, backends=swarm.backends, config_path=swarm.env.settings.config_path)
        await cluster.start()
    app.state.cluster = cluster
    try:
        yield
    finally:
        if own:
            await cluster.stop()
        app.state.cluster = None


router = APIRouter(lifespan=lifespan)


def cluster_of(request: Request) -> Cluster:
    cluster = getattr(request.app.state, "cluster", None)
    if cluster is None:
        raise BackendUnavailable("the cluster is not running", hint="the server is starting or stopping; retry shortly")
    return cluster  # type: ignore[no-any-return]


@router.get(
    "/api/cluster",
    tags=["cluster"],
    summary="Servers, health, loaded models, memory, queue depth and in-flight requests",
)
async def cluster_status(request: Request) -> dict[str, Any]:
    user = await authenticate(request.app.state.swarm.accounts, request.headers, request.cookies)
    status = cluster_of(request).status()
    if not user.is_admin:
        # addresses and upstream errors are for whoever runs the servers
        for s in status["servers"]:
            s["url"] = None
            s["last_error"] = "unavailable" if s["last_error"] else None
        status["reload"] = {**status["reload"], "path": None, "error": "invalid" if status["reload"]["error"] else None}
    return status


@router.get(
    "/metrics",
    tags=["cluster"],
    summary="Prometheus metrics of the cluster (text exposition format)",
    response_class=PlainTextResponse,
)
async def metrics(request: Request) -> PlainTextResponse:
    running: Cluster | None = getattr(request.app.state, "cluster", None)
    settings = running.settings if running is not None else request.app.state.swarm.config.cluster
    if not settings.metrics_public:
        user = await authenticate(request.app.state.swarm.accounts, request.headers, request.cookies)
        if not user.is_admin:
            raise PermissionDenied(
                "only admins may read the metrics",
                hint="scrape with an admin's API token as a bearer token, or set cluster.metrics_public = true",
            )
    cluster = cluster_of(request)
    return PlainTextResponse(prometheus(cluster), media_type="text/plain; version=0.0.4; charset=utf-8")
