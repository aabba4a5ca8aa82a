"""The store on both engines (SQLite, and a real PostgreSQL when available): migrations, and group commit
with per-write isolation."""

import asyncio
import sqlite3
import time

import pytest

from ampere.store.migrations import MIGRATIONS, schema_tables
from ampere.store.sqlite import SqliteStore


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite3", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_store(request, tmp_path):
    """A factory of stores on one fresh database of the engine under test."""
    if request.param == "sqlite3":
        path = str(tmp_path / "db.sqlite3")
        return lambda: SqliteStore(path)
    from ampere.store.postgres import PostgresStore

    server = request.getfixturevalue("postgres_shared")
    dsn = server.create_db()
    return lambda: PostgresStore(dsn, on_fatal=lambda msg: None)


def test_migrations_applied_once_and_recorded(tmp_path):
    path = str(tmp_path / "db.sqlite3")

    async def go():
        s = SqliteStore(path)
        await s.open()
        await s.close()
        s = SqliteStore(path)  # reopening applies nothing twice
        await s.open()
        await s.close()

    run(go())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres
def test_postgres_migrations_applied_once_and_every_table_exists(postgres_shared):
    from ampere.store.postgres import PostgresStore

    dsn = postgres_shared.create_db()

    async def go():
        for _ in range(2):  # reopening applies nothing twice
            s = PostgresStore(dsn)
            await s.open()
            tables = await s.read(lambda db: {r[0] for r in db.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")})
            version = await s.read(lambda db: db.query("SELECT version FROM ampere_version")[0][0])
            await s.close()
        return tables, version

    tables, version = run(go())
    assert version == len(MIGRATIONS)
    assert "onchain_outputs" not in tables  # created, then dropped by a later migration
    assert set(schema_tables()) <= tables and "offers" in tables


def test_newer_database_is_refused(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()

    async def go():
        s = SqliteStore(path)
        with pytest.raises(RuntimeError, match="newer"):
            await s.open()

    run(go())


def test_group_commit_isolates_a_failing_write(new_store):
    async def go():
        s = new_store()
        await s.open()

        def put(i):
            def fn(db):
                if i == 7:
                    db.execute("INSERT INTO vars (name, val) VALUES (?, ?)", (f"k{i}", "x"))
                    raise ValueError("refused")
                db.execute("INSERT INTO vars (name, val) VALUES (?, ?)", (f"k{i}", str(i)))
                return i
            return fn

        results = await asyncio.gather(*(s.write(put(i)) for i in range(50)), return_exceptions=True)
        assert isinstance(results[7], ValueError)
        assert [r for i, r in enumerate(results) if i != 7] == [i for i in range(50) if i != 7]
        # 50 concurrent writes took far fewer transactions (one sync each) than writes.
        assert s.writes == 50 and s.batches < 50
        # A statement the database refuses (duplicate key) fails that write alone.
        dup = await asyncio.gather(s.write(put(1)), s.write(put(100)), return_exceptions=True)
        assert isinstance(dup[0], Exception) and dup[1] == 100
        # A failing write alone in its batch (no savepoint then: the transaction is rolled back) stores nothing.
        with pytest.raises(ValueError):
            await s.write(put(7))
        assert await s.write(put(101)) == 101
        await s.close()
        # Durable: a fresh store sees them.
        s = new_store()
        await s.open()
        rows = await s.read(lambda db: db.query("SELECT name FROM vars WHERE name LIKE 'k%' ORDER BY name"))
        await s.close()
        return {r[0] for r in rows}

    names = run(go())
    assert "k7" not in names and len(names) == 51 and "k100" in names and "k101" in names


def test_same_sql_same_answers_on_both_engines(new_store):
    """The dialect the node writes (SQLite's) behaves the same: OR REPLACE, OR IGNORE, lastrowid, SUM of
    lengths, bytes, big integers, bools."""
    async def go():
        s = new_store()
        await s.open()

        def w(db):
            ids = [db.execute("INSERT INTO payments (payment_hash, partid, groupid, status, amount_sent_msat, "
                              "total_msat, created_at, cltv_expiry, first_scid) VALUES (?,?,?,?,?,?,?,?,?)",
                              (bytes([i]) * 32, 0, 1, 0, 21 * 10**14, 21 * 10**14, 1, 100, (800_000 << 40) | 1)
                              ).lastrowid for i in range(3)]
            db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('a', ?)", ("1",))
            db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('a', ?)", ("2",))
            db.execute("INSERT OR IGNORE INTO wallet_txs (txid, rawtx, blockheight, txindex) VALUES (?, ?, NULL, NULL)",
                       (b"\x00t", b"raw"))
            db.execute("INSERT OR IGNORE INTO wallet_txs (txid, rawtx, blockheight, txindex) VALUES (?, ?, NULL, NULL)",
                       (b"\x00t", b"other"))
            db.execute("INSERT INTO wallet_outputs (txid, outnum, value, scriptpubkey, keyidx, coinbase) "
                       "VALUES (?, 0, 5, ?, 1, ?)", (b"\x00t", b"s", True))
            return ids

        ids = await s.write(w)
        out = await s.read(lambda db: (
            db.query("SELECT val FROM vars WHERE name = 'a'"),
            db.query("SELECT rawtx FROM wallet_txs"),
            db.query("SELECT SUM(LENGTH(txid) + LENGTH(rawtx)) FROM wallet_txs"),
            db.query("SELECT amount_sent_msat, first_scid FROM payments ORDER BY id"),
            db.query("SELECT coinbase FROM wallet_outputs")))
        await s.close()
        return ids, out

    ids, (val, raw, total, amounts, coinbase) = run(go())
    assert ids == [1, 2, 3]
    assert val == [("2",)] and raw == [(b"raw",)] and total == [(5,)] and isinstance(total[0][0], int)
    assert amounts == [(21 * 10**14, (800_000 << 40) | 1)] * 3
    assert coinbase == [(1,)]


def test_database_thread_is_woken_once_per_batch_and_answers_each_batch_at_once(new_store, monkeypatch):
    """The hand-off to the database thread (issue 18): writes queued in the same turn of the event loop
    wake the thread once, at the end of that turn, and are committed together; the whole batch is answered by ONE call into the event
    loop (not one per write); a write still gets its own result, and nobody is answered before the commit."""
    async def go():
        s = new_store()
        await s.open()
        loop = asyncio.get_running_loop()
        handoffs = []
        real = loop.call_soon_threadsafe

        def counting(cb, *args):
            handoffs.append(len(args[0]) if args and isinstance(args[0], list) else None)
            return real(cb, *args)
        monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
        wakeups, batches = s.wakeups, s.batches

        def put(i):
            def fn(db):
                db.execute("INSERT INTO vars (name, val) VALUES (?, ?)", (f"b{i}", str(i)))
                return i * 10
            return fn

        seen_commits = []

        async def one(i):
            # A channel step's other work releases the GIL (its socket writes): the database thread could take
            # the writes queued so far as a batch of their own, were it woken already.
            time.sleep(0.0005)
            r = await s.write(put(i))
            seen_commits.append(s.batches - batches)  # answered only after its batch was committed
            return r

        results = await asyncio.gather(*(one(i) for i in range(40)))
        assert results == [i * 10 for i in range(40)]
        assert all(c >= 1 for c in seen_commits)
        n_batches = s.batches - batches
        # The 40 writes are queued in the same turn of the loop: the thread is woken once, at the end of that
        # turn, and they share one commit (issue 18 item 2: the steps of many channels ready together).
        assert s.wakeups - wakeups == n_batches == 1
        # One hand-off back per batch, carrying every write of it.
        assert len(handoffs) == n_batches and sum(handoffs) == 40
        monkeypatch.undo()
        await s.close()
        assert s._thread is None

    run(go())


def test_database_thread_survives_a_closed_loop_and_run_sync(tmp_path):
    """A store used from one event loop, then from another (start-up code runs `run_sync` outside any loop):
    the database thread is the same long-lived thread and serves both."""
    path = str(tmp_path / "db.sqlite3")
    s = SqliteStore(path)
    run(s.open())
    thread = s._thread
    assert s.run_sync(lambda db: db.query("SELECT 1")) == [(1,)]

    async def again():
        await s.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('x', '1')"))
        return await s.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'x'"))
    assert run(again()) == [("1",)]
    assert s._thread is thread and thread.is_alive()
    run(s.close())
    assert not thread.is_alive()


def test_close_sync_outside_a_loop_ends_the_thread(tmp_path):
    s = SqliteStore(str(tmp_path / "db.sqlite3"))
    run(s.open())
    thread = s._thread
    assert s.run_sync(lambda db: db.query("SELECT 1")) == [(1,)]
    s.close_sync()
    assert s._thread is None and not thread.is_alive()


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "old-sqlite"])
def test_counters_count_from_one_in_one_statement_and_roll_back_with_their_write(new_store, returning, monkeypatch):
    """next_counter: 1, 2, 3... per name, one statement each (issue 18; two with a SQLite older than 3.35, which has
    no RETURNING), undone with a write that raises, and the same on both engines; the counters the node kept before
    (a `vars` row of its own) go on from their value."""
    from ampere.store import counters
    from ampere.store.counters import get_counter, next_counter

    monkeypatch.setattr(counters, "_HAS_RETURNING", returning)

    async def go():
        s = new_store()
        await s.open()
        await s.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('old_index', '41')"))
        statements = []

        def bump(db):
            counting = _Counting(db, statements)
            return [next_counter(counting, "a"), next_counter(counting, "a"), next_counter(counting, "b"),
                    next_counter(counting, "old_index")]

        first = await s.write(bump)
        assert len(statements) == (4 if returning else 8)

        def bump_then_fail(db):
            next_counter(db, "a")
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await s.write(bump_then_fail)
        again = await s.write(lambda db: next_counter(db, "a"))
        now = await s.read(lambda db: (get_counter(db, "a"), get_counter(db, "b"), get_counter(db, "never")))
        await s.close()
        return first, again, now

    first, again, now = run(go())
    assert first == [1, 2, 1, 42]
    assert again == 3 and now == (3, 1, 0)


class _Counting:
    def __init__(self, db, log):
        self.db, self.log = db, log

    def execute(self, sql, params=()):
        self.log.append(sql)
        return self.db.execute(sql, params)

    def query(self, sql, params=()):
        self.log.append(sql)
        return self.db.query(sql, params)
