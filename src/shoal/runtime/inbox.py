"""Bounded queues that state their policy and count what they drop."""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, Literal, TypeVar

from shoal.errors import CapacityError

T = TypeVar("T")

Policy = Literal["block", "fail", "drop_oldest", "drop_newest"]


class Inbox(Generic[T]):
    """A bounded FIFO.

    Policies when full:

    * ``block`` — ``put`` waits for room (backpressure; ``put_nowait`` raises);
    * ``fail`` — ``put``/``put_nowait`` raise ``CapacityError`` (fail fast);
    * ``drop_oldest`` — the oldest item is discarded and counted;
    * ``drop_newest`` — the new item is discarded and counted.
    """

    def __init__(self, maxsize: int, policy: Policy = "drop_oldest", *, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError("an inbox needs room for at least one item")
        self.maxsize = maxsize
        self.policy: Policy = policy
        self.name = name
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """Add ``item``; returns False when it (or an older item) was dropped."""
        if self._closed:
            return False
        kept = True
        if len(self._items) >= self.maxsize:
            if self.policy == "drop_oldest":
                self._items.popleft()
                self.dropped += 1
                kept = False
            elif self.policy == "drop_newest":
                self.dropped += 1
                return False
            else:
                raise CapacityError(f"inbox '{self.name}' is full ({self.maxsize} items)")
        self._items.append(item)
        self._not_empty.set()
        if len(self._items) >= self.maxsize:
            self._not_full.clear()
        return kept

    async def put(self, item: T) -> bool:
        if self.policy == "block":
            while len(self._items) >= self.maxsize and not self._closed:
                await self._not_full.wait()
        return self.put_nowait(item)

    async def get(self) -> T:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._items.popleft()
        if not self._items:
            self._not_empty.clear()
        self._not_full.set()
        return item

    def get_nowait(self) -> T | None:
        if not self._items:
            return None
        item = self._items.popleft()
        self._not_full.set()
        return item

    def close(self) -> None:
        self._closed = True
        self._not_full.set()
