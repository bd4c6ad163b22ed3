"""Dates in questions (memory.when) and what memory search does with them, on the real store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from shoal.memory import when
from shoal.memory.store import MemoryStore, NewMemory, Weights
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database


def days(spans: list[tuple[float, float]]) -> list[tuple[str, str]]:
    return [(str(datetime.fromtimestamp(a).date()), str(datetime.fromtimestamp(b).date())) for a, b in spans]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What painting did Melanie show on October 13, 2023?", [("2023-10-13", "2023-10-21")]),
        ("What did Gina find on 1 February, 2023?", [("2023-02-01", "2023-02-09")]),
        ("Who did Maria have dinner with on May 3rd 2023?", [("2023-05-03", "2023-05-11")]),
        ("What setback did Melanie face in October 2023?", [("2023-10-01", "2023-11-08")]),
        ("When did Melanie go camping in June?", [("2022-06-01", "2022-07-08"), ("2023-06-01", "2023-07-08")]),
        ("May I ask what you did?", []),  # a bare month needs a word that makes it a time
        ("What happened on February 30, 2023?", []),
        ("What is my dog's name?", []),
    ],
)
def test_the_dates_a_question_names(question: str, expected: list[tuple[str, str]]) -> None:
    assert days(when.windows(question, years=[2022, 2023])) == expected


def test_relative_days_count_back_from_now() -> None:
    now = datetime(2026, 12, 2, 12).timestamp()
    assert days(when.windows("what did I tell you yesterday?", now=now)) == [("2026-11-30", "2026-12-02")]


def test_when_questions_and_answers_that_say_when() -> None:
    assert when.asks_when("When did James adopt Ned?") and when.asks_when("How long did John practice chess?")
    assert not when.asks_when("What is James's dog called?")
    assert when.says_when("I adopted a pup from a shelter last week") and when.says_when("two days ago I went bowling")
    assert not when.says_when("I love bowling, it's my favourite thing")


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = await Database(tmp_path / "m.db").open()
    user = await ConversationStore(db).ensure_user("ana")
    yield MemoryStore(db), user.id
    await db.close()


async def test_a_question_naming_a_date_finds_what_was_said_then(store) -> None:  # type: ignore[no-untyped-def]
    mem, ana = store
    at = lambda *d: datetime(*d).timestamp()  # noqa: E731
    await mem.add_many([
        NewMemory(ana, "raw", "We painted a sunset with the kids, so relaxing.", sources=["m1"], created_at=at(2023, 3, 5)),
        NewMemory(ana, "raw", "Did a painting class with a friend, a landscape.", sources=["m2"], created_at=at(2023, 10, 14)),
        NewMemory(ana, "raw", "Painting is how I unwind after work.", sources=["m3"], created_at=at(2023, 7, 1)),
    ])
    top = (await mem.search(ana, "What did I paint on October 13, 2023?", limit=1))[0]
    assert top.sources == ["m2"] and "date" in top.why
    # a month without a year is that month in any year the memories span
    assert (await mem.search(ana, "what did I paint in March?", limit=1))[0].sources == ["m1"]
    # off, the date is only words
    off = await mem.search(ana, "What did I paint on October 13, 2023?", limit=3, weights=Weights(date=0))
    assert all("date" not in m.why for m in off)


async def test_a_when_question_prefers_the_memory_that_says_when(store) -> None:  # type: ignore[no-untyped-def]
    mem, ana = store
    await mem.add_many([
        NewMemory(ana, "raw", "I adopted Ned, my puppy, he is the best puppy.", sources=["m1"]),
        NewMemory(ana, "raw", "Adopted him from the Stamford shelter two weeks ago.", sources=["m2"]),
    ])
    assert (await mem.search(ana, "When did I adopt my puppy Ned?", limit=1))[0].sources == ["m2"]
    assert (await mem.search(ana, "When did I adopt my puppy Ned?", limit=1, weights=Weights(when=0)))[0].sources == ["m1"]
