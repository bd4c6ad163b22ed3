"""SQLite under ``SHOAL_HOME``: one writer thread, a few reader threads.

Writes run one at a time on a thread this class owns and commit before the
awaiting coroutine resumes, so once ``write`` returns the data survives a
killed process (WAL mode). Reads run on their own connections and never
wait for a write to finish.

Waiting writes go in order, except that an ``urgent`` one (the journal's
events, which every open websocket is waiting for) goes before the others
that are still waiting. Writes that wait together were submitted by
coroutines that had not seen each other's results, so no caller can tell.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
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


class _Writer:
    """One thread that runs submitted calls one at a time: urgent ones first, each class in order."""

    _STOP = 2  # after everything else that is waiting

    def __init__(self, name: str) -> None:
        self._q: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any] | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, urgent: bool = False) -> "Future[T]":
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new writes after shutdown")
            self._q.put((0 if urgent else 1, next(self._order), fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            _prio, _n, fn, fut = self._q.get()
            if fn is None or fut is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._q.put((self._STOP, next(self._order), None, None))
        if wait:
            self._thread.join()


class Database:
    def __init__(self, path: Path | str, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._writer = _Writer("shoal-db-write")
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
    async def write(self, fn: Callable[[Conn], T], *, urgent: bool = False) -> T:
        """Run ``fn(conn)`` in one transaction on the writer thread; commit; return.

        ``urgent``: go before the writes still waiting (see the module's doc).
        """
        if self._closed:
            raise RuntimeError("the database is closed")

        def run() -> T:
            return _tx(self._connect(), fn)

        return await asyncio.wrap_future(self._writer.submit(run, urgent=urgent))

    async def read(self, fn: Callable[[Conn], T]) -> T:
        if self._closed:
            raise RuntimeError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self._connect()))

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after a bulk load)."""
        await asyncio.wrap_future(
            self._writer.submit(lambda: self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
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
