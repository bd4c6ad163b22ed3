"""shoal's fact extraction as it was before issue 12 (commit f954dc3), kept for bench/quality.py --baseline.

Its baseline: rules for the common statements, model candidates grounded in
the message's words, and no notion of questions, requests or whose fact it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shoal.memory.store import STOPWORDS, keywords

ATTRIBUTES = (
    "name",
    "location",
    "age",
    "job",
    "employer",
    "likes",
    "dislikes",
    "hobby",
    "family",
    "pet",
    "plan",
    "other",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    attribute: str
    value: str
    method: str


@dataclass(frozen=True, slots=True)
class Fact:
    attribute: str
    value: str
    #: the clause of the message that states the fact, verbatim
    text: str
    method: str


# -------------------------------------------------------------------- rules
# Keywords match in any case ((?i:...)); names and places must be capitalised
# after their first word, so "Bob and I live" stops at "Bob".
_NAME = r"([A-Za-z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+)?)"
_PLACE = r"([A-Za-z][\w'\-]*(?:[ \-][A-Z][\w'\-]*)*)"
_THING = r"([\w'\- ]{2,40}?)"
_END = r"(?=\s*(?:[.,!?;:]|(?i:and|but|because|with|at|for|in|since|last|next|now|today)\b|$))"


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("name", _rule(r"\b(?i:my name is|my name's|i am called|i'm called|call me)\s+" + _NAME)),
    ("name", _rule(r"\b(?i:i am|i'm)\s+([A-Z][a-z]+)" + _END)),
    ("location", _rule(r"\b(?i:i (?:live|am living|'m living|reside|moved|have moved|just moved|relocated)\s+(?:in|to))\s+" + _PLACE + _END)),
    ("location", _rule(r"\b(?i:(?:i'm|i am) (?:based|living) in)\s+" + _PLACE + _END)),
    ("age", _rule(r"\b(?i:i am|i'm)\s+(\d{1,3})(?i:\s+years?\s+old)?" + _END)),
    ("job", _rule(r"\b(?i:i work as|my job is)\s+(?i:an?\s+)?" + _THING + _END)),
    ("employer", _rule(r"\b(?i:i work (?:at|for)|i work as [\w ]{2,30}? (?:at|for))\s+" + _PLACE + _END)),
    ("likes", _rule(r"\b(?i:i (?:really |absolutely )?(?:like|love|enjoy|adore))\s+" + _THING + _END)),
    ("dislikes", _rule(r"\b(?i:i (?:really )?(?:hate|dislike|can't stand|don't like|do not like))\s+" + _THING + _END)),
    ("pet", _rule(r"\b(?i:i have an?)\s+(?i:(dog|cat|puppy|kitten|parrot|rabbit|hamster|horse))(?:\s+(?i:named|called)\s+([A-Z]\w+))?")),
    ("family", _rule(r"\b(?i:my)\s+(?i:(wife|husband|partner|son|daughter|mother|mum|mom|father|dad|brother|sister))(?:\s+(?i:is called|is named|'s name is|is))?\s+([A-Z]\w+)")),
]

_NOT_NAMES = frozenset(
    "a an the so not just really very here there fine good ok okay sure sorry happy sad tired back home going "
    "trying looking from in at on glad afraid new".split()
)


def rule_facts(message: str) -> list[Candidate]:
    out: list[Candidate] = []
    for attribute, pattern in _RULES:
        for m in pattern.finditer(message):
            groups = [g for g in m.groups() if g]
            if not groups:
                continue
            value = " ".join(groups).strip(" '-")
            if attribute == "name" and value.split()[0].lower() in _NOT_NAMES:
                continue
            out.append(Candidate(attribute, value, "rule"))
    return out


# -------------------------------------------------------------------- model
FACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "attribute": {"type": "string", "enum": list(ATTRIBUTES)},
                    "value": {"type": "string", "maxLength": 48},
                },
                "required": ["attribute", "value"],
            },
        }
    },
    "required": ["facts"],
}

FEW_SHOT: list[tuple[str, str]] = [
    (
        "I'm Sarah, I work as a nurse in Bristol.",
        '{"facts": [{"attribute": "name", "value": "Sarah"}, {"attribute": "job", "value": "nurse"},'
        ' {"attribute": "location", "value": "Bristol"}]}',
    ),
    ("What's the weather like today?", '{"facts": []}'),
    (
        "I love hiking with my dog Rex.",
        '{"facts": [{"attribute": "likes", "value": "hiking"}, {"attribute": "pet", "value": "dog Rex"}]}',
    ),
]


def extraction_messages(instruction: str, message: str) -> list[tuple[str, str]]:
    """(role, content) pairs for the extraction prompt."""
    system = (
        (instruction + " " if instruction else "")
        + "List facts the user states about themselves as JSON. Use only words from the message. "
        + "If there are none, return an empty list."
    )
    msgs = [("system", system)]
    for example, answer in FEW_SHOT:
        msgs.append(("user", f"Message: {example}"))
        msgs.append(("assistant", answer))
    msgs.append(("user", f"Message: {message}"))
    return msgs


def parse_model_output(text: str) -> list[Candidate]:
    """Candidates from the model's JSON; raises ValueError when it is not valid."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        raise ValueError("expected an object with a 'facts' list")
    out = []
    for item in data["facts"]:
        if not isinstance(item, dict):
            raise ValueError("a fact is not an object")
        attribute, value = item.get("attribute"), item.get("value")
        if attribute not in ATTRIBUTES or not isinstance(value, str):
            raise ValueError(f"invalid fact {item!r}")
        out.append(Candidate(attribute, value.strip(), "model"))
    return out


# -------------------------------------------------------------------- grounding
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;\n])\s+|,\s+(?=and\b|but\b|i\b|i'm\b|my\b)|\s+(?=and (?:i|my)\b)", re.I)


def _stem(w: str) -> str:
    """A crude stem: enough to match hike/hiking/hikes, city/cities."""
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suf in ("'s", "ing", "es", "ed", "s", "e"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in keywords(text)}


def clauses(message: str) -> list[str]:
    parts = [p.strip(" ,") for p in _CLAUSE_SPLIT.split(message)]
    parts = [re.sub(r"^(?:and|but)\s+", "", p, flags=re.I) for p in parts if p and p.strip(" ,")]
    return [p for p in parts if p]


def ground(candidate: Candidate, message: str) -> Fact | str:
    """A grounded ``Fact``, or the reason the candidate is rejected."""
    value = " ".join(candidate.value.split())
    if not value:
        return "empty value"
    value_words = keywords(value)
    if not value_words:
        if value.lower() in STOPWORDS or not re.search(r"\w", value):
            return f"value {value!r} has no content words"
        value_words = {value.lower()}
    msg_stems = _stems(message)
    missing = [w for w in value_words if _stem(w) not in msg_stems]
    if missing:
        return f"words not in the message: {', '.join(sorted(missing))}"
    if candidate.attribute == "name" and value.lower() in ("user", "assistant", "me", "i"):
        return "not a name"
    negative = bool(_NEGATIVE.search(message))
    if candidate.attribute == "dislikes" and not negative:
        return "a dislike needs a negative word (hate, don't like, ...) in the message"
    if candidate.attribute in ("likes", "hobby") and negative and _NEGATIVE.search(_clause_with(value_words, message) or ""):
        return "the message says the opposite of a like"
    best = None
    for clause in clauses(message):
        if all(_stem(w) in _stems(clause) for w in value_words):
            if best is None or len(clause) < len(best):
                best = clause
    return Fact(candidate.attribute, value, best or message.strip(), candidate.method)


_NEGATIVE = re.compile(
    r"\b(?:hate|hates|dislike|dislikes|detest|can't stand|cannot stand|don't|do not|doesn't|not|never|no longer|awful)\b",
    re.I,
)


def _clause_with(words: set[str], message: str) -> str | None:
    for clause in clauses(message):
        if all(_stem(w) in _stems(clause) for w in words):
            return clause
    return None


def extract(message: str, model_candidates: list[Candidate] | None = None) -> tuple[list[Fact], list[tuple[Candidate, str]]]:
    """Ground rule and model candidates; returns (facts, rejected-with-reason).

    Rule facts win over model facts for the same attribute; duplicates go.
    """
    facts: list[Fact] = []
    rejected: list[tuple[Candidate, str]] = []
    seen: set[tuple[str, str]] = set()
    rule_attrs: set[str] = set()
    for cand in rule_facts(message) + list(model_candidates or []):
        if cand.method == "model" and cand.attribute in rule_attrs and cand.attribute in ("name", "location", "age"):
            continue
        result = ground(cand, message)
        if isinstance(result, str):
            rejected.append((cand, result))
            continue
        key = (result.attribute, result.value.lower())
        if key in seen:
            continue
        seen.add(key)
        if cand.method == "rule":
            rule_attrs.add(cand.attribute)
        facts.append(result)
    return facts, rejected
