"""GPIO inputs through gpiozero (a Raspberry Pi's motion sensors, buttons, reed switches).

gpiozero is optional: where it is not installed (this project's machines) the
sensor is skipped with a note. Edges are events: each change of the input is a
reading (1 active, 0 inactive), and the level is also read on the interval so
a quiet input still shows up in the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.edge.sensors.base import Emit, Sensor, SensorUnavailable


class GpioSource(Sensor):
    kind = "gpio"

    def __init__(self, config: Any, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.device: Any = None

    @property
    def binary(self) -> bool:
        return True

    async def start(self) -> None:
        try:
            import gpiozero
        except ImportError as exc:
            raise SensorUnavailable(
                f"sensor {self.name!r} needs gpiozero, which is not installed here, so it is skipped",
                hint="on a Raspberry Pi: pip install gpiozero (and lgpio); elsewhere remove the sensor",
            ) from exc
        cls = {"motion": gpiozero.MotionSensor, "button": gpiozero.Button, "digital": gpiozero.DigitalInputDevice}[
            self.config.device
        ]
        kwargs: dict[str, Any] = {}
        if self.config.device != "motion" and self.config.pull_up is not None:
            kwargs["pull_up"] = self.config.pull_up
        try:
            self.device = cls(self.config.pin, **kwargs)
        except Exception as exc:  # gpiozero raises many kinds (no pin factory, pin in use, bad pin)
            raise SensorUnavailable(
                f"sensor {self.name!r}: gpiozero cannot open pin {self.config.pin!r}: {type(exc).__name__}: {exc}",
                hint="check the pin number, that no other program uses it, and that a pin library (lgpio) is installed",
            ) from exc

    async def read(self) -> float:
        if self.device is None:
            await self.start()
        return 1.0 if self.device.is_active else 0.0

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        if self.device is None:
            await self.start()
        loop = asyncio.get_running_loop()

        def edge(active: float) -> None:
            # gpiozero calls back on its own thread
            loop.call_soon_threadsafe(emit, active, int(self.wall() * 1000))

        self.device.when_activated = lambda *_: edge(1.0)
        self.device.when_deactivated = lambda *_: edge(0.0)
        try:
            await super().run(emit, stop)
        finally:
            self.device.when_activated = self.device.when_deactivated = None

    async def stop(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
