"""A person's verdict on a reply: 👍 / 👎 and "what I wanted instead".

Stored in ``learn_feedback`` (migration ``m030_learn_feedback``), one row per
(reply, person). The REST route, ``shoal chat``'s ``/good`` ``/bad`` ``/fix``
and the UI's buttons all call :meth:`FeedbackStore.rate`, so the permission
rules live here once:

- the reply must be an assistant message in a conversation the person may
  see (anyone else's is reported as missing, like every other route);
- in a room (several people), only the person whose message it answers may
  rate it: a reply to Bob is Bob's to judge, not Ana's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shoal.errors import BadInput, NotFound, PermissionDenied
from shoal.store.conversations import ConversationStore, Message, User
from shoal.store.db import Conn, Database, now

Rating = Literal["good", "bad"]

#: the longest correction kept (a reply the person wrote themselves)
MAX_CORRECTION_CHARS = 8000


@dataclass(frozen=True, slots=True)
class Feedback:
    message_id: str
    user_id: str
    conversation_id: str
    rating: Rating | None
    correction: str | None
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message_id,
            "conversation": self.conversation_id,
            "rating": self.rating,
            "correction": self.correction,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _row(r: Any) -> Feedback:
    return Feedback(
        r["message_id"], r["user_id"], r["conversation_id"], r["rating"], r["correction"], r["created_at"], r["updated_at"]
    )


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.conversations = ConversationStore(db)

    async def reply_for(self, message_id: str, user: User) -> Message:
        """The reply ``user`` may judge, or an error saying why not."""
        missing = NotFound(f"no message '{message_id}'", hint="open the conversation to see its messages")
        try:
            msg = await self.conversations.get_message(message_id)
            conv = await self.conversations.get_conversation(msg.conversation_id, user_id=user.id)
        except NotFound:
            raise missing from None
        if msg.role != "assistant":
            raise BadInput(
                f"message '{message_id}' is a {msg.role} message; only replies can be rated",
                hint="rate the assistant's reply (its id is in reply.start / reply.end frames)",
            )
        if conv.room is not None:
            asked = await self.conversations.get_message(msg.reply_to) if msg.reply_to else None
            if asked is None or asked.user_id != user.id:
                raise PermissionDenied("in a room you may rate only the replies to your own messages")
        return msg

    async def rate(
        self,
        message_id: str,
        user: User,
        *,
        rating: Rating | None = None,
        correction: str | None = None,
        clear_rating: bool = False,
    ) -> Feedback:
        """Record (or change) ``user``'s verdict on a reply; an empty correction removes it.

        A field left as ``None`` keeps its stored value, so 👍 then a correction keeps both.
        """
        if correction is not None:
            correction = correction.strip()
            if len(correction) > MAX_CORRECTION_CHARS:
                raise BadInput(f"a correction may be at most {MAX_CORRECTION_CHARS} characters", hint="shorten it")
        if rating is not None and rating not in ("good", "bad"):
            raise BadInput(f"rating must be 'good' or 'bad', not {rating!r}")
        msg = await self.reply_for(message_id, user)
        t = now()

        def fn(c: Conn) -> Feedback:
            old = c.execute(
                "SELECT * FROM learn_feedback WHERE message_id = ? AND user_id = ?", (message_id, user.id)
            ).fetchone()
            new_rating = None if clear_rating else (rating if rating is not None else (old["rating"] if old else None))
            if correction is None:
                new_correction = old["correction"] if old else None
            else:
                new_correction = correction or None
            c.execute(
                "INSERT INTO learn_feedback (message_id, user_id, conversation_id, rating, correction, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (message_id, user_id) DO UPDATE SET rating = excluded.rating,"
                " correction = excluded.correction, updated_at = excluded.updated_at",
                (message_id, user.id, msg.conversation_id, new_rating, new_correction, t, t),
            )
            return _row(
                c.execute("SELECT * FROM learn_feedback WHERE message_id = ? AND user_id = ?", (message_id, user.id)).fetchone()
            )

        return await self.db.write(fn)

    async def get(self, message_id: str, user: User) -> Feedback | None:
        await self.reply_for(message_id, user)
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM learn_feedback WHERE message_id = ? AND user_id = ?", (message_id, user.id)
            ).fetchone()
        )
        return _row(row) if row else None

    async def remove(self, message_id: str, user: User) -> bool:
        await self.reply_for(message_id, user)
        return bool(
            await self.db.write(
                lambda c: c.execute(
                    "DELETE FROM learn_feedback WHERE message_id = ? AND user_id = ?", (message_id, user.id)
                ).rowcount
            )
        )

    async def of_user(self, user_id: str, *, limit: int = 100_000, conversation: str | None = None) -> list[Feedback]:
        """Every verdict ``user_id`` gave, oldest first (only their own); ``conversation`` narrows it to one.

        The caller checks that ``user_id`` may see ``conversation`` (the REST route does).
        """
        where, args = "user_id = ?", [user_id]
        if conversation is not None:
            where += " AND conversation_id = ?"
            args.append(conversation)
        rows = await self.db.read(
            lambda c: c.execute(
                f"SELECT * FROM learn_feedback WHERE {where} ORDER BY updated_at, message_id LIMIT ?", (*args, limit)
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def count_since(self, user_id: str, since: float) -> int:
        """Verdicts given or changed after ``since`` (what triggers a new training run)."""
        return int(
            await self.db.read(
                lambda c: c.execute(
                    "SELECT COUNT(*) FROM learn_feedback WHERE user_id = ? AND updated_at > ?", (user_id, since)
                ).fetchone()[0]
            )
        )
