"""/api/tools and per-bot tool permissions through the API (what the UI's bot settings use)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import Site, auth


def test_the_tool_list_shows_only_bots_you_may_configure_and_errors_only_to_admins(client: TestClient, site: Site) -> None:
    bob = client.get("/api/tools", headers=auth(site.tokens["bob"])).json()
    names = {t["name"] for t in bob["tools"]}
    assert {"calculator", "time", "memory_search", "conversation_lookup", "webhook"} <= names
    assert all(t["bots"] == [] for t in bob["tools"]) and bob["errors"] == {} and bob["calls"] == {}
    calc = next(t for t in bob["tools"] if t["name"] == "calculator")
    assert calc["parameters"]["required"] == ["expression"] and calc["source"] == "builtin"


def test_only_admins_change_which_tools_a_bot_may_call(client: TestClient, site: Site) -> None:
    r = client.patch("/api/bots/primary", json={"tools": ["webhook"]}, headers=auth(site.tokens["bob"]))
    assert r.status_code == 403
    r = client.patch("/api/bots/primary", json={"tools": ["calculator", "nope", "x" * 10]}, headers=auth(site.tokens["root"]))
    assert r.status_code == 200 and r.json()["settings"]["tools"] == ["calculator", "nope", "x" * 10]
    try:
        root = client.get("/api/tools", headers=auth(site.tokens["root"])).json()
        assert next(t for t in root["tools"] if t["name"] == "calculator")["bots"] == ["primary"]
        assert next(t for t in root["tools"] if t["name"] == "webhook")["bots"] == []
        r = client.patch("/api/bots/primary", json={"tools": "calculator"}, headers=auth(site.tokens["root"]))
        assert r.status_code == 422  # a list, not a string
    finally:
        assert client.patch("/api/bots/primary", json={"tools": []}, headers=auth(site.tokens["root"])).status_code == 200
