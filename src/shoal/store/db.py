"""SQLite under ``SHOAL_HOME``: one writer thread, a few reader threads.

Writes run one at a time on a thread this class owns and commit before the
awaiting coroutine resumes, so once ``write`` returns the data survives a
killed process (WAL mode). Reads run on their own connections and never
wait for a write to finish.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from shoal.store.migrations import apply_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = Any  # sqlite3.Connection from the stdlib or pysqlite3


def sqlite_module() -> Any:
    """The sqlite3 module shoal uses (stdlib, or pysqlite3 when extensions are needed)."""
    from shoal.store.sqlite import module

    return module()


class Database:
    def __init__(self, path: Path | str, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="shoal-db-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="shoal-db-read")
        self._conns: list[Conn] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    # -- connections ------------------------------------------------------
    def _connect(self) -> Conn:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            sqlite = sqlite_module()
            conn = sqlite.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # deleted content is overwritten, not left in free pages (forget means forget)
            conn.execute("PRAGMA secure_delete=ON")
            from shoal.store.sqlite import load_extensions

            load_extensions(conn)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    async def open(self) -> "Database":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.write(apply_migrations)
        return self

    # -- work ---------------------------------------------------------------
    async def write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` in one transaction on the writer thread; commit; return."""
        if self._closed:
            raise RuntimeError("the database is closed")

        def run() -> T:
            return _tx(self._connect(), fn)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def read(self, fn: Callable[[Conn], T]) -> T:
        if self._closed:
            raise RuntimeError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self._connect()))

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after a bulk load)."""
        await asyncio.get_running_loop().run_in_executor(
            self._writer, lambda: self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        )

    def write_sync(self, fn: Callable[[Conn], T]) -> T:
        """Blocking variant for CLI tools that run outside an event loop."""
        return self._writer.submit(lambda: _tx(self._connect(), fn)).result()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for c in self._conns:
                try:
                    c.close()
                except Exception:  # closing from another thread may be refused
                    pass
            self._conns.clear()


def _tx(conn: Conn, fn: Callable[[Conn], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        # SQLite has already rolled back after some errors (a full disk): a second ROLLBACK
        # would raise and hide the real error
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def now() -> float:
    return time.time()
