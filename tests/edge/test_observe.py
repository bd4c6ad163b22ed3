"""The observation loop: rules over real journal rows, the learned routine, grounded phrasing by the real model."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from shoal.backends.embedded import EmbeddedBackend
from shoal.config import EngineConfig
from shoal.edge.config import EdgeConfig, SensorConfig
from shoal.edge.journal import OBSERVATION, READING, Journal, NewEntry
from shoal.edge.log import SensorLog
from shoal.edge.observe import Observer
from shoal.edge.phrase import Finding, Phraser, check, grounded, numbers_in, template
from shoal.edge.routine import Routine

from .conftest import Clock

adapter: TypeAdapter = TypeAdapter(SensorConfig)  # type: ignore[type-arg]


def at(days_ago: int, hour: int, minute: int = 0) -> float:
    """A local time ``days_ago`` days back at hour:minute."""
    d = datetime.now().replace(hour=hour, minute=minute, second=0, microsecond=0)
    return d.timestamp() - days_ago * 86400


def finding(rule: str, values: list[float], cites: list[float] | None = None) -> Finding:
    cites = cites if cites is not None else values
    return Finding("temp", "temperature", "°C", rule, [(i + 1, v, 0) for i, v in enumerate(cites)], "changed", 0.8,
                   values=values, location="garage")


def test_a_sentence_may_state_only_the_cited_readings_as_written() -> None:
    f = finding("rise", [22.14, 31.46])
    assert check(f, "In the garage, temperature rose from 22.1 to 31.5 °C.") is None  # rounding as written is fine
    assert check(f, "Temperature rose from 22.14 to 31.46 degrees.") is None
    assert "states 40" in (check(f, "Temperature rose from 22 to 40 °C.") or "")
    assert "states 3" in (check(f, "Temperature rose three times, to 31.5 °C.") or "")  # number words count
    assert "opposite" in (check(f, "Temperature fell to 31.5 °C.") or "")
    assert "span of time" in (check(f, "Temperature rose to 31.5 °C over the past week.") or "")
    assert numbers_in("the co2 sensor read 400", ignore=["co2"]) == [(400.0, 0)]
    assert grounded("nothing numeric here", []) is None
    assert "states 12" in (grounded("at 12 o'clock", [31.5]) or "")  # no clock times: they are not readings


@pytest.mark.parametrize("rule,values", [
    ("rise", [20.0, 31.5]), ("fall", [31.5, 20.0]), ("high", [95.5]), ("low", [-3.0]), ("unusual_high", [31.5]),
    ("unusual_low", [2.5]), ("unusual_activity", [1.0]), ("activity", [1.0]), ("quiet", []),
])
def test_every_template_is_grounded(rule: str, values: list[float]) -> None:
    f = finding(rule, values, cites=values or [0.0])
    assert check(f, template(f)) is None, template(f)


async def routine_journal(tmp_path: Path) -> tuple[Journal, Routine, SensorLog]:
    """A journal whose temp and motion sensors have three days of routine: ~20 °C; motion only 07–09."""
    clock = Clock(at(3, 0) - 60)
    j = await Journal.open(tmp_path / "edge.db", node="garage", wall=clock)
    t = await j.declare_sensor("temp", "simulated", "°C", "temperature")
    m = await j.declare_sensor("motion", "simulated", "", "motion", binary=True)
    minutes = []
    for day in (3, 2, 1):
        for hour in range(24):
            for minute in range(0, 60, 2):
                ts = int(at(day, hour, minute) * 1000)
                minutes.append((t.id, ts, 60, 20.0 + (minute % 3) * 0.1, 19.8, 20.4))
                minutes.append((m.id, ts, 60, 0.4 if hour in (7, 8) else 0.0, 0.0, 1.0))
    routine = Routine(j)
    await routine.learn(minutes)
    j.test_clock = clock  # type: ignore[attr-defined]
    return j, routine, SensorLog(j, EdgeConfig().retention, has_hub=False)


async def test_a_reading_far_from_the_routine_is_noted_with_its_reading_and_a_confidence(tmp_path: Path) -> None:
    j, routine, log = await routine_journal(tmp_path)
    cfgs = {"temp": adapter.validate_python({"name": "temp", "kind": "simulated", "change": 5, "high": 30}),
            "motion": adapter.validate_python({"name": "motion", "kind": "simulated", "binary": True})}
    obs = Observer(j, log, routine, Phraser(None), configs=cfgs, location="garage", cooldown=1800)
    now = time.time()
    j.test_clock.t = now  # type: ignore[attr-defined]
    await j.append([NewEntry(READING, int(now * 1000) - 30_000 + i * 1000, j.sensors["temp"].id, 20.1) for i in range(10)])
    assert await obs.look() == []  # usual: nothing worth noting
    hot = await j.append([NewEntry(READING, int(now * 1000) + i * 1000, j.sensors["temp"].id, v) for i, v in enumerate([24.0, 31.46])])
    noted = await obs.look()
    rules = {e.body["rule"]: e.body for e in noted}  # type: ignore[index]
    assert set(rules) == {"high", "rise", "unusual_high"}
    for body in rules.values():
        assert 0 < body["confidence"] < 1 and body["method"] == "template" and body["sensor"] == "temp"
        cited = {seq: v for seq, v in body["cites"]}
        assert hot[-1].seq in cited and cited[hot[-1].seq] == 31.46
        assert grounded(body["text"], list(cited.values()), ignore=["temperature", "garage"]) is None, body["text"]
    assert rules["rise"]["cites"][0][1] == 20.1  # from the last reading before, to now
    j.test_clock.t = now + 10  # type: ignore[attr-defined]
    await j.append([NewEntry(READING, int(now * 1000) + 5000, j.sensors["temp"].id, 31.2)])
    assert await obs.look() == []  # the same finding again within the cooldown is not repeated
    await j.close()


async def test_motion_at_an_hour_that_is_usually_quiet_is_unusual(tmp_path: Path) -> None:
    j, routine, log = await routine_journal(tmp_path)
    obs = Observer(j, log, routine, Phraser(None), configs={}, location="garage")
    night = at(0, 3, 10)
    j.test_clock.t = night  # type: ignore[attr-defined]
    await j.append([NewEntry(READING, int(night * 1000) + i * 1000, j.sensors["motion"].id, v)
                    for i, v in enumerate([0, 0, 1, 0, 1, 0])])
    j.test_clock.t = night + 10  # type: ignore[attr-defined]
    (e,) = await obs.look(window_s=60)
    assert e.body["rule"] == "unusual_activity" and e.body["confidence"] >= 0.8  # type: ignore[index]
    assert e.body["text"] == "In the garage, motion was active twice, at an hour when it is usually quiet."  # type: ignore[index]
    assert [v for _, v in e.body["cites"]] == [1.0, 1.0]  # type: ignore[index]
    await j.close()


async def test_the_routine_becomes_local_facts_that_persist(tmp_path: Path) -> None:
    j, routine, log = await routine_journal(tmp_path)
    obs = Observer(j, log, routine, Phraser(None), configs={}, location="garage")
    facts = await obs.refresh_facts()
    texts = {e.body["key"]: e.body["text"] for e in facts}  # type: ignore[index]
    assert texts["routine:motion"] == "Motion in the garage is usually active 07:00–09:00."
    assert texts["routine:temp"].startswith("Temperature in the garage is usually between 20.1 and 20.1 °C")
    assert facts[0].body["basis"]["days"] == 3  # type: ignore[index]
    assert await obs.refresh_facts() == []  # unchanged: no new version
    path = j.path
    await j.close()
    j = await Journal.open(path, node="garage")
    rows = await j.db.read(lambda c: c.execute("SELECT text FROM notes WHERE kind = 'fact' AND superseded_by IS NULL").fetchall())
    assert {r[0] for r in rows} == set(texts.values())
    await j.close()


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    """The embedded SmolLM2-135M on one thread (two collapse when the cores are shared, DESIGN.md §4)."""
    import asyncio

    backend = EmbeddedBackend("local", engine=EngineConfig(max_sequences=2, context=1024, threads=1))
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.aclose())


async def test_the_model_phrases_findings_and_no_stored_sentence_states_an_ungrounded_number(model: EmbeddedBackend) -> None:
    phraser = Phraser(model)
    cases = [finding("rise", [18.5, 27.25]), finding("unusual_high", [31.5]),
             Finding("door", "front door", "", "unusual_activity", [(7, 1.0, 0), (9, 1.0, 0)],
                     "opened at an hour when it is usually closed", 0.9, values=[1.0], location="hall")]
    for f in cases:
        text, method, refused = await phraser.phrase(f)
        assert check(f, text) is None, (text, method)  # whoever wrote it, it is grounded
        assert method in ("model", "template") and (method == "template") == (refused is not None)
    assert phraser.phrased + phraser.rejected == len(cases)  # the model was asked every time
    assert phraser.phrased >= 1, phraser.last_rejection  # and the small model manages some, under the schema
