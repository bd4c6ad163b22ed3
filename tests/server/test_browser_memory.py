"""Issue 12's check in a real browser: what shoal remembers is what the person said, and "what are you
thinking about?" shows the thought on screen."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .conftest import LiveServer, Site
from .test_browser import page, sign_in  # noqa: F401  (the Chromium fixture)


def _settled(pg, n: int) -> str:  # type: ignore[no-untyped-def]
    replies = pg.locator("[data-test=reply]")
    expect(replies).to_have_count(n, timeout=120_000)
    expect(pg.locator(".msg.assistant .cursor")).to_have_count(0, timeout=120_000)
    return replies.nth(n - 1).inner_text()


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def test_remembered_facts_are_exactly_the_persons_and_the_thought_is_quoted(page, live: LiveServer, site: Site) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sign_in(page, live.url, "ana")
    page.click("[data-test=new-chat]")
    page.fill("[data-test=composer]", "Hi, I'm Rosa. I work as a dentist, I live in Bristol and I have a dog called Pepper.")
    page.click("[data-test=send]")
    _settled(page, 1)
    expect(page.locator("[data-test=headspace]")).to_contain_text("remembered", timeout=60_000)

    page.fill("[data-test=composer]", "what do you remember about me?")
    page.click("[data-test=send]")
    remembered = _settled(page, 2)
    for said in ("Rosa", "dentist", "Bristol", "Pepper"):
        assert said in remembered, remembered
    bullets = [ln for ln in remembered.splitlines() if ln.strip().startswith("•")]
    assert len(bullets) == 4, remembered  # the four facts and nothing invented beside them
    assert not re.search(r"\bI (?:live|work|have|am a)\b", remembered), remembered  # no life of its own

    page.fill("[data-test=composer]", "what are you thinking about?")
    page.click("[data-test=send]")
    said = _settled(page, 3)
    quotes = re.findall(r"“([^”]+)”", said)
    thoughts = [_words(t) for t in page.locator("[data-test=thought]").all_inner_texts()]
    assert quotes, said
    # each quote is the thinker's own words, as the headspace shows them (trimmed with … at most)
    for q in quotes:
        q = _words(q.replace("…", " "))
        assert any(q in t for t in thoughts), (q, thoughts)
