from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal.errors import BadInput, ConfigError, NotFound
from shoal.ulm import checkpoint
from shoal.ulm.recipe import builtin_recipes, load_recipe, parse_recipe
from shoal.ulm.train import lr_at, train
from tests.ulm.conftest import TINY

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_every_builtin_recipe_parses() -> None:
    assert {"smoke", "char", "harness"} <= set(builtin_recipes())
    for name in builtin_recipes():
        assert load_recipe(name).name == name
    char = load_recipe("char")  # nanoGPT's CPU recipe, kept as published
    assert (char.model.n_layer, char.model.n_head, char.model.n_embd, char.model.block_size) == (4, 4, 128, 64)
    assert (char.train.batch_size, char.train.iters) == (12, 2000)


def test_unknown_recipe_keys_name_the_field() -> None:
    with pytest.raises(ConfigError, match="model.n_layers.*unknown key"):
        parse_recipe('name = "x"\n[model]\nn_layers = 3\n')
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe("no-such-recipe")


def test_the_schedule_warms_up_then_decays_to_min_lr(tiny_recipe) -> None:
    r = tiny_recipe
    assert lr_at(0, r) < lr_at(r.train.warmup, r)
    assert lr_at(r.train.iters, r) == pytest.approx(r.train.min_lr)


def test_training_lowers_the_loss_and_leaves_weights_json_and_curves(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "ckpt.json").read_text())
    assert meta["iter"] == 40 and meta["tokenizer_kind"] == "bpe"
    hist = meta["history"]
    assert len(hist) == 2 and hist[-1]["val"] < 5.77  # below uniform over 320 tokens (ln 320)
    assert (tiny_run / "loss.png").stat().st_size > 1000
    loaded = checkpoint.load(tiny_run)
    assert loaded.model.n_params() == meta["n_params"]


def test_training_resumes_from_the_last_checkpoint_after_kill_9(tmp_path: Path, corpus_cache: Path) -> None:
    recipe = tmp_path / "slow.toml"
    recipe.write_text(TINY.replace("iters = 40", "iters = 100000").replace("ckpt_every = 10", "ckpt_every = 5"))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "SHOAL_HOME": str(tmp_path / "home")}
    (tmp_path / "home" / "ulm").mkdir(parents=True)
    (tmp_path / "home" / "ulm" / "corpus").symlink_to(corpus_cache)
    log = tmp_path / "train.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "ulm", "train", str(recipe), "--out", str(run), "--nice", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=fh,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run / "ckpt.json").exists() and json.loads((run / "ckpt.json").read_text())["iter"] >= 10:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = checkpoint.read_meta(run)["iter"]
    # the live record still says "running", but its trainer is dead: a reader sees an interrupted run
    from shoal.ulm.runs import summary

    assert json.loads((run / "progress.json").read_text())["state"] == "running"
    assert summary(run)["state"] == "interrupted"
    r = parse_recipe(TINY.replace("iters = 40", f"iters = {killed_at + 10}"))
    res = train(r, run, cache=corpus_cache)
    assert res.resumed_from == killed_at and checkpoint.read_meta(run)["iter"] == killed_at + 10
    # the curve goes on from the checkpoint: no step twice, none lost after it
    steps = [s[0] for s in json.loads((run / "progress.json").read_text())["steps"]]
    assert steps == sorted(set(steps)) and steps[-10:] == list(range(killed_at + 1, killed_at + 11))
    assert summary(run)["state"] == "finished"


def test_progress_json_follows_the_run_while_it_trains(tmp_path: Path, corpus_cache: Path) -> None:
    seen: list[dict] = []  # type: ignore[type-arg]

    def on_step(step: dict) -> None:  # type: ignore[type-arg]
        seen.append(json.loads((tmp_path / "run" / "progress.json").read_text()))

    train(parse_recipe(TINY.replace("iters = 40", "iters = 12")), tmp_path / "run", cache=corpus_cache, on_step=on_step)
    assert len(seen) == 12 and all(p["state"] == "running" and p["pid"] == os.getpid() for p in seen)
    assert [p["iter"] for p in seen] == sorted(p["iter"] for p in seen) and seen[0]["iter"] == 1
    assert all(p["steps"][-1][0] == p["iter"] for p in seen) and seen[-1]["iter"] == 12  # the last step is always written
    done = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert done["state"] == "finished" and [s[0] for s in done["steps"]] == list(range(1, 13))
    assert done["evals"][-1]["iter"] == 12 and done["eta_s"] == 0


def test_a_long_run_is_thinned_to_a_few_hundred_points_not_cut(tmp_path: Path) -> None:
    from shoal.ulm.train import LIVE_POINTS, LiveProgress, read_progress

    live = LiveProgress(tmp_path, 5000, 0)
    for it in range(1, 5001):
        live.step(it, 10.0 / it, 100.0, 0.01, [])
    got = read_progress(tmp_path)
    assert got is not None and len(got["steps"]) <= LIVE_POINTS
    assert got["steps"][0][0] <= 16 and got["steps"][-1][0] == 5000 and got["iter"] == 5000


def test_a_corrupt_checkpoint_or_a_foreign_tokenizer_is_a_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from shoal.ulm.tokenizer import byte_tokenizer

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput, match="corrupt"):
        checkpoint.load(broken)
    (broken / "ckpt.json").write_text("{")
    with pytest.raises(BadInput, match="corrupt"):
        checkpoint.load(broken)
    other = byte_tokenizer().save(tmp_path / "other.json")
    with pytest.raises(BadInput, match="does not match the checkpoint"):
        checkpoint.load(tiny_run, tokenizer=other)
    with pytest.raises(NotFound):
        checkpoint.read_meta(tmp_path)


def test_a_run_of_another_shape_is_not_resumed_silently(tiny_run: Path, tmp_path: Path, corpus_cache: Path) -> None:
    import shutil

    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    with pytest.raises(BadInput, match="another shape"):
        train(parse_recipe(TINY.replace("n_embd = 32", "n_embd = 16")), run, cache=corpus_cache)


def test_the_cli_lists_samples_and_rejects_unknown_runs(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.cli import _register, app

    _register()
    monkeypatch.setenv("SHOAL_HOME", str(tiny_run.parents[2]))
    runner = CliRunner()
    listed = runner.invoke(app, ["ulm", "list"])
    assert listed.exit_code == 0 and "tiny" in listed.output and "40/40" in listed.output
    sampled = runner.invoke(app, ["ulm", "sample", "tiny", "-p", "KING", "-n", "20"])
    assert sampled.exit_code == 0 and sampled.output.startswith("KING")
    missing = runner.invoke(app, ["ulm", "sample", "nope"])
    assert isinstance(missing.exception, NotFound)


def test_the_ulm_config_section_is_strict_and_training_threads_fit_the_budget() -> None:
    from shoal.config import parse_config
    from shoal.engine.cpu import BUDGET
    from shoal.ulm.train import default_threads

    cfg = parse_config('[ulm]\nsolver_run = "harness"\nsolver_bots = ["thinker"]\n')
    assert cfg.ulm.solver_run == "harness" and cfg.ulm.samples == 8
    with pytest.raises(ConfigError, match="solver"):
        parse_config("[ulm]\nsolvers = 3\n")
    assert 1 <= default_threads() <= BUDGET.cores
