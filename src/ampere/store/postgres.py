"""PostgreSQL behind the store interface (psycopg 3, on the store's database thread).

The same guarantees as SQLite (ampere.store.store): group commit, one transaction per batch, nothing answered
before its COMMIT returned; `synchronous_commit` is at least `on` (never `off`), so a COMMIT has returned only
once the server flushed it, and with a synchronous standby configured, once the standby has it too.

Exclusive ownership.  One node owns a database: at start the store takes a session advisory lock
(`pg_try_advisory_lock`); a second `ampd` pointed at the same database waits as a standby, polling, until the
lock is free (its owner died or stopped), then takes over.  Taking over bumps `ampere_owner.generation`;
every batch's transaction sets `ampere_owner.batch` under `WHERE generation = ours`, so a node that has lost
the database to another can never commit again (it stops at once: the check is in the very transaction).

Connection loss (database restart, network).  A batch whose connection breaks is not answered: the database
thread reconnects (every 0.5 s, forever, logging), takes the lock again and checks that the generation is
still ours, then asks the database whether the batch committed (its `batch` number is there) -- if so its
callers get the results, otherwise it runs again.  Meanwhile every write and read waits, so the node
accepts no HTLC and sends no signature: it pauses, and resumes on the state it had.  If another node took
the database meanwhile, this one exits at once (`on_fatal`): it must not continue on stale state.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Sequence

from .migrations import MIGRATIONS, migration_sql, split_sql
from .pgsql import Rewriter
from .store import Db, Store

# pg_advisory_lock key: one node per database ("ampere" in ASCII).
LOCK_KEY = 0x616D70657265
RECONNECT_INTERVAL = 0.5


class StoreClosed(Exception):
    """The store was closed while a write waited for the database (shutdown, or a standby told to stop)."""


class LostOwnership(Exception):
    pass


def _psycopg():
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError(f"PostgreSQL needs the psycopg package and libpq ({e}); "
                           "pip install 'psycopg[binary]' where libpq is missing") from e
    return psycopg


def _configure(conn: Any) -> None:
    """Numbers as the node expects them from SQLite: SUM() of BIGINT (NUMERIC in PostgreSQL) as int, and
    Python bools stored as 0/1 in BIGINT columns."""
    psycopg = _psycopg()
    from psycopg.adapt import Dumper
    from psycopg.types.numeric import NumericLoader

    class IntNumericLoader(NumericLoader):
        def load(self, data):
            d = super().load(data)
            return int(d) if d.is_finite() and d == d.to_integral_value() else d

    class BoolAsInt(Dumper):
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj):
            return b"1" if obj else b"0"

    conn.adapters.register_loader("numeric", IntNumericLoader)
    conn.adapters.register_dumper(bool, BoolAsInt)


class _Cursor:
    __slots__ = ("_cur", "lastrowid", "rowcount")

    def __init__(self, cur: Any, returning: str | None) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid = None
        if returning:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall()

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone()


class _PgDb:
    def __init__(self, conn: Any, rewriter: Rewriter) -> None:
        self.conn = conn
        self.rw = rewriter
        self.dirty = False  # a statement other than SELECT ran: the batch writes
        # table -> the first serial key this transaction drew from its sequence.  nextval() is not undone by a
        # ROLLBACK, so before a batch runs again (a member raised, or the connection broke before COMMIT) the
        # store sets each sequence back to it: ids come out as if the batch had run once (as in SQLite, where
        # an AUTOINCREMENT key is transactional).  Safe because this node owns the database alone: every value
        # from the first one drawn on was handed out only inside this uncommitted transaction.
        self.first_ids: dict[str, int] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        q, returning = self.rw.rewrite(sql, bool(params))
        if not self.dirty and q.lstrip()[:6].upper() != "SELECT":
            self.dirty = True
        cur = _Cursor(self.conn.execute(q, params or None), returning)
        if returning and cur.lastrowid is not None and returning not in self.first_ids:
            self.first_ids[returning] = cur.lastrowid
        return cur

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        q, _ = self.rw.rewrite(sql, bool(params))
        return self.conn.execute(q, params or None).fetchall()


def _default_fatal(message: str) -> None:
    os._exit(1)


class PostgresStore(Store):
    def __init__(self, conninfo: str, log: Callable[[str, str], None] | None = None,
                 on_fatal: Callable[[str], None] | None = None, standby: bool = True,
                 standby_poll: float = 0.2) -> None:
        super().__init__()
        self.conninfo = conninfo
        self._log = log or (lambda level, message: None)
        self.on_fatal = on_fatal or _default_fatal
        self.standby = standby
        self.standby_poll = standby_poll
        self.conn: Any = None
        self.rewriter = Rewriter({}, {})
        self.generation: int | None = None
        self.batch_no = 0
        self.owner = f"ampd pid {os.getpid()} on {socket.gethostname()}"
        self._closing = False
        self.reconnects = 0  # for tests
        self._to_rewind: dict[str, int] = {}  # serial keys an undone batch drew, to give back before the rerun

    # ---- lifecycle --------------------------------------------------------------------------------------
    def abort_open(self) -> None:
        """Stop waiting for the lock (a standby told to stop) or for the database to come back."""
        self._closing = True

    async def close(self) -> None:
        self._closing = True
        await super().close()

    def _connect(self) -> Any:
        psycopg = _psycopg()
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
        _configure(conn)
        # Persist before you speak: a COMMIT must mean flushed.  `on` or stronger (remote_write,
        # remote_apply) as the server says; `off` is raised to `on` for our session.
        if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
            conn.execute("SET synchronous_commit = on")
        return conn

    def _open(self) -> None:
        try:
            self.conn = self._connect()
        except Exception as e:
            raise RuntimeError(f"cannot connect to the PostgreSQL database: {e}") from None
        self._take_lock()
        self._bootstrap()
        self._migrate()
        self._claim()
        self._load_schema()

    def _take_lock(self) -> None:
        logged = False
        while True:
            try:
                got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
            except _psycopg().OperationalError as e:  # the database went away while we wait: wait for it too
                if not self._broken():
                    raise
                self._log("unusual", f"database connection lost while waiting as standby ({e!s}): reconnecting")
                self._close()
                while True:
                    if self._closing:
                        raise StoreClosed("stopped while waiting as standby")
                    try:
                        self.conn = self._connect()
                        break
                    except _psycopg().OperationalError:
                        time.sleep(RECONNECT_INTERVAL)
                continue
            if got:
                if logged:
                    self._log("info", "database lock taken: this node now owns the database")
                return
            holder = self._holder()
            if not self.standby:
                raise RuntimeError(f"the database is in use by another ampd ({holder})")
            if not logged:
                self._log("info", f"database is in use by another ampd ({holder}): waiting as standby")
                logged = True
            if self._closing:
                raise StoreClosed("stopped while waiting as standby")
            time.sleep(self.standby_poll)

    def _holder(self) -> str:
        try:
            if self.conn.execute("SELECT to_regclass('ampere_owner')").fetchone()[0] is None:
                return "owner unknown"
            row = self.conn.execute("SELECT owner FROM ampere_owner WHERE id = 1").fetchone()
            return row[0] if row and row[0] else "owner unknown"
        except Exception:
            return "owner unknown"

    def _bootstrap(self) -> None:
        """The store's own tables: the schema version, and the owner record (fencing and commit markers)."""
        c = self.conn
        c.execute("BEGIN")
        c.execute("CREATE TABLE IF NOT EXISTS ampere_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                  "version BIGINT NOT NULL)")
        c.execute("INSERT INTO ampere_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING")
        c.execute("CREATE TABLE IF NOT EXISTS ampere_owner (id INTEGER PRIMARY KEY CHECK (id = 1), "
                  "generation BIGINT NOT NULL, batch BIGINT NOT NULL, owner TEXT NOT NULL, since DOUBLE PRECISION)")
        c.execute("INSERT INTO ampere_owner (id, generation, batch, owner) VALUES (1, 0, 0, '') "
                  "ON CONFLICT DO NOTHING")
        c.execute("COMMIT")

    def _migrate(self) -> None:
        c = self.conn
        have = c.execute("SELECT version FROM ampere_version WHERE id = 1").fetchone()[0]
        if have > len(MIGRATIONS):
            raise RuntimeError(f"database is at version {have}, newer than this Ampere ({len(MIGRATIONS)})")
        for version in range(have, len(MIGRATIONS)):
            c.execute("BEGIN")
            try:
                for stmt in split_sql(migration_sql(MIGRATIONS[version], "postgres")):
                    c.execute(stmt)
                c.execute("UPDATE ampere_version SET version = %s WHERE id = 1", (version + 1,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def _claim(self) -> None:
        row = self.conn.execute("UPDATE ampere_owner SET generation = generation + 1, owner = %s, since = %s "
                                "WHERE id = 1 RETURNING generation, batch", (self.owner, time.time())).fetchone()
        self.generation, self.batch_no = row

    def _load_schema(self) -> None:
        pks: dict[str, list[str]] = {}
        for table, col in self.conn.execute(
                "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name "
                "AND tc.table_schema = kcu.table_schema "
                "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
                "ORDER BY tc.table_name, kcu.ordinal_position").fetchall():
            pks.setdefault(table, []).append(col)
        serial = {t: c for t, c in self.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'").fetchall()}
        self.rewriter = Rewriter(pks, serial)

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # ends the session: the advisory lock goes with it
            except Exception:
                pass
            self.conn = None

    def _db(self) -> Db:
        return _PgDb(self.conn, self.rewriter)

    # ---- batches ----------------------------------------------------------------------------------------
    def _broken(self) -> bool:
        c = self.conn
        return c is None or c.closed or c.broken

    def _run_batch(self, fns: list[Callable[[Db], Any]]) -> list[tuple[bool, Any]]:
        closed = [(False, StoreClosed("the store closed while the database was unreachable"))] * len(fns)
        while True:
            if self._broken():
                if not self._recover(None):
                    return closed
                continue
            if self._to_rewind:
                try:
                    self._rewind_sequences(self._to_rewind)
                except Exception as e:
                    if self._broken():
                        continue
                    self._log("unusual", f"could not give back the serial keys of an undone batch ({e!s}): "
                                         "the next ids skip them")
                    self._to_rewind.clear()
            marker = self.batch_no + 1
            try:
                return self._attempt(fns, marker)
            except _Broken as b:
                if not self._recover(b.cause):
                    return closed
                if b.sent_commit and self.batch_no == marker:  # it did commit: answer it, do not run it again
                    self.batches += 1
                    self.writes += len(fns)
                    return b.outcomes
                # It did not commit: run it again, on the state it was first run on (the generation is ours),
                # with the ids it drew given back first.
                for table, first in b.first_ids.items():
                    self._to_rewind[table] = min(self._to_rewind.get(table, first), first)

    def _attempt(self, fns: list[Callable[[Db], Any]], marker: int) -> list[tuple[bool, Any]]:
        """One transaction for the batch.  No savepoint per write (each would cost two round trips to the
        server): a write that raises rolls the whole transaction back, and the batch runs again without it, so
        the outcome is the same as with savepoints -- the others applied in order, that one undone, and the
        serial keys they drew given back.  (A write function may therefore run more than once; it must act on
        the database only, or set in-memory state to the same value each run, as it must anyway for the retry
        after a lost connection: in-memory effects belong after its `await store.write()` returns.)"""
        conn = self.conn
        db = _PgDb(conn, self.rewriter)
        failed: dict[int, Exception] = {}
        sent_commit = False
        outcomes: list[tuple[bool, Any]] = []
        try:
            while True:
                outcomes = []
                conn.execute("BEGIN", prepare=False)
                for i, fn in enumerate(fns):
                    if i in failed:
                        outcomes.append((False, failed[i]))
                        continue
                    try:
                        outcomes.append((True, fn(db)))
                    except Exception as e:
                        if self._broken():
                            raise
                        conn.execute("ROLLBACK", prepare=False)
                        self._rewind_sequences(db.first_ids)
                        failed[i] = e
                        break
                else:
                    break
            if len(failed) == len(fns):
                conn.execute("ROLLBACK", prepare=False)
                self._rewind_sequences(db.first_ids)
                return outcomes
            if not db.dirty:  # reads only: nothing to make durable or to mark (a rerun is harmless)
                conn.execute("COMMIT", prepare=False)
                return outcomes
            # Fencing and the commit marker, in the same round trip as the COMMIT: only the owner's generation
            # may commit (no row updated -> division by zero -> the transaction aborts, COMMIT is never run),
            # and after a lost connection `batch` says whether this transaction committed.
            sent_commit = True
            assert self.generation is not None, "a batch runs only once the store owns the database"
            try:
                conn.execute(f"WITH u AS (UPDATE ampere_owner SET batch = {int(marker)} WHERE id = 1 AND "
                             f"generation = {int(self.generation)} RETURNING 1) "
                             f"SELECT 1 / (SELECT COUNT(*) FROM u)::int; COMMIT", prepare=False)
            except _psycopg().errors.DivisionByZero:
                conn.execute("ROLLBACK", prepare=False)
                self._fatal("another ampd took over this database: stopping at once")
        except LostOwnership:
            raise
        except Exception as e:
            if self._broken():
                raise _Broken(outcomes, sent_commit, e, dict(db.first_ids)) from e
            try:
                conn.execute("ROLLBACK", prepare=False)
                self._rewind_sequences(db.first_ids)
            except Exception:
                pass
            return [(False, e)] * len(fns)
        self.batch_no = marker
        self.batches += 1
        self.writes += len(fns)
        return outcomes

    def _rewind_sequences(self, first_ids: dict[str, int]) -> None:
        """Give back the serial keys an undone transaction drew (see _PgDb.first_ids): the next nextval() of
        each sequence returns the first key that transaction drew."""
        for table, first in sorted(first_ids.items()):
            self.conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, false)",
                              (table, self.rewriter.serial[table], int(first)))
        first_ids.clear()

    def _recover(self, cause: BaseException | None) -> bool:
        """Reconnect, retake the lock, check we still own the database.  False if the store is closing."""
        psycopg = _psycopg()
        self._log("unusual", f"database connection lost ({cause!s}): the node waits for the database")
        self._close()
        since = time.monotonic()
        while True:
            if self._closing:
                return False
            try:
                conn = self._connect()
                break
            except psycopg.OperationalError:
                time.sleep(RECONNECT_INTERVAL)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
            conn.close()
            self._fatal("another ampd took the database lock while the database was unreachable: stopping")
        generation, batch = conn.execute("SELECT generation, batch FROM ampere_owner WHERE id = 1").fetchone()
        if generation != self.generation:
            conn.close()
            self._fatal(f"another ampd owned the database meanwhile (generation {generation}, ours "
                        f"{self.generation}): stopping rather than continue on stale state")
        self.conn = conn
        self.batch_no = batch
        self.reconnects += 1
        self._log("info", f"database connection re-established after {time.monotonic() - since:.1f}s: resuming")
        return True

    def _fatal(self, message: str) -> None:
        self._log("broken", message)
        self.on_fatal(message)
        raise LostOwnership(message)


class _Broken(Exception):
    def __init__(self, outcomes: list, sent_commit: bool, cause: BaseException, first_ids: dict[str, int]) -> None:
        super().__init__(str(cause))
        self.first_ids = first_ids
        self.outcomes = outcomes
        self.sent_commit = sent_commit
        self.cause = cause
