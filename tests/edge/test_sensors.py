"""Sensor sources on real parts: psutil on this host, a sysfs tree on disk, a real Mosquitto, gpiozero."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter

from shoal.edge.config import SensorConfig
from shoal.edge.sensors import SensorUnavailable, create_sensor
from shoal.edge.sensors.mqtt import parse_payload
from shoal.edge.sensors.sysfs import discover
from shoal.edge.sensors.base import SensorError

from .conftest import Mosquitto

adapter: TypeAdapter = TypeAdapter(SensorConfig)  # type: ignore[type-arg]


def sensor(**kw):  # type: ignore[no-untyped-def]
    return create_sensor(adapter.validate_python(kw), node="test")


@pytest.mark.parametrize("metric", ["cpu_percent", "load1", "memory_percent", "disk_percent", "net_recv_rate"])
async def test_psutil_reads_this_host(metric: str) -> None:
    s = sensor(name="x", kind="psutil", metric=metric)
    value = await s.read_once()
    assert value is not None and value >= 0
    if metric.endswith("percent"):
        assert value <= 100


def make_sysfs(root: Path) -> None:
    z = root / "class" / "thermal" / "thermal_zone0"
    z.mkdir(parents=True)
    (z / "type").write_text("cpu-thermal\n")
    (z / "temp").write_text("47250\n")
    h = root / "class" / "hwmon" / "hwmon1"
    h.mkdir(parents=True)
    (h / "name").write_text("coretemp\n")
    (h / "temp2_input").write_text("51000\n")
    (h / "temp2_label").write_text("Core 0\n")


async def test_sysfs_reads_thermal_zones_and_hwmon_under_a_configurable_root(tmp_path: Path) -> None:
    make_sysfs(tmp_path)
    assert [z.id for z in discover(tmp_path)] == ["thermal_zone0", "hwmon1/temp2"]
    assert await sensor(name="t", kind="sysfs", root=str(tmp_path)).read_once() == 47.25
    assert await sensor(name="t", kind="sysfs", root=str(tmp_path), source="Core 0").read_once() == 51.0
    assert await sensor(name="t", kind="sysfs", root=str(tmp_path), source="coretemp/temp2").read_once() == 51.0
    (tmp_path / "class" / "thermal" / "thermal_zone0" / "temp").write_text("48000\n")  # a new value on the next read
    assert await sensor(name="t", kind="sysfs", root=str(tmp_path)).read_once() == 48.0


async def test_a_host_without_thermal_sensors_is_skipped_with_a_note(tmp_path: Path) -> None:
    with pytest.raises(SensorUnavailable) as err:
        await sensor(name="t", kind="sysfs", root=str(tmp_path)).start()
    assert "this host has none" in err.value.message and "root" in (err.value.hint or "")
    make_sysfs(tmp_path)
    with pytest.raises(SensorUnavailable) as err:
        await sensor(name="t", kind="sysfs", root=str(tmp_path), source="gpu").start()
    assert "thermal_zone0 (cpu-thermal)" in (err.value.hint or "")


def test_simulated_signals_are_deterministic_and_inject_anomalies() -> None:
    cfg = dict(name="t", kind="simulated", pattern="daily", interval=60, mean=20, amplitude=4, noise=0.2,
               anomalies=[{"at": 3 * 3600, "duration": 600, "add": 15}])
    a, b = sensor(**cfg), sensor(**cfg)
    t = np.arange(1_750_000_000, 1_750_000_000 + 2 * 86400, 60, dtype=np.float64)
    va, vb = a.values(t), b.values(t)
    assert np.array_equal(va, vb)
    secs = (t + time.localtime(t[0]).tm_gmtoff) % 86400
    inside = (secs >= 3 * 3600) & (secs < 3 * 3600 + 600)
    assert va[~inside].min() >= 15.8 and va[~inside].max() <= 24.2  # the daily cycle, 20 ± 4 (± noise)
    assert va[inside].min() > 30  # the anomaly stands out of it, every night at 03:00 for 10 minutes
    motion = sensor(name="m", kind="simulated", pattern="motion", interval=10, active_hours=[[7, 9]], active_rate=0.5, idle_rate=0.0)
    mv = motion.values(t)
    hours = (t + time.localtime(t[0]).tm_gmtoff) % 86400 / 3600
    assert set(np.unique(mv)) <= {0.0, 1.0}
    assert mv[(hours >= 7) & (hours < 9)].mean() > 0.3 and mv[(hours < 7) | (hours >= 9)].sum() == 0


def test_mqtt_payloads_become_numbers_or_clear_errors() -> None:
    assert parse_payload(b"21.5") == 21.5
    assert parse_payload(b'{"t": {"c": 19.25}}', "t.c") == 19.25
    assert parse_payload(b"OPEN") == 1.0 and parse_payload(b'{"on": false}', "on") == 0.0
    with pytest.raises(SensorError, match="not a number"):
        parse_payload(b"warm-ish")
    with pytest.raises(SensorError, match="no field"):
        parse_payload(b'{"x": 1}', "t.c")


async def publish(broker: Mosquitto, topic: str, payload: str, *, retain: bool = False) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.publish(topic, payload, qos=1, retain=retain)


async def test_mqtt_readings_published_while_the_node_was_away_arrive_when_it_returns(mosquitto: Mosquitto) -> None:
    s = sensor(name="door", kind="mqtt", url=f"mqtt://127.0.0.1:{mosquitto.port}", topic="garage/door", binary=True)
    got: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(lambda v, t: got.append(v), stop))
    deadline = time.monotonic() + 10
    while not s.connected:  # the persistent session is registered with the broker
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await publish(mosquitto, "garage/door", "open")
    while len(got) < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    # the node is down; the door keeps reporting; the broker keeps it for the node's session
    await publish(mosquitto, "garage/door", "closed")
    await publish(mosquitto, "garage/door", "not a door state")
    await publish(mosquitto, "garage/door", "1")
    again = sensor(name="door", kind="mqtt", url=f"mqtt://127.0.0.1:{mosquitto.port}", topic="garage/door", binary=True)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(lambda v, t: got.append(v), stop))
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert got == [1.0, 0.0, 1.0]
    assert again.errors == 1 and "not a number" in (again.last_error or "")


async def test_a_retained_value_answers_shoal_edge_sensors_at_once(mosquitto: Mosquitto) -> None:
    await publish(mosquitto, "attic/temp", "18.5", retain=True)
    s = sensor(name="t", kind="mqtt", url=f"mqtt://127.0.0.1:{mosquitto.port}", topic="attic/temp")
    assert await s.read_once(timeout=5) == 18.5
    assert await sensor(name="t", kind="mqtt", url=f"mqtt://127.0.0.1:{mosquitto.port}", topic="none/yet").read_once(timeout=0.5) is None


async def test_gpio_without_gpiozero_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # as on a machine without it
    with pytest.raises(SensorUnavailable) as err:
        await sensor(name="pir", kind="gpio", pin=17, device="motion").start()
    assert "gpiozero" in err.value.message and "skipped" in err.value.message and "pip install gpiozero" in (err.value.hint or "")


async def test_gpio_edges_become_readings_through_gpiozero(monkeypatch: pytest.MonkeyPatch) -> None:
    gpiozero = pytest.importorskip("gpiozero", reason="gpiozero is not installed (optional; a Raspberry Pi has it)")
    from gpiozero.pins.mock import MockFactory  # gpiozero's own pin factory for machines without GPIO

    gpiozero.Device.pin_factory = MockFactory()
    try:
        s = sensor(name="button", kind="gpio", pin=17, device="button", pull_up=True, interval=3600)
        await s.start()
        got: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(lambda v, t: got.append(v), stop))
        await asyncio.sleep(0.1)
        pin = gpiozero.Device.pin_factory.pin(17)
        pin.drive_low()  # pressed (pull-up: low is active)
        await asyncio.sleep(0.2)
        pin.drive_high()
        await asyncio.sleep(0.2)
        stop.set()
        await task
        await s.stop()
        assert got[-2:] == [1.0, 0.0]
    finally:
        gpiozero.Device.pin_factory = None
