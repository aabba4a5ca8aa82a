"""The store interface.

All database work runs on one database thread, so the event loop never waits on disk: callers
`await store.write(fn)` / `await store.read(fn)` where `fn(db)` gets a `Db` handle.  A write has
been committed, and synced, when its await returns: that is the "persist" of "persist before you
speak".

Group commit: writes that are queued in the same turn of the event loop, or while the database thread
is busy, are applied together in one transaction and made durable by one sync.  The first write of a batch
does not wake the thread at once: it schedules the wake-up for the end of the loop's current turn
(`call_soon`), so that every channel whose step became ready in that turn (10 channels to 10 peers answering
together) joins the same commit instead of each paying its own (issue 18 item 2).  A write that raises is
undone alone (the batch runs again without it) and its caller gets the exception; the others commit.  Many
channels persisting at once (50 payments in flight) then cost one fsync per batch, not one each, and no
caller is answered before its own change is on disk.

The contract for a write function: it acts on the database only (or sets in-memory state to a value it
computes from the database, the same on every run).  A batch runs again when one of its members raised (no
savepoint per write), and on PostgreSQL when the connection broke before COMMIT, so a write function may run
more than once; in-memory effects (indexes, counters, ids handed to callers, futures,
notifications) belong after `await store.write(fn)` returns, which happens once, after the commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Db(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


_STOP = object()


class Store:
    """Base: backends provide `_open()`, `_begin()`, `_commit()`, `_rollback()`, `_db()` and `_close()`.

    The database thread is one long-lived thread reading jobs from a queue (not a ThreadPoolExecutor:
    its `submit` per write, a concurrent Future and a work item each time, was a large share of a
    payment's CPU).  A write appends to the pending list; only the first write of a batch wakes the
    thread; when the batch is committed, its callers' futures are settled by one call into the
    event loop for the whole batch, not one per write."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[Db], Any], asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._flush_scheduled = False
        self._kick_pending = False  # a batch is queued whose wake-up of the thread waits for the loop's turn to end
        self.batches = 0  # committed transactions, for benchmarks and tests
        self.writes = 0
        self.wakeups = 0  # times the database thread was handed work, for tests

    # ---- the database thread -----------------------------------------------------------------
    def _submit(self, job: Callable[[], Any]) -> None:
        if self._thread is None:
            # A daemon thread: a store never closed must not keep the interpreter alive.  Nothing is lost
            # by that: a write's caller is answered only after its commit.
            self._thread = threading.Thread(target=self._serve, name="ampere-db", daemon=True)
            self._thread.start()
        self.wakeups += 1
        self._jobs.put(job)

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            try:
                job()
            except Exception:  # pragma: no cover - a job settles its own futures; the thread must live on
                pass

    def _call(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future:
        """Run `fn(*args)` on the database thread; a concurrent future of its outcome.  Writes queued before it
        are handed over first (it must not overtake them: `close` after a write)."""
        cf: concurrent.futures.Future = concurrent.futures.Future()
        self._kick()

        def job() -> None:
            if not cf.set_running_or_notify_cancel():
                return
            try:
                cf.set_result(fn(*args))
            except BaseException as e:
                cf.set_exception(e)
        self._submit(job)
        return cf

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            if thread is not threading.current_thread():
                thread.join()

    # ---- the interface -------------------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.wrap_future(self._call(self._open))

    async def write(self, fn: Callable[[Db], T]) -> T:
        return await self.submit(fn)

    def submit(self, fn: Callable[[Db], T]) -> asyncio.Future:
        """`write` without a coroutine: `fn` is queued now, in order with every other write; the future gets its
        result (or exception) once it is committed.  For writes whose follow-up can be a callback, so that no
        task is made for each (a payment's updates)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        with self._lock:
            self._queue.append((fn, fut, loop))
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
            if schedule:
                self._kick_pending = True
        if schedule:
            # Not now: at the end of this turn of the loop, with every write queued meanwhile (see the top).
            # The delay is one turn of the loop; the sync it saves is a millisecond or more.
            loop.call_soon(self._kick)
        return fut

    def _kick(self) -> None:
        """Hand the queued batch to the database thread, if its wake-up is still pending."""
        with self._lock:
            pending, self._kick_pending = self._kick_pending, False
        if pending:
            self._submit(self._flush)

    async def read(self, fn: Callable[[Db], T]) -> T:
        # Reads share the queue: they see every write queued before them.
        return await self.write(fn)

    def run_sync(self, fn: Callable[[Db], T]) -> T:
        """For start-up and tests: run on the store's thread and wait."""
        return self._call(self._one, fn).result()

    async def close(self) -> None:
        try:
            await asyncio.wrap_future(self._call(self._close))
        finally:
            self._stop_thread()

    def close_sync(self) -> None:
        """`close` outside an event loop (tests, start-up failures): close on the store's thread, then end it."""
        try:
            self._call(self._close).result()
        finally:
            self._stop_thread()

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
        # One hand-off to each event loop for the whole batch (in practice there is one loop).
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, bool, Any]]] = {}
        for (ok, value), (_fn, fut, loop) in zip(outcomes, batch):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _run_batch(self, fns: list[Callable[[Db], Any]]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch; (ok, result or exception) per write.  No savepoint per write (two
        statements each on the database thread, for a case that does not happen in practice): a write that raises
        rolls the transaction back and the batch runs again without it -- the outcome savepoints would give, the
        others applied in order and that one undone (the PostgreSQL backend does the same; a write function may
        run more than once, see the top).  Backends that can lose their connection (PostgreSQL) override this."""
        db = self._db()
        if len(fns) == 1:
            return [self._run_alone(db, fns[0])]
        failed: dict[int, Exception] = {}
        while True:
            outcomes: list[tuple[bool, Any]] = []
            again = False
            try:
                self._begin()
                for i, fn in enumerate(fns):
                    if i in failed:
                        outcomes.append((False, failed[i]))
                        continue
                    try:
                        outcomes.append((True, fn(db)))
                    except Exception as e:  # this write alone is undone: the batch again without it
                        failed[i] = e
                        again = True
                        break
                if again:
                    self._rollback()
                    continue
                self._commit()
            except BaseException as e:  # the transaction itself failed: nothing of the batch is stored
                try:
                    self._rollback()
                except Exception:
                    pass
                return [(False, e)] * len(fns)
            self.batches += 1
            self.writes += len(fns)
            return outcomes

    def _run_alone(self, db: Db, fn: Callable[[Db], Any]) -> tuple[bool, Any]:
        """A batch of one write: the transaction is its savepoint (rolled back whole if it raises), two
        statements fewer on the database thread."""
        try:
            self._begin()
        except BaseException as e:
            return (False, e)
        try:
            value = fn(db)
            self._commit()
        except BaseException as e:  # the write raised (or the commit failed): nothing of it is stored
            try:
                self._rollback()
            except Exception:
                pass
            return (False, e)
        self.batches += 1
        self.writes += 1
        return (True, value)

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


def _settle_all(settled: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():  # the caller was cancelled; the write stands
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
