"""`shoal learn …` and `/good` `/bad` `/fix` in `shoal chat`, as a person runs them (real processes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from shoal.learn.feedback import FeedbackStore
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database

from ..cli.test_chat import shoal
from ..conftest import TEST_CONFIG
from .conftest import converse, run_async


def seed(home: Path) -> None:
    async def go() -> None:
        db = await Database(home / "shoal.db").open()
        store = ConversationStore(db)
        me = await store.ensure_user("local", is_admin=True)
        fb = FeedbackStore(db)
        for i in range(3):
            a, b = await converse(store, me, [(f"q{i}?", f"long answer {i}"), (f"r{i}?", f"fine {i}")])
            await fb.rate(a, me, correction=f"A{i}.")
            await fb.rate(b, me, rating="bad")
        await db.close()

    run_async(go)


def test_dataset_status_promote_and_rollback_say_clearly_what_they_did(home: Path) -> None:
    (home / "shoal.toml").write_text(TEST_CONFIG)
    seed(home)
    out = shoal(home, "learn", "dataset", "--val", "0.34")
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert (counts["corrected"], counts["bad_left_out"], counts["train"] + counts["val"]) == (3, 3, 3)
    assert counts["val_conversations"] == 1
    lines = Path(counts["path"]).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["messages"][-1]["role"] == "assistant" for line in lines)

    status = shoal(home, "learn", "status")
    assert status.returncode == 0 and "base model" in status.stdout
    for args, words in (
        (("learn", "rollback"), "nothing to roll back"),
        (("learn", "promote"), "no trained adapters"),
        (("learn", "status", "--bot", "nobody"), "nobody"),
    ):
        bad = shoal(home, *args)
        assert bad.returncode in (1, 2) and words in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)

    empty = home / "empty.jsonl"
    empty.write_text("")
    bad = shoal(home, "learn", "train", "--dataset", str(empty))
    assert bad.returncode == 2 and "empty" in bad.stderr and "Traceback" not in bad.stderr


def test_consent_never_means_no_dataset(home: Path) -> None:
    (home / "shoal.toml").write_text(TEST_CONFIG + '\n[memory]\nconsent = "never"\n')
    seed(home)
    out = shoal(home, "learn", "dataset")
    assert out.returncode == 2 and "consent is 'never'" in out.stderr and "Traceback" not in out.stderr


def test_good_bad_and_fix_in_shoal_chat_rate_the_last_reply(home: Path) -> None:
    # the conversation bot alone answers (no thinker to wait for): the test is about the commands
    (home / "shoal.toml").write_text(TEST_CONFIG.split("[routing]")[0] + "[routing]\nalways = []\n")
    script = "/good\nWhat is the capital of France?\n/bad\n/fix Paris.\n/fix\n/quit\n"
    out = shoal(home, "chat", input=script, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "no reply to rate yet" in out.stdout  # /good before anything was said
    assert "👎 recorded" in out.stdout and "correction recorded" in out.stdout and "/fix needs" in out.stdout
    db = sqlite3.connect(home / "shoal.db")
    rows = db.execute(
        "SELECT f.rating, f.correction, m.role FROM learn_feedback f JOIN messages m ON m.id = f.message_id"
    ).fetchall()
    db.close()
    assert rows == [("bad", "Paris.", "assistant")]


def test_again_in_shoal_chat_writes_the_last_reply_again_and_keeps_the_old_one(home: Path) -> None:
    (home / "shoal.toml").write_text(TEST_CONFIG.split("[routing]")[0] + "[routing]\nalways = []\n")
    script = "/again\nWhat is the capital of France?\n/again\n/good\n/quit\n"
    out = shoal(home, "chat", input=script, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "no reply to ask for again yet" in out.stdout  # /again before anything was said
    assert "kept as a rejected alternative" in out.stdout and "👍 recorded" in out.stdout
    db = sqlite3.connect(home / "shoal.db")
    replies = db.execute("SELECT id, status, reply_to FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()
    rated = db.execute("SELECT message_id, rating FROM learn_feedback").fetchall()
    db.close()
    (old, old_status, turn), (new, new_status, new_turn) = replies
    assert (old_status, new_status) == ("replaced", "complete") and turn == new_turn
    assert rated == [(new, "good")]  # /good rates the reply written in its place
