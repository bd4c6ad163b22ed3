"""The memory extraction adapter: generated data, a tiny real training run, served to the memory bot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from shoal.learn.extraction import EXTRACTION_ADAPTERS, adapter_messages, decide, read_labelled, same_fact, score_facts, target
from shoal.learn.extraction_data import generate
from shoal.memory.extract import ATTRIBUTES, Candidate, Fact, extraction_messages, ground, parse_model_output

from ..cli.test_chat import shoal
from ..conftest import TEST_CONFIG
from .conftest import run_async

LABELLED = Path(__file__).resolve().parents[2] / "bench" / "data" / "quality"
#: three hand-written messages (not the bench's): one fact the rules miss, one question, one statement
TINY_SET = [
    {"id": "t1", "text": "These days I mostly potter about in my allotment growing leeks.", "kind": "statement",
     "facts": [{"attribute": "hobby", "value": "allotment"}]},
    {"id": "t2", "text": "Which bus goes to the station from here?", "kind": "question", "facts": []},
    {"id": "t3", "text": "I'm Odile and I teach yoga.", "kind": "statement", "facts": [{"attribute": "name", "value": "Odile"}]},
]
QUESTIONS = ("question", "request", "hypothetical", "chitchat", "no_fact")


def test_the_generator_is_varied_repeatable_and_its_distractors_state_no_fact() -> None:
    items = generate(600, seed=3)
    assert items == generate(600, seed=3) and items != generate(600, seed=4)
    assert len({i["text"] for i in items}) == 600
    kinds = {i["kind"] for i in items}
    assert set(QUESTIONS) | {"statement", "third_party"} <= kinds
    assert {f["attribute"] for i in items for f in i["facts"]} == set(ATTRIBUTES)  # every kind of fact, and no other
    for i in items:
        if i["kind"] in QUESTIONS:
            assert i["facts"] == [], i
        if i["kind"] == "third_party":  # someone else's facts: at most the relation is the speaker's
            assert all(f["attribute"] == "family" and " " not in f["value"] for f in i["facts"]), i
        if i["kind"] == "statement":
            assert i["facts"], i
        for f in i["facts"]:  # every label passes the memory store's grounding: words of the message
            assert isinstance(ground(Candidate(f["attribute"], f["value"], "model"), i["text"]), Fact), (f, i["text"])


def test_the_generator_shares_no_message_with_the_labelled_set() -> None:
    labelled = read_labelled([LABELLED / "messages.json", LABELLED / "heldout.json"])
    generated = {i["text"].lower().strip(" .!") for i in generate(3000, seed=0)}
    assert not generated & {i["text"].lower().strip(" .!") for i in labelled}


def test_a_training_target_is_json_the_schema_allows_and_the_prompt_is_short() -> None:
    item = {"text": "I'm Ana, my kids are Mia, Leo, Zoe and Sam and I live in Oslo",
            "facts": [{"attribute": "name", "value": "Ana"}] + [{"attribute": "family", "value": f"child {n}"} for n in "Mia Leo Zoe Sam".split()]}
    got = parse_model_output(target(item["facts"]))
    assert len(got) == 4 and got[0].attribute == "name" and got[0].value == "Ana"  # FACT_SCHEMA's maxItems
    short = " ".join(c for _, c in adapter_messages("ignored", item["text"]))
    long = " ".join(c for _, c in extraction_messages("", item["text"]))
    assert len(short) * 3 < len(long)


def test_scoring_and_the_decision_rule() -> None:
    assert same_fact(("hobby", "chess"), ("likes", "chess")) and same_fact(("family", "son Sam"), ("family", "child Sam"))
    assert not same_fact(("location", "York"), ("name", "York"))
    base = score_facts(TINY_SET, [[], [], [("name", "Odile")]])
    assert (base.recall, base.precision) == (0.5, 1.0)
    better = score_facts(TINY_SET, [[("hobby", "allotment")], [], [("name", "Odile")]])
    sloppy = score_facts(TINY_SET, [[("hobby", "allotment"), ("likes", "leeks")], [("location", "station")], [("name", "Odile")]])
    assert sloppy.false_on_questions == 1
    assert decide(base, better)[0] and not decide(base, base)[0]
    promoted, reason = decide(base, sloppy)
    assert not promoted and "precision falls" in reason


def test_a_bad_labelled_set_gets_a_clear_error(tmp_path: Path) -> None:
    from shoal.errors import BadInput

    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "x", "text": 3}]')
    with pytest.raises(BadInput, match="cannot read the labelled set"):
        read_labelled([bad])
    with pytest.raises(BadInput, match="no labelled set"):
        read_labelled([])


# ------------------------------------------------------------------ one tiny real run through the CLI
@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory, learn_home: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`shoal learn extraction` for a few steps on a few generated messages, judged on TINY_SET (not promoted)."""
    from shoal.engine.llama import default_model_path
    from shoal.learn.base import load_base

    load_base(learn_home, default_model_path())  # the fp32 cache, shared with the other learning tests
    home = tmp_path_factory.mktemp("extraction-home")
    (home / "shoal.toml").write_text(TEST_CONFIG)
    (home / "learn").mkdir()
    (home / "learn" / "base").symlink_to(learn_home / "learn" / "base")
    (home / "tiny.json").write_text(json.dumps(TINY_SET))
    out = shoal(home, "learn", "extraction", "--examples", "6", "--steps", "2", "--batch", "2", "--rank", "2",
                "--threads", "1", "--labelled", str(home / "tiny.json"), "--no-promote", timeout=600)
    assert out.returncode == 0, out.stderr
    yield home, json.loads(out.stdout.strip().splitlines()[-1])


def test_shoal_learn_extraction_trains_a_candidate_and_judges_it_on_the_labelled_set(trained_home: tuple[Path, dict[str, Any]]) -> None:
    home, result = trained_home
    assert result["version"] == "v0001" and result["promoted"] is False  # --no-promote
    for side in ("served", "candidate"):
        assert result[side]["all"]["gold"] == 2 and result[side]["tiny"]["gold"] == 2
        assert result[side]["all"]["false_on_questions"] == 0  # the question is never sent to the model
    card = json.loads((home / "learn/adapters" / EXTRACTION_ADAPTERS / "v0001/card.json").read_text())
    assert card["extraction"] == result["candidate"] and card["steps"] == 2
    assert not (home / "learn/adapters" / EXTRACTION_ADAPTERS / "served.json").exists()  # nothing is served
    status = shoal(home, "learn", "status", "--bot", EXTRACTION_ADAPTERS, "--json")
    assert status.returncode == 0 and [v["version"] for v in json.loads(status.stdout)["versions"]] == ["v0001"]


def test_the_memory_bot_extracts_with_the_promoted_adapter_and_stops_at_a_rollback(
    trained_home: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.config import Env, Settings, parse_config
    from shoal.learn.adapters import AdapterRegistry
    from shoal.runtime.swarm import Swarm

    home, _ = trained_home
    monkeypatch.setenv("SHOAL_HOME", str(home))
    reg = AdapterRegistry(home, EXTRACTION_ADAPTERS)
    path = str(reg.path_of("v0001"))

    async def go() -> tuple[str, str, list[Any], int, bool, str]:
        env = Env(Settings(home=home), parse_config(TEST_CONFIG))
        async with Swarm(env) as swarm:
            bot = swarm.bots["memory"]
            before = bot.extraction_adapter()
            reg.decide("v0001", True, "test", {}, {})
            used, prompt = bot.extractor.prompt()
            cands = await bot.extractor("I'm a florist in Oslo and I love jazz.")
            engine = swarm.backends["local"].engine
            loaded = engine is not None and engine._adapters.get(path) is not None
            reg.rollback()
            after = bot.extraction_adapter()
            return before, used, cands, int(prompt is adapter_messages), loaded, after

    before, used, cands, short_prompt, loaded, after = run_async(go)
    assert before == "" and after == ""  # nothing promoted yet; rolled back: the base model at once
    assert used == path and short_prompt  # promoted: the adapter, with the prompt it was trained on
    assert loaded  # the engine loaded the file and generated with it
    assert all(c.method == "model" and c.attribute in ATTRIBUTES for c in cands)


def test_a_memory_bot_told_to_use_no_adapter_uses_none(trained_home: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.config import Env, Settings, parse_config
    from shoal.learn.adapters import AdapterRegistry
    from shoal.runtime.swarm import Swarm

    home, _ = trained_home
    monkeypatch.setenv("SHOAL_HOME", str(home))
    reg = AdapterRegistry(home, EXTRACTION_ADAPTERS)
    reg.decide("v0001", True, "test", {}, {})
    text = TEST_CONFIG + '\n[memory]\nextraction_adapter = ""\n'

    async def go() -> tuple[str, str]:
        async with Swarm(Env(Settings(home=home), parse_config(text))) as swarm:
            bot = swarm.bots["memory"]
            return bot.extraction_adapter(), bot.extractor.prompt()[0]

    try:
        assert run_async(go) == ("", "")
    finally:
        reg.rollback()


def test_a_corrupt_adapter_is_refused_clearly_and_what_is_served_stays(trained_home: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, _ = trained_home
    root = home / "learn/adapters" / EXTRACTION_ADAPTERS
    shutil.copytree(root / "v0001", root / "v0002")
    card = json.loads((root / "v0002/card.json").read_text())
    (root / "v0002/card.json").write_text(json.dumps({**card, "version": "v0002"}))
    (root / "v0002/adapter.gguf").write_bytes(b"GGUF" + b"\x00garbage" * 20)
    served_before = (root / "served.json").read_text() if (root / "served.json").exists() else None
    out = shoal(home, "learn", "extraction", "--version", "v0002", "--labelled", str(home / "tiny.json"))
    said = " ".join(out.stderr.split())  # rich wraps long lines
    assert out.returncode != 0 and "Traceback" not in said
    assert "not a readable GGUF adapter" in said and "retrain" in said, said
    assert ((root / "served.json").read_text() if (root / "served.json").exists() else None) == served_before
    missing = shoal(home, "learn", "extraction", "--version", "v0002", "--labelled", str(tmp_path / "none.json"))
    said = " ".join(missing.stderr.split())
    assert missing.returncode != 0 and "cannot read the labelled set" in said and "Traceback" not in said
