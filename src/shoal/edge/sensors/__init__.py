"""Sensor sources, one module per kind; ``create_sensor`` picks by ``kind`` and imports lazily."""

from __future__ import annotations

import importlib
from typing import Callable

from shoal.edge.sensors.base import Sensor, SensorUnavailable

MODULES = {
    "psutil": ("shoal.edge.sensors.psutil", "PsutilSource"),
    "sysfs": ("shoal.edge.sensors.sysfs", "SysfsSource"),
    "mqtt": ("shoal.edge.sensors.mqtt", "MqttSource"),
    "simulated": ("shoal.edge.sensors.simulated", "SimulatedSource"),
    "gpio": ("shoal.edge.sensors.gpio", "GpioSource"),
}


def create_sensor(config, *, node: str = "node", wall: Callable[[], float] | None = None) -> Sensor:  # type: ignore[no-untyped-def]
    """The source for one ``[[edge.sensors]]`` entry (not started yet)."""
    module, cls = MODULES[config.kind]
    source = getattr(importlib.import_module(module), cls)
    return source(config, node=node, wall=wall)  # type: ignore[no-any-return]


def default_sensors() -> list[dict[str, object]]:
    """What a node reads when ``[edge]`` lists no sensors: the host itself, and its temperature if it has one."""
    return [
        {"name": "cpu", "kind": "psutil", "metric": "cpu_percent", "interval": 10, "change": 40},
        {"name": "load", "kind": "psutil", "metric": "load1", "interval": 30},
        {"name": "memory", "kind": "psutil", "metric": "memory_percent", "interval": 30, "high": 90},
        {"name": "disk", "kind": "psutil", "metric": "disk_percent", "interval": 300, "high": 90},
        {"name": "net_in", "kind": "psutil", "metric": "net_recv_rate", "interval": 10},
        {"name": "net_out", "kind": "psutil", "metric": "net_sent_rate", "interval": 10},
        {"name": "temperature", "kind": "sysfs", "interval": 30, "change": 5},
    ]


__all__ = ["Sensor", "SensorUnavailable", "create_sensor", "default_sensors"]
