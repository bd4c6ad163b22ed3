"""POST /hooks/<name>: an authenticated webhook becomes a system message in one conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from shoal.server.app import create_app

from .conftest import SERVER_CONFIG, Site, auth, make_site, new_conversation, wait_for

HOOK_CONFIG = SERVER_CONFIG + """
[[bots]]
name = "doorbell"
role = "alarm"
"""


@pytest.fixture(scope="module")
def hook_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("hooks-home"), HOOK_CONFIG)


@pytest.fixture(scope="module")
def http(hook_site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(hook_site.env), base_url="http://testserver") as c:
        yield c


def test_a_webhook_lands_in_the_right_conversation_and_only_there(http: TestClient, hook_site: Site) -> None:
    ana = hook_site.tokens["ana"]
    target, other = new_conversation(http, ana), new_conversation(http, ana)
    r = http.post("/hooks/doorbell", json={"conversation": target, "text": "The parcel has arrived."}, headers=auth(ana))
    assert r.status_code == 200, r.text
    assert r.json() == {"delivered": True, "conversation": target, "hook": "doorbell"}

    def injected():  # type: ignore[no-untyped-def]
        evs = http.get(f"/api/conversations/{target}/events", headers=auth(ana)).json()
        return evs if any(e["kind"] == "injection" for e in evs) else None

    events = wait_for(injected)
    [alarm] = [e for e in events if e["kind"] == "alarm"]
    assert alarm["text"] == "The parcel has arrived." and alarm["hook"] == "doorbell"
    [inj] = [e for e in events if e["kind"] == "injection"]
    assert inj["reason"] == "alarm:doorbell" and "parcel" in inj["text"]
    assert http.get(f"/api/conversations/{other}/events", headers=auth(ana)).json() == []


def test_a_bad_token_someone_elses_conversation_or_unknown_hook_is_refused(http: TestClient, hook_site: Site) -> None:
    ana, bob = hook_site.tokens["ana"], hook_site.tokens["bob"]
    conv = new_conversation(http, ana)
    body = {"conversation": conv, "text": "ding"}
    r = http.post("/hooks/doorbell", json=body, headers=auth("shoal_not-a-real-token"))
    assert r.status_code == 401 and "token" in r.json()["error"]["message"].lower()
    assert http.post("/hooks/doorbell", json=body).status_code == 401
    r = http.post("/hooks/doorbell", json=body, headers=auth(bob))
    assert r.status_code == 404 and "no conversation" in r.json()["error"]["message"]
    r = http.post("/hooks/thinker", json=body, headers=auth(ana))
    assert r.status_code == 404 and "no alarm named 'thinker'" in r.json()["error"]["message"]
    r = http.post("/hooks/doorbell", json={"conversation": conv}, headers=auth(ana))
    assert r.status_code == 422
    assert http.get(f"/api/conversations/{conv}/events", headers=auth(ana)).json() == []
