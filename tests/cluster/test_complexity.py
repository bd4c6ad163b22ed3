"""The turn-complexity score behind the local-first router: what makes a turn complex, and why it says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.cluster.complexity import assess

DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "router_turns.jsonl"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("write a python function that merges two sorted lists", "about code"),
        ("why does `xs.sort()` return None?", "contains code"),
        ("what is 23 * 19 minus 40?", "maths"),
        ("explain the difference between weather and climate", "asks for reasoning"),
        ("plan a week of meals for a family of four", "planning"),
        ("write me a story about a dragon who is afraid of heights", "asks for length or detail"),
        ("Where should I live? What would it cost? Which area is safest?", "3 questions"),
    ],
)
def test_code_maths_reasoning_planning_detail_and_several_questions_make_a_turn_complex(text: str, reason: str) -> None:
    a = assess(text)
    assert a.complex and a.label == "complex" and reason in a.reasons, a


@pytest.mark.parametrize(
    "text",
    ["hi!", "thanks a lot", "good night shoal", "my name is Ana", "what's the capital of Peru?", "do you like cats?"],
)
def test_small_talk_short_lookups_and_statements_about_oneself_are_simple(text: str) -> None:
    assert not assess(text).complex


def test_a_bare_follow_up_is_as_complex_as_the_turn_it_follows() -> None:
    hard = "explain how a hash map handles collisions"
    assert not assess("why?").complex
    a = assess("why?", previous=hard)
    assert a.complex and "follows a complex turn" in a.reasons
    assert not assess("why?", previous="do you like tea?").complex
    # a long turn stands on its own, whatever came before
    assert "follows a complex turn" not in assess("and then we went to the beach with the dog", previous=hard).reasons


def test_the_threshold_moves_the_line() -> None:
    text = "why is the sea salty?"
    a = assess(text)
    assert 0 < a.score < 2 and not a.complex
    assert assess(text, threshold=a.score).complex


def test_the_same_turn_always_gets_the_same_verdict() -> None:
    text = "I'm moving house. 1. what do I do first 2. how do I pack books?"
    assert assess(text) == assess(text)


def test_the_labelled_set_is_big_balanced_and_has_no_repeats() -> None:
    turns = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(turns) >= 80
    labels = [t["label"] for t in turns]
    assert 0.35 < labels.count("complex") / len(labels) < 0.65
    assert len({t["text"].lower() for t in turns}) == len(turns)
    assert {t["split"] for t in turns} == {"dev", "dev2", "held-out"}
