"""Task ownership: every task has an owner that cancels and awaits it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Coroutine

if TYPE_CHECKING:
    from shoal.runtime.mesh import Receipt

log = logging.getLogger(__name__)


class TaskOwner:
    """Spawns named tasks, logs their failures, and reaps them on ``close``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str = "", receipt: "Receipt | None" = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task; with ``receipt`` (held already), release it when the task ends.

        A task that ends (even in an error) has handled its message; one that was cancelled
        (a shutdown) has not: its message goes back to the mesh for another instance.
        """
        if self._closed:
            coro.close()
            if receipt is not None:
                receipt.release(ok=False)
            raise RuntimeError(f"{self.name} is closed; cannot start '{name}'")
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if receipt is not None:
            task.add_done_callback(lambda t: receipt.release(ok=not t.cancelled()))
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = 10.0) -> None:
        """Cancel every task and wait for them (bounded)."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.warning("task %s did not stop within %.0fs", t.get_name(), timeout)
