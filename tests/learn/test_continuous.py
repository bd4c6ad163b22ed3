"""Continuous learning: ``[learn]`` starts a run in the background; the REST view of runs and adapters.

Real parts: the app with the real model, real SQLite, the trainer as a real child process
(``python -m shoal.learn.job``) on the shipped GGUF, tiny settings (2 steps, rank 2, 64 tokens).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from shoal.config import parse_config
from shoal.engine.llama import default_model_path
from shoal.errors import ConfigError
from shoal.learn.adapters import AdapterRegistry
from shoal.learn.continuous import Learner, write_json
from shoal.learn.feedback import FeedbackStore
from shoal.server.app import create_app
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database

from ..conftest import ARTIFACTS, TEST_CONFIG
from ..server.conftest import PASSWORDS, LiveServer, Site, auth, make_site, wait_for
from ..server.test_browser import ARGS, CHROMIUM
from .conftest import FACTS, converse, run_async

TINY = """
[learn]
enabled = true
users = ["ana"]
after_verdicts = {after}
check_interval = 0.2
steps = 2
rank = 2
batch = 2
lr = 0.02
max_tokens = 64
threads = 1
val_fraction = 0.34
"""
FINAL = ("finished", "failed", "interrupted", "skipped")


@pytest.fixture(scope="module")
def base_cache(learn_home: Path) -> Path:
    """The fp32 copy of the served GGUF, built once and shared (each run's home links to it)."""
    from shoal.learn.base import load_base

    load_base(learn_home, default_model_path())
    return learn_home / "learn" / "base"


def learning_site(root: Path, base_cache: Path, *, after: int) -> Site:
    root.mkdir()
    site = make_site(root, TEST_CONFIG + TINY.format(after=after))
    (site.home / "learn").mkdir(exist_ok=True)
    (site.home / "learn" / "base").symlink_to(base_cache)
    return site


def seed(site: Site) -> list[str]:
    """Three conversations of ana's with two long-winded replies each; their ids (nothing rated yet)."""

    async def go() -> list[str]:
        db = await Database(site.env.settings.db_path).open()
        store = ConversationStore(db)
        ana = await store.get_user(site.ids["ana"])
        ids = []
        for i in range(3):
            (q1, _), (q2, _) = FACTS[2 * i], FACTS[2 * i + 1]
            ids += await converse(store, ana, [(f"What is the {q1}?", f"Well, let me think about the {q1} for you."),
                                               (f"What is the {q2}?", f"That is an interesting question about the {q2}.")])
        await db.close()
        return ids

    return run_async(go)


class Beacon:
    """What the engine does while it writes a person's reply: touch ``learn/foreground``, until told to stop."""

    def __init__(self, home: Path) -> None:
        self.path = home / "learn" / "foreground"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.path.touch()
            self.stop.wait(0.1)

    def __enter__(self) -> "Beacon":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


Client = TestClient | httpx.Client


def run_of(client: Client, token: str) -> dict[str, Any] | None:
    runs = client.get("/api/learn/runs", headers=auth(token)).json()
    return runs[0] if runs else None


def detail(client: Client, token: str, run_id: str) -> dict[str, Any]:
    r = client.get(f"/api/learn/runs/{run_id}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_enough_new_verdicts_start_a_run_that_yields_to_replies_and_says_whether_it_promoted(
    tmp_path: Path, base_cache: Path
) -> None:
    site = learning_site(tmp_path / "home", base_cache, after=6)
    replies = seed(site)
    live = LiveServer(site.env).start()
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client, Beacon(site.home) as beacon:
            run = verdicts_start_a_run(client, site, replies, beacon)
        look_at_it_in_the_browser(live, run)
    finally:
        live.stop()


def verdicts_start_a_run(client: httpx.Client, site: Site, replies: list[str], beacon: Beacon) -> dict[str, Any]:
    ana, bob, root = site.tokens["ana"], site.tokens["bob"], site.tokens["root"]
    for rid, (_, answer) in zip(replies, FACTS):
        r = client.put(f"/api/messages/{rid}/feedback", json={"correction": answer}, headers=auth(ana))
        assert r.status_code == 200, r.text
    run = wait_for(lambda: run_of(client, ana), timeout=30)
    assert run["trigger"] == "6 new verdicts (after_verdicts = 6)" and run["owner_names"] == ["ana"]
    assert (run["dataset"]["corrected"], run["dataset"]["train"], run["dataset"]["val"]) == (6, 4, 2)
    # a reply is "being written" (the beacon): the child process waits instead of competing for the cores
    wait_for(lambda: "paused" in (detail(client, ana, run["id"])["progress"] or {}).get("note", ""), timeout=180)
    beacon.stop.set()
    done = wait_for(lambda: (d := detail(client, ana, run["id"]))["state"] in FINAL and d, timeout=300)

    assert done["state"] == "finished", done
    assert len(done["losses"]) == 2 and done["paused_seconds"] > 0 and done["version"] == "v0001"
    table = {row["set"]: row for row in done["evaluation"]}
    for name in ("validation", "canary"):  # torch before/after training, llama.cpp served/candidate
        assert all(isinstance(table[name][k], float) for k in ("base", "tuned", "served", "candidate")), table
    decision = done["decision"]
    assert isinstance(decision["promoted"], bool) and decision["reason"]
    assert done["promoted"] == decision["promoted"] and done["reason"] == decision["reason"]
    served = "v0001" if decision["promoted"] else ""
    assert AdapterRegistry(site.home, "conversation").current == served == decision["served"]

    def learner_idle() -> dict[str, Any] | None:  # the child has written its outcome; now it exits
        row = {b["bot"]: b for b in client.get("/api/learn/bots", headers=auth(ana)).json()}["conversation"]
        return row if row["running"] is None else None

    conv = wait_for(learner_idle, timeout=60)
    assert conv["learning"] and conv["may_train"] and conv["promoted"] == served
    assert conv["serving"] == "" and conv["adapter"] == ""  # the bot serves an adapter only with adapter = "latest"
    assert (conv["new_verdicts"], conv["last_run"], conv["running"]) == (0, run["id"], None)

    # bob's verdicts trained nothing: he sees no run, cannot open ana's or start one
    assert client.get("/api/learn/runs", headers=auth(bob)).json() == []
    r = client.get(f"/api/learn/runs/{run['id']}", headers=auth(bob))
    assert r.status_code == 404 and "no training run" in r.json()["error"]["message"]
    r = client.post("/api/learn/runs", json={}, headers=auth(bob))
    assert r.status_code == 403 and "learn.users" in r.json()["error"]["message"]
    bob_view = {b["bot"]: b for b in client.get("/api/learn/bots", headers=auth(bob)).json()}["conversation"]
    assert not bob_view["may_train"] and "new_verdicts" not in bob_view
    assert detail(client, root, run["id"])["id"] == run["id"]  # admins see every run
    assert client.get("/api/learn/runs").status_code == 401
    assert [r["id"] for r in client.get("/api/learn/runs", headers=auth(ana)).json()] == [run["id"]]  # just one
    return done


def look_at_it_in_the_browser(live: LiveServer, run: dict[str, Any]) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        for who in ("ana", "bob"):
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live.url)
            page.fill("input[name=name]", who)
            page.fill("input[name=password]", PASSWORDS[who])
            page.click("button:has-text('Sign in')")
            page.click("[data-test=nav-learn]")
            view = page.locator("[data-test=learn-view]")
            expect(view.locator("tr[data-bot=conversation]")).to_contain_text("conversation", timeout=30_000)
            if who == "bob":  # not his verdicts: no run to see, no button to start one
                expect(view.locator("[data-test=no-runs]")).to_be_visible()
                expect(view.locator("[data-test=run-card]")).to_have_count(0)
                expect(view.locator("[data-test=train-now]")).to_have_count(0)
                continue
            card = view.locator(f"[data-run='{run['id']}']")
            expect(card.locator("[data-test=run-state]")).to_have_text("finished")
            expect(card.locator("[data-test=loss-curve] circle")).to_have_count(2)  # one per step
            expect(card.locator("[data-test=eval-table] tr")).to_have_count(3)  # header, validation, canary
            verdict = "Promoted v0001" if run["decision"]["promoted"] else "Not promoted"
            expect(card.locator("[data-test=decision]")).to_contain_text(verdict)
            expect(card.locator("[data-test=decision]")).to_contain_text(run["decision"]["reason"])
            expect(view.locator("[data-test=train-now]")).to_have_count(1)
            page.screenshot(path="/tmp/shoal-ui-learn.png", full_page=True)
            page.screenshot(path=str(ARTIFACTS / "ui-learn.png"), full_page=True)
        browser.close()
        assert not errors, errors


def test_stopping_the_server_interrupts_a_run_and_leaves_what_is_served(tmp_path: Path, base_cache: Path) -> None:
    site = learning_site(tmp_path / "home", base_cache, after=1000)  # only a run started by hand
    replies = seed(site)

    async def rate() -> None:
        db = await Database(site.env.settings.db_path).open()
        ana = await ConversationStore(db).get_user(site.ids["ana"])
        for rid, (_, answer) in zip(replies, FACTS):
            await FeedbackStore(db).rate(rid, ana, correction=answer)
        await db.close()

    run_async(rate)
    ana = site.tokens["ana"]
    with Beacon(site.home):
        with TestClient(create_app(site.env), base_url="http://testserver") as client:
            r = client.post("/api/learn/runs", json={"bot": "conversation"}, headers=auth(ana))
            assert r.status_code == 202, r.text
            run_id = r.json()["id"]
            assert r.json()["trigger"] == "started by ana"
            again = client.post("/api/learn/runs", json={}, headers=auth(ana))
            assert again.status_code == 400 and "in progress" in again.json()["error"]["message"]
            r = client.post("/api/learn/runs", json={"bot": "thinker"}, headers=auth(ana))
            assert r.status_code == 400 and "does not learn" in r.json()["error"]["message"]
            wait_for(lambda: "paused" in (detail(client, ana, run_id)["progress"] or {}).get("note", ""), timeout=180)
        # the server stopped while the run waited for a reply: the trainer checkpointed and gave up
        job = json.loads((site.home / "learn" / "runs" / "conversation" / run_id / "job.json").read_text())
    assert job["state"] == "interrupted" and "checkpoint" in job["error"], job
    assert (site.home / "learn" / "runs" / "conversation" / run_id / "checkpoint" / "state.json").is_file()
    reg = AdapterRegistry(site.home, "conversation")
    assert reg.versions() == [] and reg.current == ""


# ------------------------------------------------------------------ when a run is due (no model)
async def test_a_run_is_due_after_enough_new_verdicts_or_on_schedule(tmp_path: Path) -> None:
    cfg = parse_config(TEST_CONFIG + TINY.format(after=3) + "every_hours = 2\n")
    db = await Database(tmp_path / "shoal.db").open()
    store = ConversationStore(db)
    ana, bob = await store.ensure_user("ana"), await store.ensure_user("bob")
    learner = Learner(db, tmp_path, lambda: cfg)
    fb = FeedbackStore(db)
    mine = await converse(store, ana, [("a?", "x"), ("b?", "y"), ("c?", "z")])
    theirs = await converse(store, bob, [("a?", "x"), ("b?", "y"), ("c?", "z")])
    for rid in theirs:  # bob is not in learn.users: his verdicts never count
        await fb.rate(rid, bob, rating="good")
    assert await learner.due("conversation") is None
    await fb.rate(mine[0], ana, rating="good")
    await fb.rate(mine[1], ana, rating="bad")
    assert await learner.due("conversation") is None  # 2 < 3, and no run yet to schedule from...
    assert await learner.due("conversation", now=time.time() + 3 * 3600) == (
        "schedule: every 2 h, 2 new verdict(s) since the last run"
    )
    await fb.rate(mine[2], ana, correction="Z.")
    assert await learner.due("conversation") == "3 new verdicts (after_verdicts = 3)"

    # a run counts what came after it
    run = tmp_path / "learn" / "runs" / "conversation" / "01RUN"
    run.mkdir(parents=True)
    started = time.time()
    write_json(run / "job.json", {"id": "01RUN", "bot": "conversation", "owners": [ana.id], "state": "finished",
                                  "created_at": started})
    assert await learner.due("conversation") is None
    assert await learner.due("conversation", now=started + 3 * 3600) is None  # the schedule needs something new
    await fb.rate(mine[0], ana, correction="X.")
    assert await learner.due("conversation", now=started + 3600) is None
    assert (await learner.due("conversation", now=started + 2 * 3600)).startswith("schedule")
    assert (await learner.status("conversation"))["new_verdicts"] == 1
    await db.close()


def test_learn_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="learn.enabled needs learn.users"):
        parse_config(TEST_CONFIG + "\n[learn]\nenabled = true\n")
    with pytest.raises(ConfigError, match="learn.after_verdicts"):
        parse_config(TEST_CONFIG + "\n[learn]\nafter_verdicts = 0\n")
    cfg = parse_config(TEST_CONFIG + '\n[learn]\nenabled = true\nusers = ["ana"]\nbots = ["nobody"]\n')

    async def start() -> None:
        db = await Database(tmp_path / "shoal.db").open()
        try:
            await Learner(db, tmp_path, lambda: cfg).start()
        finally:
            await db.close()

    with pytest.raises(ConfigError, match="unknown bot"):
        run_async(start)
