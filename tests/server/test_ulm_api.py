"""µLM REST and the µLM view: runs trained by a child process with live curves, searches with verdicts, who sees what.

A real uvicorn on loopback, real child processes training real (tiny) µLMs, real Chromium.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ..conftest import ARTIFACTS
from .conftest import LiveServer, Site, auth, make_site, wait_for
from .test_browser import ARGS, CHROMIUM, sign_in

CONFIG = """
[[servers]]
name = "local"
kind = "embedded"

[[bots]]
name = "conversation"
role = "conversation"
max_tokens = 16

[[bots]]
name = "primary"
role = "primary"
max_tokens = 16

[routing]
always = []

[ulm]
users = ["ana"]
threads = 1
"""

# one-digit arithmetic with the calculator: a model that trains in seconds
TINY = """
name = "tiny-arith"
[data]
corpus = "harness"
tokenizer = "char"
envs = ["arith"]
levels = [1]
n_tasks = 600
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
[train]
iters = 60
batch_size = 16
lr = 5e-3
warmup = 5
eval_every = 20
eval_iters = 2
ckpt_every = 20
threads = 1
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("ulm-ui"), CONFIG)


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(site.env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def run_state(http: httpx.Client, token: str, name: str) -> dict[str, Any]:
    r = http.get(f"/api/ulm/runs/{name}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def trained(http: httpx.Client, site: Site) -> dict[str, Any]:
    """ana's tiny run, started over REST and trained to the end by the server's child process."""
    r = http.post("/api/ulm/runs", json={"toml": TINY, "name": "ana-tiny"}, headers=auth(site.tokens["ana"]))
    assert r.status_code == 202, r.text
    assert r.json()["owner_name"] == "ana"
    done = wait_for(lambda: (d := run_state(http, site.tokens["ana"], "ana-tiny"))["state"] in ("finished", "failed") and d,
                    timeout=300, interval=0.5)
    assert done["state"] == "finished", done["log"]
    return done  # type: ignore[no-any-return]


def test_a_run_started_over_rest_trains_in_a_child_and_reports_every_step_and_evaluation(trained: dict[str, Any]) -> None:
    assert trained["iter"] == trained["iters"] == 60
    assert [s[0] for s in trained["steps"]] == list(range(1, 61))  # every step's loss, in order
    assert [e["iter"] for e in trained["evals"]] == [20, 40, 60]
    assert trained["steps"][-1][1] < trained["steps"][0][1]  # it learned something
    assert trained["n_params"] and trained["model"]["n_layer"] == 2
    assert trained["owner_name"] == "ana" and not trained["may_stop"]


def test_a_search_shows_every_candidate_with_the_verifiers_verdict(trained: dict[str, Any], http: httpx.Client, site: Site) -> None:
    ana = site.tokens["ana"]
    r = http.post("/api/ulm/searches", json={"run": "ana-tiny", "env": "arith", "level": 1, "index": 2, "n": 4},
                  headers=auth(ana))
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["prompt"].startswith("Q: ") and len(s["candidates"]) == 4 and s["n"] == 4
    for c in s["candidates"] + [s["greedy"]]:
        assert isinstance(c["ok"], bool) and c["feedback"] and c["tokens"] >= 1
    assert s["solved"] == sum(c["ok"] for c in s["candidates"]) and s["best_of_n"] == (s["solved"] > 0)
    assert http.get(f"/api/ulm/searches/{s['id']}", headers=auth(ana)).json() == s
    assert [x["id"] for x in http.get("/api/ulm/searches", params={"run": "ana-tiny"}, headers=auth(ana)).json()][0] == s["id"]
    worded = http.post("/api/ulm/searches", json={"run": "ana-tiny", "text": "what is 7*8?", "n": 2}, headers=auth(ana))
    assert worded.status_code == 201 and worded.json()["answer"] == "56", worded.text


def test_nobody_else_sees_or_searches_or_stops_a_run_and_admins_see_all(trained: dict[str, Any], http: httpx.Client, site: Site) -> None:
    ana, bob, root = site.tokens["ana"], site.tokens["bob"], site.tokens["root"]
    mine = http.post("/api/ulm/searches", json={"run": "ana-tiny", "env": "arith", "level": 1, "n": 2}, headers=auth(ana)).json()
    assert http.get("/api/ulm/runs", headers=auth(bob)).json() == []
    for method, path, body in (
        ("GET", "/api/ulm/runs/ana-tiny", None),
        ("POST", "/api/ulm/runs/ana-tiny/stop", None),
        ("POST", "/api/ulm/searches", {"run": "ana-tiny", "env": "arith", "level": 1}),
        ("GET", f"/api/ulm/searches/{mine['id']}", None),
    ):
        r = http.request(method, path, json=body, headers=auth(bob))
        assert r.status_code == 404 and "no µLM" in r.json()["error"]["message"], (method, path, r.text)
    assert http.get("/api/ulm/searches", headers=auth(bob)).json() == []
    r = http.post("/api/ulm/runs", json={"recipe": "smoke"}, headers=auth(bob))
    assert r.status_code == 403 and "ulm.users" in r.json()["error"]["message"]
    # the admin sees ana's run and her searches
    assert "ana-tiny" in [x["name"] for x in http.get("/api/ulm/runs", headers=auth(root)).json()]
    assert http.get(f"/api/ulm/searches/{mine['id']}", headers=auth(root)).status_code == 200
    assert http.get("/api/ulm/runs").status_code == 401 and http.get(f"/api/ulm/searches/{mine['id']}").status_code == 401


def test_bad_requests_get_clear_errors(trained: dict[str, Any], http: httpx.Client, site: Site) -> None:
    ana = site.tokens["ana"]
    cases = [
        ({"toml": TINY.replace('corpus = "harness"', 'corpus = "/etc"'), "name": "x1"}, "not allowed from the web"),
        ({"toml": TINY.replace("n_layer", "n_layers"), "name": "x2"}, "n_layers"),
        ({"recipe": "../../etc/passwd"}, "no built-in recipe"),
        ({"recipe": "smoke", "toml": TINY}, "either"),
        ({"toml": TINY, "name": "ana-tiny"}, "exists"),
        ({"toml": TINY, "name": "../up"}, "not allowed"),
    ]
    for body, words in cases:
        r = http.post("/api/ulm/runs", json=body, headers=auth(ana))
        assert r.status_code == 400 and words in r.json()["error"]["message"], (body, r.text)
    for body, words in (
        ({"run": "ana-tiny", "env": "poker", "level": 1}, "no environment 'poker'"),
        ({"run": "ana-tiny", "env": "arith", "level": 9}, "no level 9"),
        ({"run": "ana-tiny", "text": "hello there"}, "no harness task"),
    ):
        r = http.post("/api/ulm/searches", json=body, headers=auth(ana))
        assert r.status_code == 400 and words in r.json()["error"]["message"], (body, r.text)
    assert not (site.home / "ulm" / "runs" / "x1").exists()


@pytest.fixture
def page(live: LiveServer) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, errors


def test_the_ulm_view_draws_a_live_curve_and_a_search_with_verdicts(
    trained: dict[str, Any], page: Page, live: LiveServer, http: httpx.Client, site: Site
) -> None:
    sign_in(page, live.url, "ana")
    page.click("[data-test=nav-ulm]")
    row = page.locator("[data-test=runs] tr[data-run=ana-tiny]")
    expect(row.locator("[data-test=run-state]")).to_have_text("finished")
    detail = page.locator("[data-test=run-detail][data-run=ana-tiny]")
    expect(detail.locator("[data-test=val-point]")).to_have_count(3)
    assert len(detail.locator("[data-test=step-line]").get_attribute("points").split()) == 60

    # a search in words: the candidates, each with the verifier's verdict
    page.fill("[data-test=search-text]", "sort 3 1 2")
    page.fill("[data-test=search-n]", "5")
    page.click("[data-test=search]")
    expect(page.locator("[data-test=candidate]")).to_have_count(5)
    result = page.locator("[data-test=search-result]")
    expect(result).to_contain_text("Q: sort 3 1 2")
    sid = result.get_attribute("data-search")
    stored = http.get(f"/api/ulm/searches/{sid}", headers=auth(site.tokens["ana"])).json()
    shown = page.locator("[data-test=candidate]").evaluate_all("rows => rows.map(r => r.dataset.ok)")
    assert shown == ["yes" if c["ok"] else "no" for c in stored["candidates"]]
    page.screenshot(path="/tmp/shoal-ui-ulm-search.png", full_page=True)

    # a run started from the form: its curve grows while it trains, then Stop interrupts it
    page.fill("[data-test=run-name]", "ana-live")
    page.click("[data-test=train]")
    live_detail = page.locator("[data-test=run-detail][data-run=ana-live]")
    expect(live_detail).to_be_visible()
    points = lambda: len((live_detail.locator("[data-test=step-line]").get_attribute("points") or "").split())  # noqa: E731
    first = wait_for(lambda: live_detail.locator("[data-test=step-line]").count() and points(), timeout=240)
    wait_for(lambda: points() > first, timeout=120)  # the page redrew a longer curve on its own
    expect(page.locator("[data-test=runs] tr[data-run=ana-live] [data-test=run-state]")).to_have_text("running")
    page.screenshot(path="/tmp/shoal-ui-ulm-live.png", full_page=True)
    page.screenshot(path=str(ARTIFACTS / "ui-ulm.png"), full_page=True)
    page.click("[data-test=stop-run]")
    expect(page.locator("[data-test=runs] tr[data-run=ana-live] [data-test=run-state]")).to_have_text("interrupted", timeout=60_000)
    progress = json.loads((site.home / "ulm" / "runs" / "ana-live" / "progress.json").read_text())
    assert progress["state"] == "interrupted" and progress["iter"] < progress["iters"]
