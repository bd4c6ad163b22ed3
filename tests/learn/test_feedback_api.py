"""Rating and correcting replies over REST: the real app, real model, real SQLite; privacy across people."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from shoal.server.app import create_app
from shoal.store.db import Database
from shoal.store.conversations import ConversationStore

from ..server.conftest import Site, auth, make_site, new_conversation, send_and_settle
from .conftest import converse, run_async


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("learn-home"))


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.env), base_url="http://testserver") as c:
        yield c


def test_a_person_rates_and_corrects_a_real_reply_and_nobody_else_can(client: TestClient, site: Site) -> None:
    ana, bob = site.tokens["ana"], site.tokens["bob"]
    conv = new_conversation(client, ana)
    events = send_and_settle(client, ana, conv, "What is the capital of France?")
    reply = next(e for e in events if e["kind"] == "reply.end" and not e.get("interjection"))
    rid = reply["message_id"]
    url = f"/api/messages/{rid}/feedback"

    r = client.put(url, json={"rating": "good"}, headers=auth(ana))
    assert r.status_code == 200, r.text
    assert r.json()["rating"] == "good"
    r = client.put(url, json={"correction": "Paris."}, headers=auth(ana))
    assert r.json() == {**r.json(), "rating": "good", "correction": "Paris."}
    assert client.get(url, headers=auth(ana)).json()["correction"] == "Paris."

    # bob: ana's reply does not exist for him, whatever he tries
    for method, body in (("PUT", {"rating": "bad"}), ("GET", None), ("DELETE", None)):
        r = client.request(method, url, json=body, headers=auth(bob))
        assert r.status_code == 404, (method, r.text)
    assert client.get("/api/feedback", headers=auth(bob)).json() == []
    assert client.get(url, headers=auth(ana)).json()["rating"] == "good"  # unchanged

    # no credentials: 401
    assert client.put(url, json={"rating": "bad"}).status_code == 401

    # taking the rating back keeps the correction; deleting removes the verdict
    r = client.put(url, json={"rating": "none"}, headers=auth(ana))
    assert r.json()["rating"] is None and r.json()["correction"] == "Paris."
    assert [f["message"] for f in client.get("/api/feedback", headers=auth(ana)).json()] == [rid]
    assert client.delete(url, headers=auth(ana)).json() == {"deleted": True}
    assert client.get(url, headers=auth(ana)).status_code == 404


@pytest.mark.parametrize(
    "body, status",
    [({}, 400), ({"rating": "meh"}, 422), ({"rating": "good", "extra": 1}, 422), ({"correction": "x" * 9000}, 422)],
)
def test_bad_feedback_gets_a_clear_error(client: TestClient, site: Site, body: dict, status: int) -> None:  # type: ignore[type-arg]
    ana = site.tokens["ana"]

    async def seed() -> str:
        db = await Database(site.env.settings.db_path).open()
        store = ConversationStore(db)
        user = await store.get_user(site.ids["ana"])
        (rid,) = await converse(store, user, [("hi", "hello")])
        await db.close()
        return rid

    rid = run_async(seed)
    r = client.put(f"/api/messages/{rid}/feedback", json=body, headers=auth(ana))
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_a_user_message_cannot_be_rated(client: TestClient, site: Site) -> None:
    ana = site.tokens["ana"]
    conv = new_conversation(client, ana)
    r = client.post(f"/api/conversations/{conv}/messages", json={"text": "hello there"}, headers=auth(ana))
    mid = r.json()["message_id"]
    r = client.put(f"/api/messages/{mid}/feedback", json={"rating": "good"}, headers=auth(ana))
    assert r.status_code == 400 and "only replies" in r.json()["error"]["message"]


def test_the_ui_has_rating_buttons() -> None:
    js = (Path(__file__).resolve().parents[2] / "src/shoal/server/static/app.js").read_text()
    assert "/feedback" in js
    for verdict in ("good", "bad"):  # a button per verdict, wired to the rating call
        assert f'data-test="rate-{verdict}"' in js and f"rate(m, '{verdict}')" in js
