"""A thinker that hands harness tasks to a µLM: the verified answer reaches the primary as a thought."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from shoal.config import Env, Settings, parse_config
from shoal.runtime.swarm import Swarm
from shoal.ulm.solver import parse_turn

CONFIG = """
[engine]
max_sequences = 4

[[servers]]
name = "local"
kind = "embedded"

[[bots]]
name = "conversation"
role = "conversation"
max_tokens = 8
history = 2

[[bots]]
name = "primary"
role = "primary"
max_tokens = 24
temperature = 0.0

[[bots]]
name = "thinker"
role = "thinker"
max_tokens = 12

[routing]
always = ["thinker"]
settle_timeout = 120

[ulm]
solver_run = "{run}"
solver_bots = ["thinker"]
samples = 4
"""


def test_the_turn_parser_finds_only_tasks_a_harness_world_can_check() -> None:
    t = parse_turn("hey, what is 7 * 8?")
    assert t is not None and (t.env, t.prompt, t.answer) == ("arith", "Q: 7*8\n", "56")
    s = parse_turn("Could you sort 3, 1, 2 for me")
    assert s is not None and (s.env, s.answer) == ("lists", "1 2 3")
    assert parse_turn("I was born in 1990 and I like tea") is None


async def _thoughts(swarm: Swarm, conv: str, n: int, timeout: float = 240) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        ends = [e for e in await swarm.conversations.events_since(conv, 0) if e["kind"] == "thought.end"]
        if len(ends) >= n:
            return ends
        assert time.monotonic() < deadline, "the thinker never finished"
        await asyncio.sleep(0.25)


async def test_a_thinker_solves_arithmetic_with_its_ulm_and_thinks_as_usual_otherwise(home: Path, arith_run: Path) -> None:
    env = Env(Settings(home=home), parse_config(CONFIG.format(run=arith_run)))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = (await swarm.conversations.create_conversation(user.id)).id
        await swarm.send(conv, user.id, "What is 7*8?")
        solved = (await _thoughts(swarm, conv, 1))[0]
        await swarm.send(conv, user.id, "I like walking by the sea.")
        usual = (await _thoughts(swarm, conv, 2))[1]
    assert solved["status"] == "done" and "µLM" in solved["text"] and "56" in solved["text"]
    assert "passed the harness verifier" in solved["text"]
    assert usual["status"] == "done" and "µLM" not in usual["text"]
