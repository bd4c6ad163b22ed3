"""Who is calling: session cookies for browsers, bearer tokens for programs."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Mapping

from fastapi import Request

from shoal.errors import AuthError, ShoalError
from shoal.store.accounts import Accounts
from shoal.store.conversations import User

SESSION_COOKIE = "shoal_session"


class RateLimited(ShoalError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, hint=f"wait {retry_after} s before trying again")
        self.retry_after = retry_after


class LoginLimiter:
    """At most ``per_minute`` failed logins per (client, user name) in a sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._fails: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def check(self, client: str, name: str) -> None:
        q = self._fails[(client, name.lower())]
        now = time.monotonic()
        while q and now - q[0] > 60:
            q.popleft()
        if len(q) >= self.per_minute:
            raise RateLimited("too many failed logins", retry_after=int(60 - (now - q[0])) + 1)

    def failed(self, client: str, name: str) -> None:
        self._fails[(client, name.lower())].append(time.monotonic())

    def succeeded(self, client: str, name: str) -> None:
        self._fails.pop((client, name.lower()), None)


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


async def authenticate(
    accounts: Accounts, headers: Mapping[str, str], cookies: Mapping[str, str], token: str | None = None
) -> User:
    """The caller, from a bearer token, a ``token`` query value or the session cookie."""
    secret = bearer(headers) or token
    if secret:
        user = await accounts.user_for_token(secret)
        if user is None:
            # a browser session may also be presented as a bearer value
            user = await accounts.user_for_session(secret)
        if user is None:
            raise AuthError("the API token is invalid or revoked", hint="create one with `shoal tokens create --user NAME`")
        return user
    sid = cookies.get(SESSION_COOKIE)
    if sid:
        user = await accounts.user_for_session(sid)
        if user is not None:
            return user
        raise AuthError("your session has expired", hint="sign in again")
    raise AuthError("sign in first", hint="send 'Authorization: Bearer <token>' or sign in at /")


async def current_user(request: Request) -> User:
    return await authenticate(request.app.state.swarm.accounts, request.headers, request.cookies)
