"""No silent gaps: reconnect mid-turn, a client too slow to read, a replay of any length, a failing journal."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from shoal.runtime.messages import TimerTick
from shoal.server import ws as ws_module

from .conftest import open_db, SERVER_CONFIG, LiveServer, Site, auth, make_site, new_conversation, wait_for

LONG = SERVER_CONFIG.replace("max_tokens = 48\nhistory = 8", "max_tokens = 160\nmin_tokens = 120\nhistory = 8\nguards = false")


@pytest.fixture(scope="module")
def long_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("replay"), LONG)


@pytest.fixture(scope="module")
def long_live(long_site: Site):  # type: ignore[no-untyped-def]
    # no keep-alive pings: the slow client below reads nothing for a whole turn, and would miss its pongs
    server = LiveServer(long_site.env, ws_ping_interval=None).start()
    yield server
    server.stop()


def connect(live: LiveServer, token: str):  # type: ignore[no-untyped-def]
    # max_queue=None: a client that reads later must still see its pongs (a full queue stops the reader)
    return websockets.connect(live.ws_url, additional_headers=auth(token), max_size=2**22, max_queue=None)


async def frames_until(ws: Any, pred, timeout: float = 240) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                f = json.loads(await ws.recv())
                got.append(f)
                if pred(f):
                    return got
    except TimeoutError:
        seen = [(f["type"], f.get("kind") or f.get("code")) for f in got[-12:]]
        raise AssertionError(f"no such frame in {timeout:.0f} s; {len(got)} frames came, the last: {seen}") from None


def settled(turn: str):  # type: ignore[no-untyped-def]
    """Seen both the end of the reply and the primary settling the turn (either may come first:
    a thinker can finish before a long reply does)."""
    seen: set[str] = set()

    def over(f: dict[str, Any]) -> bool:
        if f.get("turn") == turn and f.get("kind") in ("turn.settled", "reply.end"):
            seen.add(f["kind"])
        return len(seen) == 2

    return over


async def test_a_client_that_drops_mid_turn_and_reconnects_gets_every_frame_once_in_order(
    long_live: LiveServer, long_site: Site
) -> None:
    tok = long_site.tokens["ana"]
    with httpx.Client(base_url=long_live.url) as http:
        conv = new_conversation(http, tok)
    async with connect(long_live, tok) as watcher, connect(long_live, tok) as sender:
        # the watcher never leaves: what it gets is what a client may see of this turn
        for w in (watcher, sender):
            await w.recv()
            await w.send(json.dumps({"type": "subscribe", "conversation": conv}))
            await frames_until(w, lambda f: f["type"] == "subscribed")
        # a third client follows the same conversation and drops in the middle of the reply
        dropper = await connect(long_live, tok)
        await dropper.recv()
        await dropper.send(json.dumps({"type": "subscribe", "conversation": conv}))
        await frames_until(dropper, lambda f: f["type"] == "subscribed")
        await sender.send(json.dumps({"type": "send", "conversation": conv, "text": "Tell me a long story about the sea.", "id": "t"}))
        ack = (await frames_until(sender, lambda f: f["type"] == "ack"))[-1]
        turn = ack["message_id"]
        before = await frames_until(dropper, lambda f: f.get("kind") == "reply.delta" and f.get("turn") == turn)
        before += [json.loads(await dropper.recv()) for _ in range(3)]
        await dropper.close()
        last = max(f["seq"] for f in before if f["type"] == "event")
        # back while the reply is still streaming
        async with connect(long_live, tok) as again:
            await again.recv()
            await again.send(json.dumps({"type": "subscribe", "conversation": conv, "after": last}))
            after = await frames_until(again, settled(turn))
        everything = await frames_until(watcher, settled(turn))
    seen = [f["seq"] for f in before + after if f["type"] == "event"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "in order, no duplicate"
    # no gap: the reconnected client saw every event the watcher saw, the deltas streamed meanwhile included
    want = [f["seq"] for f in everything if f["type"] == "event"]
    assert [s for s in seen if s in set(want)] == want
    text = "".join(f["text"] for f in before + after if f.get("kind") == "reply.delta" and f.get("turn") == turn)
    ends = [f for f in before + after if f.get("kind") == "reply.end" and f.get("turn") == turn]
    assert ends, [(f.get("kind"), f.get("seq")) for f in before + after if not f.get("kind", "").endswith(".delta")]
    end = ends[0]
    assert end["status"] == "complete" and text.strip() == end["text"].strip()


#: events already in the slow client's conversation
FILLED = 5_000


def fill(site: Site, conv: str, n: int) -> None:
    """``n`` recorded events in a conversation (timer ticks), straight into the store."""
    rows = [
        (conv, i, "timer.tick", "clock", None, TimerTick(conversation=conv, bot="clock", seq=i, seconds=float(i)).model_dump_json(), time.time(), None)
        for i in range(1, n + 1)
    ]
    with open_db(site.env.settings.db_path) as c:
        c.execute("BEGIN")
        c.executemany("INSERT INTO events (conversation_id, seq, kind, bot, ref, payload, ts, turn) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        c.execute("COMMIT")


class SlowClient:
    """A websocket client on a plain socket that reads only when told, as little as told
    (websockets' sans-I/O protocol does the framing; no library buffer reads ahead for it)."""

    def __init__(self, live: LiveServer, token: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning: the kernel holds little
        self.sock.connect(("127.0.0.1", live.port))
        self.sock.settimeout(30)
        self.proto = ClientProtocol(parse_uri(live.ws_url), max_size=2**22)
        request = self.proto.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.proto.send_request(request)
        self._flush()
        self.live = live

    def hold_little(self) -> None:
        """The server's end holds little too: its socket, and the transport's buffer before it pauses the writer."""
        ends = [
            conn.transport for conn in list(self.live.server.server_state.connections)
            if (peer := conn.transport.get_extra_info("socket")) is not None and peer.getpeername() == self.sock.getsockname()
        ]
        assert len(ends) == 1, "the server's end of this connection"
        ends[0].get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ends[0].set_write_buffer_limits(high=2048)

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():  # requests, frames and the pongs the protocol owes
            self.sock.sendall(chunk)

    def send(self, frame: dict[str, Any]) -> None:
        self.proto.send_text(json.dumps(frame).encode())
        self._flush()

    def read_until(self, pred, *, chunk: int = 65536, pause: float = 0.0, timeout: float = 300) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        """Frames up to the first one ``pred`` accepts, reading ``chunk`` bytes at a time every ``pause`` s."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.sock.recv(chunk)
            assert data, f"the server closed the connection; the last frames: {[f.get('kind') or f['type'] for f in got[-8:]]}"
            self.proto.receive_data(data)
            self._flush()
            for ev in self.proto.events_received():
                if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                    got.append(json.loads(ev.data))
                    if pred(got[-1]):
                        return got
            time.sleep(pause)
        raise AssertionError(f"no such frame in {timeout:.0f} s; {len(got)} came")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(900)  # a whole long turn on a busy machine, then the slow read
async def test_a_client_too_slow_to_read_is_caught_up_from_the_store_and_told(
    long_live: LiveServer, long_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    live, site = long_live, long_site  # a reply of 120+ tokens: more frames than every buffer together holds
    # small buffers everywhere: a listener of 8 events, an outbox of 4 frames, 4 KiB sockets at both ends;
    # a client that reads nothing while the turn runs, then 512 bytes every 0.1 s, overflows its listener
    monkeypatch.setattr(ws_module, "LISTENER_QUEUE", 8)
    monkeypatch.setattr(ws_module, "OUTBOX", 4)
    tok = site.tokens["bob"]
    with httpx.Client(base_url=live.url, timeout=60) as http:
        conv = new_conversation(http, tok)
        fill(site, conv, FILLED)
        slow = SlowClient(live, tok)
        try:
            slow.read_until(lambda f: f["type"] == "welcome")
            slow.hold_little()
            slow.send({"type": "subscribe", "conversation": conv})
            frames = slow.read_until(lambda f: f["type"] == "subscribed", timeout=120)
            r = http.post(f"/api/conversations/{conv}/messages", json={"text": "Hello, who are you?"}, headers=auth(tok))
            turn = r.json()["message_id"]
            # read nothing while the turn runs (until its reply ended and it settled): however fast or slow
            # this machine is, more frames come than every buffer holds
            stored: list[dict[str, Any]] = []
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and {"turn.settled", "reply.end"} - {e["kind"] for e in stored if e.get("turn") == turn}:
                time.sleep(0.5)
                stored = http.get(f"/api/conversations/{conv}/events?after={FILLED}", headers=auth(tok)).json()
            # and, still unread, more live events than any reply is long: a clock nobody reacts to ticks
            # 300 times, so the overflow never depends on how much the model said
            async def ticks() -> None:
                for i in range(300):
                    tick = TimerTick(conversation=conv, bot="clock", timer="clock", seconds=float(i))
                    await live.swarm.mesh.publish(tick.subject, tick)

            asyncio.run_coroutine_threadsafe(ticks(), live.swarm.journal._task.get_loop()).result(60)
            while time.monotonic() < deadline and sum(e["kind"] == "timer.tick" for e in stored) < 300:
                time.sleep(0.5)
                stored = http.get(f"/api/conversations/{conv}/events?after={FILLED}", headers=auth(tok)).json()
            last = max(e["seq"] for e in stored)
            frames += slow.read_until(lambda f: f.get("seq", 0) >= last, chunk=512, pause=0.1)
        finally:
            slow.close()
    got = [f["seq"] for f in frames if f["type"] == "event"]
    assert got == sorted(got) and len(got) == len(set(got))
    assert got[:FILLED] == list(range(1, FILLED + 1))
    # every recorded event of the turn reached the client (deltas no longer recorded may be missing: their end has the text)
    assert {e["seq"] for e in stored} <= set(got)
    told = [f for f in frames if f["type"] == "caught_up"]
    assert told and all(f["refilled"] > 0 for f in told), "the client is told it was caught up"


async def test_a_replay_pages_through_more_than_ten_thousand_events(live: LiveServer, site: Site) -> None:
    tok = site.tokens["ana"]
    with httpx.Client(base_url=live.url) as http:
        conv = new_conversation(http, tok)
        n = 12_345
        fill(site, conv, n)
        # REST pages, the next page named by a header
        seqs: list[int] = []
        after = 0
        while True:
            r = http.get(f"/api/conversations/{conv}/events?after={after}&limit=5000", headers=auth(tok))
            seqs += [e["seq"] for e in r.json()]
            if "x-next-after" not in r.headers:
                break
            after = int(r.headers["x-next-after"])
        assert seqs == list(range(1, n + 1))
    async with connect(live, tok) as w:
        await w.recv()
        await w.send(json.dumps({"type": "subscribe", "conversation": conv}))
        frames = await frames_until(w, lambda f: f["type"] == "subscribed", timeout=120)
    assert [f["seq"] for f in frames if f["type"] == "event"] == list(range(1, n + 1))
    assert frames[-1]["replayed"] == n and frames[-1]["last_seq"] == n


async def test_a_journal_that_cannot_write_says_so_and_loses_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    site = make_site(tmp_path, SERVER_CONFIG)
    live = LiveServer(site.env).start()
    try:
        tok = site.tokens["ana"]
        with httpx.Client(base_url=live.url) as http:
            conv = new_conversation(http, tok)
            async with connect(live, tok) as w:
                await w.recv()
                await w.send(json.dumps({"type": "subscribe", "conversation": conv}))
                await frames_until(w, lambda f: f["type"] == "subscribed")
                # a real failure of the store: the events table is not there for a while
                with open_db(site.env.settings.db_path) as c:
                    c.execute("ALTER TABLE events RENAME TO events_away")
                await w.send(json.dumps({"type": "send", "conversation": conv, "text": "Hello there!"}))
                frames = await frames_until(w, lambda f: f["type"] == "error" and f["code"] == "journal", timeout=120)
                assert "could not save" in frames[-1]["message"] and frames[-1]["hint"]
                live_frames = frames + await frames_until(w, lambda f: f.get("kind") == "turn.settled", timeout=240)
                with open_db(site.env.settings.db_path) as c:
                    c.execute("ALTER TABLE events_away RENAME TO events")
                await frames_until(w, lambda f: f["type"] == "notice" and f["code"] == "journal_recovered", timeout=60)
            stored = wait_for(
                lambda: (evs := http.get(f"/api/conversations/{conv}/events", headers=auth(tok)).json())
                and any(e["kind"] == "turn.settled" for e in evs) and evs,
                timeout=60,
            )
        shown = {f["seq"] for f in live_frames if f["type"] == "event" and not f["kind"].endswith(".delta")}
        assert shown <= {e["seq"] for e in stored}, "every event shown live was written once the store came back"
    finally:
        live.stop()
