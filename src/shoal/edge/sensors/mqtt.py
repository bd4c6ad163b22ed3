"""Readings from an MQTT broker (aiomqtt): any device that publishes numbers or on/off words.

The node keeps a persistent session (``clean_session = False`` under a
stable client id, QoS 1), so what devices publish while the node is down is
delivered when it comes back (Mosquitto keeps it; DESIGN.md §4). Delivery is
at least once: a reading that arrives twice is stored twice, each with its
own sequence number (the journal never merges readings). Payloads: a number
(``21.5``), JSON with ``field`` naming the value (``{"t": {"c": 21.5}}`` with
``field = "t.c"``), or a word: on/off, true/false, open/closed, detected/clear,
motion/still (1/0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from shoal.edge.sensors.base import Emit, Sensor, SensorError, SensorUnavailable

log = logging.getLogger(__name__)

WORDS = {
    "on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0, "open": 1.0, "closed": 0.0, "detected": 1.0,
    "clear": 0.0, "motion": 1.0, "still": 0.0, "active": 1.0, "inactive": 0.0, "yes": 1.0, "no": 0.0,
}


def parse_payload(payload: bytes, field: str = "") -> float:
    """A payload → a number; ``SensorError`` saying what was wrong."""
    text = payload.decode("utf-8", "replace").strip()
    if field:
        try:
            value: Any = json.loads(text)
            for part in field.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
        except (ValueError, KeyError, IndexError, TypeError):
            raise SensorError(f"payload {text[:60]!r} has no field {field!r}") from None
        text = str(value).strip()
        if isinstance(value, bool):
            return 1.0 if value else 0.0
    try:
        v = float(text)
    except ValueError:
        if text.lower() in WORDS:
            return WORDS[text.lower()]
        raise SensorError(f"payload {text[:60]!r} is not a number or an on/off word") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise SensorError(f"payload {text[:60]!r} is not a finite number")
    return v


class MqttSource(Sensor):
    kind = "mqtt"

    def __init__(self, config: Any, **kw: Any) -> None:
        super().__init__(config, **kw)
        parts = urlsplit(config.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.tls = parts.scheme == "mqtts"
        self.username = parts.username
        self.password = os.environ.get(config.password_env) if config.password_env else parts.password
        #: stable per node and sensor: the broker keeps this session's messages while the node is away
        self.client_id = f"shoal-{self.node}-{self.name}"[:128]
        self.received = 0
        self.connected = False

    async def start(self) -> None:
        try:
            import aiomqtt  # noqa: F401
        except ImportError as exc:
            raise SensorUnavailable(f"sensor {self.name!r} needs aiomqtt", hint="pip install aiomqtt") from exc

    def _client(self, *, persistent: bool) -> Any:
        import aiomqtt

        return aiomqtt.Client(
            self.host, self.port, identifier=self.client_id if persistent else None,
            clean_session=not persistent, username=self.username, password=self.password,
            tls_params=aiomqtt.TLSParameters() if self.tls else None, timeout=10,
        )

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        import aiomqtt

        delay = 1.0
        while not stop.is_set():
            try:
                async with self._client(persistent=True) as client:
                    await client.subscribe(self.config.topic, qos=self.config.qos)
                    self.connected, delay = True, 1.0
                    reader = asyncio.ensure_future(self._pump(client, emit))
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopper.cancel()
                        if not reader.done():
                            reader.cancel()
                        await asyncio.gather(reader, stopper, return_exceptions=True)
                    if reader.done() and not reader.cancelled() and reader.exception():
                        raise reader.exception()  # type: ignore[misc]
            except aiomqtt.MqttError as exc:
                self.connected = False
                self.failed(f"broker {self.host}:{self.port}: {exc}")
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 30.0)
        self.connected = False

    async def _pump(self, client: Any, emit: Emit) -> None:
        async for message in client.messages:
            try:
                value = parse_payload(message.payload, self.config.field)
            except SensorError as exc:
                self.failed(f"topic {message.topic}: {exc.message}")
                continue
            self.received += 1
            emit(value, int(self.wall() * 1000))

    async def read(self) -> float:
        value = await self.read_once()
        if value is None:
            raise SensorError(f"nothing published on {self.config.topic!r} yet")
        return value

    async def read_once(self, timeout: float = 3.0) -> float | None:
        """The next (or retained) message on the topic, on a throwaway session (the node's stays untouched)."""
        import aiomqtt

        await self.start()
        try:
            async with asyncio.timeout(timeout):
                async with self._client(persistent=False) as client:
                    await client.subscribe(self.config.topic, qos=self.config.qos)
                    async for message in client.messages:
                        return parse_payload(message.payload, self.config.field)
        except TimeoutError:
            return None
        except aiomqtt.MqttError as exc:
            raise SensorError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        return None
