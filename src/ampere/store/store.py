"""The store interface.

All database work runs on one database thread, so the event loop never waits on disk: callers
`await store.write(fn)` / `await store.read(fn)` where `fn(db)` gets a `Db` handle.  A write has
been committed, and synced, when its await returns: that is the "persist" of "persist before you
speak".

Group commit: writes that are queued while the database thread is busy are applied together in
one transaction, each inside its own savepoint, and made durable by one sync.  A write that raises
is rolled back to its savepoint alone and its caller gets the exception; the others commit.  Many
channels persisting at once (50 payments in flight) then cost one fsync per batch, not one each,
and no caller is answered before its own change is on disk.

The contract for a write function: it acts on the database only (or sets in-memory state to a value it
computes from the database, the same on every run).  The PostgreSQL backend runs a batch again when one of
its members raised (no savepoints there) or when the connection broke before COMMIT, so a write function
may run more than once; in-memory effects (indexes, counters, ids handed to callers, futures,
notifications) belong after `await store.write(fn)` returns, which happens once, after the commit.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Db(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


class Store:
    """Base: backends provide `_open()`, `_begin()`, `_commit()`, `_rollback()`, `_db()` and `_close()`."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ampere-db")
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[Db], Any], asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._flush_scheduled = False
        self.batches = 0  # committed transactions, for benchmarks and tests
        self.writes = 0

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    async def write(self, fn: Callable[[Db], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        with self._lock:
            self._queue.append((fn, fut, loop))
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule:
            self._executor.submit(self._flush)
        return await fut

    async def read(self, fn: Callable[[Db], T]) -> T:
        # Reads share the queue: they see every write queued before them.
        return await self.write(fn)

    def run_sync(self, fn: Callable[[Db], T]) -> T:
        """For start-up and tests: run on the store's thread and wait."""
        return self._executor.submit(self._one, fn).result()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    # ---- on the database thread ---------------------------------------------------------------
    def _one(self, fn: Callable[[Db], T]) -> T:
        ok, value = self._run_batch([fn])[0]
        if not ok:
            raise value
        return value

    def _flush(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
            self._flush_scheduled = False
        if not batch:
            return
        outcomes = self._run_batch([fn for fn, _fut, _loop in batch])
        for (ok, value), (_fn, fut, loop) in zip(outcomes, batch):
            loop.call_soon_threadsafe(_settle, fut, ok, value)

    def _run_batch(self, fns: list[Callable[[Db], Any]]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch, each write in its own savepoint; (ok, result or exception)
        per write.  Backends that can lose their connection (PostgreSQL) override this to retry."""
        outcomes: list[tuple[bool, Any]] = []
        db = self._db()
        try:
            self._begin()
            for i, fn in enumerate(fns):
                outcomes.append(self._apply(db, i, fn))
            self._commit()
            self.batches += 1
            self.writes += len(fns)
        except BaseException as e:  # the transaction itself failed: nothing of the batch is stored
            try:
                self._rollback()
            except Exception:
                pass
            outcomes = [(False, e)] * len(fns)
        return outcomes

    @staticmethod
    def _apply(db: Db, i: int, fn: Callable[[Db], Any]) -> tuple[bool, Any]:
        db.execute(f"SAVEPOINT w{i}")
        try:
            outcome = (True, fn(db))
        except Exception as e:  # this write alone is undone
            db.execute(f"ROLLBACK TO SAVEPOINT w{i}")
            outcome = (False, e)
        db.execute(f"RELEASE SAVEPOINT w{i}")
        return outcome

    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _begin(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _commit(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rollback(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _db(self) -> Db:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _settle(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.done():  # the caller was cancelled; the write stands
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
