"""Accounts: users with argon2 password hashes, browser sessions, API tokens.

Secrets (session ids, API tokens) are random 32-byte values shown once;
only their SHA-256 is stored, so a stolen database does not log anyone in.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from shoal.errors import AuthError, BadInput, NotFound
from shoal.store.conversations import User, _user
from shoal.store.db import Conn, Database, now
from shoal.store.ids import new_id
from shoal.store.migrations import migration, run_script

TOKEN_PREFIX = "shoal_"
SESSION_SECONDS = 14 * 24 * 3600


@migration
def m003_accounts(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        );
        CREATE TABLE bot_settings (
            bot TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (bot, key)
        );
        """,
    )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check(pw_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``pw_hash``; with no hash, the same work against a dummy (do not
    reveal which names exist by answering faster)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    ph = _hasher()
    try:
        return bool(ph.verify(pw_hash or _dummy_hash(), password)) and pw_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def valid_username(name: str) -> str:
    name = name.strip()
    if not (1 <= len(name) <= 64) or not all(ch.isalnum() or ch in "._-" for ch in name):
        raise BadInput(
            f"invalid user name {name!r}",
            hint="use 1-64 letters, digits, '.', '_' or '-'",
        )
    return name


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    user_id: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users --------------------------------------------------------------
    async def create_user(self, name: str, password: str | None, *, is_admin: bool = False) -> User:
        name = valid_username(name)
        if password is not None and len(password) < 8:
            raise BadInput("the password is too short", hint="use at least 8 characters")
        # argon2 takes a good fraction of a second of CPU: off the event loop, or every chat stalls meanwhile
        pw_hash = await asyncio.to_thread(_hasher().hash, password) if password else None

        def fn(c: Conn) -> User:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise BadInput(f"a user named '{name}' already exists")
            uid = new_id()
            c.execute(
                "INSERT INTO users (id, name, is_admin, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (uid, name, int(is_admin), pw_hash, now()),
            )
            return _user(c.execute("SELECT * FROM users WHERE id = ?", (uid,)).fetchone())

        return await self.db.write(fn)

    async def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise BadInput("the password is too short", hint="use at least 8 characters")
        pw_hash = await asyncio.to_thread(_hasher().hash, password)
        n = await self.db.write(
            lambda c: c.execute("UPDATE users SET password_hash = ? WHERE name = ?", (pw_hash, name)).rowcount
        )
        if not n:
            raise NotFound(f"no user named '{name}'")

    async def users(self) -> list[User]:
        rows = await self.db.read(lambda c: c.execute("SELECT * FROM users ORDER BY name").fetchall())
        return [_user(r) for r in rows]

    async def user_by_name(self, name: str) -> User:
        row = await self.db.read(lambda c: c.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone())
        if not row:
            raise NotFound(f"no user named '{name}'", hint="`shoal users list` shows the accounts")
        return _user(row)

    async def remove_user(self, name: str) -> list[str]:
        """Remove an account and everything of theirs, in every table (``memory.forget.Eraser``)."""
        from shoal.memory.forget import Eraser

        user = await self.user_by_name(name)
        return (await Eraser(self.db).remove_user(user.id)).deleted

    async def count_admins(self) -> int:
        return int(
            await self.db.read(
                lambda c: c.execute("SELECT COUNT(*) FROM users WHERE is_admin = 1 AND password_hash IS NOT NULL").fetchone()[0]
            )
        )

    async def verify_password(self, name: str, password: str) -> User:
        """The user, or ``AuthError`` (the same for a wrong name and a wrong password)."""
        row = await self.db.read(lambda c: c.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone())
        # argon2 on a thread (it releases the GIL): a sign-in never stalls the chats streaming meanwhile
        if not await asyncio.to_thread(_check, row["password_hash"] if row else None, password):
            raise AuthError("wrong user name or password")
        return _user(row)

    async def create_session(self, user_id: str, *, seconds: float = SESSION_SECONDS) -> str:
        sid = secrets.token_urlsafe(32)
        t = now()
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (_hash(sid), user_id, t, t + seconds),
            )
        )
        return sid

    async def user_for_session(self, sid: str) -> User | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_at > ?",
                (_hash(sid), now()),
            ).fetchone()
        )
        return _user(row) if row else None

    async def end_session(self, sid: str) -> None:
        await self.db.write(lambda c: c.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(sid),)))

    # -- API tokens -------------------------------------------------------------
    async def create_token(self, user_id: str, name: str = "") -> tuple[ApiToken, str]:
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = new_id()
        t = now()
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (tid, user_id, name or "token", _hash(secret), t),
            )
        )
        return ApiToken(tid, user_id, name or "token", t, None, None), secret

    async def user_for_token(self, secret: str) -> User | None:
        h = _hash(secret)

        def fn(c: Conn) -> Any:
            row = c.execute(
                "SELECT u.*, t.id AS token_id FROM api_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
                (h,),
            ).fetchone()
            if row:
                c.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now(), row["token_id"]))
            return row

        row = await self.db.write(fn)
        return _user(row) if row else None

    async def tokens(self, user_id: str | None = None) -> list[ApiToken]:
        def fn(c: Conn) -> list[Any]:
            if user_id:
                return c.execute("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
            return c.execute("SELECT * FROM api_tokens ORDER BY id").fetchall()

        return [
            ApiToken(r["id"], r["user_id"], r["name"], r["created_at"], r["last_used_at"], r["revoked_at"])
            for r in await self.db.read(fn)
        ]

    async def revoke_token(self, token_id: str, *, user_id: str | None = None) -> None:
        def fn(c: Conn) -> int:
            if user_id:
                return c.execute(
                    "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                    (now(), token_id, user_id),
                ).rowcount
            return c.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now(), token_id)
            ).rowcount

        if not await self.db.write(fn):
            raise NotFound(f"no active token '{token_id}'", hint="`shoal tokens list` shows token ids")

    # -- bot settings -------------------------------------------------------------
    async def bot_settings(self) -> dict[str, dict[str, Any]]:
        import json

        rows = await self.db.read(lambda c: c.execute("SELECT bot, key, value FROM bot_settings").fetchall())
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out.setdefault(r["bot"], {})[r["key"]] = json.loads(r["value"])
        return out

    async def save_bot_settings(self, bot: str, values: dict[str, Any]) -> None:
        import json

        t = now()
        await self.db.write(
            lambda c: c.executemany(
                "INSERT INTO bot_settings (bot, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(bot, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(bot, k, json.dumps(v), t) for k, v in values.items()],
            )
        )


_dummy: list[str] = []


def _dummy_hash() -> str:
    if not _dummy:
        _dummy.append(_hasher().hash(secrets.token_urlsafe(16)))
    return _dummy[0]
