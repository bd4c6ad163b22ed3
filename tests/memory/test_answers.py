"""Questions about what shoal knows, recognised and answered from stored facts only."""

from __future__ import annotations

import time

import pytest

from shoal.bots.guards import ReplyGuard
from shoal.memory.answers import ALL, Fact, answer, memory_question

NOW = time.time()
FACTS = [
    Fact("name", "Dana", "I'm Dana", "m1", NOW),
    Fact("job", "vet", "I'm a vet", "m1", NOW),
    Fact("location", "Norwich", "I live in Norwich", "m1", NOW),
    Fact("pet", "cat Olive", "my cat Olive", "m1", NOW),
]


@pytest.mark.parametrize(
    "text, attribute, detail",
    [
        ("what do you remember about me?", ALL, None),
        ("so what have you got on me so far? 😄", ALL, None),
        ("who am I?", ALL, None),
        ("where do I live again?", "location", None),
        ("whereabouts do I live, according to you?", "location", None),
        ("remind me, what did I say my name was?", "name", None),
        ("what's my cat called?", "pet", "cat"),
        ("do you know where I work?", "employer", None),
        ("what's my wife's name?", "family", "wife"),
        ("any idea how old I am?", "age", None),
        ("¿Cómo me llamo?", "name", None),
        ("Was weißt du über mich?", ALL, None),
        ("Comment s'appellent mes chats ?", "pet", "cat"),
    ],
)
def test_questions_about_the_person_are_recognised(text: str, attribute: str, detail: str | None) -> None:
    q = memory_question(text)
    assert q is not None and q.attribute == attribute and q.detail == detail, q


@pytest.mark.parametrize(
    "text",
    [
        "is it safe to eat almonds if I'm allergic to peanuts?",
        "do you think I should move to Bristol?",
        "what should i call my new kitten?",
        "what's the capital of Australia?",
        "I live in Leeds.",
        "remind me to call my mum at 6",
        "Where do people in Leeds live?",
    ],
)
def test_advice_statements_and_questions_about_the_world_are_not_memory_questions(text: str) -> None:
    assert memory_question(text) is None


def test_a_follow_up_is_a_memory_question_only_after_one() -> None:
    assert memory_question("and the cats?", "what's my dog called?") is not None
    assert memory_question("and the cats?", "I like dogs.") is None


def test_everything_known_is_listed_and_nothing_else() -> None:
    text = answer(memory_question("what do you remember about me?"), FACTS)  # type: ignore[arg-type]
    for value in ("Dana", "vet", "Norwich", "Olive"):
        assert value in text
    assert text.count("•") == 4 and text.count("You told me today:") == 1  # when it was said: once, not per line
    assert ReplyGuard("what do you remember about me?").loop(text) is None


def test_a_specific_question_gets_its_fact_and_only_that_one() -> None:
    text = answer(memory_question("where do I live?"), FACTS)  # type: ignore[arg-type]
    assert "Norwich" in text and "Dana" not in text and "Olive" not in text
    text = answer(memory_question("what's my cat called?"), FACTS)  # type: ignore[arg-type]
    assert "Olive" in text and "Norwich" not in text


def test_nothing_stored_means_an_honest_dont_know() -> None:
    text = answer(memory_question("what's my dog called?"), FACTS)  # type: ignore[arg-type]
    assert "don't know" in text and "Olive" not in text
    assert "don't know anything about you" in answer(memory_question("what do you know about me?"), [])  # type: ignore[arg-type]


def test_the_answer_is_in_the_language_of_the_question() -> None:
    text = answer(memory_question("¿Dónde vivo?"), FACTS)  # type: ignore[arg-type]
    assert text.startswith("Vives en Norwich")
    assert answer(memory_question("Wie heißt mein Hund?"), FACTS).startswith("Ich weiß noch nicht")  # type: ignore[arg-type]


def test_two_kinds_asked_at_once_get_both() -> None:
    q = memory_question("and what's my name and job?")
    assert q is not None and {q.attribute, *q.more} == {"name", "job"}
    text = answer(q, FACTS)
    assert "Dana" in text and "vet" in text and "Norwich" not in text
    # a relation's name is about the relation, not the person's own name too
    q = memory_question("what's my wife's name?")
    assert q is not None and q.attribute == "family" and q.more == ()


def test_an_animal_named_in_another_language_answers_the_question_about_it() -> None:
    facts = [Fact("pet", "chat Moka", "j'ai deux chats, Moka et Praline"), Fact("pet", "chat Praline", "j'ai deux chats, Moka et Praline"),
             Fact("pet", "Hund Bruno", "Ich habe einen Hund, er heißt Bruno.")]
    fr = answer(memory_question("Et comment s'appellent mes chats ?"), facts)  # type: ignore[arg-type]
    assert "Moka" in fr and "Praline" in fr and "Bruno" not in fr
    de = answer(memory_question("Wie heißt mein Hund?"), facts)  # type: ignore[arg-type]
    assert "Bruno" in de and "Moka" not in de
