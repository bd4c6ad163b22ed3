"""Edge nodes in the server: the hub's life cycle and ``/api/nodes`` (the web UI's Nodes view).

With ``[edge.hub] enabled = true`` the router's lifespan starts an
``EdgeHub`` on the swarm's database (after the swarm started, before it
stops) and stops it at shutdown. Every route authenticates and checks the
node against the caller's grants: a node you were not granted is a 404, as
is someone else's conversation. Grants are managed by admins here or in
``[edge.hub].grants``.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from shoal.edge.hubstore import HubStore, NodeRow
from shoal.errors import BadInput, NotFound, PermissionDenied
from shoal.server.auth import authenticate
from shoal.store.conversations import User

ONLINE_SECONDS = 90


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    swarm = app.state.swarm
    hub = None
    if swarm.config.edge.hub.enabled and getattr(app.state, "edge_hub", None) is None:
        from shoal.edge.hub import EdgeHub

        hub = EdgeHub(swarm.db, swarm.config.edge)
        await hub.start()
        app.state.edge_hub = hub
    try:
        yield
    finally:
        if hub is not None:
            await hub.stop()
            app.state.edge_hub = None


router = APIRouter(lifespan=lifespan, tags=["nodes"])


async def _ctx(request: Request) -> tuple[User, HubStore, dict[str, list[str]]]:
    swarm = request.app.state.swarm
    user = await authenticate(swarm.accounts, request.headers, request.cookies)
    return user, HubStore(swarm.db), swarm.config.edge.hub.grants


def summary(n: NodeRow, now: float) -> dict[str, Any]:
    online = n.last_seen is not None and now - n.last_seen < ONLINE_SECONDS
    return {
        "name": n.name, "site": n.site, "location": n.location, "online": online,
        "status": n.error and "error" or ("syncing" if n.backlog and online else "up to date" if online else "offline"),
        "last_seen": n.last_seen, "last_sync": n.last_batch, "backlog": n.backlog, "head": n.head, "contig": n.contig,
        "offset_ms": n.offset_ms, "received": n.received, "duplicates": n.duplicates, "conflicts": n.conflicts,
        "rejected": n.rejected, "error": n.error,
    }


@router.get("/api/nodes", summary="The edge nodes you may see: status, last sync, backlog, clock offset")
async def list_nodes(request: Request) -> dict[str, Any]:
    user, store, grants = await _ctx(request)
    visible = await store.visible(user, grants)
    now = time.time()
    hub = getattr(request.app.state, "edge_hub", None)
    hub_status: dict[str, Any] = {"enabled": request.app.state.swarm.config.edge.hub.enabled}
    if hub is not None:
        snap = hub.snapshot()
        hub_status.update(state=snap["state"])
        if user.is_admin:
            hub_status.update({k: snap[k] for k in ("url", "last_error", "hint", "batches", "entries", "duplicates",
                                                    "corrupt", "rejected", "pulls", "stream_messages")})
    nodes = [summary(n, now) for n in await store.nodes() if n.name in visible]
    return {"hub": hub_status, "nodes": nodes}


@router.get("/api/nodes/{name}", summary="One node: status, sensors with their latest readings")
async def get_node(name: str, request: Request) -> dict[str, Any]:
    user, store, grants = await _ctx(request)
    node = await store.node(name, user, grants)
    out = summary(node, time.time())
    out["sensors"] = await store.sensors(name)
    out["holes"] = store.holes(name)[:10]
    return out


@router.get("/api/nodes/{name}/notes", summary="A node's observations and facts, newest first, with provenance")
async def node_notes(
    request: Request, name: str, kind: str = Query("observation,fact", pattern=r"^[a-z,]+$"),
    limit: int = Query(50, ge=1, le=500), q: str | None = Query(None, max_length=200),
) -> list[dict[str, Any]]:
    user, store, grants = await _ctx(request)
    await store.node(name, user, grants)
    if q:
        return await store.search_notes([name], q, limit=limit)
    return await store.notes([name], kinds=[k for k in kind.split(",") if k], limit=limit)


async def _series(store: HubStore, name: str, sensor: int | None, hours: float, points: int) -> tuple[dict[str, Any], list[Any]]:
    if sensor is None:  # checked here, after the caller was authenticated: a stranger learns nothing
        raise BadInput("which sensor? add ?sensor=ID", hint=f"GET /api/nodes/{name} lists its sensors")
    sensors = {s["id"]: s for s in await store.sensors(name)}
    if sensor not in sensors:
        raise NotFound(f"node {name!r} has no sensor {sensor}", hint=f"GET /api/nodes/{name} lists its sensors")
    s = sensors[sensor]
    until = int(time.time() * 1000)
    if s["last"] is not None:
        until = max(until, int(s["last"]["time"] * 1000) + 1)
    pts = await store.series(name, sensor, until - int(hours * 3_600_000), until, points=points)
    return s, pts


@router.get("/api/nodes/{name}/series", summary="One sensor's readings as buckets (t, mean, min, max, n)")
async def node_series(
    request: Request, name: str, sensor: int | None = Query(None, ge=0, le=65535), hours: float = Query(24, gt=0, le=24 * 366),
    points: int = Query(300, ge=2, le=2000),
) -> dict[str, Any]:
    user, store, grants = await _ctx(request)
    await store.node(name, user, grants)
    s, pts = await _series(store, name, sensor, hours, points)
    return {"sensor": s, "points": [{"t": t, "mean": m, "min": lo, "max": hi, "n": n} for t, m, lo, hi, n in pts]}


@router.get("/api/nodes/{name}/plot.png", summary="One sensor's readings as a PNG plot", response_class=Response)
async def node_plot(
    request: Request, name: str, sensor: int | None = Query(None, ge=0, le=65535), hours: float = Query(24, gt=0, le=24 * 366),
) -> Response:
    user, store, grants = await _ctx(request)
    await store.node(name, user, grants)
    s, pts = await _series(store, name, sensor, hours, 300)
    from shoal.edge.plot import render

    label = s["label"] or s["name"].replace("_", " ")
    png = await asyncio.to_thread(render, [(label, s["unit"], [(t, m, lo, hi) for t, m, lo, hi, _ in pts])],
                                  width=7.0, height_per=2.0)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("only admins may change who sees a node", hint="ask an admin, or set [edge.hub].grants")


@router.get("/api/nodes/{name}/grants", summary="Who may see this node (admins)")
async def node_grants(name: str, request: Request) -> dict[str, Any]:
    user, store, grants = await _ctx(request)
    node = await store.node(name, user, grants)
    _admin(user)
    keys = {node.name} | ({f"site:{node.site}"} if node.site else set())
    return {
        "api": [g for g in await store.grants() if g["node"] in keys],
        "config": {k: v for k, v in grants.items() if k in keys},
    }


@router.put("/api/nodes/{name}/grants/{user_name}", status_code=204, summary="Let a user see this node (or site:NAME)")
async def grant(name: str, user_name: str, request: Request) -> Response:
    user, store, _ = await _ctx(request)
    _admin(user)
    target = await request.app.state.swarm.accounts.user_by_name(user_name)
    await store.grant(name, target, by=user.name)
    return Response(status_code=204)


@router.delete("/api/nodes/{name}/grants/{user_name}", status_code=204, summary="Stop a user seeing this node")
async def revoke(name: str, user_name: str, request: Request) -> Response:
    user, store, _ = await _ctx(request)
    _admin(user)
    target = await request.app.state.swarm.accounts.user_by_name(user_name)
    if not await store.revoke(name, target):
        raise NotFound(f"{user_name} had no grant on {name!r} through the API",
                       hint="grants in [edge.hub].grants are changed in shoal.toml")
    return Response(status_code=204)
