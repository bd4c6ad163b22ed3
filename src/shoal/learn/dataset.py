"""A person's conversations → a chat-format JSONL dataset.

One example per judged reply: the instruction the bot was under (its own
plus the conversation's evolving lines in force at that moment), the history
window it saw, and the target — the reply itself when rated good, the
person's correction when they wrote one. Replies rated bad and not corrected
are left out. Earlier replies inside a window are shown as corrected too: the
model learns from what the person wanted, not from what it said.

A reply the person had written again (status ``replaced``) is never a target
(unless they corrected it: the correction is their words, not the model's) and
never part of a history window; it is listed under ``rejected`` of the examples
whose target answers the same message — a preference pair a trainer may use.

Privacy: only the person's own verdicts on replies to their own messages, and
only as far as ``memory.consent`` allows — ``never``: nothing; ``ask``: only
replies the person explicitly rated or corrected (the act of judging is the
consent); ``always``: the same, plus unrated replies when asked for.

Validation is split *by conversation* (a conversation's turns are never on
both sides) with a stable hash, so adding data does not reshuffle the split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.config import ShoalConfig as Config
from shoal.errors import BadInput
from shoal.store.conversations import User
from shoal.store.db import Conn, Database

#: most messages of history before the reply (the bot's own `history` bounds it too)
DEFAULT_WINDOW = 6


@dataclass
class DatasetCounts:
    conversations: int = 0
    good: int = 0
    corrected: int = 0
    bad_left_out: int = 0
    #: replies the person had written again, left out as targets
    replaced_left_out: int = 0
    #: examples that carry at least one rejected alternative
    with_rejected: int = 0
    unrated: int = 0
    duplicates: int = 0
    train: int = 0
    val: int = 0
    train_conversations: int = 0
    val_conversations: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Dataset:
    examples: list[dict[str, Any]] = field(default_factory=list)
    counts: DatasetCounts = field(default_factory=DatasetCounts)

    def split(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.examples if e["split"] == name]

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for e in self.examples:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _rows(c: Conn, user_id: str, bots: list[str], include_unrated: bool) -> list[Any]:
    marks = ",".join("?" * len(bots))
    judged = (
        "SELECT m.*, f.rating, f.correction, a.user_id AS asked_by FROM learn_feedback f"
        " JOIN messages m ON m.id = f.message_id"
        " LEFT JOIN messages a ON a.id = m.reply_to"
        f" WHERE f.user_id = ? AND m.role = 'assistant' AND m.bot IN ({marks})"
    )
    rows = list(c.execute(judged, (user_id, *bots)))
    if include_unrated:
        unrated = (
            "SELECT m.*, NULL AS rating, NULL AS correction, a.user_id AS asked_by FROM messages m"
            " JOIN conversations cv ON cv.id = m.conversation_id"
            " LEFT JOIN messages a ON a.id = m.reply_to"
            f" WHERE cv.user_id = ? AND m.role = 'assistant' AND m.bot IN ({marks}) AND m.status = 'complete'"
            " AND m.id NOT IN (SELECT message_id FROM learn_feedback WHERE user_id = ?)"
        )
        rows += list(c.execute(unrated, (user_id, *bots, user_id)))
    return rows


def _owner_ok(c: Conn, row: Any, user_id: str) -> bool:
    """Only replies to this person: their own conversation, or in a room a reply to their message."""
    conv = c.execute(
        "SELECT c.user_id, r.name AS room FROM conversations c LEFT JOIN rooms r ON r.conversation_id = c.id WHERE c.id = ?",
        (row["conversation_id"],),
    ).fetchone()
    if conv is None:
        return False
    if conv["room"] is not None:
        return bool(row["asked_by"] == user_id)
    return bool(conv["user_id"] == user_id)


def _instruction(c: Conn, base: str, conversation: str, at: float) -> str:
    """The bot's instruction plus the conversation's evolving lines in force at ``at``."""
    row = c.execute(
        "SELECT text FROM instruction_versions WHERE conversation_id = ? AND created_at <= ? ORDER BY version DESC LIMIT 1",
        (conversation, at),
    ).fetchone()
    parts = [base or "You are a helpful assistant."]
    if row and row["text"]:
        parts.append(row["text"])
    return "\n".join(parts)


def _window(c: Conn, reply: Any, user_id: str, size: int) -> list[dict[str, str]]:
    rows = c.execute(
        "SELECT m.id, m.role, m.content, f.correction FROM messages m"
        " LEFT JOIN learn_feedback f ON f.message_id = m.id AND f.user_id = ?"
        " WHERE m.conversation_id = ? AND m.id < ? AND m.role IN ('user', 'assistant') AND m.status != 'replaced'"
        " ORDER BY m.id DESC LIMIT ?",
        (user_id, reply["conversation_id"], reply["id"], size),
    ).fetchall()
    out = []
    for r in reversed(rows):
        text = r["correction"] or r["content"]
        if text:
            out.append({"role": r["role"], "content": text})
    # a window starts with the person speaking (a cut-off reply first would teach nothing)
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out


def _rejected(c: Conn, reply: Any, target: str) -> list[str]:
    """The replies the person had written again in answer to the same message (oldest first)."""
    if not reply["reply_to"]:
        return []
    rows = c.execute(
        "SELECT content FROM messages WHERE reply_to = ? AND role = 'assistant' AND status = 'replaced'"
        " AND id != ? AND content != '' ORDER BY id",
        (reply["reply_to"], reply["id"]),
    ).fetchall()
    return list(dict.fromkeys(r["content"] for r in rows if r["content"] != target))


def build_dataset(
    db_conn: Conn,
    config: Config,
    user: User,
    *,
    bot: str | None = None,
    window: int = DEFAULT_WINDOW,
    val_fraction: float = 0.2,
    include_unrated: bool = False,
) -> Dataset:
    """The dataset of ``user``'s judged replies (see the module docstring for what is kept)."""
    consent = config.memory.consent
    if consent == "never":
        raise BadInput(
            "memory.consent is 'never': shoal keeps nothing about you, so it learns nothing from your conversations",
            hint='set memory.consent = "ask" or "always" in shoal.toml to let shoal learn from replies you rate',
        )
    if include_unrated and consent != "always":
        raise BadInput(
            f"memory.consent is '{consent}': only replies you rated or corrected may be learned from",
            hint="drop --include-unrated, or set memory.consent = \"always\"",
        )
    if bot is not None:
        bc = config.bot(bot)
        bots = [bc]
    else:
        bots = list(config.bots_with_role("conversation")) or list(config.bots)
    by_name = {b.name: b for b in bots}
    ds = Dataset()
    seen: dict[str, dict[str, Any]] = {}
    for row in _rows(db_conn, user.id, list(by_name), include_unrated):
        if not _owner_ok(db_conn, row, user.id):
            continue
        if row["correction"]:
            target, source = row["correction"], "corrected"
            ds.counts.corrected += 1
        elif row["status"] == "replaced":
            ds.counts.replaced_left_out += 1
            continue
        elif row["rating"] == "good" and row["status"] == "complete" and row["content"]:
            target, source = row["content"], "good"
            ds.counts.good += 1
        elif row["rating"] == "bad":
            ds.counts.bad_left_out += 1
            continue
        elif row["rating"] is None and include_unrated and row["content"]:
            target, source = row["content"], "unrated"
            ds.counts.unrated += 1
        else:
            continue
        bc = by_name[row["bot"]]
        history = _window(db_conn, row, user.id, max(1, min(window, bc.history or window)))
        if not history:
            continue
        messages = [{"role": "system", "content": _instruction(db_conn, bc.instruction, row["conversation_id"], row["created_at"])}]
        messages += history + [{"role": "assistant", "content": target}]
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        example = {
            "messages": messages,
            "bot": bc.name,
            "conversation": row["conversation_id"],
            "message": row["id"],
            "source": source,
            "key": key,
            "rejected": _rejected(db_conn, row, target),
        }
        if key in seen:
            ds.counts.duplicates += 1
            # the newest verdict wins (a correction made later replaces a 👍)
            if source == "corrected":
                seen[key] = example
            continue
        seen[key] = example
    examples = list(seen.values())
    ds.counts.with_rejected = sum(1 for e in examples if e["rejected"])
    conversations = sorted({e["conversation"] for e in examples}, key=_stable)
    n_val = 0
    if len(conversations) >= 2 and val_fraction > 0:
        n_val = max(1, round(val_fraction * len(conversations)))
    val = set(conversations[:n_val])
    for e in examples:
        e["split"] = "val" if e["conversation"] in val else "train"
    examples.sort(key=lambda e: (e["conversation"], e["message"]))
    ds.examples = examples
    ds.counts.conversations = len(conversations)
    ds.counts.train = sum(1 for e in examples if e["split"] == "train")
    ds.counts.val = len(examples) - ds.counts.train
    ds.counts.val_conversations = len(val)
    ds.counts.train_conversations = len(conversations) - len(val)
    return ds


async def dataset_for(db: Database, config: Config, user: User, **kw: Any) -> Dataset:
    """:func:`build_dataset` on a reader thread of ``db``."""
    return await db.read(lambda c: build_dataset(c, config, user, **kw))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Examples from a dataset file, with a clear error for a missing, empty or malformed one."""
    if not path.is_file():
        raise BadInput(f"no dataset at {path}", hint="build one with `shoal learn dataset`")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            msgs = e["messages"]
            assert isinstance(msgs, list) and msgs and msgs[-1]["role"] == "assistant"
            assert all(isinstance(m["content"], str) and m["role"] in ("system", "user", "assistant") for m in msgs)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise BadInput(
                f"{path}:{i}: not a chat example (want {{\"messages\": [..., {{\"role\": \"assistant\", ...}}]}})",
                hint="rebuild it with `shoal learn dataset`",
            ) from None
        e.setdefault("split", "train")
        out.append(e)
    if not out:
        raise BadInput(
            f"the dataset {path} is empty: there is nothing to learn from",
            hint="rate replies with /good or /bad in `shoal chat` (or 👍/👎 in the UI), correct some with /fix, "
            "then run `shoal learn dataset` again",
        )
    return out
