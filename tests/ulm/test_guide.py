"""The guide: the shipped SmolLM2-135M (embedded engine) hints and picks for a µLM swarm, measured against it unguided."""

from __future__ import annotations

import math
from pathlib import Path

from shoal.errors import BadInput
from shoal.ulm import checkpoint
from shoal.ulm.guide import _prefix_prompt, first_step, hint_grammar, measure, vote
from shoal.ulm.harness import heldout
from shoal.ulm.harness.base import Task
from shoal.ulm.search import Candidate


def test_a_first_step_is_the_first_tool_call_or_the_first_item_of_the_answer() -> None:
    [arith] = heldout("arith", 2, 1)
    [lists] = heldout("lists", 3, 1)
    [chain] = heldout("chain", 3, 1)
    assert first_step(arith.gold) == arith.gold.split("=")[0] and first_step(arith.gold).endswith("</calc>")
    assert first_step(lists.gold) == "A: " + lists.answer.split()[0]
    assert first_step(chain.gold).startswith("<calc>") and first_step("no step here") == ""
    # the grammar allows the shapes the examples show: calls for the tool worlds, an answer item for lists
    assert "<calc>" in hint_grammar([arith, chain]) and "A: " not in hint_grammar([arith, chain])
    assert "A: " in hint_grammar([lists]) and "<calc>" not in hint_grammar([lists])


def test_the_calculator_answers_a_hinted_call_and_a_wrong_hint_still_fails_the_verifier() -> None:
    from shoal.ulm.harness.base import get_env

    t = Task("arith", 1, "Q: 7*8\n", "56", "<calc>7*8</calc>=56\nA: 56\n")
    prompt, prefix = _prefix_prompt(t, "<calc>7*8</calc>")
    assert prefix == "<calc>7*8</calc>=56\n" and prompt == "Q: 7*8\n" + prefix
    assert _prefix_prompt(t, "") == (t.prompt, "")
    lists = Task("lists", 1, "Q: sort 3 1 2\n", "1 2 3", "A: 1 2 3\n")
    assert not get_env("lists").verify(lists, "A: 9 2 3\n").ok  # a guide's wrong first item is never trusted


def test_a_vote_takes_the_most_common_answer() -> None:
    cs = [Candidate("A: 5\n", 3), Candidate("A: 6\n", 3), Candidate("A: 6\n", 3), Candidate("junk", 3)]
    assert vote(cs) == "6" and vote([Candidate("junk", 1)]) is None


async def test_smollm2_guides_the_swarm_and_every_arm_is_measured_on_the_same_tasks(arith_run: Path, embedded) -> None:  # type: ignore[no-untyped-def]
    from shoal.ulm.export import export

    gguf = export(arith_run)
    tok = checkpoint.load(arith_run).tokenizer
    tasks = heldout("arith", 1, 3)
    rep = await measure(gguf, tok, tasks, embedded, guide_name="smollm2", n=3, max_new=32)
    assert rep.tasks == 3 and rep.n == 3 and rep.guide == "smollm2"
    for rate in (rep.pass_at_1, rep.best_of_n, rep.hinted_best_of_n, rep.best_of_budget, rep.vote, rep.guide_pick, rep.vote_budget):
        assert 0.0 <= rate <= 1.0
    assert rep.best_of_budget >= rep.best_of_n  # the same N samples plus more
    assert rep.hint_usable == 1.0  # the grammar holds the guide to a first step's shape
    assert rep.guide_tokens_hint > 0 and rep.guide_prompt_tokens_hint > 50
    # the budget arm: what the guide's generated tokens buy the µLM
    assert rep.extra_samples == math.ceil(rep.guide_tokens_hint / (rep.ulm_tokens / rep.n))
    for ex in rep.examples:
        assert ex["hint"].startswith("<calc>") and len(ex["hinted"]) == 3
        assert all(h.startswith(ex["hint"] + "=") for h in ex["hinted"])  # continued from the hint, the tool's reply after it
    assert set(rep.seconds) >= {"ulm", "guide_hint", "ulm_hinted", "guide_pick"}


def test_the_cli_measures_a_guide_by_server_name_and_refuses_an_unknown_one(arith_run: Path, home: Path) -> None:
    from typer.testing import CliRunner

    from shoal.cli import _register, app

    _register()
    runner = CliRunner()
    args = ["ulm", "swarm", str(arith_run), "--env", "arith", "--level", "1", "--n", "2", "--tasks", "1", "--max-new", "32"]
    res = runner.invoke(app, args + ["--guide", "local"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "1 held-out tasks of arith level 1; the guide's first step had the right shape 100% of the time" in text
    assert "µLM greedy (pass@1)" in text and "guide picks among 2" in text
    bad = runner.invoke(app, args + ["--guide", "nowhere"])
    assert isinstance(bad.exception, BadInput) and "no server 'nowhere'" in str(bad.exception)
