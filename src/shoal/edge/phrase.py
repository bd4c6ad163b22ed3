"""Turning a finding into a sentence: the small model phrases, a check grounds, a template falls back.

The model gets the finding in words plus the cited readings' values and
writes one sentence under a JSON schema. The sentence is kept only if every
number in it (digits or number words) is one of the cited readings' values
as written — rounding to the decimals shown is allowed, nothing else — and it
does not say the opposite direction of the finding ("fell" for a rise) or
claim a span of time ("all week") the readings cannot show. One
retry, then the templated sentence, which is built from the same values and
so always passes (DESIGN.md §5: never store an ungrounded number).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from shoal.errors import ShoalError

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:,\d{3})*(?:\.\d+)?")
_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "dozen": 12,
    "half": 0.5,
}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.I)
OPPOSITE = {
    "rise": r"\b(fell|fall|falls|dropped|drops|decreas\w*|lower\w*|cool\w*)\b",
    "fall": r"\b(rose|rise|rises|increas\w*|climb\w*|warm\w*|higher)\b",
    "high": r"\b(low|lower|below|dropped|fell)\b",
    "low": r"\b(high|higher|above|rose|climb\w*)\b",
    "unusual_high": r"\b(lower than usual|below)\b",
    "unusual_low": r"\b(higher than usual|above)\b",
    "quiet": r"\b(detected|was active|became active|activity was seen)\b",
}

#: spans of time a sentence may not claim: the readings it cites do not say how long (the model likes "all week")
_TIME_CLAIM = re.compile(r"\b(weeks?|months?|years?|yesterday|tomorrow|today|hours|minutes|days|all day|all night|recently|previous day|the day before)\b", re.I)

SCHEMA = {
    "type": "object",
    "properties": {"sentence": {"type": "string", "minLength": 12, "maxLength": 200}},
    "required": ["sentence"],
}


@dataclass(slots=True)
class Finding:
    """Something worth noting about one sensor, with the readings it rests on."""

    sensor: str
    title: str
    unit: str
    rule: str  # rise | fall | high | low | unusual_high | unusual_low | unusual_activity | activity | quiet
    #: cited readings: (seq, value, time ms)
    cites: list[tuple[int, float, int]]
    #: the finding in words for the model ("rose quickly", "at an hour when it is usually quiet")
    gist: str
    confidence: float
    severity: float = 0.0
    #: the values a sentence may state, in the order the template uses them
    values: list[float] = field(default_factory=list)
    location: str = ""

    @property
    def allowed(self) -> list[float]:
        return [v for _, v, _ in self.cites]


def numbers_in(text: str, *, ignore: Sequence[str] = ()) -> list[tuple[float, int]]:
    """Numbers a sentence states: (value, decimals written); digits inside names in ``ignore`` skipped."""
    for token in sorted(ignore, key=len, reverse=True):
        if token:
            text = re.sub(re.escape(token), " ", text, flags=re.I)
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace(",", "")
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        out.append((float(raw), decimals))
    for m in _WORD.finditer(text):
        out.append((float(_WORDS[m.group(1).lower()]), 0))
    return out


def grounded(text: str, allowed: Sequence[float], *, ignore: Sequence[str] = ()) -> str | None:
    """None when every number in ``text`` is an allowed value as written; else why not."""
    for value, decimals in numbers_in(text, ignore=ignore):
        if not any(abs(round(a, decimals) - value) < 1e-9 or abs(a - value) < 1e-9 for a in allowed):
            return f"states {value:g}, which is not one of the cited readings ({', '.join(f'{a:g}' for a in allowed) or 'none'})"
    return None


def check(f: Finding, text: str) -> str | None:
    """None when the sentence may be stored for this finding; else the reason it may not."""
    text = text.strip()
    if len(text) < 12:
        return "too short"
    why = grounded(text, f.allowed, ignore=[f.title, f.sensor, f.unit, f.location])
    if why:
        return why
    opposite = OPPOSITE.get(f.rule)
    if opposite and re.search(opposite, text, re.I):
        return "says the opposite of what the readings show"
    claim = _TIME_CLAIM.search(text)
    if claim:
        return f"claims a span of time ({claim.group(0)!r}) the readings do not show"
    return None


def fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.0f}"


def template(f: Finding) -> str:
    """A plain sentence from the finding's own values (always grounded)."""
    unit = f" {f.unit}" if f.unit and f.unit not in ("%",) else f.unit
    where = f"In the {f.location}, " if f.location else ""
    title = f.title if where else f.title[:1].upper() + f.title[1:]
    vals = [fmt(v) for v in f.values]
    times = {1: "once", 2: "twice"}.get(len(f.cites), "several times" if len(f.cites) < 10 else "many times")
    s = {
        "rise": lambda: f"{where}{title} rose from {vals[0]} to {vals[1]}{unit}.",
        "fall": lambda: f"{where}{title} fell from {vals[0]} to {vals[1]}{unit}.",
        "high": lambda: f"{where}{title} reached {vals[-1]}{unit}, above its limit.",
        "low": lambda: f"{where}{title} dropped to {vals[-1]}{unit}, below its limit.",
        "unusual_high": lambda: f"{where}{title} is {vals[-1]}{unit}, much higher than usual for this time of day.",
        "unusual_low": lambda: f"{where}{title} is {vals[-1]}{unit}, much lower than usual for this time of day.",
        "unusual_activity": lambda: f"{where}{title} was active {times}, at an hour when it is usually quiet.",
        "activity": lambda: f"{where}{title} became active after a quiet spell.",
        "quiet": lambda: f"{where}{title} stayed quiet during its usual busy hour.",
    }[f.rule]()
    return s


class Phraser:
    """Phrases findings with a model (any shoal Backend) or, without one, with templates."""

    def __init__(self, backend: Any | None, *, model: str | None = None) -> None:
        self.backend = backend
        self.model = model
        self.phrased = 0
        self.rejected = 0
        self.templated = 0
        self.last_rejection: str | None = None

    async def phrase(self, f: Finding) -> tuple[str, str, str | None]:
        """(sentence, method "model" | "template", why the model's was refused or None)."""
        why: str | None = None
        if self.backend is not None:
            for _attempt in range(2):
                try:
                    text = await self._ask(f, retry_note=why)
                except ShoalError as exc:
                    why = f"the model failed: {exc.message}"
                    break
                why = check(f, text) if text else "no sentence"
                if why is None:
                    self.phrased += 1
                    return text.strip(), "model", None
            self.rejected += 1
            self.last_rejection = why
            log.info("observation of %s: the model's sentence was refused (%s); using the template", f.sensor, why)
        self.templated += 1
        return template(f), "template", why

    async def _ask(self, f: Finding, *, retry_note: str | None) -> str:
        from shoal.backends.base import generate
        from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

        facts = ", ".join(fmt(v) for v in f.values) or "none"
        where = f" in the {f.location}" if f.location else ""
        unit = f" (unit: {f.unit})" if f.unit else ""
        user = (
            f"Sensor: {f.title}{where}{unit}.\nWhat happened: {f.gist}.\nReading values you may use: {facts}.\n"
            "Write one short sentence for a log. Use no other numbers and no times."
        )
        if retry_note:
            # not the reason itself: a small model repeats it ("... but it is not a span of time")
            user += "\nYour last sentence was refused. Write it again, plainly, with only the values above."
        req = GenerateRequest(
            messages=[
                ChatMessage("system", "You write short, factual log sentences about what a home sensor noticed."),
                ChatMessage("user", "Sensor: door in the hall.\nWhat happened: opened at an hour when it is usually closed.\n"
                            "Reading values you may use: 1.\nWrite one short sentence for a log. Use no other numbers and no times."),
                ChatMessage("assistant", json.dumps({"sentence": "In the hall, the door opened at an hour when it is usually closed."})),
                ChatMessage("user", user),
            ],
            model=self.model,
            sampling=SamplingParams(max_tokens=64, temperature=0.2),
            json_schema=SCHEMA,
            priority=Priority.THINKING,
            owner="edge-observer",
        )
        out = await generate(self.backend, req)
        try:
            return str(json.loads(out.text)["sentence"])
        except (ValueError, KeyError, TypeError):
            return ""
