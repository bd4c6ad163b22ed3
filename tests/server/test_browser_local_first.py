"""The local-first router behind the web server: the headspace says which model writes each reply and why,
and the choice is in the owner's event log only.

Real parts: the embedded engine as ``local``, a real llama.cpp server on loopback as ``big``
(the same SmolLM2 file), uvicorn, Debian's Chromium.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from playwright.sync_api import expect

from ..conftest import ARTIFACTS, LlamaServer
from .conftest import SERVER_CONFIG, LiveServer, Site, auth, make_site, new_conversation, send_and_settle
from .test_browser import page, sign_in  # noqa: F401 (the browser page fixture, on this module's `live`)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, llama_server: LlamaServer) -> Site:
    text = SERVER_CONFIG + f"""
[[servers]]
name = "big"
kind = "llamacpp"
url = "{llama_server.url}"
models = ["smollm2-135m"]

[cluster]
health_interval = 0   # python -m llama_cpp.server cuts a running stream off when a probe arrives

[routing.local_first]
local = "local"
big = "big"
"""
    return make_site(tmp_path_factory.mktemp("local-first-home"), text)


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(site.env).start()
    yield server
    server.stop()


def test_the_headspace_shows_which_model_answers_and_why(page, live: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sign_in(page, live.url, "bob")
    page.click("[data-test=new-chat]")

    page.fill("[data-test=composer]", "write a python function that checks whether a word is a palindrome")
    page.click("[data-test=send]")
    headspace = page.locator("[data-test=headspace]")
    routed = headspace.locator("[data-test=turn-card]").nth(0).locator(".hs-item.model")
    expect(routed.first).to_contain_text("model · big", timeout=60_000)
    expect(page.locator("[data-test=reply]").first).not_to_be_empty(timeout=120_000)
    expect(page.locator(".msg.assistant .cursor")).to_have_count(0, timeout=120_000)
    expect(routed).to_have_count(1)  # written by big: no fallback
    expect(routed).to_contain_text("complex (")
    expect(routed).to_contain_text("about code")
    expect(routed).to_contain_text("→ big")

    page.fill("[data-test=composer]", "thanks!")
    page.click("[data-test=send]")
    thanks = headspace.locator("[data-test=turn-card]").nth(1).locator(".hs-item.model")
    expect(thanks).to_contain_text("model · local", timeout=60_000)
    expect(page.locator("[data-test=reply]").nth(1)).not_to_be_empty(timeout=120_000)
    expect(page.locator(".msg.assistant .cursor")).to_have_count(0, timeout=120_000)
    expect(thanks).to_have_count(1)
    expect(thanks).to_contain_text("simple (")
    expect(thanks).to_contain_text("small talk")
    page.screenshot(path=str(ARTIFACTS / "ui-local-first.png"))
    assert "127.0.0.1" not in headspace.inner_text()  # a plain user sees server names, never addresses


def test_the_choice_is_in_the_owners_event_log_and_nobody_elses(http, site: Site) -> None:  # type: ignore[no-untyped-def]
    conv = new_conversation(http, site.tokens["ana"])
    events = send_and_settle(http, site.tokens["ana"], conv, "solve 3x + 7 = 2x - 5 and show the steps", timeout=180)
    routes = [e for e in events if e["kind"] == "route.model"]
    assert routes and routes[0]["server"] == "big" and routes[0]["complexity"] == "complex" and "maths" in routes[0]["reasons"]
    end = next(e for e in events if e["kind"] == "reply.end")
    assert end["served_by"] == routes[-1]["server"]
    for other in ("bob", "root"):  # another person — an admin too — gets none of it
        r = http.get(f"/api/conversations/{conv}/events", headers=auth(site.tokens[other]))
        assert r.status_code == 404, (other, r.status_code)
