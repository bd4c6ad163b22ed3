"""The host itself through psutil: CPU load and frequency, memory, disk use, network rates.

(``import psutil`` below is the library: absolute imports never pick this module.)
"""

from __future__ import annotations

import os
import time
from typing import Any

from shoal.edge.sensors.base import Sensor, SensorError, SensorUnavailable

UNITS = {
    "cpu_percent": "%", "cpu_freq": "MHz", "load1": "", "memory_percent": "%", "disk_percent": "%",
    "net_sent_rate": "kB/s", "net_recv_rate": "kB/s",
}


class PsutilSource(Sensor):
    kind = "psutil"

    def __init__(self, config: Any, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.metric = config.metric
        self.unit = config.unit or UNITS[self.metric]
        self._net: tuple[float, int] | None = None
        self._ps: Any = None

    async def start(self) -> None:
        try:
            import psutil
        except ImportError as exc:
            raise SensorUnavailable(
                f"sensor {self.name!r} needs psutil, which is not installed", hint="pip install psutil"
            ) from exc
        self._ps = psutil
        if self.metric == "cpu_percent":
            psutil.cpu_percent(interval=None)  # the first call only starts the measurement
        elif self.metric == "cpu_freq":
            f = psutil.cpu_freq()
            if f is None or not f.current:
                raise SensorUnavailable(
                    f"sensor {self.name!r}: this host does not report its CPU frequency (common on VMs)",
                    hint="remove the sensor or use metric = \"cpu_percent\"",
                )
        elif self.metric == "disk_percent" and not os.path.exists(self.config.path):
            raise SensorUnavailable(f"sensor {self.name!r}: no such path {self.config.path!r}", hint="set path to a mount point")
        elif self.metric in ("net_sent_rate", "net_recv_rate"):
            self._net = self._net_sample()

    def _net_sample(self) -> tuple[float, int]:
        c = self._ps.net_io_counters()
        return time.monotonic(), int(c.bytes_sent if self.metric == "net_sent_rate" else c.bytes_recv)

    async def read(self) -> float:
        ps = self._ps
        if ps is None:
            await self.start()
            ps = self._ps
        m = self.metric
        if m == "cpu_percent":
            return round(float(ps.cpu_percent(interval=None)), 1)
        if m == "cpu_freq":
            f = ps.cpu_freq()
            if f is None:
                raise SensorError("the CPU frequency is not available right now")
            return round(float(f.current), 0)
        if m == "load1":
            return round(os.getloadavg()[0], 2)
        if m == "memory_percent":
            return round(float(ps.virtual_memory().percent), 1)
        if m == "disk_percent":
            return round(float(ps.disk_usage(self.config.path).percent), 1)
        t, b = self._net_sample()
        prev, self._net = self._net, (t, b)
        if prev is None or t <= prev[0]:
            return 0.0
        return round(max(0, b - prev[1]) / (t - prev[0]) / 1000.0, 2)

    async def read_once(self, timeout: float = 3.0) -> float | None:
        import asyncio

        await self.start()
        if self.metric in ("cpu_percent", "net_sent_rate", "net_recv_rate"):
            await asyncio.sleep(0.5)  # a rate needs two samples
        return await self.read()
