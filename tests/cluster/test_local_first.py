"""The local-first router with real parts: the embedded engine as ``local``, a real llama.cpp
server on loopback as ``big`` (the same SmolLM2 file stands in for a bigger model), the whole
swarm in between, and the decisions read back from the stored events."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.backends.embedded import EmbeddedBackend
from shoal.cluster import Cluster
from shoal.cluster.local_first import LocalFirst
from shoal.cluster.status import prometheus
from shoal.config import Env, Settings, parse_config
from shoal.runtime.messages import ModelRoute, ReplyEnd
from shoal.runtime.swarm import ClusterViews, Swarm
from shoal.types import ChatMessage, GenerateRequest, SamplingParams

from .conftest import SmallLlamaServer, config, entry, started
from .fixtures import FakeServer

SIMPLE = "hi there!"
COMPLEX = "write a python function that reverses a string, and explain why it works"
COMPLEX_TOO = "compare renting and buying a flat for someone staying five years"


def swarm_config(big: SmallLlamaServer, model_path: Path) -> str:
    return f"""
[engine]
max_sequences = 2
context = 1024

[[servers]]
name = "local"
kind = "embedded"

[[servers]]
name = "big"
kind = "llamacpp"
url = "{big.url}"
models = ["smollm2-135m"]
model_path = "{model_path}"

[cluster]
health_interval = 0
reload_interval = 0

[[bots]]
name = "conversation"
role = "conversation"
instruction = "You are shoal. Answer in one sentence."
max_tokens = 8
temperature = 0.0
guards = false

[[bots]]
name = "primary"
role = "primary"
max_tokens = 8

[routing]
always = []

[routing.local_first]
local = "local"
big = "big"
"""


async def turn(swarm: Swarm, conversation: str, user_id: str, text: str) -> tuple[list[ModelRoute], ReplyEnd]:
    """One turn, then what the journal recorded for it: the router's choices and the reply's end."""
    result = await swarm.run_turn(conversation, user_id, text, timeout=180)
    assert result.reply_status == "complete", result
    events = [ev for ev in await swarm.journal.replay(conversation, 0) if ev.turn == result.turn]
    routes = [ev for ev in events if isinstance(ev, ModelRoute)]
    ends = [ev for ev in events if isinstance(ev, ReplyEnd) and not ev.interjection]
    assert len(ends) == 1, events
    return routes, ends[0]


async def test_simple_turns_go_local_complex_ones_big_and_local_answers_when_big_is_down(
    home: Path, spare_llama: SmallLlamaServer, model_path: Path
) -> None:
    text = swarm_config(spare_llama, model_path)
    (home / "shoal.toml").write_text(text)
    async with Swarm(Env(Settings(home=home), parse_config(text))) as swarm:
        user = await swarm.conversations.ensure_user("ana")
        conv = (await swarm.conversations.create_conversation(user.id)).id

        routes, end = await turn(swarm, conv, user.id, SIMPLE)
        assert [(r.server, r.complexity, r.fallback) for r in routes] == [("local", "simple", "")]
        assert "small talk" in routes[0].reasons and routes[0].text.endswith("→ local")
        assert end.served_by == "local"

        routes, end = await turn(swarm, conv, user.id, COMPLEX)
        assert [(r.server, r.complexity, r.fallback) for r in routes] == [("big", "complex", "")]
        assert "about code" in routes[0].reasons and "asks for reasoning" in routes[0].reasons
        assert end.served_by == "big" and end.text

        # big dies; nobody has noticed yet (no health checks): the request to it fails, local answers
        spare_llama.kill()
        routes, end = await turn(swarm, conv, user.id, COMPLEX_TOO)
        assert routes[0].server == "big" and routes[0].fallback == ""  # the choice before it was tried
        assert routes[-1].server == "local" and routes[-1].wanted == "big" and "big" in routes[-1].fallback
        assert end.served_by == "local" and end.text
        assert "local answers" in routes[-1].text

        # now the cluster knows big is down: the choice says so at once
        assert swarm.cluster.unavailable("big") == "down"
        routes, end = await turn(swarm, conv, user.id, COMPLEX)
        assert [(r.server, r.wanted, r.fallback) for r in routes] == [("local", "big", "big is down")]
        assert routes[0].text.endswith("→ wanted big, but big is down: local answers")
        assert end.served_by == "local"
        assert "127.0.0.1" not in " ".join(r.text for r in routes)  # no addresses for people who chat
        assert swarm.cluster.metrics.local_first.values == {("local", "local"): 1, ("big", "big"): 1, ("big", "local"): 2}


def request(text: str) -> GenerateRequest:
    return GenerateRequest(
        messages=[ChatMessage("user", text)], sampling=SamplingParams(max_tokens=4, temperature=0.0)
    )


async def test_big_failing_opens_its_circuit_and_local_takes_every_complex_turn(
    fakes: list[FakeServer], embedded: EmbeddedBackend
) -> None:
    big = started(fakes, FakeServer())
    big.behaviour.fail_status = 500  # answers, but with an error: counts against its circuit breaker
    cfg = config(entry("local", "embedded"), entry("big", "openai", big.url, models=["big-model"]), failure_threshold=2)
    settings = parse_config(
        entry("local", "embedded") + entry("big", "openai", big.url) + '[routing.local_first]\nlocal = "local"\nbig = "big"\n'
    ).routing.local_first
    assert settings is not None
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        route = LocalFirst(settings, ClusterViews(cluster))
        for attempt in range(2):
            choice = route.choose(COMPLEX)
            assert choice.server == "big"
            chunks = [c async for c in route.stream(choice, request(COMPLEX))]
            assert "".join(c.text for c in chunks) and choice.served_by == "local"
            assert choice.fallback == "big failed before answering"
        assert cluster.members["big"].breaker.state == "open"
        choice = route.choose(COMPLEX)
        assert choice.server == "local" and choice.wanted == "big"
        assert choice.fallback.startswith("big is refusing work: its circuit opened after 2 failures")
        simple = route.choose(SIMPLE)
        assert simple.server == "local"
        assert [c async for c in route.stream(simple, request(SIMPLE))][-1].served_by == "local"
        # a simple turn never touches big: still two failed calls there
        assert len(big.calls("/v1/chat/completions")) == 2
        assert cluster.metrics.local_first.values == {("big", "local"): 2, ("local", "local"): 1}
        assert 'shoal_cluster_local_first_total{wanted="big",server="local"} 2' in prometheus(cluster)


async def test_a_model_big_does_not_offer_falls_back_to_local_before_anything_is_sent(
    fakes: list[FakeServer], embedded: EmbeddedBackend
) -> None:
    big = started(fakes, FakeServer())
    text = entry("local", "embedded") + entry("big", "openai", big.url, models=["big-model"])
    cfg = parse_config(
        text + '[cluster]\nhealth_interval = 0\n[routing.local_first]\nlocal = "local"\nbig = "big"\nbig_model = "no-such-model"\n'
    )
    assert cfg.routing.local_first is not None
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        route = LocalFirst(cfg.routing.local_first, ClusterViews(cluster))
        choice = route.choose(COMPLEX)
        assert (choice.server, choice.model) == ("big", "no-such-model")
        chunks = [c async for c in route.stream(choice, request(COMPLEX))]
    assert "".join(c.text for c in chunks) and chunks[-1].served_by == "local"
    assert (choice.server, choice.served_by, choice.fallback) == ("local", "local", "big failed before answering")
    assert big.calls("/v1/chat/completions") == []


async def test_a_disabled_big_server_sends_complex_turns_local(embedded: EmbeddedBackend) -> None:
    text = entry("local", "embedded") + entry("big", "openai", "http://127.0.0.1:9", enabled=False)
    cfg = parse_config(text + '[cluster]\nhealth_interval = 0\n[routing.local_first]\nlocal = "local"\nbig = "big"\n')
    assert cfg.routing.local_first is not None
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        choice = LocalFirst(cfg.routing.local_first, ClusterViews(cluster)).choose(COMPLEX)
    assert (choice.server, choice.fallback) == ("local", "big is disabled")
    assert choice.describe().endswith("but big is disabled: local answers")


@pytest.mark.parametrize(
    "table, message",
    [
        ('local = "local"\nbig = "gpu"', "local_first.big names server 'gpu', which is not declared as [[servers]] (declared: big, local)"),
        ('local = "laptop"\nbig = "big"', "local_first.local names server 'laptop', which is not declared"),
        ('local = "big"\nbig = "big"', "local_first.local and local_first.big are both 'big': name two different servers"),
        ('local = "local"\nbig = "big"\nbots = ["primary"]', "local_first.bots lists 'primary', which is a bot of role 'primary'"),
        ('local = "local"\nbig = "big"\nthreshold = -1', "greater than 0"),
        ('local = "local"', "Field required"),
    ],
)
def test_a_bad_local_first_table_names_the_file_the_line_and_what_to_fix(table: str, message: str) -> None:
    from shoal.errors import ConfigError

    text = (
        entry("local", "embedded") + entry("big", "openai", "http://127.0.0.1:9")
        + '[[bots]]\nname = "conversation"\nrole = "conversation"\n[[bots]]\nname = "primary"\nrole = "primary"\n'
        + "[routing]\nalways = []\n[routing.local_first]\n" + table + "\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "shoal.toml")
    shown = str(exc.value)
    assert message in shown and shown.startswith("shoal.toml:") and "routing.local_first" in shown


def test_the_default_config_documents_local_first_and_it_is_off() -> None:
    from shoal.config import DEFAULT_CONFIG_TOML

    assert "[routing.local_first]" in DEFAULT_CONFIG_TOML
    assert parse_config(DEFAULT_CONFIG_TOML).routing.local_first is None


def test_nothing_is_routed_for_a_bot_the_table_does_not_list() -> None:
    cfg = parse_config(
        entry("local", "embedded") + entry("big", "openai", "http://127.0.0.1:9")
        + '[[bots]]\nname = "conversation"\nrole = "conversation"\n[[bots]]\nname = "other"\nrole = "conversation"\n'
        'enabled = false\n[[bots]]\nname = "primary"\nrole = "primary"\n'
        '[routing]\nalways = []\n[routing.local_first]\nlocal = "local"\nbig = "big"\nbots = ["other"]\n'
    )
    assert cfg.local_first_for("conversation") is None
    assert cfg.local_first_for("other") is cfg.routing.local_first


def test_shoal_chat_shows_the_choice_in_its_headspace() -> None:
    from rich.console import Console

    from shoal.cli.chat import TurnView

    view = TurnView()
    ev = ModelRoute(
        conversation="c", turn="t", message_id="m", server="local", complexity="complex", score=3.5,
        reasons=["about code"], wanted="big", fallback="big is down",
        text="complex (score 3.5: about code) → wanted big, but big is down: local answers",
    )
    view.feed(ev, "t")
    console = Console(width=200, record=True)
    console.print(view.render())
    assert "model: complex (score 3.5: about code) → wanted big, but big is down: local answers" in console.export_text()
