"""Group commit: each connection's outcome is durable before it sends again, in shared transactions.

The crash bound of the spec (after `kill -9` at most the messages in flight may go out
twice, so at most MAX_CONNECTIONS) needs every accepted message recorded before its
connection hands over the next one. One transaction per message would cost a commit
per message; instead the outcomes that arrive while a commit is running wait for the
next one, so N busy connections share one commit (the classic group commit of
databases' own logs). A connection waits at most for the commit in progress plus its
own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Collects items from many tasks and writes them together with `write`.

    `await submit(item)` returns once a `write` that contained `item` has returned,
    or raises what that `write` raised.
    """

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[object]]) -> None:
        self._write = write
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._running: asyncio.Task[None] | None = None
        #: how many writes ran and how many items they carried (benchmarks, tests)
        self.commits = 0
        self.items = 0

    async def submit(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(future)
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        # shield: a cancelled sender must not cancel the commit others wait for
        await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._items:
            items, waiters = self._items, self._waiters
            self._items, self._waiters = [], []
            try:
                await self._write(items)
            except BaseException as err:  # every waiter learns the commit failed
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(err if isinstance(err, Exception) else RuntimeError())
                if not isinstance(err, Exception):
                    raise
                continue
            self.commits += 1
            self.items += len(items)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_idle(self) -> None:
        """Until no commit is running (on stop: what was submitted is written)."""
        while self._running is not None and not self._running.done():
            await asyncio.wait([self._running])


__all__ = ["GroupCommit"]
