"""Asking for a reply again: the old reply stays, marked ``replaced``, as a rejected alternative.

The REST route (``POST /api/messages/{id}/regenerate``), ``/again`` in ``shoal chat`` and the
UI's "↻ again" button all call :func:`regenerate`, so the rules live here once:

- the reply must be one the person may judge (:meth:`FeedbackStore.reply_for`: a reply in a
  conversation they may see — anyone else's is reported as missing — and in a room only the
  replies to them), written by a conversation bot they may ``chat`` with;
- only the latest reply of a one-to-one conversation, to its latest message, can be written
  again (an older one would answer out of order; in a room the personas answer);
- not while a reply is being written there (the bot refuses; stop it first).

What happens: the old reply's status becomes ``replaced`` in the same transaction that checks it
is the latest (it stays in the conversation; the bots' history leaves it out; the dataset never
uses it as a training target but lists it under ``rejected`` of the reply that replaced it), its
raw memory notes are dropped (recall must not bring back words shoal did not stand by), and the
conversation bot writes the reply again, sampling at least at ``REGENERATE_TEMPERATURE``. Its
``reply.start`` event carries ``replaces``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal.errors import BadInput, NotFound
from shoal.learn.feedback import FeedbackStore
from shoal.runtime.access import require
from shoal.runtime.messages import Regenerate
from shoal.store.conversations import Message, User
from shoal.store.db import Conn


@dataclass(frozen=True)
class Regenerating:
    conversation: str
    turn: str
    replaces: str
    bot: str

    def as_dict(self) -> dict[str, Any]:
        return {"conversation": self.conversation, "turn": self.turn, "replaces": self.replaces, "bot": self.bot}


async def regenerate(swarm: Any, message_id: str, user: User) -> Regenerating:
    """Have the reply ``message_id`` written again for ``user`` (see the module docstring for the rules)."""
    msg = await FeedbackStore(swarm.db).reply_for(message_id, user)
    config = swarm.config
    bot = next((b for b in config.bots if b.name == msg.bot), None)
    if bot is None or bot.role != "conversation":
        raise BadInput(
            f"reply '{message_id}' was not written by a conversation bot, so it cannot be written again",
            hint="ask again for a reply of the conversation bot",
        )
    require(user, bot, "chat")
    conv = await swarm.conversations.get_conversation(msg.conversation_id, user_id=user.id)
    if conv.room is not None:
        raise BadInput("in a room the personas answer: a reply there cannot be written again", hint="say it again instead")
    if not msg.reply_to:
        raise BadInput(f"reply '{message_id}' answers no message of yours, so there is nothing to answer again")
    turn = await swarm.conversations.get_message(msg.reply_to)
    was = await swarm.db.write(lambda c: _mark_replaced(c, msg))
    try:
        ack = await swarm.mesh.request(
            f"bot.{bot.name}.control",
            Regenerate(conversation=msg.conversation_id, turn=turn.id, user_id=user.id, text=turn.content, replaces=msg.id),
            timeout=15,
        )
    except BaseException:
        await swarm.db.write(lambda c: _unmark(c, msg.id, was))
        raise
    if not getattr(ack, "ok", False):
        await swarm.db.write(lambda c: _unmark(c, msg.id, was))
        raise BadInput(
            f"a reply is being written in this conversation ({getattr(ack, 'detail', '')})",
            hint="wait for it to finish, or stop it, then ask again",
        )
    await swarm.eraser().drop_notes_of(msg.id, user_id=conv.user_id)
    return Regenerating(msg.conversation_id, turn.id, msg.id, bot.name)


def _mark_replaced(c: Conn, msg: Message) -> str:
    """Mark ``msg`` replaced if it is still the latest reply to the latest message; its status before."""
    row = c.execute("SELECT status FROM messages WHERE id = ?", (msg.id,)).fetchone()
    if row is None:
        raise NotFound(f"no message '{msg.id}'", hint="open the conversation to see its messages")
    if row["status"] == "replaced":
        raise BadInput(f"reply '{msg.id}' was already written again", hint="ask again for the reply that replaced it")
    last_user = c.execute(
        "SELECT id FROM messages WHERE conversation_id = ? AND role = 'user' ORDER BY id DESC LIMIT 1",
        (msg.conversation_id,),
    ).fetchone()
    later = c.execute(
        "SELECT 1 FROM messages WHERE conversation_id = ? AND role = 'assistant' AND id > ? AND status != 'replaced' LIMIT 1",
        (msg.conversation_id, msg.id),
    ).fetchone()
    if last_user is None or last_user["id"] != msg.reply_to or later is not None:
        raise BadInput(
            "only the latest reply can be written again (a new one would answer out of order)",
            hint="correct an older reply with ✎ (or /fix) instead",
        )
    c.execute("UPDATE messages SET status = 'replaced' WHERE id = ?", (msg.id,))
    return str(row["status"])


def _unmark(c: Conn, message_id: str, status: str) -> None:
    c.execute("UPDATE messages SET status = ? WHERE id = ? AND status = 'replaced'", (status, message_id))
