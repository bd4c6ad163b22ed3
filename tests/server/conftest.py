"""Server fixtures: accounts, the in-process client, a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from shoal.config import Env, Settings, parse_config
from shoal.server.app import create_app
from shoal.store.accounts import Accounts
from shoal.store.db import Database

from ..conftest import TEST_CONFIG

# thoughts of the thinker are visible to ana only (and admins); bob is a plain user
SERVER_CONFIG = TEST_CONFIG.replace(
    'name = "thinker"\nrole = "thinker"\nmax_tokens = 48',
    'name = "thinker"\nrole = "thinker"\nmax_tokens = 48\naccess = { see_thoughts = ["ana"] }',
) + "\n[server]\nmax_message_chars = 2000\nmax_frame_bytes = 8192\nlogin_attempts_per_minute = 5\n"

PASSWORDS = {"ana": "ana-password-1", "bob": "bob-password-1", "root": "root-password-1"}


@dataclass
class Site:
    home: Path
    env: Env
    tokens: dict[str, str]
    ids: dict[str, str]


def make_site(home: Path, config_text: str = SERVER_CONFIG) -> Site:
    (home / "shoal.toml").write_text(config_text)
    env = Env(Settings(home=home), parse_config(config_text))

    async def setup() -> tuple[dict[str, str], dict[str, str]]:
        db = await Database(env.settings.db_path).open()
        acc = Accounts(db)
        tokens, ids = {}, {}
        for name, pw in PASSWORDS.items():
            user = await acc.create_user(name, pw, is_admin=(name == "root"))
            ids[name] = user.id
            _, tokens[name] = await acc.create_token(user.id, "tests")
        await db.close()
        return tokens, ids

    # a thread of its own: callers may already be inside an event loop
    with ThreadPoolExecutor(1) as pool:
        tokens, ids = pool.submit(lambda: asyncio.run(setup())).result()
    return Site(home, env, tokens, ids)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("server-home"))


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[TestClient]:
    """The app in process (its lifespan runs the swarm)."""
    with TestClient(create_app(site.env), base_url="http://testserver") as c:
        yield c


class LiveServer:
    """A real uvicorn serving the app on a free loopback port, in its own thread."""

    def __init__(self, env: Env, **config: Any) -> None:
        self.app = create_app(env)
        self.config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=65536, **config)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        return self

    @property
    def swarm(self) -> Any:
        return self.app.state.swarm

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(site.env).start()
    yield server
    server.stop()


@contextmanager
def open_db(path: Path) -> Iterator[Any]:
    """A connection to a live server's database with the *same* SQLite library the server uses.

    Two SQLite libraries in one process (the stdlib's and pysqlite3) do not see each other's POSIX
    locks: closing one's file releases the other's locks, and the database gets corrupted.
    """
    from shoal.store.sqlite import load_extensions, module

    conn = module().connect(str(path), timeout=30, isolation_level=None)
    load_extensions(conn)
    try:
        yield conn
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def new_conversation(http: httpx.Client | TestClient, token: str) -> str:
    r = http.post("/api/conversations", json={}, headers=auth(token))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def send_and_settle(http: httpx.Client | TestClient, token: str, conv: str, text: str, timeout: float = 90) -> list[dict]:  # type: ignore[type-arg]
    r = http.post(f"/api/conversations/{conv}/messages", json={"text": text}, headers=auth(token))
    assert r.status_code == 202, r.text
    turn = r.json()["message_id"]

    def settled():  # type: ignore[no-untyped-def]
        evs = http.get(f"/api/conversations/{conv}/events", headers=auth(token)).json()
        kinds = {(e["kind"], e.get("turn")) for e in evs}
        if ("turn.settled", turn) in kinds and ("reply.end", turn) in kinds:
            return evs
        return None

    return wait_for(settled, timeout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c
