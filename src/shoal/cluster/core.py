"""The cluster: many model servers behaving as one ``Backend``.

``Cluster.stream(req)`` waits its turn in a bounded priority queue, is
admitted to a server chosen by the routing strategy (loading the model there
if needed), and streams from it. Before the first token a failing server is
retried elsewhere; after it, the generation *continues* on another server
from the text already produced (``GenerateRequest.prefix``), so the consumer
sees one uninterrupted stream. Closing the stream, or cancelling the request,
closes the upstream request.

Background work: a health loop (probes every server, which also refreshes
what each has loaded) and a config watcher (servers added, disabled or
removed in shoal.toml take effect without a restart). Shutdown: stop both,
then close the backends the cluster created (shared ones belong to their
owner).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any, AsyncIterator, Callable, ClassVar

import aiohttp

from shoal.backends import create_backend
from shoal.backends.base import Backend
from shoal.cluster.member import Member
from shoal.cluster.metrics import Metrics
from shoal.cluster.queue import AdmissionQueue, Ticket
from shoal.cluster.reload import ConfigWatcher, ReloadState
from shoal.cluster.routing import rank, strategy
from shoal.config import ClusterConfig, ServerConfig, ShoalConfig
from shoal.errors import (
    BackendError,
    BackendProtocolError,
    BackendUnavailable,
    GenerationCancelled,
    NotFound,
    ShoalError,
)
from shoal.types import Chunk, GenerateRequest


#: a failure that means the server did not answer at all (refused, reset, cut off, silent)
_NO_ANSWER = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, OSError)
log = logging.getLogger(__name__)

#: fields whose change makes a server a different server (a new backend)
_IDENTITY = ("kind", "url", "model_path", "api_key_env", "timeout", "chat_format")
#: how often a waiting request re-checks its cancel flag (seconds)
_CANCEL_POLL = 0.05


class Cluster:
    supports_grammar: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_lora: ClassVar[bool] = False

    def __init__(
        self,
        config: ShoalConfig,
        *,
        backends: dict[str, Backend] | None = None,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "cluster",
        on_reload: Callable[[ShoalConfig], Any] | None = None,
    ) -> None:
        """``backends``: already running backends to use for servers of the same name;
        the cluster does not close them. ``on_reload``: what a changed shoal.toml is
        handed to (the swarm, which applies it to the bots and then to this cluster);
        by default the cluster applies it itself."""
        self.name = name
        self.settings: ClusterConfig = config.cluster
        self._engine_config = config.engine
        self._shared = dict(backends or {})
        self._clock = clock
        self.members: dict[str, Member] = {}
        self._draining: list[Member] = []
        self.queue = AdmissionQueue(self.settings.max_queue, self.settings.aging, clock)
        self._strategy = strategy(self.settings.strategy)
        self.metrics = Metrics()
        self.watcher = ConfigWatcher(config_path, on_reload or self.apply) if config_path else None
        self._tasks: list[asyncio.Task[None]] = []
        self._health: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.started = False
        self._apply_servers(config.servers, initial=True)

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> "Cluster":
        """Probe every server once, then keep checking health and shoal.toml."""
        if self.started:
            return self
        self.started = True
        await self.check_health()
        self._keep_health_loop()
        if self.watcher is not None:
            self._tasks.append(asyncio.create_task(self._reload_loop(), name="cluster:reload"))
        return self

    def _keep_health_loop(self) -> None:
        """Run the health loop exactly when ``health_interval`` > 0 (it can change on reload)."""
        running = self._health is not None and not self._health.done()
        if self.settings.health_interval > 0 and not running and self.started:
            self._health = asyncio.create_task(self._health_loop(), name="cluster:health")
            self._tasks.append(self._health)
        elif self.settings.health_interval <= 0 and running:
            assert self._health is not None
            self._health.cancel()
            self._health = None

    async def stop(self) -> None:
        self.started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for ticket in list(self.queue):
            self.queue.remove(ticket)
            if not ticket.future.done():
                ticket.future.set_exception(BackendUnavailable("the cluster is shutting down"))
        await asyncio.gather(*self._closing, return_exceptions=True)
        for m in list(self.members.values()) + self._draining:
            if m.owned:
                await m.backend.aclose()
        self.members.clear()
        self._draining.clear()

    async def aclose(self) -> None:
        await self.stop()

    async def __aenter__(self) -> "Cluster":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await self.check_health()
            except Exception:  # a bug in one probe must not end health checking
                log.exception("health check failed")

    async def _reload_loop(self) -> None:
        """Check shoal.toml every ``reload_interval`` seconds (0: not now; the setting itself can change)."""
        assert self.watcher is not None
        while True:
            interval = self.settings.reload_interval
            await asyncio.sleep(interval if interval > 0 else 1.0)
            if interval <= 0:
                continue
            try:
                if await self.watcher.check():
                    await self.check_health()
            except Exception:
                log.exception("config reload failed")

    async def check_health(self) -> None:
        """Probe every enabled server now (what it has loaded, whether it answers)."""
        timeout = self.settings.health_timeout
        await asyncio.gather(*(m.probe(timeout) for m in list(self.members.values()) if m.enabled))
        self._dispatch()

    @property
    def reload_state(self) -> ReloadState | None:
        return self.watcher.state if self.watcher else None

    # -- configuration -----------------------------------------------------------------
    def apply(self, config: ShoalConfig) -> tuple[list[str], list[str]]:
        """Take a new config: cluster settings, the engine's, and servers (added, changed, disabled, removed).

        Returns (what changed, what needs a restart) — one line each.
        """
        old = self.settings
        changed: list[str] = []
        if config.cluster != old:
            changed.append("[cluster] settings")
        self.settings = config.cluster
        self.queue.max_queue = self.settings.max_queue
        self.queue.aging = self.settings.aging
        if self.settings.strategy != old.strategy:
            self._strategy = strategy(self.settings.strategy)
        engine_changed = config.engine != self._engine_config
        if engine_changed:
            changed.append("[engine]: embedded servers restart with the new settings as their requests finish")
        self._engine_config = config.engine
        changed += self._apply_servers(config.servers, initial=False, replace_embedded=engine_changed)
        self._keep_health_loop()
        self._dispatch()
        return changed, []

    def _apply_servers(self, servers: list[ServerConfig], *, initial: bool, replace_embedded: bool = False) -> list[str]:
        changed: list[str] = []
        wanted = {s.name: (i, s) for i, s in enumerate(servers)}
        for name, m in list(self.members.items()):
            if name not in wanted:
                log.info("server %s was removed from the config", name)
                changed.append(f"server {name} removed")
                self._retire(m)
                continue
            pos, s = wanted[name]
            if any(getattr(m.config, f) != getattr(s, f) for f in _IDENTITY) or (replace_embedded and s.kind == "embedded"):
                log.info("server %s changed its address, kind or engine: replacing it", name)
                changed.append(f"server {name} replaced")
                self._retire(m)
                continue
            if m.config != s:
                changed.append(f"server {name} updated")
            m.config, m.position = s, pos
            m.breaker.threshold = self.settings.failure_threshold
            m.breaker.cooldown = self.settings.cooldown
            if hasattr(m.backend, "keep_alive"):
                m.backend.keep_alive = self.settings.ollama_keep_alive  # type: ignore[attr-defined]
        for name, (pos, s) in wanted.items():
            if name not in self.members:
                self.members[name] = self._member(s, pos, initial=initial)
                if not initial:
                    log.info("server %s joined the cluster", name)
                    if f"server {name} replaced" not in changed:
                        changed.append(f"server {name} added")
        return changed

    def _member(self, server: ServerConfig, position: int, *, initial: bool) -> Member:
        shared = self._shared.get(server.name) if initial else None
        backend = shared or create_backend(server, self._engine_config)
        if hasattr(backend, "keep_alive"):
            backend.keep_alive = self.settings.ollama_keep_alive  # type: ignore[attr-defined]
        return Member(
            server, backend, owned=shared is None, settings=self.settings, position=position, clock=self._clock
        )

    def _retire(self, m: Member) -> None:
        """Route nothing new to ``m``; close it once its requests have finished."""
        m.removed = True
        self.members.pop(m.name, None)
        if m.in_flight > 0:
            self._draining.append(m)
        else:
            self._close_later(m)

    def _close_later(self, m: Member) -> None:
        if not m.owned:
            return
        try:
            task = asyncio.get_running_loop().create_task(m.backend.aclose(), name=f"cluster:close:{m.name}")
        except RuntimeError:
            return  # no loop (configured before start): nothing was opened yet
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the Backend contract ----------------------------------------------------------
    async def models(self) -> list[str]:
        names: set[str] = set()
        for m in self.members.values():
            if m.enabled:
                names |= m.names()
        return sorted(names)

    def view(self, server: str) -> "ClusterView":
        """A Backend that routes through the cluster, preferring ``server`` (a bot's server)."""
        return ClusterView(self, server)

    async def stream(self, req: GenerateRequest, *, prefer: str | None = None) -> AsyncIterator[Chunk]:
        """Generate on the best server; retry, fail over and continue as needed (see the module doc)."""
        model = req.model
        if prefer is not None:
            if prefer not in self.members:
                raise NotFound(f"no server named '{prefer}' in the cluster", hint="`shoal cluster status` lists them")
            if model is None or model == "default":
                # "the preferred server's default model", by a name other servers may share
                model = self.members[prefer].public_default()
        produced: list[str] = []
        tokens = 0
        retries = failovers = 0
        exclude: set[str] = set()
        t0 = self._clock()
        first = True
        last_error: BackendError | None = None
        while True:
            try:
                member, upstream = await self._acquire(req, model, prefer, frozenset(exclude))
            except BackendUnavailable:
                if last_error is not None:
                    raise last_error from None  # every server failed: the first failure says why
                raise
            outcome = "cancelled"
            attempt_tokens = 0
            try:
                if member.can_load:
                    await member.ensure_loaded(upstream, req.cancel)
                sub = self._continuation(req, upstream, "".join(produced), tokens)
                if sub is None:
                    outcome = "ok"
                    yield Chunk(finish_reason="length", completion_tokens=tokens, served_by=member.name)
                    return
                async with aclosing(member.backend.stream(sub)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        if chunk.text:
                            produced.append(chunk.text)
                            tokens += chunk.tokens
                            attempt_tokens += chunk.tokens
                            if first:
                                first = False
                                self.metrics.ttft.observe(self._clock() - t0)
                        chunk.served_by = member.name
                        if chunk.finish_reason is not None:
                            chunk.completion_tokens = tokens - attempt_tokens + (chunk.completion_tokens or attempt_tokens)
                        yield chunk
                outcome = "ok"
                self.metrics.duration.observe(self._clock() - t0)
                return
            except GenerationCancelled:
                raise
            except (BackendUnavailable, BackendProtocolError) as exc:
                if req.cancel.cancelled:
                    raise GenerationCancelled(req.cancel.reason or "cancelled") from exc
                outcome = "failed"
                last_error = last_error or exc
                if isinstance(exc.__cause__, _NO_ANSWER):
                    # no answer at all (refused, reset, cut off): down until a probe says otherwise;
                    # an HTTP error status only counts against the circuit breaker
                    member.mark_down(exc.message)
                exclude.add(member.name)
                if produced:
                    failovers += 1
                    member.counters.failovers += 1
                    self.metrics.failovers.inc(member.name)
                    if req.json_schema is not None or req.grammar is not None:
                        raise BackendUnavailable(
                            f"server '{member.name}' failed in the middle of a constrained (JSON) answer, "
                            "which cannot be continued on another server",
                            hint="retry the request",
                        ) from exc
                    if failovers > self.settings.failovers:
                        raise
                    log.warning("server %s failed mid-stream; continuing on another server: %s", member.name, exc.message)
                else:
                    retries += 1
                    self.metrics.retries.inc(member.name)
                    if retries > self.settings.retries:
                        raise
                    log.warning("server %s failed; retrying on another server: %s", member.name, exc.message)
            except BackendError:
                outcome = "refused"  # the request's fault (unknown model, bad input), not the server's
                raise
            finally:
                member.counters.tokens += attempt_tokens
                self.metrics.requests.inc(member.name, outcome)
                self._release(member, upstream, outcome)

    # -- admission -----------------------------------------------------------------------
    async def _acquire(
        self, req: GenerateRequest, model: str | None, prefer: str | None, exclude: frozenset[str]
    ) -> tuple[Member, str]:
        if req.cancel.cancelled:
            raise GenerationCancelled(req.cancel.reason or "cancelled")
        loop = asyncio.get_running_loop()
        ticket = Ticket(req, model, prefer, exclude, self._clock(), loop.create_future())
        self.queue.push(ticket, bounded=False)
        self._dispatch()
        if not ticket.future.done() and self.queue.pending > self.queue.max_queue:
            self.queue.remove(ticket)
            self.queue.refuse()  # raises QueueFull
        try:
            while not ticket.future.done():
                if req.cancel.cancelled:
                    raise GenerationCancelled(req.cancel.reason or "cancelled")
                await asyncio.wait((ticket.future,), timeout=_CANCEL_POLL)
        except BaseException:
            self.queue.remove(ticket)
            if ticket.future.done() and not ticket.future.cancelled() and ticket.future.exception() is None:
                member = ticket.future.result()
                self._release(member, ticket.upstream or "", "cancelled")
            raise
        member = ticket.future.result()
        return member, ticket.upstream or member.resolve(model)

    def _dispatch(self) -> None:
        """Admit waiting requests to servers with free slots, most urgent first.

        A request that cannot be placed blocks the servers it could use for
        everyone behind it in this pass, so later arrivals never overtake it.
        """
        blocked: set[str] = set()
        everyone = set(self.members)
        for t in self.queue.ordered():
            if t.future.done():
                self.queue.remove(t)
                continue
            if t.req.cancel.cancelled:
                self.queue.remove(t)
                t.future.set_exception(GenerationCancelled(t.req.cancel.reason or "cancelled"))
                continue
            if blocked >= everyone:
                continue  # every server is full: nobody behind can be placed (cancellations above still go)
            serving = [m for m in self.members.values() if m.serves(t.model)]
            eligible = [m for m in serving if m.routable() and m.name not in t.exclude]
            if not eligible:
                self.queue.remove(t)
                t.future.set_exception(self._nobody(t, serving))
                continue
            order = rank(self._strategy, eligible, t.model, t.prefer)
            chosen = next((m for m in order if m.has_slot() and m.name not in blocked), None)
            if chosen is None:
                blocked.update(m.name for m in eligible)
                continue
            self.queue.remove(t)
            t.upstream = chosen.resolve(t.model)
            chosen.admit(t.upstream)
            assigned = getattr(self._strategy, "assigned", None)
            if assigned is not None:
                assigned(chosen)
            t.future.set_result(chosen)

    def _nobody(self, t: Ticket, serving: list[Member]) -> ShoalError:
        if not serving:
            if t.model is None or t.model == "default":
                return BackendUnavailable(
                    "the cluster has no servers", hint="add or enable a [[servers]] entry in shoal.toml"
                )
            return NotFound(
                f"no server in the cluster offers the model '{t.model}'",
                hint="`shoal cluster status` lists each server's models; "
                'a server\'s `models = ["..."]` in shoal.toml names what it serves',
            )
        why = []
        for m in serving:
            if m.name in t.exclude:
                why.append(f"{m.name}: failed this request")
            elif not m.enabled:
                why.append(f"{m.name}: disabled")
            elif m.health == "down":
                why.append(f"{m.name}: down ({m.last_error or 'no answer'})")
            else:
                why.append(f"{m.name}: circuit open, next try in {m.breaker.retry_in():.0f}s")
        return BackendUnavailable(
            "no server can take this request now — " + "; ".join(why),
            hint="`shoal cluster status` shows each server's health; start or enable one",
        )

    def unavailable(self, server: str) -> str | None:
        """Why ``server`` cannot take new work now, worded to follow "<server> is", or None when it can.

        Names states only, never addresses or upstream errors: the answer is shown to anyone chatting.
        """
        m = self.members.get(server)
        if m is None:
            return "not in the cluster"
        if not m.enabled:
            return "disabled"
        if m.health == "down":
            return "down"
        if not m.breaker.allows():
            if m.breaker.state == "open":
                return f"refusing work: its circuit opened after {m.breaker.failures} failures (next try in {m.breaker.retry_in():.0f}s)"
            return "refusing work: its circuit is half-open and a trial request is running"
        return None

    def _release(self, member: Member, upstream: str, outcome: str) -> None:
        member.release(upstream, outcome)  # type: ignore[arg-type]
        if member.removed and member.in_flight <= 0 and member in self._draining:
            self._draining.remove(member)
            self._close_later(member)
        self._dispatch()

    @staticmethod
    def _continuation(req: GenerateRequest, upstream: str, produced: str, tokens: int) -> GenerateRequest | None:
        """The request to send now: the original, or its continuation after ``produced``."""
        if not produced:
            return dataclasses.replace(req, model=upstream)
        left = req.sampling.max_tokens - tokens
        if left <= 0:
            return None
        sampling = dataclasses.replace(
            req.sampling, max_tokens=left, min_tokens=max(0, req.sampling.min_tokens - tokens)
        )
        return dataclasses.replace(req, model=upstream, prefix=req.prefix + produced, sampling=sampling)

    # -- visibility --------------------------------------------------------------------
    def waiting_for(self) -> dict[str, int]:
        """Queued requests by the server each would go to first."""
        out: dict[str, int] = {}
        for t in self.queue.ordered():
            eligible = [m for m in self.members.values() if m.serves(t.model) and m.routable() and m.name not in t.exclude]
            order = rank(self._strategy, eligible, t.model, t.prefer)
            if order:
                out[order[0].name] = out.get(order[0].name, 0) + 1
        return out

    def status(self) -> dict[str, Any]:
        from shoal.cluster.status import snapshot

        return snapshot(self)


class ClusterView:
    """The cluster as one bot's backend: same routing, with the bot's server preferred."""

    supports_grammar: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_lora: ClassVar[bool] = False

    def __init__(self, cluster: Cluster, prefer: str | None) -> None:
        self.cluster = cluster
        self.prefer = prefer
        self.name = prefer or cluster.name

    def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        return self.cluster.stream(req, prefer=self.prefer)

    async def models(self) -> list[str]:
        return await self.cluster.models()

    def unavailable(self) -> str | None:
        """Why the preferred server cannot take new work now (None: it can)."""
        return self.cluster.unavailable(self.prefer) if self.prefer else None

    async def aclose(self) -> None:
        """The cluster belongs to whoever started it; a view closes nothing."""
