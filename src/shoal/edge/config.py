"""``[edge]`` in shoal.toml: an edge node (``shoal edge run``) and the hub side (``shoal up``).

One section serves both roles: a node reads ``node``, ``nats``, ``sensors``,
intervals and ``retention``; the hub reads ``[edge.hub]``. Sensors are a
discriminated union on ``kind``, so a field that belongs to another kind is
reported as unknown for this one. Only pydantic is imported here: shoal.config
imports this module, and ``import shoal`` must stay light.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sensor(_Strict):
    """What every sensor has: a name, how often it is read, and what is worth noting."""

    name: str = Field(pattern=NAME, description="unique on this node; the hub shows it as node/name")
    interval: float = Field(default=10.0, ge=0.01, le=86_400, description="seconds between readings")
    unit: str = Field(default="", max_length=16, description="shown after the value, e.g. °C, %, MB/s")
    label: str = Field(default="", max_length=64, description="how observations name it (default: the name)")
    change: float | None = Field(
        default=None, gt=0, description="a change of at least this much between observation windows is worth noting"
    )
    low: float | None = Field(default=None, description="a value below this is worth noting")
    high: float | None = Field(default=None, description="a value above this is worth noting")
    binary: bool = Field(default=False, description="an on/off sensor (motion, door): observations count events")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")


PsutilMetric = Literal[
    "cpu_percent", "cpu_freq", "load1", "memory_percent", "disk_percent", "net_sent_rate", "net_recv_rate"
]


class PsutilSensor(_Sensor):
    """The host itself through psutil: CPU load and frequency, memory, disk, network."""

    kind: Literal["psutil"] = "psutil"
    metric: PsutilMetric = "cpu_percent"
    path: str = Field(default="/", description="disk_percent: the mount point")


class SysfsSensor(_Sensor):
    """A temperature from Linux sysfs: thermal zones or hwmon, under a configurable root."""

    kind: Literal["sysfs"] = "sysfs"
    root: str = Field(default="/sys", description="the sysfs root (tests and containers point it elsewhere)")
    source: str = Field(
        default="auto",
        description='"auto" (the first found), a zone ("thermal_zone0"), its type ("cpu-thermal"), '
        'or a hwmon input ("hwmon0/temp1", "coretemp/temp1")',
    )


class MqttSensor(_Sensor):
    """Numbers (or on/off words) that any device publishes on an MQTT topic."""

    kind: Literal["mqtt"] = "mqtt"
    url: str = Field(default="mqtt://127.0.0.1:1883", description="the broker, mqtt://[user@]host:port")
    topic: str = Field(min_length=1, description="topic filter, + and # allowed")
    field: str = Field(default="", description="JSON payloads: the field that holds the value (dotted path)")
    qos: Literal[0, 1] = 1
    password_env: str = Field(default="", description="environment variable holding the broker password")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not re.match(r"^mqtts?://[^/\s]+$", url):
            raise ValueError(f"url must look like mqtt://host:port (got {url!r})")
        return url


class Anomaly(_Strict):
    """A deliberate oddity in a simulated signal (tests and demos)."""

    every: float = Field(default=0, ge=0, description="seconds between anomalies (0: only at 'at')")
    at: float = Field(default=0, ge=0, description="seconds after midnight (local time) of the first one")
    duration: float = Field(default=60, gt=0, description="seconds it lasts")
    add: float = Field(default=0, description="added to the normal value while it lasts")
    value: float | None = Field(default=None, description="or replaces it")


class SimulatedSensor(_Sensor):
    """A deterministic signal: a daily cycle, a motion routine, a constant; plus injected anomalies."""

    kind: Literal["simulated"] = "simulated"
    pattern: Literal["daily", "motion", "constant"] = "daily"
    mean: float = 20.0
    amplitude: float = Field(default=4.0, ge=0, description="daily: half the day-night swing")
    peak_hour: float = Field(default=15.0, ge=0, lt=24, description="daily: when the cycle peaks (local time)")
    noise: float = Field(default=0.2, ge=0, description="deterministic noise, up to this much either way")
    decimals: int = Field(default=2, ge=0, le=6, description="readings are rounded like a real sensor's")
    active_hours: list[tuple[float, float]] = Field(
        default_factory=lambda: [(7.0, 9.0)], description="motion: when it is usually active, local hours"
    )
    active_rate: float = Field(default=0.3, ge=0, le=1, description="motion: chance of an event per reading when active")
    idle_rate: float = Field(default=0.002, ge=0, le=1, description="motion: the same outside the active hours")
    seed: int = 0
    anomalies: list[Anomaly] = Field(default_factory=list)


class GpioSensor(_Sensor):
    """A GPIO input through gpiozero (on a Raspberry Pi; skipped with a note where it is not installed)."""

    kind: Literal["gpio"] = "gpio"
    pin: int | str = Field(description='BCM number or gpiozero name, e.g. 17 or "GPIO17"')
    device: Literal["motion", "button", "digital"] = "digital"
    pull_up: bool | None = Field(default=None, description="button/digital: internal pull-up (default: gpiozero's own)")


SensorConfig = Annotated[
    Union[PsutilSensor, SysfsSensor, MqttSensor, SimulatedSensor, GpioSensor], Field(discriminator="kind")
]


class RetentionConfig(_Strict):
    """How long readings stay raw. Only entries the hub has acknowledged are ever removed."""

    raw_days: float = Field(default=30, gt=0, description="raw readings older than this become aggregates")
    minute_days: float = Field(default=365, gt=0, description="per-minute aggregates kept this long")
    hour_days: float = Field(default=0, ge=0, description="per-hour aggregates kept this long (0: forever)")
    unsynced: Literal["keep", "age-out"] = Field(
        default="keep",
        description="keep: a reading the hub lacks is never removed (a node without a hub ages out as configured); "
        "age-out: remove it anyway once older than raw_days",
    )


class DashboardConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="the node's own page; 0.0.0.0 shows it on the LAN")
    port: int = Field(default=8421, ge=0, le=65535, description="0: no dashboard")
    token_env: str = Field(default="", description="environment variable holding a token the page requires")


class HubConfig(_Strict):
    """``shoal up`` as the hub: consume node journals into shoal.db."""

    enabled: bool = False
    nats: str = Field(default="", description="the NATS server with JetStream (default: edge.nats)")
    fetch: int = Field(default=16, ge=1, le=512, description="batches taken from the stream per commit")
    max_stream_mb: int = Field(
        default=1024, ge=1, description="bytes the stream may hold; beyond it nodes wait (backpressure)"
    )
    grants: dict[str, list[str]] = Field(
        default_factory=dict,
        description='who may see which node\'s data: {"garage" = ["ana"], "site:home" = ["users"]}; admins see all',
    )
    pull_after: float = Field(
        default=10.0, gt=0, description="seconds a node may lag with nothing in flight before the hub pulls"
    )


class EdgeConfig(_Strict):
    """``[edge]``: this machine as an edge node, and/or (``[edge.hub]``) as the hub."""

    node: str = Field(default="", description="this node's name (default: the host name)")
    site: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,64}$", description="a group of nodes (grants: site:NAME)")
    location: str = Field(default="", max_length=120, description="where it is, in words recall matches (\"garage\")")
    nats: str = Field(default="", description="the hub's NATS server, nats://host:4222 (empty: offline only)")
    nats_token_env: str = Field(default="", description="environment variable holding the NATS token")
    subject: str = Field(default="shoal.edge", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    stream: str = Field(default="SHOAL_EDGE", pattern=r"^[A-Za-z0-9_-]+$")
    batch: int = Field(default=20_000, ge=16, le=200_000, description="journal entries per sync message, at most")
    window: int = Field(default=8, ge=1, le=256, description="sync messages awaiting the stream's ack at once")
    max_unacked: int = Field(
        default=400_000, ge=1000, description="entries sent but not yet committed by the hub; beyond it the node waits"
    )
    sync_interval: float = Field(default=5.0, gt=0, description="seconds between sends of new entries when caught up")
    flush_interval: float = Field(default=0.5, gt=0, description="seconds readings wait in memory before one commit")
    buffer: int = Field(default=100_000, ge=100, description="readings held in memory while the disk is full")
    observe_interval: float = Field(default=60.0, gt=0, description="seconds between looks for something worth noting")
    observe_server: str = Field(
        default="local", description='[[servers]] entry that phrases observations ("" or "none": templates only)'
    )
    cooldown: float = Field(default=1800.0, ge=0, description="seconds before the same finding is noted again")
    embed: bool = Field(default=True, description="embed observations (MiniLM) for `shoal edge search`; false: keywords only")
    facts_interval: float = Field(default=3600.0, gt=0, description="seconds between updates of the local facts")
    min_free_mb: float = Field(default=64, ge=0, description="below this much free disk, synced history is thinned first")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    sensors: list[SensorConfig] = Field(default_factory=list)
    hub: HubConfig = Field(default_factory=HubConfig)

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if v and not re.match(NAME, v):
            raise ValueError("node must be letters, digits, '_' or '-' (it is part of NATS subjects)")
        return v

    @field_validator("nats")
    @classmethod
    def _nats(cls, v: str) -> str:
        if v and not re.match(r"^(nats|tls|ws|wss)://[^\s/]+$", v):
            raise ValueError(f"nats must look like nats://host:4222 (got {v!r})")
        return v

    @model_validator(mode="after")
    def _check(self) -> "EdgeConfig":
        names = [s.name for s in self.sensors]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"two sensors are named {sorted(dup)[0]!r}")
        for s in self.sensors:
            if s.low is not None and s.high is not None and s.low >= s.high:
                raise ValueError(f"sensor {s.name!r}: low must be below high")
        for key in self.hub.grants:
            if not re.match(r"^(site:)?[A-Za-z0-9_-]{1,64}$", key):
                raise ValueError(f"hub.grants key {key!r} must be a node name or site:NAME")
        return self

    @property
    def node_name(self) -> str:
        if self.node:
            return self.node
        import socket

        return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "node"

    @property
    def hub_nats(self) -> str:
        return self.hub.nats or self.nats

    @property
    def model_server(self) -> str | None:
        return None if self.observe_server in ("", "none") else self.observe_server
