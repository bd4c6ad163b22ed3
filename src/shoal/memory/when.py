"""Time in questions: the dates a question names, and whether it asks when.

"What did Maria donate in December 2023?" is about what was said around
then; "When did James adopt Ned?" is answered by the turn that says when
("I adopted a pup last week"). Memory search uses both (``Weights.date``,
``Weights.when``): a memory made in a named date's window, or one that says
when something happened in answer to a "when" question, ranks higher.
Measured on LoCoMo in docs/memory.md.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Iterable

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH = "|".join(MONTHS)
_ORD = r"(?:st|nd|rd|th)?"
# "October 13, 2023", "13 October 2023", "October 2023", "in October" (a bare month needs a word before
# it that makes it a time: "May I ask" is not about May)
_DATE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}}){_ORD}\s+(?:of\s+)?)?(?P<month>{_MONTH})(?:\s+(?P<d2>\d{{1,2}}){_ORD}\b)?,?(?:\s+(?P<year>(?:19|20)\d\d)\b)?",
    re.I,
)
_BEFORE_BARE = re.compile(r"\b(?:in|on|during|since|by|early|late|mid|around|of|last|this|until|till)\s*-?\s*$", re.I)
#: relative days a question may name, and how many days back from now each reaches
_RELATIVE = {"yesterday": 2, "today": 1, "last week": 14, "this week": 7, "last month": 62}

#: a memory made up to this long after a named date still tells of it ("yesterday I went bowling")
AFTER = timedelta(days=7)

_ASKS_WHEN = re.compile(
    r"^\s*(?:when|since when|what (?:time|date|day|year|month))\b|\bhow long\b|\bhow (?:many|few) (?:days|weeks|months|years)\b",
    re.I,
)
_SAYS_WHEN = re.compile(
    r"\b(?:yesterday|today|tonight|tomorrow|ago|recently|since|"
    r"(?:last|this|next|past) (?:week|weekend|month|year|night|summer|winter|spring|fall|autumn|time|morning|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday)|"
    r"(?:a|one|two|three|four|five|six|seven|eight|nine|ten|few|couple of|\d+) (?:days?|weeks?|months?|years?)|"
    r"for a (?:while|week|month|year)|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    rf"{_MONTH}|(?:19|20)\d\d)\b",
    re.I,
)


def mentions_time(query: str) -> bool:
    """Cheap first check: could ``query`` name a date at all?"""
    low = query.lower()
    return any(m in low for m in MONTHS) or any(r in low for r in _RELATIVE)


def windows(query: str, *, years: Iterable[int] = (), now: float | None = None) -> list[tuple[float, float]]:
    """(start, end) timestamps of what the dates named in ``query`` cover, each ending ``AFTER`` later.

    A month without a year is that month in each of ``years`` (those the memories span); a relative
    day ("yesterday", "last week") counts back from ``now``.
    """
    out: list[tuple[float, float]] = []
    for m in _DATE.finditer(query):
        day, year = m.group("d1") or m.group("d2"), m.group("year")
        if not day and not year and not _BEFORE_BARE.search(query[: m.start()]):
            continue
        month = MONTHS.index(m.group("month").lower()) + 1
        for y in [int(year)] if year else sorted(set(years)):
            try:
                start = datetime(y, month, int(day)) if day else datetime(y, month, 1)
            except ValueError:  # "February 30"
                continue
            end = start + timedelta(days=1) if day else datetime(y + month // 12, month % 12 + 1, 1)
            out.append((start.timestamp(), (end + AFTER).timestamp()))
    low = query.lower()
    t = time.time() if now is None else now
    for phrase, back in _RELATIVE.items():
        if re.search(rf"\b{phrase}\b", low):
            out.append((t - back * 86400, t))
    return out


def asks_when(query: str) -> bool:
    """Whether ``query`` asks when (or how long): "When did James adopt Ned?"."""
    return bool(_ASKS_WHEN.search(query))


def says_when(text: str) -> bool:
    """Whether ``text`` says when something happened: "I adopted a pup last week"."""
    return bool(_SAYS_WHEN.search(text))
