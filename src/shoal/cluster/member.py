"""One server in the cluster: its backend, health, circuit, load and residency.

A member answers the router's questions (can you serve this model, is it
warm, how loaded are you, how much memory is free) and changes what it has
in memory (``ensure_loaded``: evict the least recently used idle model,
never one that is serving, and wait when nothing can be evicted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

from shoal.backends.base import Backend
from shoal.backends.residency import Residency, ResidentModel
from shoal.cluster.breaker import Breaker
from shoal.config import ClusterConfig, ServerConfig
from shoal.errors import BackendError, CapacityError, GenerationCancelled
from shoal.types import CancelToken

log = logging.getLogger(__name__)

Health = Literal["unknown", "up", "down"]
GIB = 1 << 30


@dataclass(slots=True)
class ModelUse:
    in_flight: int = 0
    last_used: float = 0.0


@dataclass(slots=True)
class Counters:
    requests: int = 0
    failures: int = 0
    failovers: int = 0
    tokens: int = 0
    loads: int = 0
    evictions: int = 0


class Member:
    def __init__(
        self,
        config: ServerConfig,
        backend: Backend,
        *,
        owned: bool,
        settings: ClusterConfig,
        position: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backend = backend
        #: the cluster created the backend and closes it; shared backends are closed by their owner
        self.owned = owned
        self.position = position
        self._clock = clock
        self.breaker = Breaker(settings.failure_threshold, settings.cooldown, clock)
        self.health: Health = "unknown"
        self.last_error: str | None = None
        self.last_check: float | None = None  # wall clock, for people
        self.residency: Residency | None = None
        self.in_flight = 0
        self.uses: dict[str, ModelUse] = {}
        self.loading: str | None = None
        self.waiting_for_memory = False
        self.removed = False
        self.counters = Counters()
        self._lock = asyncio.Lock()
        self._release_waiters: list[asyncio.Future[None]] = []

    # -- identity ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def fixed_model(self) -> bool:
        return bool(getattr(self.backend, "fixed_model", True))

    @property
    def can_load(self) -> bool:
        return bool(getattr(self.backend, "can_load", False)) and not self.fixed_model

    @property
    def continuation(self) -> str:
        return str(getattr(self.backend, "continuation", "message"))

    def canonical(self, model: str) -> str:
        fn = getattr(self.backend, "canonical", None)
        return fn(model) if fn else model

    # -- admission -----------------------------------------------------------------
    @property
    def max_concurrent(self) -> int:
        if self.config.max_concurrent:
            return self.config.max_concurrent
        if self.residency is not None and self.residency.slots:
            return self.residency.slots
        return int(getattr(self.backend, "default_concurrency", 4))

    @property
    def enabled(self) -> bool:
        return self.config.enabled and not self.removed

    def routable(self) -> bool:
        return self.enabled and self.health != "down" and self.breaker.allows()

    def has_slot(self) -> bool:
        return self.in_flight < self.max_concurrent and not self.waiting_for_memory

    @property
    def load(self) -> float:
        """Busy share of the server: shoal's requests, or what the server reports if more."""
        busy = max(self.in_flight, (self.residency.busy or 0) if self.residency else 0)
        return busy / max(1, self.max_concurrent)

    def admit(self, model: str) -> None:
        self.in_flight += 1
        self.counters.requests += 1
        self.uses.setdefault(model, ModelUse()).in_flight += 1
        self.breaker.admitted()

    def release(self, model: str, outcome: Literal["ok", "failed", "cancelled", "refused"]) -> None:
        self.in_flight -= 1
        use = self.uses.setdefault(model, ModelUse())
        use.in_flight -= 1
        use.last_used = self._clock()
        if outcome == "ok":
            self.breaker.success()
        elif outcome == "failed":
            self.counters.failures += 1
            self.breaker.failure()
        else:
            self.breaker.released()
        for fut in self._release_waiters:
            if not fut.done():
                fut.set_result(None)
        self._release_waiters.clear()

    def mark_down(self, error: str) -> None:
        self.health = "down"
        self.last_error = error

    # -- models ------------------------------------------------------------------
    def names(self) -> set[str]:
        """Every model name this server answers to (declared aliases included)."""
        out = set(self.config.models)
        if self.residency is not None:
            out |= set(self.residency.loaded) | set(self.residency.available)
        embedded_name = getattr(self.backend, "model_name", None)
        if isinstance(embedded_name, str):
            out.add(embedded_name)
        return out

    def serves(self, model: str | None) -> bool:
        if model is None or model == "default":
            return True
        names = self.names()
        return model in names or self.canonical(model) in names

    def resolve(self, model: str | None) -> str:
        """The name to send upstream (and to track residency by) for ``model``."""
        loaded = list(self.residency.loaded) if self.residency else []
        available = list(self.residency.available) if self.residency else []
        if self.fixed_model:
            embedded_name = getattr(self.backend, "model_name", None)
            if isinstance(embedded_name, str):
                return embedded_name
            if model is not None and model != "default" and (model in loaded or model in available):
                return model
            real = loaded or available
            return real[0] if real else (model or (self.config.models[0] if self.config.models else "default"))
        if model is None or model == "default":
            if self.config.models:
                return self.canonical(self.config.models[0])
            return loaded[0] if loaded else (available[0] if available else "default")
        return self.canonical(model)

    def public_default(self) -> str:
        """The model a request without one gets here, by the name other servers know it by."""
        if self.config.models:
            return self.config.models[0]
        return self.resolve(None)

    def is_warm(self, model: str | None) -> bool:
        if self.residency is None:
            return False
        if self.fixed_model or not self.can_load:
            return bool(self.residency.loaded)
        return self.resolve(model) in self.residency.loaded

    def prefers(self, model: str | None) -> bool:
        return model is not None and (model in self.config.preferred_models or self.resolve(model) in self.config.preferred_models)

    # -- memory --------------------------------------------------------------------
    @property
    def capacity_bytes(self) -> int | None:
        return int(self.config.memory_gb * GIB) if self.config.memory_gb else None

    @property
    def used_bytes(self) -> int:
        return self.residency.used_bytes if self.residency else 0

    @property
    def free_bytes(self) -> int | None:
        cap = self.capacity_bytes
        return None if cap is None else cap - self.used_bytes

    def size_of(self, name: str) -> int | None:
        if self.residency is None:
            return None
        if name in self.residency.loaded and self.residency.loaded[name].size_bytes:
            return self.residency.loaded[name].size_bytes
        return self.residency.available.get(name)

    def idle_lru(self, exclude: str) -> str | None:
        """The least recently used loaded model with nothing in flight (never one that is serving)."""
        if self.residency is None:
            return None
        idle = [
            n for n in self.residency.loaded if n != exclude and self.uses.get(n, ModelUse()).in_flight <= 0
        ]
        if not idle:
            return None
        return min(idle, key=lambda n: self.uses.get(n, ModelUse()).last_used)

    async def ensure_loaded(self, model: str, cancel: CancelToken) -> None:
        """Load ``model`` here, evicting idle models by LRU; wait while nothing can be evicted."""
        if not self.can_load or self.residency is None or model in self.residency.loaded:
            return
        async with self._lock:
            if model in self.residency.loaded:
                return  # loaded by another request while this one waited for the lock
            size = self.size_of(model)
            cap = self.capacity_bytes
            if cap is not None and size is not None and size > cap:
                raise CapacityError(
                    f"model '{model}' ({size / GIB:.1f} GiB) does not fit server '{self.name}' "
                    f"(memory_gb = {self.config.memory_gb})",
                    hint="raise memory_gb for this server in shoal.toml, or send the model elsewhere",
                )
            self.waiting_for_memory = True
            try:
                while cap is not None and size is not None and cap - self.used_bytes < size:
                    victim = self.idle_lru(exclude=model)
                    if victim is not None:
                        log.info("server %s: evicting %s to make room for %s", self.name, victim, model)
                        await self.backend.unload(victim)  # type: ignore[attr-defined]
                        self.residency.loaded.pop(victim, None)
                        self.counters.evictions += 1
                        continue
                    # every loaded model is serving: queue the load until one finishes
                    await self._wait_release(cancel)
            finally:
                self.waiting_for_memory = False
            self.loading = model
            try:
                await self.backend.load(model)  # type: ignore[attr-defined]
            finally:
                self.loading = None
            self.residency.loaded[model] = ResidentModel(model, size)
            self.counters.loads += 1

    async def _wait_release(self, cancel: CancelToken) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._release_waiters.append(fut)
        while not fut.done():
            if cancel.cancelled:
                raise GenerationCancelled(cancel.reason or "cancelled")
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout=0.1)
            except asyncio.TimeoutError:
                continue

    # -- health ------------------------------------------------------------------------
    async def probe(self, timeout: float) -> None:
        """Ask the server what it has; marks it up or down."""
        fn = getattr(self.backend, "residency", None)
        self.last_check = time.time()
        try:
            if fn is None:
                names = await asyncio.wait_for(self.backend.models(), timeout)
                self.residency = Residency(
                    loaded={n: ResidentModel(n) for n in names}, available={n: None for n in names}
                )
            else:
                self.residency = await asyncio.wait_for(fn(timeout), timeout + 0.5)
        except (BackendError, asyncio.TimeoutError, OSError) as exc:
            msg = str(exc) or exc.__class__.__name__
            if self.health != "down":
                log.warning("server %s is down: %s", self.name, msg.splitlines()[0])
            self.mark_down(msg.splitlines()[0])
            return
        if self.health == "down":
            log.warning("server %s is back up", self.name)
        self.health = "up"
        self.last_error = None
        if self.breaker.state == "half-open":
            # the server answers again: let requests prove it
            self.breaker.released()

    def describe(self) -> dict[str, Any]:
        res = self.residency
        loaded = []
        if res is not None:
            for name, m in sorted(res.loaded.items()):
                use = self.uses.get(name, ModelUse())
                loaded.append(
                    {
                        "name": name,
                        "size_bytes": m.size_bytes,
                        "in_flight": max(0, use.in_flight),
                        "idle_seconds": round(self._clock() - use.last_used, 1) if use.last_used else None,
                    }
                )
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.config.url,
            "enabled": self.enabled,
            "health": self.health,
            "software": res.software if res else "",
            "breaker": self.breaker.state,
            "retry_in": round(self.breaker.retry_in(), 1),
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "load": round(self.load, 3),
            "loaded": loaded,
            "available": sorted(res.available) if res else [],
            "aliases": list(self.config.models),
            "preferred_models": list(self.config.preferred_models),
            "loading": self.loading,
            "memory": {"capacity_bytes": self.capacity_bytes, "used_bytes": self.used_bytes},
            "continuation": self.continuation,
            "last_error": self.last_error,
            "last_check": self.last_check,
            "requests": self.counters.requests,
            "failures": self.counters.failures,
            "failovers": self.counters.failovers,
            "tokens": self.counters.tokens,
            "loads": self.counters.loads,
            "evictions": self.counters.evictions,
        }
