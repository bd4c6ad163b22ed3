"""Temperatures from Linux sysfs: ``class/thermal/thermal_zone*`` and ``class/hwmon/hwmon*``.

The root is configurable (``root = "/sys"``): containers and tests point it at
another tree, and many hosts (VMs among them) have no thermal sensor at all —
then the sensor is skipped with a note rather than reading zeros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.edge.sensors.base import Sensor, SensorError, SensorUnavailable


@dataclass(frozen=True, slots=True)
class Zone:
    id: str  # "thermal_zone0" or "hwmon0/temp1"
    label: str  # its type / name / label, e.g. "cpu-thermal", "coretemp/Package id 0"
    path: Path  # the file holding millidegrees


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def discover(root: str | Path) -> list[Zone]:
    """Every temperature input under ``root`` (thermal zones first, then hwmon), in a stable order."""
    root = Path(root)
    zones: list[Zone] = []
    thermal = root / "class" / "thermal"
    for d in sorted(thermal.glob("thermal_zone*"), key=lambda p: _num(p.name)):
        if (d / "temp").exists():
            zones.append(Zone(d.name, _read(d / "type") or d.name, d / "temp"))
    for d in sorted((root / "class" / "hwmon").glob("hwmon*"), key=lambda p: _num(p.name)):
        name = _read(d / "name") or d.name
        for f in sorted(d.glob("temp*_input"), key=lambda p: _num(p.name)):
            n = f.name[: -len("_input")]
            label = _read(d / f"{n}_label")
            zones.append(Zone(f"{d.name}/{n}", f"{name}/{label or n}", f))
    return zones


def _num(name: str) -> int:
    m = re.search(r"(\d+)", name)
    return int(m.group(1)) if m else 0


def pick(zones: list[Zone], source: str) -> Zone | None:
    if not zones:
        return None
    if source == "auto":
        return zones[0]
    for z in zones:
        hw_name = z.label.split("/")[0]
        if source in (z.id, z.label, z.label.split("/")[-1]) or source == f"{hw_name}/{z.id.split('/')[-1]}":
            return z
    return None


class SysfsSource(Sensor):
    kind = "sysfs"

    def __init__(self, config: Any, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.unit = config.unit or "°C"
        self.zone: Zone | None = None

    async def start(self) -> None:
        zones = discover(self.config.root)
        zone = pick(zones, self.config.source)
        if zone is None:
            where = f"{self.config.root}/class/thermal or {self.config.root}/class/hwmon"
            if not zones:
                raise SensorUnavailable(
                    f"sensor {self.name!r}: no temperature sensor under {where} (this host has none)",
                    hint="set root = to another sysfs tree, or remove the sensor",
                )
            known = ", ".join(f"{z.id} ({z.label})" for z in zones)
            raise SensorUnavailable(
                f"sensor {self.name!r}: no temperature source {self.config.source!r} under {where}",
                hint=f"available: {known}",
            )
        self.zone = zone

    async def read(self) -> float:
        if self.zone is None:
            await self.start()
        assert self.zone is not None
        raw = _read(self.zone.path)
        if not raw:
            raise SensorError(f"cannot read {self.zone.path}")
        try:
            return round(int(raw) / 1000.0, 3)
        except ValueError:
            raise SensorError(f"{self.zone.path} holds {raw!r}, not millidegrees") from None
