"""The memory store on real SQLite + sqlite-vec + MiniLM embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.memory.store import MemoryStore, NewMemory, Weights, sign_codes
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database


#: vector channels only: what the binary first pass finds, without keywords or recency
VECTORS_ONLY = Weights(keyword=0, keyword_context=0, recency=0)


@pytest.fixture
async def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = await Database(tmp_path / "m.db").open()
    conv = ConversationStore(db)
    ana = await conv.ensure_user("ana")
    bob = await conv.ensure_user("bob")
    yield MemoryStore(db), ana.id, bob.id, db
    await db.close()


async def test_search_finds_by_meaning_not_only_by_words(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, _ = stores
    await mem.add_many(
        [
            NewMemory(ana, "raw", "I adopted a puppy last week and he chews everything.", sources=["m1"]),
            NewMemory(ana, "raw", "My sister works as an accountant in Glasgow.", sources=["m2"]),
            NewMemory(ana, "raw", "The weather was rainy all weekend.", sources=["m3"]),
        ]
    )
    [top] = await mem.search(ana, "Does she have a dog?", limit=1)
    assert top.sources == ["m1"] and "vector" in top.why  # no shared word: found by meaning
    [top] = await mem.search(ana, "Glasgow", limit=1)
    assert top.sources == ["m2"] and "keyword" in top.why


async def test_two_users_memories_never_cross(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, bob, _ = stores
    await mem.add(ana, "fact", "I live in Leeds", attribute="location", value="Leeds", sources=["a1"])
    await mem.add(bob, "fact", "I live in Leeds too", attribute="location", value="Leeds", sources=["b1"])
    await mem.add(bob, "raw", "Leeds is lovely in spring", sources=["b2"])
    for query in ("Leeds", "where does the user live", "spring"):
        assert {m.user_id for m in await mem.search(ana, query, limit=10)} == {ana}
        assert {m.user_id for m in await mem.search(bob, query, limit=10)} <= {bob}
    assert {m.user_id for m in await mem.list(ana)} == {ana}
    assert all(m["sources"] != ["b1"] for m in await mem.export(ana))


async def test_a_new_location_supersedes_the_old_which_stays_as_history(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, _ = stores
    leeds, _ = await mem.add(ana, "fact", "I live in Leeds", attribute="location", value="Leeds", sources=["m1"])
    york, old = await mem.add(ana, "fact", "I moved to York", attribute="location", value="York", sources=["m2"])
    assert old is not None and old.id == leeds.id and york.supersedes == leeds.id
    [now] = [f for f in await mem.facts(ana) if f.attribute == "location"]
    assert now.value == "York"
    history = await mem.history_of(ana, "location")
    assert [(h.value, h.superseded_by) for h in history] == [("York", None), ("Leeds", york.id)]
    found = await mem.search(ana, "where does she live", limit=5, kinds=("fact",))
    assert [m.value for m in found] == ["York"]
    found = await mem.search(ana, "where does she live", limit=5, kinds=("fact",), include_superseded=True)
    assert {m.value for m in found} == {"York", "Leeds"}


async def test_the_same_fact_twice_is_one_memory_with_both_sources(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, _ = stores
    a, _ = await mem.add(ana, "fact", "I love sailing", attribute="likes", value="sailing", sources=["m1"])
    b, _ = await mem.add(ana, "fact", "I really love sailing", attribute="likes", value="sailing", sources=["m2"])
    assert a.id == b.id and b.sources == ["m1", "m2"]
    assert len(await mem.facts(ana)) == 1


async def test_forget_leaves_no_trace_in_any_table(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, db = stores
    secret = "zanzibarian quokka whisperer"
    # three messages in a row: the secret is indexed as context of both neighbours
    before, _ = await mem.add(ana, "raw", "Guess what I do on Sundays.", sources=["m0"])
    m, _ = await mem.add(
        ana, "raw", f"My secret hobby: {secret}. Nobody knows.", sources=["m1"], before=before.text, previous=before.id
    )
    after, _ = await mem.add(ana, "raw", "That sounds like fun!", sources=["m2"], before=m.text, previous=m.id)
    await mem.add_many([NewMemory(ana, "raw", f"other note {i}", sources=[f"o{i}"]) for i in range(30)])
    rowid = await db.read(lambda c: c.execute("SELECT rowid FROM memories WHERE id = ?", (m.id,)).fetchone()[0])
    vecs = await db.read(
        lambda c: [r[0] for r in c.execute("SELECT vec FROM memory_vectors WHERE memory = ? OR with_memory = ?", (rowid, rowid))]
    )
    # its own: text, with-before, two sentences, with-after (mixing the next
    # message); the neighbours': before's with-after and after's with-before
    assert len(vecs) == 7
    deleted = await mem.forget(m.id, user_id=ana)
    assert any("memories" in d for d in deleted) and any("memory_fts" in d for d in deleted)
    assert any("memory_vectors: 7" in d for d in deleted) and any("memory_vec: 7" in d for d in deleted)
    assert any("neighbouring" in d for d in deleted)

    def scan(c) -> list[str]:  # type: ignore[no-untyped-def]
        traces = []
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            for row in c.execute(f'SELECT * FROM "{t}"'):
                for cell in row:
                    raw = cell.encode() if isinstance(cell, str) else cell if isinstance(cell, bytes) else None
                    if raw and (b"zanzibar" in raw or m.id.encode() in raw or any(v[:32] in raw for v in vecs)):
                        traces.append(t)
        return traces

    assert await db.read(scan) == []
    assert all("zanzibar" not in x.text for x in await mem.search(ana, secret, limit=5))
    # the neighbours themselves are still there and still found
    assert {x.id for x in await mem.search(ana, "Sundays fun", limit=5)} >= {before.id, after.id}


async def test_memories_written_before_vectors_are_indexed_by_reindex(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, db = stores
    m, _ = await mem.add(ana, "raw", "I keep bees on my allotment.", sources=["m1"])
    await db.write(lambda c: c.execute("DELETE FROM memory_vectors"))
    await db.write(lambda c: c.execute("DELETE FROM memory_vec"))
    assert await mem.reindex() == 1
    [top] = await mem.search(ana, "insects honey garden", limit=1)
    assert top.id == m.id and "vector" in top.why


async def test_a_search_for_a_thousand_results_stays_within_the_first_pass_bound(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, _ = stores
    await mem.add_many([NewMemory(ana, "raw", f"note number {i} about boats", sources=[f"n{i}"]) for i in range(50)])
    found = await mem.search(ana, "boats", limit=1000)  # asks the first pass for more than KNN_MAX_K vectors
    assert len(found) == 50


async def test_the_binary_index_follows_writes_and_forgets_from_another_process(stores, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mem, ana, bob, db = stores
    await mem.add(ana, "raw", "We sailed a small boat around the harbour.", sources=["m1"])
    query = "Has she been on the water?"
    assert [m.sources for m in await mem.search(ana, query, limit=1, weights=VECTORS_ONLY)] == [["m1"]]  # codes loaded
    # another process (its own connection and store) writes and forgets
    other_db = await Database(tmp_path / "m.db").open()
    other = MemoryStore(other_db)
    kayak, _ = await other.add(ana, "raw", "Last summer I paddled a kayak across the lake.", sources=["m2"])
    await other.add(bob, "raw", "Bob rowed a dinghy on the river.", sources=["b1"])
    found = await mem.search(ana, query, limit=5, weights=VECTORS_ONLY)
    assert {tuple(m.sources) for m in found} == {("m1",), ("m2",)}  # appended, and Bob's never in Ana's scope
    await other.forget(kayak.id, user_id=ana)
    await other_db.close()
    assert [m.sources for m in await mem.search(ana, query, limit=5, weights=VECTORS_ONLY)] == [["m1"]]
    # the codes are sqlite-vec's own quantisation of the stored vectors
    row = await db.read(lambda c: c.execute("SELECT vec, vec_quantize_binary(vec) FROM memory_vectors LIMIT 1").fetchone())
    assert sign_codes(np.frombuffer(row[0], dtype=np.float32)).tobytes() == bytes(row[1])


async def test_a_copy_of_a_message_is_not_stored_once_the_message_changed(stores) -> None:  # type: ignore[no-untyped-def]
    """A reply's note read before a forget scrubbed the reply, written after: the forget wins."""
    mem, ana, _, db = stores
    conv = ConversationStore(db)
    c = (await conv.create_conversation(ana)).id
    reply = await conv.add_message(c, "assistant", "You live in Quorvaleth.", bot="conversation")
    copy = NewMemory(ana, "raw", reply.content, sources=[reply.id], conversation_id=c, verbatim_of=reply.id)
    await db.write(lambda x: x.execute("UPDATE messages SET content = ? WHERE id = ?", ("You live in [forgotten].", reply.id)))
    assert await mem.add_many([copy]) == []
    assert await mem.count(ana) == 0
    # unchanged, it is stored; and in another conversation the same id does not count
    kept = NewMemory(ana, "raw", "You live in [forgotten].", sources=[reply.id], conversation_id=c, verbatim_of=reply.id)
    [(m, _)] = await mem.add_many([kept])
    assert m.text == "You live in [forgotten]."
    other = (await conv.create_conversation(ana)).id
    elsewhere = NewMemory(ana, "raw", "You live in [forgotten].", conversation_id=other, verbatim_of=reply.id)
    assert await mem.add_many([elsewhere]) == []


async def test_a_search_borrows_a_core_from_the_engine_while_it_runs(stores) -> None:  # type: ignore[no-untyped-def]
    from shoal.engine.cpu import BUDGET

    mem, ana, _, db = stores
    await mem.add(ana, "raw", "My sister works as an accountant in Glasgow.", sources=["m1"])
    seen: list[int] = []
    real_read = db.read

    async def read(fn):  # type: ignore[no-untyped-def]
        seen.append(BUDGET.borrowed)  # what an engine step would see while the search reads
        return await real_read(fn)

    db.read = read
    try:
        found = await mem.search(ana, "Glasgow", limit=1, weights=Weights(vector=0, before=0, after=0, sentence=0))
    finally:
        del db.read
    assert found and found[0].sources == ["m1"]
    assert seen and min(seen) >= 1 and BUDGET.borrowed == 0


async def test_feedback_ranks_the_candidates_by_a_query_moved_towards_the_best_found(stores) -> None:  # type: ignore[no-untyped-def]
    mem, ana, _, _ = stores
    await mem.add_many(
        [
            NewMemory(ana, "raw", "I adopted a puppy last week and he chews everything.", sources=["m1"]),
            NewMemory(ana, "raw", "The vet said my dog needs his vaccinations next month.", sources=["m2"]),
            NewMemory(ana, "raw", "My sister works as an accountant in Glasgow.", sources=["m3"]),
        ]
    )
    found = await mem.search(ana, "Does she have a dog?", limit=3, weights=Weights(feedback=1.0))
    assert any("feedback" in m.why for m in found)
    off = await mem.search(ana, "Does she have a dog?", limit=3)  # off by default
    assert all("feedback" not in m.why for m in off)


async def test_a_question_naming_a_speaker_searches_that_speakers_words(stores) -> None:  # type: ignore[no-untyped-def]
    """A transcript's turns keep their speaker; "What did Caroline ...?" is about Caroline's words,
    and in the other speaker's turns her name is mostly a form of address."""
    from shoal.memory.pipeline import ingest

    mem, ana, bob, _ = stores
    turns = [
        ("Melanie", "Wow, Caroline, that's great! I signed up for a pottery class and I research glazes."),
        ("Caroline", "I've been researching adoption agencies, it's been a dream to have a family."),
        ("Melanie", "Caroline, you should research the agencies with care, Caroline!"),
        ("Caroline", "Thanks Mel! Painting helps me relax after work."),
    ]
    prev = None
    for i, (who, text) in enumerate(turns):
        out = await ingest(mem, user_id=ana, conversation_id=None, message_id=f"t{i}", text=text, speaker=who, previous=prev)
        prev = out.raw
    await ingest(mem, user_id=bob, conversation_id=None, message_id="b0", text="I research comets.", speaker="Zed")
    assert await mem.db.read(lambda c: mem.speakers(c, ana)) == ["Caroline", "Melanie"]
    assert await mem.db.read(lambda c: mem.speakers(c, bob)) == ["Zed"]  # one person's speakers are theirs

    found = await mem.search(ana, "What did Caroline research?", limit=3)
    assert found[0].sources == ["t1"] and found[0].speaker == "Caroline"
    assert {m.speaker for m in found} == {"Caroline"}
    # possessive and lower case name her too; Melanie's turns stay findable by her name
    assert {m.speaker for m in await mem.search(ana, "what is caroline's dream?", limit=3)} == {"Caroline"}
    assert (await mem.search(ana, "What class did Melanie sign up for?", limit=1))[0].sources == ["t0"]
    # naming both, or nobody, searches everyone's words
    both = await mem.search(ana, "What did Caroline and Melanie research?", limit=4)
    assert {m.speaker for m in both} == {"Caroline", "Melanie"}
    # off (the bench's --ablate speaker): the other speaker's turn that says her name three times wins
    off = await mem.search(ana, "What did Caroline research?", limit=3, weights=Weights(speaker=0))
    assert "Melanie" in {m.speaker for m in off}
    # the filter never reaches across people: bob's "Zed" is not a speaker of ana's
    assert await mem.search(ana, "What does Zed research?", limit=5)
    assert {m.user_id for m in await mem.search(ana, "What does Zed research?", limit=5)} == {ana}
