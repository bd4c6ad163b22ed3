"""The observation loop: rules decide what is worth noting, the model phrases it, the journal keeps it.

Every ``observe_interval`` seconds the observer takes the readings since its
last look (a window) and asks, per sensor:

- did it cross its configured ``high`` / ``low``?
- did it change by at least ``change`` since the last window?
- is the window far from the learned routine for this hour (|z| ≥ 4 with a
  trusted routine)? For on/off sensors: activity at an hour that is usually
  quiet, or none during an hour that is usually busy.
- on/off sensors without a trusted routine yet: activity after a quiet hour.

A finding cites the readings it rests on (seq and value) and carries a
confidence from the rule: how far past the limit, how many readings agree,
how much routine there is to compare with. The same finding on the same
sensor is not noted again within ``cooldown`` unless it got stronger.
Findings become observation entries (journal kind 1); the local facts
(routine.py) are refreshed every ``facts_interval``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from shoal.edge.hlc import physical
from shoal.edge.journal import FACT, OBSERVATION, READING, Entry, Journal, NewEntry, Sensor
from shoal.edge.log import SensorLog
from shoal.edge.phrase import Finding, Phraser
from shoal.edge.routine import Routine, local_hour_day

log = logging.getLogger(__name__)

Z_UNUSUAL = 4.0


@dataclass(slots=True)
class _Last:
    value: float
    seq: int
    t: int
    active_at: int = 0  # on/off: when it was last active (ms)


class Observer:
    def __init__(
        self,
        journal: Journal,
        sensor_log: SensorLog,
        routine: Routine,
        phraser: Phraser,
        *,
        configs: dict[str, Any],
        location: str = "",
        cooldown: float = 1800.0,
    ) -> None:
        self.journal = journal
        self.log = sensor_log
        self.routine = routine
        self.phraser = phraser
        self.configs = configs
        self.location = location
        self.cooldown_ms = int(cooldown * 1000)
        self._last: dict[int, _Last] = {}
        self._noted: dict[tuple[str, str], tuple[int, float]] = {}
        self.looks = 0
        self.noted = 0

    async def look(self, *, window_s: float = 120.0) -> list[Entry]:
        """One look at the readings since the last; returns the observations appended."""
        j = self.journal
        st = await j.state()
        upto = int(st.get("observed_upto", "0"))
        head = j.head
        if head <= upto:
            return []
        # after a long stretch without looking (a backlog), only the recent window counts
        now_ms = physical(j.clock.last)
        first = max(upto + 1, await j.seq_at(now_ms - int(window_s * 1000)))
        entries = [e for e in await j.entries(first, head) if e.kind == READING]
        # the routine learns from complete minutes first, so "usual" includes yesterday but not this window
        await self.routine.learn(await self.log.aggregate())
        findings: list[Finding] = []
        for sensor in j.sensors.values():
            window = [e for e in entries if e.sensor == sensor.id]
            if window:
                findings += await self._rules(sensor, window)
        bodies = []
        for f in findings:
            key = (f.sensor, f.rule)
            t = f.cites[-1][2]
            prev = self._noted.get(key)
            if prev and t - prev[0] < self.cooldown_ms and f.severity <= prev[1] * 1.5:
                continue
            self._noted[key] = (t, f.severity)
            text, method, refused = await self.phraser.phrase(f)
            body = {
                "text": text, "sensor": f.sensor, "rule": f.rule, "confidence": round(f.confidence, 2),
                "method": method, "cites": [[s, v] for s, v, _ in f.cites],
                "window": [f.cites[0][2], f.cites[-1][2]],
            }
            if refused:
                body["model_refused"] = refused
            if self.location:
                body["location"] = self.location
            bodies.append(body)
        # stamped now, not when each was phrased: a model takes seconds a sentence, and readings taken meanwhile
        # are already committed — an earlier time would read as the device clock going back
        now = j.wall_ms()
        out = [NewEntry(OBSERVATION, now, body=b) for b in bodies]
        written = [e for e in (await j.append(out) if out else []) if e.kind == OBSERVATION]
        await j.set_state(observed_upto=head)
        self.looks += 1
        self.noted += len(written)
        return written

    async def _rules(self, s: Sensor, window: list[Entry]) -> list[Finding]:
        cfg = self.configs.get(s.name)
        prev = self._last.get(s.id)
        last = window[-1]
        assert last.value is not None
        hour, _ = local_hour_day(physical(last.hlc))
        usual = await self.routine.usual(s.id, hour)
        out: list[Finding] = []

        def finding(rule: str, cites: list[Entry], gist: str, confidence: float, severity: float, values: list[float]) -> None:
            out.append(Finding(
                s.name, s.title, s.unit, rule, [(e.seq, float(e.value), physical(e.hlc)) for e in cites if e.value is not None],
                gist, max(0.05, min(0.99, confidence)), severity, values, self.location,
            ))

        if s.binary:
            active = [e for e in window if (e.value or 0) >= 0.5]
            quiet_for = (physical(active[0].hlc) - prev.active_at) if (active and prev and prev.active_at) else math.inf
            if active and usual is not None and usual.trusted and usual.mean < 0.02:
                conf = 0.6 + 0.3 * min(1.0, usual.days / 7) + 0.05 * min(len(active), 2)
                finding("unusual_activity", active[:10], "became active at an hour when it is usually quiet", conf, len(active), [1.0])
            elif active and (usual is None or not usual.trusted) and quiet_for > 3_600_000:
                finding("activity", active[:1], "became active after a quiet spell", 0.5, 1.0, [1.0])
            elif not active and usual is not None and usual.trusted and usual.mean >= 0.2 and len(window) >= 10:
                conf = 0.5 + 0.3 * min(1.0, usual.days / 7)
                finding("quiet", window[-3:], "stayed inactive during an hour when it is usually busy", conf, 1.0, [])
            self._last[s.id] = _Last(
                last.value, last.seq, physical(last.hlc), physical(active[-1].hlc) if active else (prev.active_at if prev else 0)
            )
            return out

        values = [float(e.value) for e in window if e.value is not None]
        hi_e = max(window, key=lambda e: e.value or -math.inf)
        lo_e = min(window, key=lambda e: e.value or math.inf)
        if cfg is not None and cfg.high is not None and hi_e.value is not None and hi_e.value > cfg.high:
            margin = (hi_e.value - cfg.high) / max(abs(cfg.high), 1.0)
            finding("high", [hi_e], "went above its configured limit", 0.8 + margin, 1 + margin, [hi_e.value])
        if cfg is not None and cfg.low is not None and lo_e.value is not None and lo_e.value < cfg.low:
            margin = (cfg.low - lo_e.value) / max(abs(cfg.low), 1.0)
            finding("low", [lo_e], "went below its configured limit", 0.8 + margin, 1 + margin, [lo_e.value])
        if cfg is not None and cfg.change is not None and prev is not None:
            delta = last.value - prev.value
            if abs(delta) >= cfg.change:
                ref = Entry(prev.seq, prev.t << 16, READING, s.id, prev.value, None, None)
                rule = "rise" if delta > 0 else "fall"
                agree = sum(1 for v in values if (v - prev.value) * delta > 0) / len(values)
                finding(rule, [ref, last], f"{'rose' if delta > 0 else 'fell'} quickly since the last look",
                        0.55 + 0.35 * agree + 0.1 * min(1.0, abs(delta) / cfg.change - 1), abs(delta) / cfg.change,
                        [prev.value, last.value])
        if usual is not None and usual.trusted:
            mean = sum(values) / len(values)
            floor = max(0.02 * abs(usual.mean), 0.05)
            z = (mean - usual.mean) / max(usual.std, floor)
            if abs(z) >= Z_UNUSUAL:
                extreme = hi_e if z > 0 else lo_e
                conf = (0.55 + 0.05 * min(abs(z) - Z_UNUSUAL, 6)) * (usual.days / (usual.days + 1)) + 0.1 * min(1.0, len(values) / 10)
                finding("unusual_high" if z > 0 else "unusual_low", [extreme],
                        f"much {'higher' if z > 0 else 'lower'} than usual for this time of day", conf, abs(z),
                        [float(extreme.value)])  # type: ignore[arg-type]
        self._last[s.id] = _Last(last.value, last.seq, physical(last.hlc))
        return out

    async def refresh_facts(self) -> list[Entry]:
        """Append facts whose text changed since their last version."""
        j = self.journal
        drafts = await self.routine.facts(list(j.sensors.values()), self.location)
        if not drafts:
            return []
        current = dict(await j.db.read(
            lambda c: c.execute("SELECT key, text FROM notes WHERE kind = 'fact' AND superseded_by IS NULL").fetchall()
        ))
        new = [
            NewEntry(FACT, j.wall_ms(), body={"key": d.key, "sensor": d.sensor, "text": d.text, "basis": d.basis,
                                              "confidence": round(min(0.95, 0.5 + 0.05 * d.basis.get("days", 0)), 2),
                                              "method": "routine", **({"location": self.location} if self.location else {})})
            for d in drafts if current.get(d.key) != d.text
        ]
        return await j.append(new) if new else []
