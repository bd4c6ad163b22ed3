"""Asking for a reply again over REST: the real app and model; the old reply becomes a rejected alternative."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from shoal.server.app import create_app

from ..cli.test_chat import shoal
from ..server.conftest import Site, auth, make_site, new_conversation, send_and_settle, wait_for
from .test_browser import CONFIG


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("learn-again"), CONFIG)


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.env), base_url="http://testserver") as c:
        yield c


def reply_to(events: list[dict[str, Any]], text: str) -> dict[str, Any]:
    turn = next(e["message_id"] for e in events if e["kind"] == "user.turn" and e["text"] == text)
    return next(e for e in events if e["kind"] == "reply.end" and e.get("turn") == turn and not e.get("interjection"))


def messages(client: TestClient, token: str, conv: str) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in client.get(f"/api/conversations/{conv}/messages", headers=auth(token)).json()}


def raw_notes_of(client: TestClient, token: str, message_id: str) -> list[dict[str, Any]]:
    items = client.get("/api/memories", params={"kind": "raw", "limit": 200}, headers=auth(token)).json()
    return [m for m in items if message_id in m.get("sources", [])]


def again(client: TestClient, token: str, conv: str, reply: str) -> dict[str, Any]:
    """Ask for ``reply`` again; the reply.end of the one written in its place."""
    r = client.post(f"/api/messages/{reply}/regenerate", headers=auth(token))
    assert r.status_code == 202, r.text
    assert r.json()["replaces"] == reply and r.json()["conversation"] == conv

    def written() -> dict[str, Any] | None:
        evs = client.get(f"/api/conversations/{conv}/events", headers=auth(token)).json()
        start = next((e for e in evs if e["kind"] == "reply.start" and e.get("replaces") == reply), None)
        if start is None:
            return None
        return next((e for e in evs if e["kind"] == "reply.end" and e["message_id"] == start["message_id"]), None)

    end: dict[str, Any] = wait_for(written, timeout=120)
    assert end["turn"] == r.json()["turn"]
    return end


def test_a_reply_written_again_stays_as_a_rejected_alternative_and_leaves_the_history(
    client: TestClient, site: Site, tmp_path: Path
) -> None:
    ana = site.tokens["ana"]
    conv = new_conversation(client, ana)
    q1, q2 = "What is the capital of France?", "And the capital of Spain?"
    first = reply_to(send_and_settle(client, ana, conv, q1), q1)
    r1, text1 = first["message_id"], first["text"]
    # its raw note is written after the reply; once it is there, asking again must take it out
    wait_for(lambda: raw_notes_of(client, ana, r1), timeout=60)

    second = again(client, ana, conv, r1)
    r2, text2 = second["message_id"], second["text"]
    stored = messages(client, ana, conv)
    assert stored[r1]["status"] == "replaced" and stored[r1]["content"] == text1  # kept, word for word
    assert stored[r2]["status"] == "complete" and stored[r2]["reply_to"] == stored[r1]["reply_to"]
    assert raw_notes_of(client, ana, r1) == []  # recall will not bring back words shoal did not stand by

    r = client.post(f"/api/messages/{r1}/regenerate", headers=auth(ana))
    assert r.status_code == 400 and "already written again" in r.json()["error"]["message"]

    third = reply_to(send_and_settle(client, ana, conv, q2), q2)
    r3 = third["message_id"]
    r = client.post(f"/api/messages/{r2}/regenerate", headers=auth(ana))  # no longer the latest reply
    assert r.status_code == 400 and "only the latest reply" in r.json()["error"]["message"]
    assert messages(client, ana, conv)[r2]["status"] == "complete"  # a refusal changes nothing

    for rid in (r1, r2, r3):  # a 👍 on the replaced reply does not make it a target
        assert client.put(f"/api/messages/{rid}/feedback", json={"rating": "good"}, headers=auth(ana)).status_code == 200
    out_file = tmp_path / "ana.jsonl"
    out = shoal(site.home, "learn", "dataset", "--user", "ana", "--out", str(out_file))
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert (counts["good"], counts["replaced_left_out"]) == (2, 1), counts
    examples = {e["message"]: e for e in map(json.loads, out_file.read_text().splitlines())}
    assert set(examples) == {r2, r3}
    assert examples[r2]["messages"][-1]["content"] == text2
    assert examples[r2]["rejected"] == ([text1] if text1 != text2 else [])
    assert counts["with_rejected"] == (1 if text1 != text2 else 0)
    # the next reply's history window holds the reply written in its place, not the replaced one
    assert [m["content"] for m in examples[r3]["messages"][1:]] == [q1, text2, q2, third["text"]]
    assert examples[r3]["rejected"] == []


def test_nobody_else_can_have_a_reply_written_again(client: TestClient, site: Site) -> None:
    ana, bob = site.tokens["ana"], site.tokens["bob"]
    conv = new_conversation(client, ana)
    reply = reply_to(send_and_settle(client, ana, conv, "Say hello."), "Say hello.")["message_id"]
    url = f"/api/messages/{reply}/regenerate"

    r = client.post(url, headers=auth(bob))
    assert r.status_code == 404 and "no message" in r.json()["error"]["message"], r.text
    assert client.post(url).status_code == 401
    assert client.post("/api/messages/nonexistent/regenerate", headers=auth(ana)).status_code == 404
    user_msg = next(m for m in messages(client, ana, conv).values() if m["role"] == "user")
    r = client.post(f"/api/messages/{user_msg['id']}/regenerate", headers=auth(ana))
    assert r.status_code == 400 and "only replies" in r.json()["error"]["message"]
    # bob's attempts left ana's reply as it was, and no second reply was written
    stored = messages(client, ana, conv)
    assert stored[reply]["status"] == "complete"
    assert sum(1 for m in stored.values() if m["role"] == "assistant") == 1
