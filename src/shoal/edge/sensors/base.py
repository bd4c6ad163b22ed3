"""What every sensor source is: started once, then read on its interval (or as events arrive).

A polled source implements ``read()``; ``run`` calls it every ``interval``
seconds, aligned to the interval so readings of many nodes line up, and hands
each value to ``emit(value, wall_ms)``. An event source (MQTT, GPIO) overrides
``run``. A source that cannot work on this host raises ``SensorUnavailable``
from ``start`` with a note saying why and what to do; the node skips it and
keeps the note for ``shoal edge status``. A read that fails is logged (at
most once a minute per sensor) and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Callable

from shoal.errors import ShoalError

log = logging.getLogger(__name__)

Emit = Callable[[float, int], None]


class SensorUnavailable(ShoalError):
    """This source cannot run here (no such device, library missing); the note says why."""

    code = "sensor_unavailable"


class SensorError(ShoalError):
    """One read failed; the next interval tries again."""

    code = "sensor"


class Sensor:
    kind = "base"

    def __init__(self, config: Any, *, node: str = "node", wall: Callable[[], float] | None = None) -> None:
        self.config = config
        self.node = node
        self.wall = wall or time.time
        self.unit: str = config.unit
        self.errors = 0
        self.last_error: str | None = None
        self._last_logged = 0.0

    @property
    def name(self) -> str:
        return str(self.config.name)

    @property
    def binary(self) -> bool:
        return bool(self.config.binary)

    async def start(self) -> None:
        """Open the device; raise ``SensorUnavailable`` with a clear note when it cannot work here."""

    async def read(self) -> float:
        """One reading (polled sources)."""
        raise NotImplementedError

    async def read_once(self, timeout: float = 3.0) -> float | None:
        """One current value for ``shoal edge sensors`` (None: nothing arrived in time)."""
        return await asyncio.wait_for(self.read(), timeout)

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Read every ``interval`` seconds until ``stop`` is set."""
        interval = float(self.config.interval)
        while not stop.is_set():
            now = self.wall()
            try:
                value = await self.read()
            except SensorError as exc:
                self.failed(str(exc))
            except (OSError, ValueError) as exc:
                self.failed(f"{type(exc).__name__}: {exc}")
            else:
                if math.isfinite(value):
                    emit(float(value), int(now * 1000))
                else:
                    self.failed(f"not a finite number: {value}")
            # aligned to the interval on the device clock; a clock that jumped
            # back still waits at most one interval
            delay = interval - (self.wall() % interval)
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(max(delay, 0.001), interval))
            except asyncio.TimeoutError:
                pass

    def failed(self, why: str) -> None:
        self.errors += 1
        self.last_error = why
        now = time.monotonic()
        if now - self._last_logged > 60:
            self._last_logged = now
            log.warning("sensor %s: %s (retrying every %s s)", self.name, why, self.config.interval)

    async def stop(self) -> None:
        """Release the device."""
