"""The store interface.

All database work runs on one writer thread, so the event loop never waits on disk: callers
`await store.write(fn)` / `await store.read(fn)` where `fn(db)` gets a `Db` handle and runs inside
one transaction.  A write has been committed, and synced, when the await returns: that is the
"persist" of "persist before you speak".
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Db(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


class Store:
    """Base: backends provide `_open()`, `_transaction(fn)` and `_close()`."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ampere-db")

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    async def write(self, fn: Callable[[Db], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, fn)

    async def read(self, fn: Callable[[Db], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, fn)

    def run_sync(self, fn: Callable[[Db], T]) -> T:
        """For start-up and tests: run on the store's thread and wait."""
        return self._executor.submit(self._transaction, fn).result()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transaction(self, fn: Callable[[Db], T]) -> T:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
