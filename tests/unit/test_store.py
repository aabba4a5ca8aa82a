"""The SQLite store: migrations, and group commit with per-write isolation."""

import asyncio
import sqlite3

import pytest

from ampere.store.migrations import MIGRATIONS
from ampere.store.sqlite import SqliteStore


def run(coro):
    return asyncio.run(coro)


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


def test_group_commit_isolates_a_failing_write(tmp_path):
    path = str(tmp_path / "db.sqlite3")

    async def go():
        s = SqliteStore(path)
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
        rows = await s.read(lambda db: db.query("SELECT name FROM vars ORDER BY name"))
        await s.close()
        return {r[0] for r in rows}

    names = run(go())
    assert "k7" not in names and len(names) == 49
    # Durable: a fresh connection sees them.
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM vars").fetchone()[0] == 49
