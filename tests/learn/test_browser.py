"""Rating replies in the web UI: real Chromium, a real uvicorn, the real model; read back by REST and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ..cli.test_chat import shoal
from ..conftest import ARTIFACTS, TEST_CONFIG
from ..server.conftest import PASSWORDS, LiveServer, Site, auth, make_site, wait_for
from ..server.test_browser import ARGS, CHROMIUM

# the conversation bot alone answers (no thinker to wait for, no "what's your name?" interjection):
# these tests are about the verdicts on its replies
CONFIG = TEST_CONFIG.split("[routing]")[0] + '[routing]\nalways = []\n\n[memory]\nwanted_slots = []\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("learn-ui"), CONFIG)


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(site.env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


@pytest.fixture
def page(live: LiveServer) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, errors


def sign_in(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button:has-text('Sign in')")


def say(page: Page, http: httpx.Client, token: str, conv: str, text: str) -> str:
    """Send ``text`` from the composer; the id of the reply to it, once it has finished streaming."""
    page.fill("[data-test=composer]", text)
    page.click("[data-test=send]")

    def reply_id() -> str | None:
        events = http.get(f"/api/conversations/{conv}/events", headers=auth(token)).json()
        turn = next((e["message_id"] for e in events if e["kind"] == "user.turn" and e["text"] == text), None)
        return next(
            (e["message_id"] for e in events if e["kind"] == "reply.end" and e.get("turn") == turn and turn), None
        )

    rid: str = wait_for(reply_id, timeout=120)
    expect(page.locator(f"[data-id='{rid}'] [data-test=rate-good]")).to_be_visible(timeout=30_000)  # streamed, rateable
    return rid


def verdicts(http: httpx.Client, token: str, conv: str) -> dict[str, Any]:
    r = http.get("/api/feedback", params={"conversation": conv}, headers=auth(token))
    assert r.status_code == 200, r.text
    return {f["message"]: f["rating"] for f in r.json()}


def test_ratings_made_in_the_browser_survive_a_reload_and_feed_the_dataset(
    page: Page, live: LiveServer, http: httpx.Client, site: Site, tmp_path: Path
) -> None:
    ana = site.tokens["ana"]
    sign_in(page, live.url, "ana")
    page.click("[data-test=new-chat]")
    page.wait_for_function("() => location.hash.startsWith('#/c/')")
    conv = page.evaluate("() => location.hash.split('/').pop()")
    good = say(page, http, ana, conv, "What is the capital of France?")
    first = page.locator(f"[data-id='{good}']")
    first.locator("[data-test=rate-good]").click()
    expect(first.locator("[data-test=rate-good]")).to_have_attribute("aria-pressed", "true")
    expect(first.locator("[data-test=rated]")).to_have_text("rated good")
    wait_for(lambda: verdicts(http, ana, conv).get(good) == "good", timeout=30)

    bad = say(page, http, ana, conv, "Name a colour.")
    second = page.locator(f"[data-id='{bad}']")
    second.locator("[data-test=rate-bad]").click()
    expect(second.locator("[data-test=rated]")).to_have_text("rated bad")
    wait_for(lambda: verdicts(http, ana, conv).get(bad) == "bad", timeout=30)

    # a reload rebuilds the page from the replayed events; the verdicts come back from the store
    page.reload()
    first, second = page.locator(f"[data-id='{good}']"), page.locator(f"[data-id='{bad}']")
    expect(first.locator("[data-test=rate-good]")).to_have_attribute("aria-pressed", "true", timeout=30_000)
    expect(first.locator("[data-test=rate-bad]")).to_have_attribute("aria-pressed", "false")
    expect(second.locator("[data-test=rate-bad]")).to_have_attribute("aria-pressed", "true")
    expect(second.locator("[data-test=rated]")).to_have_text("rated bad")
    shot = Path("/tmp/shoal-ui-rating.png")
    page.screenshot(path=str(shot))
    page.screenshot(path=str(ARTIFACTS / "ui-rating.png"))

    assert verdicts(http, ana, conv) == {good: "good", bad: "bad"}
    assert http.get(f"/api/messages/{good}/feedback", headers=auth(ana)).json()["rating"] == "good"

    # the dataset, as `shoal learn dataset` builds it: the good reply is a target, the bad one is left out
    out_file = tmp_path / "ana.jsonl"
    out = shoal(site.home, "learn", "dataset", "--user", "ana", "--out", str(out_file))
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert (counts["good"], counts["bad_left_out"], counts["train"] + counts["val"]) == (1, 1, 1), counts
    (example,) = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert example["message"] == good and example["source"] == "good"
    assert example["messages"][-2] == {"role": "user", "content": "What is the capital of France?"}


def test_nobody_else_can_rate_or_see_the_rating_of_a_reply(live: LiveServer, http: httpx.Client, site: Site) -> None:
    ana, bob = site.tokens["ana"], site.tokens["bob"]
    r = http.post("/api/conversations", json={}, headers=auth(ana))
    conv = r.json()["id"]
    r = http.post(f"/api/conversations/{conv}/messages", json={"text": "Say hello."}, headers=auth(ana))
    turn = r.json()["message_id"]

    def reply() -> str | None:
        events = http.get(f"/api/conversations/{conv}/events", headers=auth(ana)).json()
        return next((e["message_id"] for e in events if e["kind"] == "reply.end" and e.get("turn") == turn), None)

    rid = wait_for(reply, timeout=120)
    url = f"/api/messages/{rid}/feedback"
    assert http.put(url, json={"rating": "good"}, headers=auth(ana)).status_code == 200

    for method, body in (("PUT", {"rating": "bad"}), ("PUT", {"correction": "Bye."}), ("GET", None), ("DELETE", None)):
        r = http.request(method, url, json=body, headers=auth(bob))
        assert r.status_code == 404 and "no message" in r.json()["error"]["message"], (method, r.text)
    r = http.get("/api/feedback", params={"conversation": conv}, headers=auth(bob))
    assert r.status_code == 404 and "no conversation" in r.json()["error"]["message"]
    assert http.get("/api/feedback", headers=auth(bob)).json() == []
    assert http.get("/api/feedback", params={"conversation": conv}).status_code == 401
    # what ana gave is untouched, and only she sees it
    assert verdicts(http, ana, conv) == {rid: "good"}
    assert http.get(url, headers=auth(ana)).json()["correction"] is None


def test_asking_again_in_the_browser_keeps_the_old_reply_marked_replaced(
    page: Page, live: LiveServer, http: httpx.Client, site: Site
) -> None:
    ana = site.tokens["ana"]
    sign_in(page, live.url, "ana")
    page.click("[data-test=new-chat]")
    page.wait_for_function("() => location.hash.startsWith('#/c/')")
    conv = page.evaluate("() => location.hash.split('/').pop()")
    old = say(page, http, ana, conv, "Tell me a fact about cats.")
    page.locator(f"[data-id='{old}'] [data-test=again]").click()

    def new_reply() -> str | None:
        events = http.get(f"/api/conversations/{conv}/events", headers=auth(ana)).json()
        start = next((e for e in events if e["kind"] == "reply.start" and e.get("replaces") == old), None)
        done = start and any(e["kind"] == "reply.end" and e["message_id"] == start["message_id"] for e in events)
        return start["message_id"] if done else None

    new = wait_for(new_reply, timeout=120)
    for _ in range(2):  # live, then rebuilt from the replayed events after a reload
        replaced, fresh = page.locator(f"[data-id='{old}']"), page.locator(f"[data-id='{new}']")
        expect(replaced.locator("[data-test=replaced]")).to_be_visible(timeout=30_000)
        expect(replaced.locator("[data-test=rate]")).to_have_count(0)  # a replaced reply is not rated
        expect(fresh.locator("[data-test=again]")).to_be_visible(timeout=30_000)  # the latest reply may be asked again
        expect(fresh.locator("[data-test=replaced]")).to_have_count(0)
        page.screenshot(path="/tmp/shoal-ui-again.png")
        page.reload()
    page.screenshot(path=str(ARTIFACTS / "ui-again.png"))
    stored = {m["id"]: m["status"] for m in http.get(f"/api/conversations/{conv}/messages", headers=auth(ana)).json()}
    assert stored[old] == "replaced" and stored[new] == "complete"
