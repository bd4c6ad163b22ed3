"""Opening the store from a CLI command (no swarm, no model)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from shoal.config import Settings
from shoal.store.accounts import Accounts
from shoal.store.db import Database


@asynccontextmanager
async def accounts() -> AsyncIterator[Accounts]:
    settings = Settings()
    settings.ensure_home()
    db = await Database(settings.db_path).open()
    try:
        yield Accounts(db)
    finally:
        await db.close()
