"""The websocket protocol against a real uvicorn on loopback (and the in-process client)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus

from .conftest import LiveServer, Site, auth, make_site, new_conversation, wait_for


async def recv(ws: Any, timeout: float = 60) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: Any, pred, timeout: float = 90) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Frames up to and including the first that matches."""
    got = []
    async with asyncio.timeout(timeout):
        while True:
            f = await recv(ws, timeout)
            got.append(f)
            if pred(f):
                return got


def connect(live: LiveServer, token: str):  # type: ignore[no-untyped-def]
    return websockets.connect(live.ws_url, additional_headers=auth(token), max_size=2**22)


async def test_no_or_wrong_credentials_are_refused_with_401(live: LiveServer) -> None:
    for headers in ({}, auth("shoal_bogus")):
        with pytest.raises(InvalidStatus) as e:
            async with websockets.connect(live.ws_url, additional_headers=headers):
                pass
        assert e.value.response.status_code == 401
        assert b"unauthorized" in e.value.response.body


async def test_a_turn_streams_typed_frames_with_monotonic_sequence_numbers(live: LiveServer, site: Site, http: httpx.Client) -> None:
    tok = site.tokens["ana"]
    conv = new_conversation(http, tok)
    async with connect(live, tok) as ws:
        welcome = await recv(ws)
        assert welcome["type"] == "welcome" and welcome["v"] == 1 and welcome["user"]["name"] == "ana"
        await ws.send(json.dumps({"type": "subscribe", "conversation": conv, "id": "s"}))
        assert (await recv(ws))["type"] == "subscribed"
        await ws.send(json.dumps({"type": "send", "conversation": conv, "text": "Hi! I'm Ana and I live in Porto.", "id": "m"}))
        frames = await until(ws, lambda f: f.get("kind") == "turn.settled")
        frames += await until(ws, lambda f: f.get("kind") == "reply.end" and not f.get("interjection")) if not any(
            f.get("kind") == "reply.end" for f in frames
        ) else []
    acks = [f for f in frames if f["type"] == "ack"]
    assert acks and acks[0]["id"] == "m" and acks[0]["message_id"]
    # the ack comes before any event of its turn
    first_of_turn = next(i for i, f in enumerate(frames) if f.get("turn") == acks[0]["message_id"])
    assert frames.index(acks[0]) < first_of_turn
    events = [f for f in frames if f["type"] == "event"]
    for e in events:
        assert {"conversation", "bot", "kind", "seq"} <= set(e) and e["conversation"] == conv and e["v"] == 1
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "user.turn"
    for k in ("reply.start", "reply.delta", "reply.end", "route", "thought.start", "thought.delta", "memory.write", "turn.settled"):
        assert k in kinds, k
    assert kinds.index("reply.start") < kinds.index("reply.delta") < kinds.index("reply.end")


async def test_bad_frames_get_error_frames_and_the_connection_survives(live: LiveServer, site: Site, http: httpx.Client) -> None:
    tok = site.tokens["bob"]
    conv = new_conversation(http, tok)
    async with connect(live, tok) as ws:
        await recv(ws)
        cases = [
            ("this is not json", "bad_json"),
            (json.dumps([1, 2]), "bad_frame"),
            (json.dumps({"type": "sned", "conversation": conv}), "unknown_type"),
            (json.dumps({"type": "send", "conversation": conv}), "bad_frame"),
            (json.dumps({"type": "send", "conversation": conv, "text": "hi", "v": 7}), "bad_version"),
            (json.dumps({"type": "send", "conversation": conv, "text": "x" * 9000}), "too_large"),
            (json.dumps({"type": "send", "conversation": conv, "text": "y" * 3000}), "bad_input"),
            (json.dumps({"type": "send", "conversation": conv, "text": "   "}), "bad_input"),
            (json.dumps({"type": "send", "conversation": "01NOPE", "text": "hi"}), "not_found"),
            (json.dumps({"type": "subscribe", "conversation": conv, "after": -1}), "bad_frame"),
        ]
        for raw, code in cases:
            await ws.send(raw)
            f = await recv(ws)
            assert f["type"] == "error" and f["code"] == code, (raw[:60], f)
            assert f["message"]
        # unknown-type errors say what is allowed
        await ws.send(json.dumps({"type": "nope", "id": "x1"}))
        f = await recv(ws)
        assert f["id"] == "x1" and "subscribe" in f["hint"]
        # still alive, still works
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert (await recv(ws)) == {"v": 1, "type": "pong", "id": "p"}
        await ws.send(json.dumps({"type": "send", "conversation": conv, "text": "Still there?", "id": "ok"}))
        ack = await until(ws, lambda f: f["type"] == "ack")
        assert ack[-1]["id"] == "ok"
    msgs = wait_for(lambda: http.get(f"/api/conversations/{conv}/messages", headers=auth(tok)).json())
    assert [m["content"] for m in msgs if m["role"] == "user"] == ["Still there?"]


async def test_reconnecting_with_the_last_seq_replays_exactly_what_was_missed(live: LiveServer, site: Site, http: httpx.Client) -> None:
    tok = site.tokens["ana"]
    conv = new_conversation(http, tok)
    async with connect(live, tok) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "conversation": conv}))
        await recv(ws)
        await ws.send(json.dumps({"type": "send", "conversation": conv, "text": "What is the tallest mountain?"}))
        seen = await until(ws, lambda f: f.get("kind") == "route")
        last = max(f["seq"] for f in seen if f["type"] == "event")
    # gone: the turn carries on without us; wait for it to settle
    wait_for(
        lambda: any(e["kind"] == "turn.settled" for e in http.get(f"/api/conversations/{conv}/events", headers=auth(tok)).json())
    )
    stored = http.get(f"/api/conversations/{conv}/events?after={last}", headers=auth(tok)).json()
    async with connect(live, tok) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "conversation": conv, "after": last, "id": "r"}))
        frames = await until(ws, lambda f: f["type"] == "subscribed")
    replayed = [f for f in frames if f["type"] == "event"]
    assert replayed and all(f["seq"] > last for f in replayed)
    assert [f["seq"] for f in replayed] == [e["seq"] for e in stored]
    assert frames[-1]["replayed"] == len(replayed) and frames[-1]["last_seq"] == stored[-1]["seq"]
    assert any(f["kind"] == "reply.end" for f in replayed)  # the whole reply, though the deltas went


async def test_a_client_that_disconnects_mid_reply_stops_its_generation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import SERVER_CONFIG

    long_reply = SERVER_CONFIG.replace("max_tokens = 48\nhistory = 8", "max_tokens = 400\nmin_tokens = 400\nhistory = 8")
    assert long_reply != SERVER_CONFIG
    site = make_site(tmp_path, long_reply)
    live = LiveServer(site.env).start()
    http = httpx.Client(base_url=live.url)
    try:
        tok = site.tokens["bob"]
        conv = new_conversation(http, tok)
        async with connect(live, tok) as ws:
            await recv(ws)
            await ws.send(json.dumps({"type": "subscribe", "conversation": conv}))
            await recv(ws)
            await ws.send(json.dumps({"type": "send", "conversation": conv, "text": "Tell me a very long story."}))
            await until(ws, lambda f: f.get("kind") == "reply.delta")
        reply = wait_for(
            lambda: [m for m in http.get(f"/api/conversations/{conv}/messages", headers=auth(tok)).json() if m["role"] == "assistant"],
            timeout=30,
        )
        assert reply[0]["status"] == "interrupted"
        engine = live.swarm.backends["local"].engine
        assert engine.stats.cancelled >= 1
    finally:
        http.close()
        live.stop()


def test_the_in_process_client_speaks_the_same_protocol(client: TestClient, site: Site) -> None:
    tok = site.tokens["ana"]
    conv = new_conversation(client, tok)
    with client.websocket_connect("/ws", headers=auth(tok)) as ws:
        assert ws.receive_json()["type"] == "welcome"
        ws.send_json({"type": "subscribe", "conversation": conv, "id": "s"})
        assert ws.receive_json()["type"] == "subscribed"
        ws.send_json({"type": "send", "conversation": conv, "text": "Hello!", "id": "m"})
        kinds = []
        while "reply.end" not in kinds:
            f = ws.receive_json()
            kinds.append(f.get("kind") or f["type"])
        assert "ack" in kinds and "reply.delta" in kinds
        ws.send_json({"type": "thinking", "conversation": conv, "id": "t"})
        while True:
            f = ws.receive_json()
            if f["type"] == "thinking":
                assert isinstance(f["statuses"], list)
                break


async def test_someone_elses_conversation_is_not_found_over_the_websocket(live: LiveServer, site: Site, http: httpx.Client) -> None:
    anas = new_conversation(http, site.tokens["ana"])
    async with connect(live, site.tokens["bob"]) as ws:
        await recv(ws)
        for frame in (
            {"type": "subscribe", "conversation": anas},
            {"type": "send", "conversation": anas, "text": "let me in"},
            {"type": "stop", "conversation": anas},
            {"type": "thinking", "conversation": anas},
            {"type": "cancel_thought", "conversation": anas},
        ):
            await ws.send(json.dumps(frame))
            f = await recv(ws)
            assert f["type"] == "error" and f["code"] == "not_found", (frame, f)
    assert http.get(f"/api/conversations/{anas}/messages", headers=auth(site.tokens["ana"])).json() == []
