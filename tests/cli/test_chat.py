"""The ``shoal`` command, run as a user would: a real process, a real SHOAL_HOME."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal.memory.store import keywords

BOB = "Hi! My name is Bob and I live in Leeds."


def shoal(home: Path, *args: str, timeout: float = 180, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOAL_HOME": str(home), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, env=env, timeout=timeout, input=input
    )


def test_one_message_as_json_then_a_second_in_a_new_process_remembers(home: Path) -> None:
    first = shoal(home, "chat", "--message", BOB, "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert {"conversation", "reply", "thoughts", "memories", "injections"} <= set(data)
    assert data["reply"].strip()
    assert data["thoughts"] and all({"bot", "text"} <= set(t) for t in data["thoughts"])
    texts = " ".join(m["text"] for m in data["memories"])
    assert "Bob" in texts and "Leeds" in texts
    for m in data["memories"]:
        assert m["source"] == data["turn"] and keywords(m["text"]) <= keywords(BOB)

    second = shoal(home, "chat", "--conversation", data["conversation"], "--message", "Where do I live?", "--json")
    assert second.returncode == 0, second.stderr
    data2 = json.loads(second.stdout)
    assert data2["conversation"] == data["conversation"]
    assert "Leeds" in {m["value"] for m in data2["recalled"]}
    db = sqlite3.connect(home / "shoal.db")
    rows = db.execute(
        "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", (data["conversation"],)
    ).fetchall()
    db.close()
    assert rows[0] == ("user", BOB) and rows[2] == ("user", "Where do I live?")


def test_a_malformed_config_names_the_file_line_and_field(home: Path) -> None:
    cfg = home / "shoal.toml"
    assert shoal(home, "config", "init").returncode == 0
    text = cfg.read_text().replace("history = 12", "history = -3", 1)
    cfg.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "history = -3" in l)
    out = shoal(home, "chat", "--message", "hi", "--json")
    assert out.returncode == 2
    assert f"{cfg}:{line}" in out.stderr and "bots.0.history" in out.stderr
    assert "Traceback" not in out.stderr
    out = shoal(home, "config", "check")
    assert out.returncode == 2 and f"{cfg}:{line}" in out.stderr


def test_an_unknown_conversation_is_a_clear_error(home: Path) -> None:
    out = shoal(home, "chat", "--conversation", "01NOPE", "--message", "hi", "--json")
    assert out.returncode == 1 and "no conversation '01NOPE'" in out.stderr and "Traceback" not in out.stderr


def test_killing_the_process_mid_reply_loses_no_acknowledged_message(home: Path, test_config_text: str) -> None:
    # a reply long enough to be killed in the middle of
    (home / "shoal.toml").write_text(
        test_config_text.replace('max_tokens = 48\nhistory = 8', "max_tokens = 400\nmin_tokens = 400\nhistory = 8")
    )
    env = {**os.environ, "SHOAL_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "chat", "--message", "Tell me a long story about the sea."],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db_path = home / "shoal.db"
    deadline = time.monotonic() + 120
    started = False
    while time.monotonic() < deadline and not started:
        time.sleep(0.1)
        if db_path.exists():
            try:
                db = sqlite3.connect(db_path, timeout=5)
                started = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'reply.start'").fetchone()[0] > 0
                db.close()
            except sqlite3.OperationalError:
                pass
    assert started, "the reply never started"
    time.sleep(2)  # in the middle of its 400 tokens
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    db = sqlite3.connect(db_path)
    (conv,) = db.execute("SELECT id FROM conversations").fetchone()
    users = db.execute("SELECT content FROM messages WHERE role = 'user'").fetchall()
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert users == [("Tell me a long story about the sea.",)]

    # the conversation carries on after the crash
    (home / "shoal.toml").write_text(test_config_text)
    out = shoal(home, "chat", "--conversation", conv, "--message", "Hello again.", "--json")
    assert out.returncode == 0, out.stderr
    db = sqlite3.connect(db_path)
    contents = [r[0] for r in db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id")]
    db.close()
    assert contents == ["Tell me a long story about the sea.", "Hello again."]


def test_interactive_chat_answers_at_a_prompt(home: Path) -> None:
    out = shoal(home, "chat", input="Hello there!\n/thinking\n/memories\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert "you ›" in out.stdout and "shoal" in out.stdout and "headspace" in out.stdout
    assert "resume later with: shoal chat -c" in out.stdout


def test_bots_list_and_config_commands(home: Path) -> None:
    out = shoal(home, "bots", "list")
    assert out.returncode == 0 and "conversation" in out.stdout and "thinker" in out.stdout and "routing" in out.stdout
    assert shoal(home, "config", "path").stdout.strip() == str(home / "shoal.toml")
    assert shoal(home, "config", "init").returncode == 0
    again = shoal(home, "config", "init")
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.parametrize("args", [["--json"], ["chat", "--json"]])
def test_usage_errors_are_reported_without_a_traceback(home: Path, args: list[str]) -> None:
    out = shoal(home, *args)
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_memory_commands_list_search_forget_export(home: Path) -> None:
    first = json.loads(shoal(home, "chat", "--message", BOB, "--json").stdout)
    listing = shoal(home, "memory", "list", "--kind", "fact")
    assert listing.returncode == 0 and "Bob" in listing.stdout and "Leeds" in listing.stdout
    found = shoal(home, "memory", "search", "which city")
    assert found.returncode == 0 and "Leeds" in found.stdout
    rows = [json.loads(line) for line in shoal(home, "memory", "export").stdout.splitlines()]
    leeds = next(r for r in rows if r["value"] == "Leeds")
    assert leeds["source_messages"][0]["content"] == BOB and leeds["sources"] == [first["turn"]]
    gone = shoal(home, "memory", "forget", leeds["id"])
    assert gone.returncode == 0 and "memory_fts" in gone.stdout and "memory_vec" in gone.stdout
    assert leeds["id"] not in shoal(home, "memory", "export").stdout
    again = shoal(home, "memory", "forget", leeds["id"])
    assert again.returncode == 1 and "no memory" in again.stderr
