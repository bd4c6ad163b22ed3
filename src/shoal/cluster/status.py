"""One view of the cluster, three renderings: a dict (``/api/cluster``, the web UI,
``shoal cluster status --json``), a rich table (the CLI) and Prometheus text (``/metrics``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from shoal.cluster.core import Cluster


def snapshot(cluster: "Cluster") -> dict[str, Any]:
    waiting = cluster.waiting_for()
    servers = []
    for m in sorted(cluster.members.values(), key=lambda m: m.position):
        d = m.describe()
        d["queued"] = waiting.get(m.name, 0)
        servers.append(d)
    for m in cluster._draining:
        d = m.describe()
        d["health"] = "draining"
        d["queued"] = 0
        servers.append(d)
    reload = cluster.reload_state
    return {
        "strategy": cluster.settings.strategy,
        "queue": {"depth": cluster.queue.pending, "max": cluster.queue.max_queue, "rejected": cluster.queue.dropped},
        "in_flight": sum(m.in_flight for m in cluster.members.values()),
        "servers": servers,
        "reload": {
            "path": str(reload.path) if reload and reload.path else None,
            "reloads": reload.reloads if reload else 0,
            "last_reload": reload.last_reload if reload else None,
            "error": reload.error if reload else None,
            "applied": reload.applied if reload else [],
            "restart_needed": reload.restart_needed if reload else [],
        },
        "totals": {
            "requests": cluster.metrics.requests.total(),
            "failovers": cluster.metrics.failovers.total(),
            "retries": cluster.metrics.retries.total(),
        },
    }


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 30):.2f}"


def table(status: dict[str, Any]) -> "Table":
    from rich.table import Table

    q = status["queue"]
    t = Table(
        title=f"shoal cluster — strategy {status['strategy']}, queue {q['depth']}/{q['max']}, "
        f"in flight {status['in_flight']}",
        title_justify="left",
    )
    for col in ("server", "kind", "health", "loaded models", "memory GiB", "queue", "in flight", "requests"):
        t.add_column(col, justify="right" if col in ("queue", "in flight", "requests") else "left")
    colours = {"up": "green", "down": "red", "unknown": "yellow", "draining": "yellow"}
    for s in status["servers"]:
        health = s["health"] if s["enabled"] else "disabled"
        style = colours.get(health, "dim")
        if s["breaker"] != "closed" and s["enabled"]:
            health += f" (circuit {s['breaker']})"
        loaded = ", ".join(m["name"].rsplit("/", 1)[-1] for m in s["loaded"])
        if not loaded:
            idle = [n.rsplit("/", 1)[-1] for n in s["available"][:3]]
            loaded = f"[dim]{', '.join(idle)} (not loaded)[/]" if idle else "—"
        if s["loading"]:
            loaded += f" (loading {s['loading']})"
        if s["aliases"]:
            loaded += f"  [dim]as {', '.join(s['aliases'])}[/]"
        mem = s["memory"]
        memory = f"{_gib(mem['used_bytes'])} / {_gib(mem['capacity_bytes'])}" if mem["capacity_bytes"] else (
            _gib(mem["used_bytes"]) if mem["used_bytes"] else "—"
        )
        t.add_row(
            f"{s['name']}\n[dim]{s['url'] or 'in process'}[/]",
            s["kind"],
            f"[{style}]{health}[/]" + (f"\n[dim]{s['last_error'][:60]}[/]" if s["last_error"] else ""),
            loaded,
            memory,
            str(s["queued"]),
            f"{s['in_flight']}/{s['max_concurrent']}",
            str(s["requests"]),
        )
    return t


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kw: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kw.items()) + "}"


def prometheus(cluster: "Cluster") -> str:
    """The cluster's metrics in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

    members = sorted(cluster.members.values(), key=lambda m: m.position)
    metric("shoal_cluster_server_up", "gauge", "1 when the server answered its last health check.",
           [(_labels(server=m.name, kind=m.kind), int(m.health == "up")) for m in members])
    metric("shoal_cluster_server_enabled", "gauge", "1 when the server is enabled in shoal.toml.",
           [(_labels(server=m.name), int(m.enabled)) for m in members])
    states = {"closed": 0, "half-open": 1, "open": 2}
    metric("shoal_cluster_server_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
           [(_labels(server=m.name), states[m.breaker.state]) for m in members])
    metric("shoal_cluster_server_in_flight", "gauge", "Requests the server is serving for shoal now.",
           [(_labels(server=m.name), m.in_flight) for m in members])
    metric("shoal_cluster_server_max_concurrent", "gauge", "Admission limit of the server.",
           [(_labels(server=m.name), m.max_concurrent) for m in members])
    waiting = cluster.waiting_for()
    metric("shoal_cluster_server_queue_depth", "gauge", "Queued requests that would go to this server first.",
           [(_labels(server=m.name), waiting.get(m.name, 0)) for m in members])
    metric("shoal_cluster_queue_depth", "gauge", "Requests waiting for any server.", [("", cluster.queue.pending)])
    metric("shoal_cluster_queue_rejected_total", "counter", "Requests refused because the queue was full.",
           [("", cluster.queue.dropped)])
    loaded = []
    for m in members:
        for name, r in (m.residency.loaded.items() if m.residency else []):
            loaded.append((_labels(server=m.name, model=name), r.size_bytes or 0))
    metric("shoal_cluster_model_loaded_bytes", "gauge", "Models in memory on each server (0: size unknown).", loaded)
    metric("shoal_cluster_server_memory_used_bytes", "gauge", "Memory the loaded models take.",
           [(_labels(server=m.name), m.used_bytes) for m in members])
    metric("shoal_cluster_server_memory_capacity_bytes", "gauge", "memory_gb from shoal.toml.",
           [(_labels(server=m.name), m.capacity_bytes) for m in members if m.capacity_bytes])
    metric("shoal_cluster_requests_total", "counter", "Requests admitted to a server, by outcome.",
           [(_labels(server=s, outcome=o), n) for (s, o), n in sorted(cluster.metrics.requests.values.items())])
    metric("shoal_cluster_retries_total", "counter", "Requests retried elsewhere before their first token.",
           [(_labels(server=s), n) for (s,), n in sorted(cluster.metrics.retries.values.items())])
    metric("shoal_cluster_failovers_total", "counter", "Streams continued on another server mid-way.",
           [(_labels(server=s), n) for (s,), n in sorted(cluster.metrics.failovers.values.items())])
    metric("shoal_cluster_local_first_total", "counter",
           "Replies the local-first router placed, by the server the turn asked for and the one that wrote it.",
           [(_labels(wanted=w, server=s), n) for (w, s), n in sorted(cluster.metrics.local_first.values.items())])
    metric("shoal_cluster_tokens_total", "counter", "Tokens streamed from each server.",
           [(_labels(server=m.name), m.counters.tokens) for m in members])
    metric("shoal_cluster_model_loads_total", "counter", "Models loaded by the cluster.",
           [(_labels(server=m.name), m.counters.loads) for m in members])
    metric("shoal_cluster_model_evictions_total", "counter", "Idle models unloaded to make room.",
           [(_labels(server=m.name), m.counters.evictions) for m in members])
    metric("shoal_cluster_circuit_trips_total", "counter", "Times a server's circuit opened.",
           [(_labels(server=m.name), m.breaker.trips) for m in members])
    for name, hist, help_ in (
        ("shoal_cluster_time_to_first_token_seconds", cluster.metrics.ttft, "Queue + load + prompt time."),
        ("shoal_cluster_request_duration_seconds", cluster.metrics.duration, "Whole generation time."),
    ):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} histogram")
        for le, n in hist.cumulative():
            lines.append(f'{name}_bucket{{le="{le:g}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
        lines.append(f"{name}_sum {hist.sum:.6f}")
        lines.append(f"{name}_count {hist.count}")
    reload = cluster.reload_state
    metric("shoal_cluster_config_reloads_total", "counter", "Times shoal.toml was reloaded.",
           [("", reload.reloads if reload else 0)])
    metric("shoal_cluster_config_error", "gauge", "1 when the last change to shoal.toml could not be used.",
           [("", int(bool(reload and reload.error)))])
    return "\n".join(lines) + "\n"


async def probe(config: Any) -> dict[str, Any]:
    """Status from this process: probe every server in ``config`` once (no live queue)."""
    from shoal.cluster.core import Cluster

    cluster = Cluster(config)
    try:
        await cluster.check_health()
        return snapshot(cluster)
    finally:
        await cluster.stop()


async def fetch(url: str, token: str | None) -> dict[str, Any]:
    """Status of a running shoal server (``GET /api/cluster``): live queue and in-flight numbers."""
    import httpx

    from shoal.errors import AuthError, BackendUnavailable

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10) as http:
            resp = await http.get("/api/cluster", headers=headers)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"cannot reach shoal at {url}: {exc}", hint="is `shoal up` running there?") from exc
    if resp.status_code == 401:
        raise AuthError("the server wants a token", hint="pass --token or set SHOAL_TOKEN (`shoal tokens create`)")
    if resp.status_code >= 400:
        raise BackendUnavailable(f"shoal at {url} answered HTTP {resp.status_code}: {resp.text[:200]}")
    return resp.json()  # type: ignore[no-any-return]
