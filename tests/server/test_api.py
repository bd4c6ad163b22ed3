"""REST API: authentication, isolation, permissions, bad input — on every route."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from shoal.config import Env, Settings, load_config
from shoal.runtime.swarm import Swarm

from .conftest import PASSWORDS, Site, auth, make_site, new_conversation, send_and_settle

PUBLIC = {("POST", "/api/auth/login"), ("POST", "/api/auth/logout"), ("GET", "/healthz")}


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every documented route (the OpenAPI document lists them all)."""
    spec = client.get("/openapi.json").json()
    return [(m.upper(), path) for path, ops in spec["paths"].items() for m in ops]


def fill(path: str, **ids: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "01NOSUCHTHING0000000000000"), path)


def test_every_route_refuses_a_caller_without_credentials(client: TestClient) -> None:
    routes = api_routes(client)
    assert len(routes) > 20
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        r = client.request(method, fill(path), json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        body = r.json()
        message = body["error"]["message"]
        assert message, (method, path)


def test_every_route_refuses_a_wrong_token(client: TestClient) -> None:
    for method, path in api_routes(client):
        if (method, path) in PUBLIC:
            continue
        r = client.request(method, fill(path), json={}, headers=auth("shoal_not-a-real-token"))
        assert r.status_code == 401, (method, path, r.status_code)


def test_someone_elses_conversation_or_memory_is_404_on_every_route(client: TestClient, site: Site) -> None:
    ana = site.tokens["ana"]
    conv = new_conversation(client, ana)
    send_and_settle(client, ana, conv, "Hi! My name is Ana and I live in Porto.")
    memories = client.get("/api/memories", headers=auth(ana)).json()
    assert memories, "ana has a memory"
    ids = {"conversation_id": conv, "memory_id": memories[0]["id"]}
    checked = 0
    for method, path in api_routes(client):
        if "{conversation_id}" not in path and "{memory_id}" not in path:
            continue
        # a valid body, so only the ownership check can refuse it
        bodies = {"/messages": {"text": "hello"}, "/revert": {"version": 0}, "/pair": {"a": "x", "b": "y"}}
        body = next((b for end, b in bodies.items() if path.endswith(end) and method == "POST"), {})
        r = client.request(method, fill(path, **ids), json=body, headers=auth(site.tokens["bob"]))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        checked += 1
    assert checked >= 9
    # and nothing bob tried changed ana's data
    assert client.get(f"/api/memories/{ids['memory_id']}", headers=auth(ana)).status_code == 200
    assert client.get(f"/api/conversations/{conv}", headers=auth(ana)).status_code == 200
    # bob's own lists do not show ana's things
    assert conv not in {c["id"] for c in client.get("/api/conversations", headers=auth(site.tokens["bob"])).json()}
    assert client.get("/api/memories?q=Porto", headers=auth(site.tokens["bob"])).json() == []


def test_login_sets_a_session_that_works_and_logout_ends_it(client: TestClient) -> None:
    c = TestClient(client.app)  # its own cookie jar; the app is already running
    r = c.post("/api/auth/login", json={"name": "bob", "password": PASSWORDS["bob"]})
    assert r.status_code == 200 and r.json()["user"]["name"] == "bob"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/api/me").json()["user"]["name"] == "bob"
    c.post("/api/auth/logout")
    assert c.get("/api/me").status_code == 401


def test_logins_are_rate_limited(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from shoal.server.app import create_app

    site = make_site(tmp_path)
    with TestClient(create_app(site.env)) as c:
        for _ in range(5):
            assert c.post("/api/auth/login", json={"name": "bob", "password": "wrong-password"}).status_code == 401
        r = c.post("/api/auth/login", json={"name": "bob", "password": "wrong-password"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        # even the right password waits out the limit
        assert c.post("/api/auth/login", json={"name": "bob", "password": PASSWORDS["bob"]}).status_code == 429
        # another account is not affected
        assert c.post("/api/auth/login", json={"name": "ana", "password": PASSWORDS["ana"]}).status_code == 200


def test_a_revoked_token_stops_working(client: TestClient, site: Site) -> None:
    r = client.post("/api/tokens", json={"name": "script"}, headers=auth(site.tokens["bob"]))
    assert r.status_code == 201
    token, tid = r.json()["token"], r.json()["id"]
    assert client.get("/api/me", headers=auth(token)).status_code == 200
    assert client.delete(f"/api/tokens/{tid}", headers=auth(site.tokens["ana"])).status_code == 404  # not ana's
    assert client.delete(f"/api/tokens/{tid}", headers=auth(token)).status_code == 200
    assert client.get("/api/me", headers=auth(token)).status_code == 401


def test_thoughts_are_shown_only_to_those_allowed_to_see_them(client: TestClient, site: Site) -> None:
    for name, sees in (("ana", True), ("bob", False)):
        tok = site.tokens[name]
        conv = new_conversation(client, tok)
        events = send_and_settle(client, tok, conv, "What should I cook tonight?")
        kinds = {e["kind"] for e in events}
        assert ("thought.end" in kinds) is sees, (name, kinds)
        assert "reply.end" in kinds


def test_only_those_allowed_may_configure_a_bot_and_changes_persist(client: TestClient, site: Site) -> None:
    r = client.patch("/api/bots/thinker", json={"temperature": 0.3}, headers=auth(site.tokens["bob"]))
    assert r.status_code == 403 and "configure" in r.json()["error"]["message"]
    assert "settings" not in client.get("/api/bots/thinker", headers=auth(site.tokens["bob"])).json()
    r = client.patch("/api/bots/thinker", json={"temperature": 0.3, "max_tokens": 40}, headers=auth(site.tokens["root"]))
    assert r.status_code == 200 and r.json()["settings"]["temperature"] == 0.3
    assert client.app.state.swarm.config.bot("thinker").max_tokens == 40  # type: ignore[attr-defined]
    # persisted: a new swarm started from the same home and the unchanged shoal.toml gets them back
    assert "max_tokens = 40" not in (site.home / "shoal.toml").read_text()

    async def restarted() -> tuple[float, int]:
        swarm = Swarm(Env(Settings(home=site.home), load_config(site.home / "shoal.toml")))
        await swarm.db.open()
        try:
            await swarm._apply_bot_settings()
            bot = swarm.config.bot("thinker")
            return bot.temperature, bot.max_tokens
        finally:
            await swarm.db.close()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: asyncio.run(restarted())).result() == (0.3, 40)
    r = client.patch("/api/bots/conversation", json={"enabled": False}, headers=auth(site.tokens["root"]))
    assert r.status_code == 400
    r = client.patch("/api/bots/thinker", json={"temperature": 9}, headers=auth(site.tokens["root"]))
    assert r.status_code == 422 and "temperature" in r.json()["error"]["message"]
    r = client.patch("/api/bots/ghost", json={"temperature": 0.1}, headers=auth(site.tokens["root"]))
    assert r.status_code == 404


def test_forgetting_a_memory_deletes_it(client: TestClient, site: Site) -> None:
    tok = site.tokens["bob"]
    conv = new_conversation(client, tok)
    send_and_settle(client, tok, conv, "I love sailing.")
    facts = client.get("/api/memories?kind=fact", headers=auth(tok)).json()
    target = next(m for m in facts if m["value"] == "sailing")
    detail = client.get(f"/api/memories/{target['id']}", headers=auth(tok)).json()
    assert detail["source_messages"][0]["content"] == "I love sailing."
    r = client.delete(f"/api/memories/{target['id']}", headers=auth(tok))
    assert r.status_code == 200 and r.json()["deleted"]
    assert client.get(f"/api/memories/{target['id']}", headers=auth(tok)).status_code == 404
    assert client.delete(f"/api/memories/{target['id']}", headers=auth(tok)).status_code == 404


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "/api/conversations/{c}/messages", {"text": ""}, 422),
        ("POST", "/api/conversations/{c}/messages", {"text": "x" * 2001}, 400),
        ("POST", "/api/conversations/{c}/messages", {"txt": "hi"}, 422),
        ("POST", "/api/conversations", {"title": 5, "extra": 1}, 422),
        ("GET", "/api/memories?limit=0", None, 422),
        ("POST", "/api/users", {"name": "eve", "password": "long-enough-1"}, 403),
    ],
)
def test_bad_input_gets_a_clear_error(client: TestClient, site: Site, method: str, path: str, body: dict, status: int) -> None:  # type: ignore[type-arg]
    conv = new_conversation(client, site.tokens["bob"])
    r = client.request(method, path.replace("{c}", conv), json=body, headers=auth(site.tokens["bob"]))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["code"]
    if status == 400:
        assert "limit is 2000" in err["message"] and err["hint"]
    # nothing was stored by a refused message
    assert client.get(f"/api/conversations/{conv}/messages", headers=auth(site.tokens["bob"])).json() == []


def test_admins_manage_users(client: TestClient, site: Site) -> None:
    root = auth(site.tokens["root"])
    assert client.post("/api/users", json={"name": "carol", "password": "carol-password"}, headers=root).status_code == 201
    assert client.post("/api/users", json={"name": "carol", "password": "carol-password"}, headers=root).status_code == 400
    assert "carol" in {u["name"] for u in client.get("/api/users", headers=root).json()}
    assert client.get("/api/users", headers=auth(site.tokens["bob"])).status_code == 403
    assert client.delete("/api/users/root", headers=root).status_code == 400
    assert client.delete("/api/users/carol", headers=root).status_code == 200
    assert client.post("/api/auth/login", json={"name": "carol", "password": "carol-password"}).status_code == 401


def test_the_openapi_document_and_the_ui_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/conversations" in spec["paths"] and "/v1/chat/completions" in spec["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "vue-3.5.45.global.prod.js" in page.text
    assert client.get("/static/app.js").status_code == 200
