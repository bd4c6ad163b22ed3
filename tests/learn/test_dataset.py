"""Feedback on replies and the dataset built from it: real SQLite, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.config import parse_config
from shoal.errors import BadInput, NotFound, PermissionDenied
from shoal.learn.dataset import build_dataset, read_jsonl
from shoal.learn.feedback import FeedbackStore

from ..conftest import TEST_CONFIG
from .conftest import converse, open_store


def config(consent: str = "always"):  # type: ignore[no-untyped-def]
    return parse_config(TEST_CONFIG + f'\n[memory]\nconsent = "{consent}"\n')


async def test_a_person_rates_and_corrects_only_replies_they_may_see(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "shoal.db")
    ana, bob = await store.ensure_user("ana"), await store.ensure_user("bob")
    fb = FeedbackStore(db)
    (reply,) = await converse(store, ana, [("capital of France?", "The capital of France is Paris, a lovely city.")])
    first = await fb.rate(reply, ana, rating="good")
    assert first.rating == "good" and first.correction is None
    both = await fb.rate(reply, ana, correction="Paris.")
    assert both.rating == "good" and both.correction == "Paris."  # a correction keeps the rating
    # bob cannot see ana's conversation: her reply is "missing" for him, and nothing changes
    with pytest.raises(NotFound):
        await fb.rate(reply, bob, rating="bad")
    with pytest.raises(NotFound):
        await fb.get(reply, bob)
    assert (await fb.get(reply, ana)).rating == "good"  # type: ignore[union-attr]
    assert await fb.of_user(bob.id) == []
    # only replies can be rated
    conv = (await store.get_message(reply)).conversation_id
    user_msg = (await store.history(conv, limit=5))[0]
    with pytest.raises(BadInput):
        await fb.rate(user_msg.id, ana, rating="good")
    # in a room, only the person a reply answers may judge it
    room = await store.create_room("lounge", ana.id, [bob.id])
    asked = await store.add_message(room.id, "user", "hi from bob", user_id=bob.id)
    answer = await store.add_message(room.id, "assistant", "hi bob", bot="conversation", reply_to=asked.id)
    with pytest.raises(PermissionDenied):
        await fb.rate(answer.id, ana, rating="bad")
    assert (await fb.rate(answer.id, bob, rating="good")).rating == "good"
    # deleting the reply deletes the verdict on it
    await db.write(lambda c: c.execute("DELETE FROM messages WHERE id = ?", (reply,)))
    assert [f.message_id for f in await fb.of_user(ana.id)] == []
    await db.close()


async def test_the_dataset_keeps_good_and_corrected_replies_leaves_bad_ones_out_and_splits_by_conversation(
    tmp_path: Path,
) -> None:
    db, store = await open_store(tmp_path / "shoal.db")
    ana, bob = await store.ensure_user("ana"), await store.ensure_user("bob")
    fb = FeedbackStore(db)
    convs = []
    for i in range(5):
        ids = await converse(
            store, ana,
            [(f"question {i}a?", f"A long winded answer {i}a."), (f"question {i}b?", f"Answer {i}b."), (f"question {i}c?", "junk")],
        )
        convs.append(ids)
        await fb.rate(ids[0], ana, rating="bad")
        await fb.rate(ids[0], ana, correction=f"{i}a.")  # a bad reply with a correction is a lesson
        await fb.rate(ids[1], ana, rating="good")
        await fb.rate(ids[2], ana, rating="bad")  # left out
    # bob's own data never enters ana's dataset
    (bobs,) = [await converse(store, bob, [("bob asks", "bob's answer")])]
    await fb.rate(bobs[0], bob, rating="good")
    # an instruction line that evolved after the replies is not what they were told
    conv0 = (await store.get_message(convs[0][0])).conversation_id
    await store.add_instruction_version(conv0, "The user likes short answers.", reason="test", source="test")

    ds = await db.read(lambda c: build_dataset(c, config(), ana, val_fraction=0.2))
    c = ds.counts
    assert (c.corrected, c.good, c.bad_left_out, c.conversations) == (5, 5, 5, 5)
    assert c.train + c.val == 10 and c.val_conversations == 1 and c.val == 2
    texts = json.dumps(ds.examples)
    assert "bob" not in texts and "junk" not in texts
    by_msg = {e["message"]: e for e in ds.examples}
    corrected = by_msg[convs[0][0]]
    assert corrected["source"] == "corrected" and corrected["messages"][-1] == {"role": "assistant", "content": "0a."}
    assert corrected["messages"][0]["role"] == "system" and "friendly assistant" in corrected["messages"][0]["content"]
    # the later good reply sees the corrected earlier reply in its window
    later = by_msg[convs[0][1]]["messages"]
    assert [m["role"] for m in later] == ["system", "user", "assistant", "user", "assistant"]
    assert later[2]["content"] == "0a." and "short answers" not in later[0]["content"]
    # a conversation's examples sit on one side of the split
    sides: dict[str, set[str]] = {}
    for e in ds.examples:
        sides.setdefault(e["conversation"], set()).add(e["split"])
    assert all(len(s) == 1 for s in sides.values())
    # the split is stable: built again, the same conversations are held out
    again = await db.read(lambda c: build_dataset(c, config(), ana, val_fraction=0.2))
    assert [e["split"] for e in again.examples] == [e["split"] for e in ds.examples]
    # the file round-trips
    path = ds.write(tmp_path / "ds.jsonl")
    assert len(read_jsonl(path)) == 10
    await db.close()


async def test_each_example_carries_the_instruction_in_force_when_the_reply_was_written(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "shoal.db")
    ana = await store.ensure_user("ana")
    fb = FeedbackStore(db)
    conv = await store.create_conversation(ana.id)
    ids = []
    for i, said in enumerate(["first?", "second?"]):
        if i == 1:
            await store.add_instruction_version(conv.id, "The user likes short answers.", reason="t", source="t")
        m = await store.add_message(conv.id, "user", said, user_id=ana.id)
        ids.append((await store.add_message(conv.id, "assistant", f"reply {i}", bot="conversation", reply_to=m.id)).id)
        await fb.rate(ids[-1], ana, rating="good")
    ds = await db.read(lambda c: build_dataset(c, config(), ana))
    systems = {e["message"]: e["messages"][0]["content"] for e in ds.examples}
    assert "short answers" not in systems[ids[0]] and "short answers" in systems[ids[1]]
    await db.close()


async def test_duplicates_are_counted_once(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "shoal.db")
    ana = await store.ensure_user("ana")
    fb = FeedbackStore(db)
    for _ in range(2):  # the same exchange in two conversations is one example
        (rid,) = await converse(store, ana, [("hello?", "Hello!")])
        await fb.rate(rid, ana, rating="good")
    ds = await db.read(lambda c: build_dataset(c, config(), ana))
    assert ds.counts.duplicates == 1 and len(ds.examples) == 1
    await db.close()


async def test_consent_decides_what_may_be_learned(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "shoal.db")
    ana = await store.ensure_user("ana")
    fb = FeedbackStore(db)
    rated, unrated = await converse(store, ana, [("one?", "One."), ("two?", "Two.")])
    await fb.rate(rated, ana, rating="good")
    with pytest.raises(BadInput, match="consent is 'never'"):
        await db.read(lambda c: build_dataset(c, config("never"), ana))
    with pytest.raises(BadInput, match="only replies you rated"):
        await db.read(lambda c: build_dataset(c, config("ask"), ana, include_unrated=True))
    asked = await db.read(lambda c: build_dataset(c, config("ask"), ana))
    assert [e["message"] for e in asked.examples] == [rated]
    everything = await db.read(lambda c: build_dataset(c, config("always"), ana, include_unrated=True))
    assert {e["message"] for e in everything.examples} == {rated, unrated}
    await db.close()


def test_an_empty_or_malformed_dataset_file_gets_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInput, match="empty"):
        read_jsonl(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(BadInput, match="bad.jsonl:1"):
        read_jsonl(bad)
    with pytest.raises(BadInput, match="no dataset"):
        read_jsonl(tmp_path / "missing.jsonl")
