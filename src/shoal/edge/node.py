"""An edge node: sensors → journal → observations and facts → sync, plus its own dashboard.

``EdgeNode`` owns every task it starts and stops them in a fixed order:
sensors (no new readings) → the last flush → the observer → sync → the
dashboard → the model and the journal.

Readings wait in memory for at most ``flush_interval`` and are committed
together (one fsync for many). The buffer is bounded (``edge.buffer``); its
policy is drop-oldest, counted in ``dropped``. While the disk is full the
buffer holds what arrives, the oldest readings the hub already has are
thinned out to make room, and the status says what to do.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from typing import Any, Callable

from pydantic import TypeAdapter

from shoal.config import Env
from shoal.edge.config import EdgeConfig, SensorConfig
from shoal.edge.hlc import physical
from shoal.edge.journal import EVENT, READING, Journal, NewEntry
from shoal.edge.log import SensorLog
from shoal.edge.observe import Observer
from shoal.edge.phrase import Phraser
from shoal.edge.routine import Routine
from shoal.edge.sensors import Sensor, SensorUnavailable, create_sensor, default_sensors
from shoal.edge.sync import EdgeSync, sleep_or_stop
from shoal.errors import ConfigError, DiskFull

log = logging.getLogger(__name__)

DB_NAME = "edge.db"
STATUS_NAME = "edge.status"
RETENTION_EVERY = 600.0
STATUS_EVERY = 2.0
#: at stop, how long the node waits for the hub to take its last entries
STOP_SYNC_SECONDS = 5.0
#: readings committed together at most (one fsync each)
FLUSH_CHUNK = 2_000
#: with less free disk than this the WAL is folded in every status round: SQLite would wait for 4 MB of it
LOW_DISK_BYTES = 8 << 20


class StatusFile:
    """The node's live status for `shoal edge status`, rewritten in place every few seconds.

    A fixed-size file overwritten from offset 0 needs no new disk blocks, so
    it still tells the truth when the disk is full (the journal cannot).
    """

    SIZE = 32 * 1024

    def __init__(self, path: Any) -> None:
        self.path = path
        self.ok = True
        try:
            if not path.exists() or path.stat().st_size != self.SIZE:
                with open(path, "wb") as f:
                    f.write(b" " * self.SIZE)
        except OSError as exc:
            self.ok = False
            log.warning("cannot create %s (%s): `shoal edge status` shows only what the journal says", path, exc)

    def write(self, data: dict[str, Any]) -> None:
        if not self.ok:
            return
        raw = json.dumps(data, separators=(",", ":"), default=str).encode()
        if len(raw) >= self.SIZE:
            raw = json.dumps({k: data[k] for k in ("node", "pid", "updated", "head", "acked", "backlog", "disk_full")}).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, raw.ljust(self.SIZE), 0)
            finally:
                os.close(fd)
        except OSError:
            log.debug("status file not written", exc_info=True)

    @staticmethod
    def read(path: Any) -> dict[str, Any]:
        try:
            return json.loads(path.read_bytes().strip() or b"{}")  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}


def sensor_configs(cfg: EdgeConfig) -> list[Any]:
    """The configured sensors, or the defaults (the host itself) when none are listed."""
    if cfg.sensors:
        return list(cfg.sensors)
    adapter: TypeAdapter[Any] = TypeAdapter(SensorConfig)
    return [adapter.validate_python(d) for d in default_sensors()]


class EdgeNode:
    def __init__(self, env: Env, *, wall: Callable[[], float] = time.time) -> None:
        self.env = env
        self.config: EdgeConfig = env.config.edge
        self.name = self.config.node_name
        self.wall = wall
        self.journal: Journal | None = None
        self.sensors: dict[str, Sensor] = {}
        self.skipped: dict[str, str] = {}
        self.buffer: collections.deque[NewEntry] = collections.deque()
        self.dropped = 0
        self.disk_full: str | None = None
        self.sync: EdgeSync | None = None
        self.observer: Observer | None = None
        self.dashboard: Any = None
        self._backend: Any = None
        self._stop = asyncio.Event()
        self._sensor_stop = asyncio.Event()
        self._sync_stop = asyncio.Event()
        self._sensor_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._on_note: list[Callable[[Any], None]] = []
        self.started_at = 0.0

    @property
    def db_path(self) -> Any:
        return self.env.settings.home / DB_NAME

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> "EdgeNode":
        self.env.settings.ensure_home()
        self.journal = j = await Journal.open(self.db_path, node=self.name, wall=self.wall)
        self.status_file = StatusFile(self.env.settings.home / STATUS_NAME)
        if j.node != self.name:
            log.info("node name is %s (journal %s)", self.name, j.uid)
        self.log = SensorLog(j, self.config.retention, has_hub=bool(self.config.nats))
        self.routine = Routine(j)
        for sc in sensor_configs(self.config):
            src = create_sensor(sc, node=self.name, wall=self.wall)
            try:
                await src.start()
            except SensorUnavailable as exc:
                self.skipped[sc.name] = str(exc)
                log.warning("%s", exc)
                continue
            meta = await j.declare_sensor(sc.name, sc.kind, src.unit, sc.label, src.binary)
            self.sensors[sc.name] = src
            self._sensor_tasks.append(asyncio.create_task(src.run(self._emitter(meta.id), self._sensor_stop),
                                                          name=f"edge:sensor:{sc.name}"))
        if not self.sensors:
            log.warning("no sensor works on this host; the node keeps running for sync and its dashboard")
        self.observer = Observer(
            j, self.log, self.routine, Phraser(await self._model()), configs={s.name: s for s in sensor_configs(self.config)},
            location=self.config.location, cooldown=self.config.cooldown,
        )
        await self._event("node started", sensors=sorted(self.sensors), skipped=self.skipped)
        self._tasks.append(asyncio.create_task(self._writer(), name="edge:writer"))
        self._tasks.append(asyncio.create_task(self._observe(), name="edge:observe"))
        self._tasks.append(asyncio.create_task(self._upkeep(), name="edge:upkeep"))
        if self.config.nats:
            self.sync = EdgeSync(j, self.config)
            self._sync_task = asyncio.create_task(self.sync.run(self._sync_stop), name="edge:sync")
        if self.config.embed:
            from shoal.edge.search import NoteIndex

            self.index = NoteIndex(j)
            self._tasks.append(asyncio.create_task(self.index.run(self._stop), name="edge:embed"))
        if self.config.dashboard.port:
            from shoal.edge.dashboard import Dashboard

            self.dashboard = Dashboard(self)
            await self.dashboard.start()
        self.started_at = time.time()
        return self

    async def _model(self) -> Any:
        name = self.config.model_server
        if name is None:
            return None
        try:
            server = self.env.config.server_named(name)
        except Exception:
            raise ConfigError(f"edge.observe_server names {name!r}, which is not a [[servers]] entry",
                              field="edge.observe_server", hint='declare it, or set observe_server = "none" for templates') from None
        from shoal.backends import create_backend

        self._backend = create_backend(server, self.env.config.engine)
        return self._backend

    async def stop(self) -> None:
        """Stop in order; every reading taken before this is in the journal when it returns."""
        self._sensor_stop.set()
        await asyncio.gather(*self._sensor_tasks, return_exceptions=True)
        for src in self.sensors.values():
            try:
                await src.stop()
            except Exception:
                log.debug("sensor stop failed", exc_info=True)
        await self.flush()
        if self.journal is not None and not self.disk_full:
            try:
                await self._event("node stopped")
            except DiskFull:
                pass
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sync is not None:
            # the last entries go out now if the hub is reachable (bounded: stopping must not hang)
            deadline = time.monotonic() + STOP_SYNC_SECONDS
            while self.sync.status.connected and self.journal and self.journal.acked < self.journal.head:
                if time.monotonic() > deadline:
                    break
                self.sync.wake()
                await asyncio.sleep(0.05)
            if self.journal and self.journal.acked < self.journal.head:
                log.info("stopping with %d entries the hub does not have yet (%s); they go at the next sync",
                         self.journal.head - self.journal.acked, self.sync.status.state)
            self._sync_stop.set()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self._backend is not None:
            await self._backend.aclose()
        if self.journal is not None:
            await self.journal.close()

    async def run(self) -> None:
        """Until cancelled (Ctrl-C) or ``stop_soon``."""
        await self._stop.wait()

    def stop_soon(self) -> None:
        self._stop.set()

    # -- readings -----------------------------------------------------------------------------
    def _emitter(self, sensor_id: int) -> Callable[[float, int], None]:
        bound = self.config.buffer

        def emit(value: float, wall_ms: int) -> None:
            if len(self.buffer) >= bound:
                self.buffer.popleft()  # drop-oldest: the newest readings say most about now
                self.dropped += 1
            self.buffer.append(NewEntry(READING, wall_ms, sensor_id, value))

        return emit

    async def flush(self) -> int:
        """Commit what the buffer holds, oldest first and at most ``FLUSH_CHUNK`` a commit; on a full disk
        keep what did not fit and make room."""
        if not self.buffer or self.journal is None:
            return 0
        stored = 0
        if self.disk_full is not None:
            await self.journal.checkpoint()  # the WAL gives back its room first (Journal.checkpoint)
        while self.buffer:
            # in chunks: after a long full disk the buffer may not fit the room freed all at once (its pages
            # and their write-ahead copies), yet chunk by chunk it goes in as far as it fits
            items = [self.buffer.popleft() for _ in range(min(len(self.buffer), FLUSH_CHUNK))]
            try:
                await self.journal.append(items)
            except DiskFull as exc:
                self.buffer.extendleft(reversed(items))
                while len(self.buffer) > self.config.buffer:
                    self.buffer.popleft()
                    self.dropped += 1
                if self.disk_full is None:
                    log.error("%s", exc)
                self.disk_full = str(exc)
                try:
                    await self.log.thin(max(10_000, 4 * len(items)))
                except Exception:
                    log.debug("thinning failed", exc_info=True)
                return stored
            stored += len(items)
        if self.disk_full is not None:
            log.warning("the disk has room again: %d readings that waited are stored", stored)
            self.disk_full = None
            try:
                await self._event("disk had room again", waited=stored, dropped=self.dropped)
            except DiskFull:
                pass
        return stored

    async def _writer(self) -> None:
        while not await sleep_or_stop(self._stop, self.config.flush_interval if not self.disk_full else 5.0):
            await self.flush()
        await self.flush()

    async def _event(self, text: str, **extra: Any) -> None:
        assert self.journal is not None
        await self.journal.append([NewEntry(EVENT, self.journal.wall_ms(), body={"text": text, **extra})])

    # -- observations, upkeep ---------------------------------------------------------------------
    def on_note(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(entry)`` for each observation and fact noted (the CLI prints them)."""
        self._on_note.append(fn)

    async def _observe(self) -> None:
        assert self.observer is not None
        next_facts = time.monotonic() + min(self.config.facts_interval, 60.0)
        while not await sleep_or_stop(self._stop, self.config.observe_interval):
            try:
                await self.flush()
                noted = await self.observer.look(window_s=max(2 * self.config.observe_interval, 10))
                if time.monotonic() >= next_facts:
                    noted += await self.observer.refresh_facts()
                    next_facts = time.monotonic() + self.config.facts_interval
            except DiskFull:
                continue
            except Exception:
                # a bad generation or a rule bug must never stop the node from recording
                log.exception("the observer failed this round; it tries again next interval")
                continue
            for e in noted:
                for fn in self._on_note:
                    fn(e)

    async def _upkeep(self) -> None:
        """Retention now and then; thinning when the disk gets low; the live status for `shoal edge status`."""
        next_retention = time.monotonic() + 5.0
        first = True
        while first or not await sleep_or_stop(self._stop, STATUS_EVERY):
            first = False
            try:
                if time.monotonic() >= next_retention:
                    await self.log.apply_retention()
                    next_retention = time.monotonic() + RETENTION_EVERY
                free = self.log.free_bytes()
                if free < LOW_DISK_BYTES and self.journal is not None:
                    await self.journal.checkpoint()  # keep the WAL from taking the last of the disk
                if self.config.min_free_mb and free < self.config.min_free_mb * (1 << 20):
                    # room for what the next minutes bring, from readings the hub already has
                    await self.log.thin(max(10_000, int(60 / self.config.flush_interval) * max(1, len(self.sensors)) * 10))
            except DiskFull:
                pass
            except Exception:
                log.exception("upkeep failed this round")
            # whatever failed above: the status file is rewritten in place, so it tells the truth on a full disk too
            self.status_file.write(self.live())

    # -- status -------------------------------------------------------------------------------------
    def live(self) -> dict[str, Any]:
        """What is happening now (also persisted every few seconds for `shoal edge status`)."""
        j = self.journal
        sync = self.sync.status if self.sync else None
        return {
            "node": self.name, "pid": os.getpid(), "updated": time.time(), "started": self.started_at,
            "head": j.head if j else 0, "acked": j.acked if j else 0, "published": j.published if j else 0,
            "backlog": (j.head - j.acked) if j else 0, "hlc": j.clock.last if j else 0,
            "pending": len(self.buffer), "dropped": self.dropped, "disk_full": self.disk_full,
            "sensors": {n: {"kind": s.kind, "unit": s.unit, "errors": s.errors, "last_error": s.last_error}
                        for n, s in self.sensors.items()},
            "skipped": self.skipped,
            "sync": None if sync is None else {
                "state": sync.state, "connected": sync.connected, "hub_answering": sync.hub_answering,
                "last_sync": sync.last_sync, "last_error": sync.last_error, "hint": sync.hint,
                "offset_ms": sync.offset_ms, "sent_batches": sync.sent_batches, "sent_entries": sync.sent_entries,
            },
            "observer": None if self.observer is None else {
                "looks": self.observer.looks, "noted": self.observer.noted,
                "model_phrased": self.observer.phraser.phrased, "model_refused": self.observer.phraser.rejected,
                "templated": self.observer.phraser.templated,
            },
            "hub": self.config.nats or None,
            "clock_now": physical(j.clock.last) / 1000.0 if j else None,
        }
