"""The tool registry and the built-ins: permissions, validation, failures, scoping — on real SQLite and real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from shoal.errors import BadInput
from shoal.memory.store import MemoryStore
from shoal.runtime.messages import Event, ToolCall, ToolResult, parse_event
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database
from shoal.tools.builtin import evaluate, url_allowed
from shoal.tools.config import ToolsConfig
from shoal.tools.registry import Tool, ToolContext, ToolRegistry, build_registry, permits


@pytest.fixture
async def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = await Database(tmp_path / "t.db").open()
    conv = ConversationStore(db)
    ana = await conv.ensure_user("ana")
    bob = await conv.ensure_user("bob")
    yield MemoryStore(db), conv, ana.id, bob.id
    await db.close()


def test_the_calculator_computes_arithmetic_and_nothing_else() -> None:
    assert evaluate("(3 + 4) * 12") == 84
    assert evaluate("2^10") == 1024
    assert evaluate("sqrt(16) + pi * 0") == 4.0
    for bad in ["__import__('os').system('true')", "x + 1", "(1).__class__", "9**9**9", "1/0", "", "lambda: 1", "open('f')"]:
        with pytest.raises(BadInput):
            evaluate(bad)


def test_permissions_are_names_or_patterns() -> None:
    assert permits(["*"], "calculator")
    assert permits(["files.*"], "files.read") and not permits(["files.*"], "calculator")
    assert not permits([], "calculator")


async def _collect_ctx(stores: Any, user: str, events: list[Event], config: ToolsConfig | None = None) -> ToolContext:
    mem, conv, *_ = stores

    async def emit(ev: Event) -> None:
        events.append(ev)

    return ToolContext(user_id=user, memories=mem, conversations=conv, config=config or ToolsConfig(),
                       conversation="c1", turn="t1", caller="tester", emit=emit)


async def test_every_call_and_result_is_an_event_and_refusals_are_recorded(stores) -> None:  # type: ignore[no-untyped-def]
    reg = build_registry(ToolsConfig(plugins=False))
    events: list[Event] = []
    ctx = await _collect_ctx(stores, stores[2], events)
    ok = await reg.call("calculator", {"expression": "6 * 7"}, ctx, allow=["calculator"])
    assert ok.ok and json.loads(ok.result)["result"] == 42
    refused = await reg.call("calculator", {"expression": "1"}, ctx, allow=["time"])
    unknown = await reg.call("no_such_tool", {}, ctx, allow=["*"])
    assert (refused.status, unknown.status) == ("refused", "unknown")
    kinds = [(e.kind, getattr(e, "status", None)) for e in events]
    assert kinds == [("tool.call", None), ("tool.result", "ok"), ("tool.call", None), ("tool.result", "refused"),
                     ("tool.call", None), ("tool.result", "unknown")]
    # the events survive the journal's round trip (they are part of the protocol)
    assert isinstance(parse_event(events[1].json_text()), ToolResult)
    assert isinstance(parse_event(events[0].json_text()), ToolCall)


async def test_invalid_arguments_never_reach_the_tool_and_failures_are_outcomes(stores) -> None:  # type: ignore[no-untyped-def]
    reg = ToolRegistry(ToolsConfig(timeout=0.3))
    reached: list[dict[str, Any]] = []

    async def counted(args: dict[str, Any], ctx: ToolContext) -> int:
        reached.append(args)
        return int(args["n"]) * 2

    async def broken(args: dict[str, Any], ctx: ToolContext) -> None:
        raise RuntimeError("the disk is on fire")

    async def slow(args: dict[str, Any], ctx: ToolContext) -> None:
        await asyncio.sleep(30)

    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"], "additionalProperties": False}
    reg.register(Tool("double", "doubles", schema, counted))
    reg.register(Tool("broken", "raises", {"type": "object"}, broken))
    reg.register(Tool("slow", "sleeps", {"type": "object"}, slow))
    with pytest.raises(BadInput):
        reg.register(Tool("double", "again", schema, counted))
    ctx = await _collect_ctx(stores, stores[2], [])
    for bad in [{"n": "three"}, {"n": 9}, {}, {"n": 1, "extra": True}, ["n", 1]]:
        out = await reg.call("double", bad, ctx, allow=["*"])
        assert out.status == "invalid" and "invalid arguments" in (out.error or ""), bad
    assert reached == []
    assert (await reg.call("double", {"n": 2}, ctx, allow=["*"])).result == "4"
    failed = await reg.call("broken", {}, ctx, allow=["*"])
    assert failed.status == "error" and "the disk is on fire" in (failed.error or "")
    late = await reg.call("slow", {}, ctx, allow=["*"])
    assert late.status == "timeout" and "longer than" in (late.error or "")
    assert reg.stats["invalid"] == 5 and reg.stats["ok"] == 1


async def test_memory_search_and_conversation_lookup_see_only_the_asking_users_data(stores) -> None:  # type: ignore[no-untyped-def]
    mem, conv, ana, bob = stores
    await mem.add(ana, "raw", "I keep three beehives behind the house in Porto.")
    c = await conv.create_conversation(ana)
    await conv.add_message(c.id, "user", "My bees swarmed yesterday, 100% chaos", user_id=ana)
    reg = build_registry(ToolsConfig(plugins=False))
    as_ana = await _collect_ctx(stores, ana, [])
    as_bob = await _collect_ctx(stores, bob, [])
    found = json.loads((await reg.call("memory_search", {"query": "beehives Porto"}, as_ana, allow=["*"])).result)
    assert [f["text"] for f in found] == ["I keep three beehives behind the house in Porto."]
    assert json.loads((await reg.call("memory_search", {"query": "beehives Porto"}, as_bob, allow=["*"])).result) == []
    hits = json.loads((await reg.call("conversation_lookup", {"query": "bees 100%"}, as_ana, allow=["*"])).result)
    assert len(hits) == 1 and hits[0]["conversation"] == c.id
    assert json.loads((await reg.call("conversation_lookup", {"query": "bees"}, as_bob, allow=["*"])).result) == []
    # LIKE wildcards in the query are literal
    assert json.loads((await reg.call("conversation_lookup", {"query": "b_es"}, as_ana, allow=["*"])).result) == []


class _Hook(BaseHTTPRequestHandler):
    received: list[Any] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"thanks")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_webhook_allow_list_compares_origins_and_paths_not_prefixes() -> None:
    allowed = ["http://127.0.0.1:8080/hooks"]
    assert url_allowed("http://127.0.0.1:8080/hooks/lights", allowed)
    assert url_allowed("http://127.0.0.1:8080/hooks", allowed)
    for bad in ["http://127.0.0.1:8080/hooksevil", "http://127.0.0.1:8081/hooks", "https://127.0.0.1:8080/hooks",
                "http://127.0.0.1:8080.evil.org/hooks", "http://user@127.0.0.1:8080/hooks", "file:///etc/passwd"]:
        assert not url_allowed(bad, allowed), bad


async def test_the_webhook_posts_only_to_allow_listed_urls(stores, hook_server: str) -> None:  # type: ignore[no-untyped-def]
    config = ToolsConfig(plugins=False, webhook_urls=[hook_server + "/hooks"])
    reg = build_registry(config)
    ctx = await _collect_ctx(stores, stores[2], [], config)
    out = await reg.call("webhook", {"url": hook_server + "/hooks/lights", "payload": {"on": True}}, ctx, allow=["webhook"])
    assert out.ok and json.loads(out.result)["status"] == 200
    refused = await reg.call("webhook", {"url": hook_server + "/elsewhere"}, ctx, allow=["webhook"])
    assert refused.status == "refused" and "allow-list" in (refused.error or "")
    assert [p for p, _ in _Hook.received] == ["/hooks/lights"]
    assert _Hook.received[0][1]["payload"] == {"on": True}


def test_plugins_register_through_the_shoal_tools_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a real installed distribution: a package and its dist-info with an entry point, on sys.path
    (tmp_path / "shoal_dice.py").write_text(
        "from shoal.tools.registry import Tool\n"
        "async def roll(args, ctx):\n    return 4  # chosen by a fair dice roll\n"
        "def register(registry):\n"
        "    registry.register(Tool('dice', 'Roll a dice', {'type': 'object', 'properties': {}}, roll))\n"
        "def broken(registry):\n    raise ImportError('needs a missing library')\n"
    )
    dist = tmp_path / "shoal_dice-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shoal-dice\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[shoal.tools]\ndice = shoal_dice:register\nbroken = shoal_dice:broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = build_registry(ToolsConfig())
    assert reg.get("dice").source == "plugin:dice"
    assert "broken" in reg.plugin_errors and "missing library" in reg.plugin_errors["broken"]
    assert {"calculator", "time", "memory_search", "conversation_lookup", "webhook", "dice"} <= {t.name for t in reg.tools()}
    # [tools] enabled narrows what exists at all
    narrow = build_registry(ToolsConfig(enabled=["calculator"]))
    assert [t.name for t in narrow.tools()] == ["calculator"]
    sys.modules.pop("shoal_dice", None)
