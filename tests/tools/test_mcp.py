"""MCP both ways with the official SDK: outside servers' tools in the registry; ``shoal mcp`` over stdio and HTTP, per user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from shoal.tools.config import McpServerConfig, ToolsConfig
from shoal.tools.mcp import connect_servers
from shoal.tools.registry import ToolContext, build_registry

from ..conftest import free_port
from ..server.conftest import Site, make_site

ROOT = Path(__file__).resolve().parents[2]
ECHO = [sys.executable, str(Path(__file__).with_name("mcp_echo_server.py"))]


async def test_an_outside_mcp_servers_tools_join_the_registry_with_the_same_checks() -> None:
    reg = build_registry(ToolsConfig(plugins=False, timeout=2.0))
    await connect_servers(reg, [McpServerConfig(name="echo", command=ECHO)])
    try:
        assert {"echo.add", "echo.fail", "echo.slow"} <= {t.name for t in reg.tools()}
        assert reg.get("echo.add").source == "mcp:echo"
        ctx = ToolContext(user_id="u1", config=reg.config, caller="tester")
        out = await reg.call("echo.add", {"a": 2, "b": 40}, ctx, allow=["echo.*"])
        assert out.ok and "42" in out.result
        assert (await reg.call("echo.add", {"a": 2, "b": 40}, ctx, allow=["calculator"])).status == "refused"
        # the server's own schema guards it: a string for an integer never reaches it
        assert (await reg.call("echo.add", {"a": "two", "b": 40}, ctx, allow=["*"])).status == "invalid"
        failed = await reg.call("echo.fail", {}, ctx, allow=["*"])
        assert failed.status == "error" and "refuses" in (failed.error or "")
        assert (await reg.call("echo.slow", {}, ctx, allow=["*"])).status == "timeout"
        assert (await reg.call("echo.add", {"a": 1, "b": 1}, ctx, allow=["*"])).ok  # still serving after all that
    finally:
        await reg.aclose()


async def test_a_broken_mcp_server_is_reported_not_fatal() -> None:
    reg = build_registry(ToolsConfig(plugins=False))
    await connect_servers(reg, [McpServerConfig(name="gone", command=[sys.executable, "-c", "import sys; sys.exit(3)"], timeout=20)])
    assert "mcp:gone" in reg.plugin_errors and not [t for t in reg.tools() if t.name.startswith("gone.")]
    await reg.aclose()


@pytest.fixture(scope="module")
def mcp_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("mcp-home"))


def _env(site: Site) -> dict[str, str]:
    return {**os.environ, "SHOAL_HOME": str(site.home), "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        sc = result.structured_content
        return sc.get("result", sc) if isinstance(sc, dict) and set(sc) == {"result"} else sc
    return json.loads(result.content[0].text)


async def _stdio_session(site: Site, user: str, fn: Any) -> Any:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "shoal", "mcp", "--token", site.tokens[user]], env=_env(site))
    async with Client(params, read_timeout_seconds=120) as client:
        return await fn(client)


async def test_shoal_mcp_over_stdio_lists_its_tools_and_keeps_each_users_memory_apart(mcp_site: Site) -> None:
    async def ana(client: Any) -> Any:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"memory_search", "memory_add", "memory_forget", "ask"} <= names
        added = _data(await client.call_tool("memory_add", {"text": "I keep three beehives in Porto."}))
        found = _data(await client.call_tool("memory_search", {"query": "beehives Porto"}))
        assert [f["id"] for f in found] == [added["id"]]
        return added["id"]

    memory_id = await _stdio_session(mcp_site, "ana", ana)

    async def bob(client: Any) -> None:
        assert _data(await client.call_tool("memory_search", {"query": "beehives Porto"})) == []
        refused = await client.call_tool("memory_forget", {"memory_id": memory_id})
        assert refused.is_error and "no memory" in refused.content[0].text
        added = _data(await client.call_tool("memory_add", {"text": "Bob's beehives are in Leeds."}))
        [mine] = _data(await client.call_tool("memory_search", {"query": "beehives"}))
        assert mine["id"] == added["id"]  # his own, and only his

    await _stdio_session(mcp_site, "bob", bob)


def test_shoal_mcp_refuses_to_start_without_a_valid_token(mcp_site: Site) -> None:
    env = {k: v for k, v in _env(mcp_site).items() if k != "SHOAL_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "shoal", "mcp"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode != 0 and "needs a token" in out.stderr


@pytest.fixture(scope="module")
def mcp_http(mcp_site: Site) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "mcp", "--http", "--port", str(port)], env=_env(mcp_site),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"shoal mcp --http exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]


async def _http_session(url: str, token: str, fn: Any) -> Any:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120) as client:
            return await fn(client)


def test_shoal_mcp_over_http_needs_a_token_on_every_request(mcp_http: str) -> None:
    for headers in ({}, {"Authorization": "Bearer shoal_wrong"}):
        r = httpx.post(mcp_http, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["message"]


async def test_shoal_mcp_over_http_scopes_every_tool_to_the_tokens_user(mcp_http: str, mcp_site: Site) -> None:
    async def ana(client: Any) -> Any:
        assert "ask" in {t.name for t in (await client.list_tools()).tools}
        added = _data(await client.call_tool("memory_add", {"text": "My violin is in the attic."}))
        found = _data(await client.call_tool("memory_search", {"query": "violin attic"}))
        texts = [f["text"] for f in found]
        assert texts[0] == added["text"] == "My violin is in the attic."
        assert not any("Leeds" in t for t in texts)  # bob's notes (the stdio test) are never among ana's
        asked = _data(await client.call_tool("ask", {"question": "Say hello."}))
        assert asked["reply"] and asked["conversation"]
        return asked["conversation"], added["id"]

    conversation, memory_id = await _http_session(mcp_http, mcp_site.tokens["ana"], ana)

    async def bob(client: Any) -> None:
        # only bob's own notes, whatever they are about: never ana's violin
        assert not any("violin" in f["text"] for f in _data(await client.call_tool("memory_search", {"query": "violin attic"})))
        other = await client.call_tool("ask", {"question": "hi", "conversation": conversation})
        assert other.is_error and "no conversation" in other.content[0].text  # ana's conversation is not his

    await _http_session(mcp_http, mcp_site.tokens["bob"], bob)

    async def ana_forgets(client: Any) -> None:  # bob's attempts changed nothing; ana's forget works
        assert memory_id in {f["id"] for f in _data(await client.call_tool("memory_search", {"query": "violin attic"}))}
        assert _data(await client.call_tool("memory_forget", {"memory_id": memory_id}))["forgotten"] == memory_id
        # the note and every copy made from it (the ask turn's reply may have repeated it) are gone
        assert "attic" not in " ".join(f["text"] for f in _data(await client.call_tool("memory_search", {"query": "violin attic"})))

    await _http_session(mcp_http, mcp_site.tokens["ana"], ana_forgets)
