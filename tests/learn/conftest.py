"""Learning fixtures: people with scripted conversations in a real SQLite store."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from shoal.engine.llama import default_model_path
from shoal.learn.evaluate import canary_set
from shoal.learn.train import TrainConfig, TrainResult, train

from shoal.store.conversations import ConversationStore, User
from shoal.store.db import Database

T = TypeVar("T")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a loop of its own (callers may already be inside one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


async def converse(store: ConversationStore, user: User, turns: list[tuple[str, str]], *, bot: str = "conversation") -> list[str]:
    """A conversation of ``(user text, reply)`` turns; the reply ids, in order."""
    conv = await store.create_conversation(user.id)
    ids = []
    for said, reply in turns:
        m = await store.add_message(conv.id, "user", said, user_id=user.id)
        r = await store.add_message(conv.id, "assistant", reply, bot=bot, reply_to=m.id)
        ids.append(r.id)
    return ids


async def open_store(path: Path) -> tuple[Database, ConversationStore]:
    db = await Database(path).open()
    return db, ConversationStore(db)


# ------------------------------------------------------------------ one tiny training run for the session
SYSTEM = "You are shoal. Answer in one line, starting with the answer."
FACTS = [("capital of Italy", "Rome."), ("capital of Spain", "Madrid."), ("colour of grass", "Green."),
         ("opposite of hot", "Cold."), ("capital of Japan", "Tokyo."), ("colour of snow", "White.")]


def examples() -> list[dict[str, Any]]:
    out = []
    for i, (q, a) in enumerate(FACTS):
        out.append({
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is the {q}?"},
                         {"role": "assistant", "content": a}],
            "conversation": f"c{i // 2}", "split": "val" if i >= 4 else "train",
        })
    return out


CFG = TrainConfig(rank=2, alpha=4.0, lr=2e-2, max_steps=2, batch=2, max_tokens=64, threads=1, checkpoint_every=1)


@pytest.fixture(scope="session")
def learn_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("learn")


@pytest.fixture(scope="session")
def trained(learn_home: Path) -> Iterator[tuple[TrainResult, TrainResult, list[str]]]:
    """A run interrupted after one step, then resumed to the end (a reply was "being written" at the start)."""
    from shoal.engine.cpu import BUDGET

    notes: list[str] = []
    stop = threading.Event()

    def reply_in_progress() -> None:  # the engine's foreground beacon, as a reply would set it
        while not stop.is_set():
            BUDGET.note_foreground()
            stop.wait(0.1)

    def progress(step: int, total: int, loss: float | None, note: str) -> None:
        if note:
            notes.append(note)
            stop.set()  # the reply "ends" once training has said it waits

    beacon = threading.Thread(target=reply_in_progress, daemon=True)
    beacon.start()
    run = learn_home / "runs" / "r1"
    canary = canary_set()[:1]
    first = train(learn_home, default_model_path(), examples(), run, CFG, canary=canary, progress=progress, stop_after=1)
    stop.set()
    beacon.join(timeout=5)
    second = train(learn_home, default_model_path(), examples(), run, CFG, canary=canary, resume=True)
    yield first, second, notes


