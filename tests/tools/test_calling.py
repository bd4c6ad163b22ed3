"""Tool calls by the real small model: constrained, validated, permitted — and what the stored events show."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from shoal.backends.embedded import EmbeddedBackend
from shoal.config import Env, Settings, parse_config
from shoal.runtime.swarm import Swarm
from shoal.tools.calling import choice_schema, choose, hinted
from shoal.tools.registry import Tool, ToolContext, build_registry
from shoal.tools.config import ToolsConfig
from shoal.types import ChatMessage

QUESTION = [ChatMessage("user", "What is 17 times 23?")]


async def test_the_model_picks_a_permitted_tool_with_arguments_valid_for_its_schema(embedded: EmbeddedBackend) -> None:
    reg = build_registry(ToolsConfig(plugins=False))
    counts: Counter[str] = Counter()
    choice = await choose(embedded, reg.tools(["calculator", "time"]), QUESTION, stats=counts)
    assert choice is not None and choice.tool == "calculator" and isinstance(choice.arguments["expression"], str)
    assert counts["chosen"] == 1 and choice.usage[1] > 0
    # only what the bot may use is in the grammar at all
    schema = json.dumps(choice_schema(reg.tools(["time"])))
    assert "calculator" not in schema and '"time"' in schema
    assert [t.name for t in hinted(reg.tools(), "what is 17 * 23?")] == ["calculator"]


def test_the_calculators_rule_reads_sums_and_only_functions_alike_it_inherit_it() -> None:
    from shoal.server.openai_tools import client_tools
    from shoal.tools.builtin import arithmetic_in
    from shoal.tools.calling import ruled

    assert arithmetic_in("What is 17 times 23?") == {"expression": "17 * 23"}
    assert arithmetic_in("what is the square root of 144?") == {"expression": "sqrt(144)"}
    assert arithmetic_in("Meet me on 2024-05-01") is None and arithmetic_in("I have 3 cats") is None
    known = build_registry(ToolsConfig(plugins=False)).tools()

    def fn(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "description": description,
                                                 "parameters": {"type": "object", "properties": props}}}

    math = fn("math_eval", "Evaluate an arithmetic expression.", {"expr": {"type": "string"}})
    weather = fn("weather", "The weather in a city.", {"city": {"type": "string"}})
    pair = fn("multiply", "Multiply two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}})
    wanted, call = ruled(client_tools([weather, math]), "How much is 12 + 30?", known)
    assert [t.name for t in wanted] == ["math_eval"] and call is not None and (call.tool, call.arguments) == ("math_eval", {"expr": "12 + 30"})
    # wanted, but the rule's arguments do not fit two numbers: the model writes them
    wanted, call = ruled(client_tools([pair]), "What is 6 * 7?", known)
    assert [t.name for t in wanted] == ["multiply"] and call is None
    assert ruled(client_tools([weather, math]), "Is it raining in Leeds?", known) == ([], None)
    assert ruled(client_tools([math]), "Is 2024-05-01 a Monday?", known) == ([], None)  # the hint matches, the rule reads no sum
    assert ruled(client_tools([weather]), "What is 6 * 7?", known) == ([], None)


CONFIG = """
[[servers]]
name = "local"
kind = "embedded"

[[bots]]
name = "conversation"
role = "conversation"
instruction = "You are shoal, a friendly assistant. Answer in one short sentence."
max_tokens = 32

[[bots]]
name = "primary"
role = "primary"
max_tokens = 48
temperature = 0.0
tools = ["calculator"]

[[bots]]
name = "memory"
role = "memory"
max_tokens = 64
temperature = 0.0

[[bots]]
name = "clock"
role = "action"
tools = ["time"]

[routing]
always = ["memory"]
settle_timeout = 90

[[routing.rules]]
name = "clock"
when = "regex"
pattern = "(?i)clock"
send = ["clock"]
"""


async def _events(swarm: Swarm, conv: str, kind: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    for _ in range(int(timeout * 10)):
        evs = [e for e in await swarm.conversations.events_since(conv, 0) if e["kind"] == kind]
        if len(evs) >= n:
            return evs
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no {kind} event stored")


async def test_the_primary_calls_the_calculator_through_a_hot_action_bot_and_a_bot_never_calls_what_it_may_not(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    async with Swarm(Env(Settings(home=home), parse_config(CONFIG))) as swarm:
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        # "clock" sends the turn to the clock action (time only) too; the question wants the calculator
        await swarm.send(conv.id, user.id, "Clock check: what is 17 * 23?")
        await _events(swarm, conv.id, "turn.settled", 1, timeout=240)  # the primary settles after its tool's result
        results = await _events(swarm, conv.id, "tool.result", 2)
        events = await swarm.conversations.events_since(conv.id, 0)
        calls = [e for e in events if e["kind"] == "tool.call"]
        # the permission holds in the stored record: no bot called a tool it may not use
        for e in calls:
            allowed = {"primary": "calculator", "clock": "time"}[e["bot"].rsplit("-", 1)[0].removesuffix("-tools")]
            assert e["tool"] == allowed, e
        # the rules offered the calculator (an arithmetic question) and the clock (the word "clock"):
        # each got a call valid for its schema, ran, and its result went back into the conversation
        assert sorted((r["tool"], r["status"]) for r in results) == [("calculator", "ok"), ("time", "ok")]
        assert json.loads(next(r for r in results if r["tool"] == "calculator")["result"])["result"] == 391
        injections = [e["text"] for e in events if e["kind"] == "injection" and e["mode"] == "interject"]
        assert any("calculator returned 391" in t for t in injections), injections
        assert {e["bot"].rsplit("-", 1)[0] for e in calls} <= {"primary-tools", "clock"}
        # a direct call as the clock bot for the calculator is refused, and that refusal is on record
        clock_cfg = swarm.config.bot("clock")
        ctx = ToolContext(user_id=user.id, config=swarm.tools.config, conversation=conv.id, caller="clock", emit=_emitter(swarm))
        out = await swarm.tools.call("calculator", {"expression": "1 + 1"}, ctx, allow=clock_cfg.tools)
        assert out.status == "refused"
        refused = [r for r in await _events(swarm, conv.id, "tool.result", len(results) + 1) if r["status"] == "refused"]
        assert refused and refused[-1]["tool"] == "calculator"


def _spy(name: str, parameters: dict[str, Any], hint: str, ran: list[Any], *, fails: str = "") -> Tool:
    """A tool that records each run; ``fails``: "raise" or "hang" after recording it."""

    async def fn(args: dict[str, Any], ctx: ToolContext) -> str:
        ran.append(args)
        if fails == "raise":
            raise RuntimeError("the weather service is down")
        if fails == "hang":
            await asyncio.Event().wait()
        return "ok"

    return Tool(name, f"Look up the {name}.", parameters, fn, hint=hint)


SPIED = CONFIG.replace('tools = ["calculator"]', 'tools = ["calculator", "lookup", "weather", "stock"]')


async def test_forced_bad_output_is_retried_once_then_dropped_on_record_and_never_reaches_the_tool(tmp_path: Path) -> None:
    from shoal.tools import calling

    ran: list[Any] = []
    # the grammar enforces the pattern (4 to 8 letters); validation also maxLength 3, which the grammar drops:
    # every output the grammar allows is valid JSON and invalid for the tool, so the bad output is forced, not hoped for
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z]{4,8}$", "maxLength": 3}},
              "required": ["code"], "additionalProperties": False}
    home = tmp_path / "home"
    home.mkdir()
    async with Swarm(Env(Settings(home=home), parse_config(SPIED))) as swarm:
        swarm.tools.register(_spy("lookup", schema, r"look up", ran))
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        before = Counter(calling.STATS)
        # the real calling path of the primary's hot action bot: rules, grammar, validation, retry, the registry
        out = await calling.call_tool_for(swarm.bots["primary"], conv.id, None, user.id, "Look up the product code for bananas.")
        assert out is None and ran == []
        delta = Counter(calling.STATS)
        delta.subtract(before)
        assert (delta["invalid"], delta["dropped"], delta["chosen"]) == (2, 1, 0)  # the first try and one retry, then dropped
        [call] = await _events(swarm, conv.id, "tool.call", 1)
        [result] = await _events(swarm, conv.id, "tool.result", 1)
        assert call["tool"] == result["tool"] == "lookup" and call["bot"] == "primary" and len(call["arguments"]["code"]) > 3
        assert result["status"] == "invalid" and result["call_id"] == call["call_id"] and not result["result"]
        assert "after 2 invalid tries" in result["error"] and "too long" in result["error"], result
        assert swarm.tools.stats["invalid"] == 1 and swarm.tools.stats["ok"] == 0


async def test_a_tool_that_raises_or_hangs_leaves_the_conversation_working(tmp_path: Path) -> None:
    ran: list[Any] = []
    empty = {"type": "object", "properties": {}}
    home = tmp_path / "home"
    home.mkdir()
    async with Swarm(Env(Settings(home=home), parse_config(SPIED))) as swarm:
        swarm.tools.register(_spy("weather", empty, r"\bweather\b", ran, fails="raise"))
        swarm.tools.register(_spy("stock", empty, r"\bstock\b", ran, fails="hang"))
        swarm.tools.config.timeout = 2  # the hanging tool is cut off (how long it took is not checked)
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        texts = ["What is the weather in Leeds?", "What is the stock price of ACME?", "Thanks! Now say hello to Ana."]
        for i, text in enumerate(texts, 1):
            await swarm.send(conv.id, user.id, text)
            await _events(swarm, conv.id, "turn.settled", i, timeout=240)
        events = await swarm.conversations.events_since(conv.id, 0)
        assert sorted((e["tool"], e["status"]) for e in events if e["kind"] == "tool.result") == [("stock", "timeout"), ("weather", "error")]
        assert len(ran) == 2  # each ran once: a failure is an outcome, not a retry
        ends = [e for e in events if e["kind"] == "action.end" and e["bot"].startswith("primary-tools")]
        assert [e["status"] for e in ends] == ["error", "error"] and "weather service is down" in ends[0]["error"]
        assert not [e for e in events if e["kind"] == "bot.error"]
        # the turn after the failures is answered as any other: a complete reply, and no tool in it
        turns = [e["message_id"] for e in events if e["kind"] == "user.turn"]
        last = [e for e in events if e.get("turn") == turns[-1]]
        replies = [e for e in last if e["kind"] == "reply.end" and not e.get("interjection")]
        assert replies and replies[-1]["status"] == "complete" and replies[-1]["text"].strip(), replies
        assert not [e for e in last if e["kind"].startswith("tool.")]


def _emitter(swarm: Swarm) -> Any:
    async def emit(ev: Any) -> None:
        ev.bot = "clock-direct"
        await swarm.mesh.publish(ev.subject, ev)

    return emit
