"""The web UI in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from ..conftest import ARTIFACTS
from .conftest import open_db, PASSWORDS, LiveServer, Site, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def page(live: LiveServer):  # type: ignore[no-untyped-def]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, errors


def sign_in(page, url: str, name: str) -> None:  # type: ignore[no-untyped-def]
    """Sign in through the login form as one of the site's people."""
    page.goto(url)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button:has-text('Sign in')")


def test_sign_in_chat_watch_a_thought_and_forget_a_memory(page, live: LiveServer, site: Site) -> None:  # type: ignore[no-untyped-def]
    page.goto(live.url)
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", "not the password")
    page.click("button:has-text('Sign in')")
    expect(page.locator("[role=alert]")).to_contain_text("Wrong user name or password")

    page.fill("input[name=password]", PASSWORDS["ana"])
    page.click("button:has-text('Sign in')")
    page.click("[data-test=new-chat]")
    page.fill("[data-test=composer]", "Hi! My name is Bob, I live in Leeds and I want to plan a trip to Japan.")
    page.click("[data-test=send]")

    reply = page.locator("[data-test=reply]").first
    expect(reply).not_to_be_empty(timeout=60_000)
    expect(page.locator("[data-test=thought]").first).not_to_have_text("…", timeout=60_000)
    expect(page.locator(".msg.assistant .cursor")).to_have_count(0, timeout=60_000)  # streaming finished
    expect(page.locator("[data-test=headspace]")).to_contain_text("remembered", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "ui-chat.png"))

    page.click("[data-test=nav-memories]")
    cards = page.locator("[data-test=memory-card]")
    expect(cards.first).to_be_visible()
    before = cards.count()
    leeds = cards.filter(has_text="Leeds")
    leeds.locator(".mem-text").click()
    expect(leeds).to_contain_text("From you")  # provenance: the message it came from
    page.screenshot(path=str(ARTIFACTS / "ui-memory.png"))
    asked: list[str] = []

    def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        asked.append(dialog.message)
        # yes, forget it; no, keep the message it came from
        dialog.accept() if len(asked) == 1 else dialog.dismiss()

    page.on("dialog", answer)
    leeds.locator("[data-test=forget]").click()
    expect(cards).to_have_count(before - 1)
    expect(page.locator("[data-test=toast]")).to_contain_text("source message stays")
    assert len(asked) == 2 and "Forget" in asked[0] and "still in your conversation" in asked[1], asked
    page.remove_listener("dialog", answer)


def test_a_plain_user_cannot_see_the_thinkers_thoughts_or_users_page(page, live: LiveServer, site: Site) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live.url, "bob")
    expect(page.locator("text=Users")).to_have_count(0)
    page.click("[data-test=new-chat]")
    page.fill("[data-test=composer]", "What should I cook tonight?")
    page.keyboard.press("Enter")
    expect(page.locator("[data-test=reply]").first).not_to_be_empty(timeout=60_000)
    expect(page.locator("[data-test=headspace]")).to_contain_text("routed", timeout=60_000)
    # the thinker did think about bob's turn (the store says so) and the turn is over in the UI...
    conv = page.evaluate("() => location.hash.split('/').pop()")

    def thought_ended() -> bool:
        with open_db(site.env.settings.db_path) as c:
            return c.execute(
                "SELECT count(*) FROM events WHERE conversation_id = ? AND kind = 'thought.end'", (conv,)
            ).fetchone()[0] > 0

    wait_for(thought_ended, timeout=120)
    expect(page.locator("[data-test=turn-card]").first).to_contain_text("settled", timeout=120_000)
    # ...and none of it reached bob's page
    expect(page.locator("[data-test=thought]")).to_have_count(0)


def test_an_admin_sees_the_cluster_view(page, live: LiveServer, site: Site) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live.url, "root")
    page.click("[data-test=nav-cluster]")
    view = page.locator("[data-test=cluster-view]")
    row = view.locator("tr[data-server=local]")
    expect(row).to_contain_text("embedded", timeout=30_000)
    expect(row).to_contain_text("up", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "ui-cluster.png"))


def test_an_admin_gives_the_primary_the_calculator_and_the_call_shows_in_the_headspace(page, live: LiveServer, site: Site) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from .conftest import auth

    sign_in(page, live.url, "root")
    try:
        # the bot's Settings: the tools field saves the permission
        page.click("[data-test=nav-bots]")
        card = page.locator("[data-test=bot-card]").filter(has=page.locator("h4", has_text="primary"))
        card.locator("button:has-text('Settings')").click()
        card.locator("[data-test=bot-tools-input]").fill("calculator")
        card.locator("button:has-text('Save')").click()
        expect(card.locator("[data-test=bot-tools]")).to_have_text("calculator", timeout=30_000)
        assert live.swarm.config.bot("primary").tools == ["calculator"]

        page.click("[data-test=new-chat]")
        page.fill("[data-test=composer]", "What is 17 times 23?")
        page.click("[data-test=send]")
        headspace = page.locator("[data-test=headspace]")
        # who called (the primary's hot action bot), which tool, its arguments, and the result
        call = headspace.locator(".hs-item.tool")
        expect(call.locator("[data-test=tool-call]")).to_contain_text("primary-tools", timeout=120_000)
        expect(call.locator("[data-test=tool-call]")).to_contain_text("calculator")
        expect(call).to_contain_text("expression:")
        expect(call.locator("[data-test=tool-result]")).to_contain_text("391", timeout=120_000)
        expect(call.locator("[data-test=tool-call]")).to_contain_text("ok")
        page.screenshot(path=str(ARTIFACTS / "ui-tool-call.png"))
        # a call that fails shows its status and the error, not a result
        expect(page.locator("[data-test=turn-card]").first).to_contain_text("settled", timeout=120_000)
        page.fill("[data-test=composer]", "What is 1 / 0?")
        page.click("[data-test=send]")
        failed = headspace.locator(".hs-item.tool").nth(1)
        expect(failed.locator("[data-test=tool-call]")).to_contain_text("error", timeout=120_000)
        expect(failed.locator("[data-test=tool-error]")).to_contain_text("division by zero")
        expect(failed.locator("[data-test=tool-result]")).to_have_count(0)
    finally:
        r = httpx.patch(f"{live.url}/api/bots/primary", json={"tools": []}, headers=auth(site.tokens["root"]))
        assert r.status_code == 200
