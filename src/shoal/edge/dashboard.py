"""The node's own small page, served on ``edge.dashboard.port``: works with no network beyond it.

One self-contained HTML page (no script or font from anywhere else) shows
the node's sync state, current readings, a plot per sensor and the latest
observations and facts, refreshing every few seconds from a JSON endpoint.
It listens on 127.0.0.1 unless told otherwise; with ``token_env`` set, it
asks for that token (``?token=`` once, then a cookie, or a bearer header).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from shoal.edge.hlc import physical
from shoal.edge.journal import CLOCK, EVENT, FACT, OBSERVATION

if TYPE_CHECKING:
    from shoal.edge.node import EdgeNode

log = logging.getLogger(__name__)

COOKIE = "shoal_edge"


def build_app(node: "EdgeNode") -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    token = os.environ.get(node.config.dashboard.token_env) if node.config.dashboard.token_env else None

    def allowed(request: Request) -> bool:
        if not token:
            return True
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def denied() -> Response:
        return JSONResponse({"error": {"code": "unauthorized", "message": "this node's page needs its token",
                                       "hint": "open it once as /?token=… (edge.dashboard.token_env)"}}, status_code=401)

    async def page(request: Request) -> Response:
        if not allowed(request):
            return denied()
        resp = HTMLResponse(PAGE.replace("{{NODE}}", node.name))
        if token and request.query_params.get("token"):
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return resp

    async def status(request: Request) -> Response:
        if not allowed(request):
            return denied()
        return JSONResponse(await snapshot(node))

    async def plot(request: Request) -> Response:
        if not allowed(request):
            return denied()
        from shoal.edge.plot import render

        j = node.journal
        assert j is not None
        name = request.query_params.get("sensor", "")
        hours = min(24 * 365, max(0.1, float(request.query_params.get("hours", "24") or 24)))
        sensor = j.sensors.get(name)
        if sensor is None:
            return JSONResponse({"error": {"code": "not_found", "message": f"no sensor {name!r}"}}, status_code=404)
        until = physical(j.clock.last) + 1
        pts = await node.log.series(sensor.id, until - int(hours * 3_600_000), until, points=300)
        png = await asyncio.to_thread(render, [(sensor.title, sensor.unit, [(p.t, p.mean, p.min, p.max) for p in pts])],
                                      width=6.0, height_per=1.8)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/", page), Route("/api/status", status), Route("/plot.png", plot)])


async def snapshot(node: "EdgeNode") -> dict[str, Any]:
    j = node.journal
    assert j is not None
    latest = await j.latest_readings()
    readings = []
    for s in j.sensors.values():
        e = latest.get(s.id)
        readings.append({"name": s.name, "title": s.title, "unit": s.unit, "binary": s.binary,
                         "value": e.value if e else None, "time": e.time if e else None})
    notes = await j.tail(30, kinds=(OBSERVATION, FACT, CLOCK, EVENT))
    return {
        "live": node.live(),
        "readings": readings,
        "notes": [{"seq": e.seq, "kind": e.kind_name, "time": e.time, "text": (e.body or {}).get("text", ""),
                   "confidence": (e.body or {}).get("confidence"), "method": (e.body or {}).get("method")}
                  for e in reversed(notes)],
        "now": time.time(),
    }


class Dashboard:
    def __init__(self, node: "EdgeNode") -> None:
        self.node = node
        self.server: Any = None
        self.task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        import uvicorn

        cfg = self.node.config.dashboard
        config = uvicorn.Config(build_app(self.node), host=cfg.host, port=cfg.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the node owns Ctrl-C
        self.task = asyncio.create_task(self.server.serve(), name="edge:dashboard")
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self.task.done():
                exc = self.task.exception() if not self.task.cancelled() else None
                log.warning("the node's dashboard did not start on %s:%s (%s); the node runs without it", cfg.host, cfg.port, exc)
                self.task = None
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        if self.server.servers:
            self.port = self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = self.node.config.dashboard.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}/"

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(self.task, timeout=5)
            except (asyncio.TimeoutError, Exception):
                self.task.cancel()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{NODE}} · shoal edge</title>
<style>
:root{--bg:#0b1220;--panel:#121e33;--line:#22334f;--text:#e6edf7;--muted:#8ea0bb;--accent:#22b8a6;--warn:#f2b84b;--bad:#f26d6d;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px;color-scheme:dark}
body{margin:0;background:var(--bg);color:var(--text)}header{padding:16px 22px;border-bottom:1px solid var(--line);display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
h1{font-size:20px;margin:0}.muted{color:var(--muted);font-size:13px}main{padding:18px 22px;display:grid;grid-template-columns:minmax(0,1.2fr) minmax(0,1fr);gap:18px}
section{background:var(--panel);border:1px solid var(--line);border-radius:12px;padding:14px 16px}h2{font-size:13px;text-transform:uppercase;letter-spacing:1px;color:var(--muted);margin:0 0 10px}
table{width:100%;border-collapse:collapse}td,th{padding:6px 4px;border-bottom:1px solid var(--line);text-align:left;font-size:14px}th{color:var(--muted);font-weight:500}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--muted);margin-right:6px}.ok{background:var(--accent)}.warn{background:var(--warn)}.bad{background:var(--bad)}
.note{padding:8px 0;border-bottom:1px solid var(--line)}.note small{color:var(--muted);display:block;margin-top:2px}.kind{font-size:11px;border:1px solid var(--line);border-radius:6px;padding:1px 6px;margin-right:6px;color:var(--muted)}
img{width:100%;border-radius:8px;margin-top:8px;background:#121e33}.alert{background:rgba(242,109,109,.12);border:1px solid rgba(242,109,109,.4);color:#ffc9c9;padding:10px 12px;border-radius:9px;margin:0 22px 0;grid-column:1/-1}
@media (max-width:800px){main{grid-template-columns:1fr}}
</style></head><body>
<header><h1>{{NODE}}</h1><span id="sync" class="muted">…</span><span id="clock" class="muted"></span></header>
<div id="alerts"></div>
<main><div><section><h2>Readings</h2><table id="readings"><tr><td class="muted">loading…</td></tr></table></section>
<section style="margin-top:18px"><h2>Last 24 hours</h2><div id="plots"></div></section></div>
<section><h2>Observations and facts</h2><div id="notes"></div></section></main>
<script>
"use strict";
const fmt = (t) => t ? new Date(t * 1000).toLocaleString() : "—";
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
let plotted = "";
async function refresh() {
  let d;
  try { const r = await fetch("api/status", {credentials: "same-origin"}); d = await r.json(); if (!r.ok) throw new Error(d.error.message); }
  catch (e) { document.getElementById("sync").textContent = "page offline: " + e.message; return; }
  const l = d.live, s = l.sync;
  const state = s ? s.state : "no hub configured (offline only)";
  const cls = !s ? "warn" : (s.state === "caught up" ? "ok" : (s.state === "offline" || s.state === "error") ? "bad" : "warn");
  document.getElementById("sync").innerHTML = `<span class="dot ${cls}"></span>sync: ${esc(state)} · backlog ${l.backlog} · last sync ${s && s.last_sync ? fmt(s.last_sync) : "never"}`
    + (s && s.offset_ms != null ? ` · hub clock offset ${(s.offset_ms / 1000).toFixed(1)} s` : "");
  document.getElementById("clock").textContent = "journal head " + l.head;
  const alerts = [];
  if (l.disk_full) alerts.push(l.disk_full);
  if (s && s.last_error) alerts.push(s.last_error + (s.hint ? " — " + s.hint : ""));
  for (const [n, why] of Object.entries(l.skipped || {})) alerts.push(why);
  document.getElementById("alerts").innerHTML = alerts.map((a) => `<div class="alert" data-test="alert">${esc(a)}</div>`).join("");
  document.getElementById("readings").innerHTML = "<tr><th>sensor</th><th>value</th><th>at</th></tr>" + d.readings.map((r) =>
    `<tr data-sensor="${esc(r.name)}"><td>${esc(r.title)}</td><td><b>${r.value == null ? "—" : esc(r.value)}</b> ${esc(r.unit)}</td><td class="muted">${fmt(r.time)}</td></tr>`).join("");
  const names = d.readings.map((r) => r.name).join(",");
  if (names !== plotted || Math.random() < 0.1) {
    plotted = names;
    document.getElementById("plots").innerHTML = d.readings.map((r) => `<img alt="${esc(r.title)}" src="plot.png?sensor=${encodeURIComponent(r.name)}&hours=24&t=${Date.now()}">`).join("");
  }
  document.getElementById("notes").innerHTML = d.notes.map((n) => `<div class="note"><span class="kind">${esc(n.kind)}</span>${esc(n.text)}
    <small>${fmt(n.time)}${n.confidence != null ? " · confidence " + n.confidence : ""}${n.method ? " · " + esc(n.method) : ""} · #${n.seq}</small></div>`).join("") || '<span class="muted">nothing noted yet</span>';
}
refresh(); setInterval(refresh, 5000);
</script></body></html>
"""
