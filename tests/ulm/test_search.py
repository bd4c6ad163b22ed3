"""Search at inference and the closed loop, on a µLM trained in the session (one-digit arithmetic with a calculator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.errors import BadInput
from shoal.ulm import checkpoint
from shoal.ulm.harness import heldout
from shoal.ulm.improve import improve
from shoal.ulm.search import rollout, solve


def test_rollouts_call_the_calculator_and_the_harness_writes_the_result(arith_run: Path) -> None:
    loaded = checkpoint.load(arith_run)
    [c] = rollout(loaded.model, loaded.tokenizer, ["Q: 7*8\n"])
    assert c.text.startswith("<calc>7*8</calc>=56\n") and c.text.endswith("A: 56\n")
    assert 0 < c.tokens < len(loaded.tokenizer.encode(c.text))  # "=56\n" came from the tool, not the model


def test_best_of_n_is_scored_by_the_verifier_against_greedy_in_the_same_run(arith_run: Path) -> None:
    loaded = checkpoint.load(arith_run)
    rep = solve(loaded.model, loaded.tokenizer, heldout("arith", 1, 20), n=4)
    assert rep.tasks == 20 and rep.n == 4
    assert rep.best_of_n >= rep.pass_at_1 >= 0.5  # the model learned the protocol
    assert rep.best_of_n >= rep.sample_rate
    assert rep.examples and all(len(e["candidates"]) == 4 for e in rep.examples)


def test_the_closed_loop_writes_its_rounds_and_a_servable_checkpoint(arith_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "improved"
    rounds = improve(arith_run, out, env="arith", level=1, rounds=1, tasks_per_round=10, n=2, heldout_n=10, iters=5)
    assert [r.round for r in rounds] == [0, 1] and rounds[1].tried == 20
    assert json.loads((out / "improve.json").read_text())[0]["round"] == 0
    assert (out / "improve.png").exists()
    assert checkpoint.load(out).meta["improve_target"] == {"env": "arith", "level": 1}


def test_the_loop_refuses_a_level_the_world_does_not_have(arith_run: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no level 7"):
        improve(arith_run, tmp_path / "x", env="arith", level=7, rounds=1)


async def test_the_engine_decodes_n_samples_of_one_goal_with_the_calculator(arith_run: Path) -> None:
    from shoal.ulm.export import export
    from shoal.ulm.harness.base import Task
    from shoal.ulm.swarm import engine_candidates

    gguf = export(arith_run)
    tok = checkpoint.load(arith_run).tokenizer
    task = Task("arith", 1, "Q: 7*8\n", "56", "")
    greedy = await engine_candidates(gguf, tok, task, n=1, temperature=0.0)
    assert greedy[0].text == "<calc>7*8</calc>=56\nA: 56\n" and greedy[0].verdict and greedy[0].verdict.ok
    cands = await engine_candidates(gguf, tok, task, n=4, temperature=1.0)
    assert len(cands) == 4 and all(c.verdict is not None for c in cands)
    assert any(c.verdict.ok for c in cands if c.verdict)


def test_the_cli_compares_greedy_and_best_of_n_in_torch_and_in_the_engine(arith_run: Path) -> None:
    from typer.testing import CliRunner

    from shoal.cli import _register, app

    _register()
    runner = CliRunner()
    torch_run = runner.invoke(app, ["ulm", "swarm", str(arith_run), "--env", "arith", "--level", "1", "--n", "2", "--tasks", "4"])
    assert torch_run.exit_code == 0, torch_run.output
    assert "pass@1" in torch_run.output and "best-of-2" in torch_run.output
    engine_run = runner.invoke(
        app, ["ulm", "swarm", str(arith_run), "--env", "arith", "--level", "1", "--n", "2", "--tasks", "2", "--engine"]
    )
    assert engine_run.exit_code == 0, engine_run.output
    assert "engine, 2 tasks" in engine_run.output
    unknown = runner.invoke(app, ["ulm", "swarm", str(arith_run), "--env", "poker"])
    assert isinstance(unknown.exception, BadInput)


def test_the_loop_can_search_and_measure_in_the_engine(arith_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "improved-engine"
    rounds = improve(arith_run, out, env="arith", level=1, rounds=1, tasks_per_round=6, n=2, heldout_n=6, iters=3, engine=True)
    assert [r.round for r in rounds] == [0, 1] and rounds[0].heldout_pass_at_1 >= 0.5
    assert (out / "model.gguf").exists() and checkpoint.load(out).meta["improve_target"]["env"] == "arith"


def test_fine_tuning_packs_whole_traces_into_rows_and_teaches_only_the_solutions() -> None:
    from shoal.ulm.improve import _packed_batch

    docs = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]
    plens = [2, 1, 3]
    x, y, used = _packed_batch(docs, plens, [0, 1, 0, 2], rows=2, block=8)
    assert used == 3  # doc 2 (9 positions) fits in no row of 8 beside another
    assert x[0].tolist() == [1, 2, 3, 4, 6, 7, 0, 0] and x[1].tolist() == [1, 2, 3, 4, 0, 0, 0, 0]
    # targets: the prompt's tokens are not taught (doc 0's prompt is [1, 2]: its first target, 2, is masked)
    assert y[0].tolist() == [-1, 3, 4, 5, 7, 8, -1, -1] and y[1].tolist() == [-1, 3, 4, 5, -1, -1, -1, -1]
    x, y, used = _packed_batch(docs, plens, [2], rows=1, block=8)
    assert used == 1 and x[0].tolist() == [9, 10, 11, 12, 13, 14, 15, 16]  # a long trace alone is cut at the block
    assert y[0].tolist() == [-1, -1, 12, 13, 14, 15, 16, 17]
