from __future__ import annotations

import random

import pytest

from shoal.errors import BadInput
from shoal.ulm.harness import get_env, heldout, run_tools, training_text
from shoal.ulm.harness.base import Mix, calculator


def test_the_calculator_does_integer_arithmetic_with_precedence_and_nothing_else() -> None:
    assert calculator("10-4") == "6"
    assert calculator("2+3*4-1") == "13"
    assert calculator("7*-3") == "-21"
    assert calculator("__import__('os')") == "error"
    assert calculator("1/2") == "error"


def test_a_tool_call_at_the_end_of_the_text_gets_the_harness_reply() -> None:
    assert run_tools("Q: 12+30\n<calc>12+30</calc>") == "=42\n"
    assert run_tools("Q: 12+30\nA: 42") is None


@pytest.mark.parametrize("env", ["arith", "lists", "chain"])
def test_every_gold_trace_passes_its_verifier(env: str) -> None:
    e = get_env(env)
    for level in e.levels:
        for t in heldout(env, level, 20):
            assert e.verify(t, t.gold).ok, (t.prompt, t.gold)


def test_the_verifier_gives_feedback_a_learner_can_use() -> None:
    e = get_env("arith")
    t = e.task(random.Random(3), 2)
    assert "expected" in e.verify(t, "A: 1\n").feedback
    assert "no answer" in e.verify(t, "<calc>1+1</calc>=2\n").feedback
    forged = e.verify(t, f"<calc>1+1</calc>=3\nA: {t.answer}\n")
    assert not forged.ok and "written by the model" in forged.feedback


def test_chain_puzzles_take_one_tool_call_per_step() -> None:
    t = get_env("chain").task(random.Random(1), 4)
    assert t.gold.count("<calc>") == 4


def test_held_out_sets_are_fixed_by_seed_and_never_in_training_data() -> None:
    a = heldout("lists", 3, 50)
    assert [t.prompt for t in a] == [t.prompt for t in heldout("lists", 3, 50)]
    assert len({t.prompt for t in a}) == 50
    train = training_text(Mix(["lists"], [3], n_tasks=2000, seed=0, heldout_n=50))
    prompts = {x.split("\n")[0] + "\n" for x in train}
    assert not prompts & {t.prompt for t in a}


def test_unknown_environments_and_levels_are_clear_errors() -> None:
    with pytest.raises(BadInput, match="no environment 'poker'"):
        get_env("poker")
    with pytest.raises(BadInput, match="no level 9"):
        get_env("arith").task(random.Random(0), 9)
