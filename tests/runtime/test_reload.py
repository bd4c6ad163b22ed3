"""Editing shoal.toml while the swarm runs: bots follow, replaced engines close, what needs a restart is said."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from shoal.config import Env, Settings, load_config
from shoal.runtime.swarm import Swarm

from ..conftest import LlamaServer, TEST_CONFIG


def with_box(url: str, thinker_server: str, *, extra: str = "") -> str:
    text = TEST_CONFIG.replace(
        '[[servers]]\nname = "local"\nkind = "embedded"\n',
        f'[[servers]]\nname = "local"\nkind = "embedded"\n\n[[servers]]\nname = "box"\nkind = "llamacpp"\nurl = "{url}"\n',
    ).replace('name = "thinker"\nrole = "thinker"\n', f'name = "thinker"\nrole = "thinker"\nserver = "{thinker_server}"\n')
    return text + "\n[cluster]\nhealth_interval = 0\nreload_interval = 0.2\n" + extra


async def until(predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("the swarm never took the new shoal.toml")


async def test_a_bot_moved_to_another_server_follows_and_the_old_server_goes(home: Path, llama_server: LlamaServer) -> None:
    path = home / "shoal.toml"
    path.write_text(with_box(llama_server.url, "box"))
    env = Env(Settings(home=home), load_config(path))
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = (await swarm.conversations.create_conversation(user.id)).id
        first = await swarm.run_turn(conv, user.id, "What should I cook tonight?", timeout=240)
        assert first.thoughts and first.thoughts[0]["status"] == "done"
        assert swarm.cluster.members["box"].counters.requests >= 1
        # the thinker moves to the embedded server and the box leaves the file
        text = with_box(llama_server.url, "local")
        text = text.replace(f'[[servers]]\nname = "box"\nkind = "llamacpp"\nurl = "{llama_server.url}"\n', "")
        path.write_text(text)
        await until(lambda: "box" not in swarm.cluster.members and swarm.config.bot("thinker").server == "local")
        state = swarm.cluster.reload_state
        assert any("thinker" in a for a in state.applied) and any("box" in a for a in state.applied)
        again = await swarm.run_turn(conv, user.id, "And what about dessert?", timeout=240)
        assert again.thoughts and again.thoughts[0]["status"] == "done", again.thoughts


async def test_engine_edits_replace_the_embedded_engine_and_close_the_old_one(home: Path) -> None:
    path = home / "shoal.toml"
    path.write_text(TEST_CONFIG + "\n[cluster]\nhealth_interval = 0\nreload_interval = 0.2\n")
    env = Env(Settings(home=home), load_config(path))
    async with Swarm(env) as swarm:
        await swarm.warm_up()
        old = swarm.backends["local"]
        assert old.engine is not None
        path.write_text(TEST_CONFIG.replace("max_sequences = 8", "max_sequences = 4") + "\n[cluster]\nhealth_interval = 0\nreload_interval = 0.2\n")
        await until(lambda: swarm.backends["local"] is not old)
        await until(lambda: old.engine is None)  # the replaced engine was closed, not left running
        assert swarm.backends["local"].engine_config.max_sequences == 4
        user = await swarm.local_user()
        conv = (await swarm.conversations.create_conversation(user.id)).id
        assert (await swarm.run_turn(conv, user.id, "Hello!", timeout=240)).reply
        # health checks switched on by an edit start; a new port is reported as needing a restart
        path.write_text(
            TEST_CONFIG.replace("max_sequences = 8", "max_sequences = 4")
            + "\n[cluster]\nhealth_interval = 0.5\nreload_interval = 0.2\n\n[server]\nport = 8999\n"
        )
        await until(lambda: swarm.cluster._health is not None and not swarm.cluster._health.done())
        state = swarm.cluster.reload_state
        assert any("restart" in r and "8999" in r for r in state.restart_needed)
        assert swarm.cluster.status()["reload"]["restart_needed"] == state.restart_needed
