"""µLMs trained on a person's own conversations: only theirs, only with their standing consent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.config import write_default_config
from shoal.errors import BadInput, NotFound
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database
from shoal.ulm.data import conversation_documents
from shoal.ulm.recipe import parse_recipe
from shoal.ulm.train import train
from tests.ulm.conftest import TINY


def _home(tmp_path: Path, consent: str) -> Path:
    cfg = write_default_config(tmp_path / "shoal.toml")
    cfg.write_text(cfg.read_text().replace('consent = "always"', f'consent = "{consent}"', 1))
    return tmp_path


async def _chats(home: Path) -> None:
    db = await Database(home / "shoal.db").open()
    try:
        store = ConversationStore(db)
        ana, bob = await store.ensure_user("ana"), await store.ensure_user("bob")
        conv = (await store.create_conversation(ana.id)).id
        q = await store.add_message(conv, "user", "I keep bees on my allotment in Frome.", user_id=ana.id)
        await store.add_message(conv, "assistant", "Bees are wonderful company.", bot="conversation", reply_to=q.id)
        await store.add_message(conv, "assistant", "REGENERATED-AWAY", bot="conversation", reply_to=q.id, status="replaced")
        # a room Ana owns: Bob's words in it are Bob's, not hers to train on
        room = (await store.create_room("allotment", ana.id, [bob.id])).id
        b = await store.add_message(room, "user", "BOB-IN-THE-ROOM has a secret shed", user_id=bob.id)
        await store.add_message(room, "assistant", "REPLY-TO-BOB", bot="conversation", reply_to=b.id)
        await store.add_message(room, "user", "Ana again in the room", user_id=ana.id)
        own = (await store.create_conversation(bob.id)).id
        await store.add_message(own, "user", "BOB-PRIVATE words", user_id=bob.id)
    finally:
        await db.close()


def test_only_the_persons_own_words_and_the_replies_to_them(tmp_path: Path) -> None:
    home = _home(tmp_path, "always")
    asyncio.run(_chats(home))
    docs = conversation_documents("ana", home)
    text = "\n".join(docs)
    assert "User: I keep bees on my allotment in Frome.\nAssistant: Bees are wonderful company." in text
    assert "User: Ana again in the room" in text
    for other in ("BOB-IN-THE-ROOM", "REPLY-TO-BOB", "BOB-PRIVATE", "REGENERATED-AWAY"):
        assert other not in text
    assert len(docs) == 2  # one document per conversation
    assert "BOB-PRIVATE" in "\n".join(conversation_documents("bob", home))


@pytest.mark.parametrize("consent", ["ask", "never"])
def test_without_standing_consent_nothing_is_read(tmp_path: Path, consent: str) -> None:
    home = _home(tmp_path, consent)
    asyncio.run(_chats(home))
    with pytest.raises(BadInput, match=f"memory.consent is '{consent}'") as err:
        conversation_documents("ana", home)
    assert 'consent = "always"' in (err.value.hint or "")


def test_an_unknown_person_is_a_clear_error(tmp_path: Path) -> None:
    home = _home(tmp_path, "always")
    asyncio.run(_chats(home))
    with pytest.raises(NotFound, match="no user named 'carol'"):
        conversation_documents("carol", home)


def test_a_tiny_ulm_trains_on_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path / "home", "always")
    asyncio.run(_chats(home))
    monkeypatch.setenv("SHOAL_HOME", str(home))
    text = TINY.replace('corpus = "shakespeare"', 'corpus = "conversations"\nuser = "ana"').replace("max_chars = 300000", "")
    text = text.replace("vocab_size = 320", "vocab_size = 260").replace("block_size = 32", "block_size = 8").replace("iters = 40", "iters = 4")
    text = text.replace("eval_every = 20", "eval_every = 2").replace("ckpt_every = 10", "ckpt_every = 2")
    res = train(parse_recipe(text), tmp_path / "run", cache=home / "ulm" / "corpus")
    assert res is not None
    assert (tmp_path / "run" / "ckpt.json").is_file()


def test_from_the_web_a_run_reads_only_its_owners_conversations(tmp_path: Path) -> None:
    """A recipe naming someone else (user = "bob") still trains on the owner's own words."""
    from shoal.ulm.runs import Trainer, web_recipe

    home = _home(tmp_path, "always")
    asyncio.run(_chats(home))
    text = TINY.replace('corpus = "shakespeare"', 'corpus = "conversations"\nuser = "bob"').replace("max_chars = 300000", "")
    text = text.replace("vocab_size = 320", "vocab_size = 260").replace("block_size = 32", "block_size = 8").replace("iters = 40", "iters = 2")
    text = text.replace("eval_every = 20", "eval_every = 2").replace("ckpt_every = 10", "ckpt_every = 2")

    async def go() -> Path:
        db = await Database(home / "shoal.db").open()
        try:
            ana = await ConversationStore(db).ensure_user("ana")
        finally:
            await db.close()
        trainer = Trainer(home, threads=1)
        run = await trainer.start(web_recipe(None, text, None), ana, "ana-bees")
        assert trainer._proc is not None
        await asyncio.wait_for(trainer._proc.wait(), 300)
        return run

    run = asyncio.run(go())
    assert 'user = "ana"' in (run / "recipe.toml").read_text()
    assert (run / "ckpt.json").is_file(), (run / "train.log").read_text()[-2000:]
