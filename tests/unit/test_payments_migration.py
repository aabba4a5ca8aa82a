"""Migration 14 (payments without AUTOINCREMENT, its UNIQUE index or payments_status): an old database's rows
come through unchanged, and ids keep going up from where the old table left them."""

import asyncio
import sqlite3

from ampere.store.migrations import MIGRATIONS, migration_sql, split_sql
from ampere.store.sqlite import SqliteStore


def _old_database(path: str) -> list[tuple]:
    """A database at version 14 (before migration 14) holding three payment rows, the middle one deleted."""
    conn = sqlite3.connect(path)
    conn.isolation_level = None
    for version in range(14):
        for stmt in split_sql(migration_sql(MIGRATIONS[version], "sqlite3")):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=14")
    for i in range(3):
        conn.execute("INSERT INTO payments (payment_hash, partid, groupid, status, amount_msat, amount_sent_msat, "
                     "total_msat, destination, created_at, label, route, shared_secrets, cltv_expiry, failure, "
                     "updated_index) VALUES (?, 0, ?, ?, 1000, 1001, 1000, ?, 1700000000, ?, '{}', ?, 120, ?, ?)",
                     (bytes([i]) * 32, i, i % 3, b"\x02" * 33, f"l{i}", b"\x05" * 32,
                      '{"code": 204}' if i == 2 else None, i))
    conn.execute("DELETE FROM payments WHERE id = 2")
    rows = conn.execute("SELECT * FROM payments ORDER BY id").fetchall()
    conn.close()
    return rows


def test_migration_keeps_payment_rows_and_drops_their_indexes(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    before = _old_database(path)
    assert [r[0] for r in before] == [1, 3]

    async def go():
        store = SqliteStore(path)
        await store.open()
        await store.close()
    asyncio.run(go())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT * FROM payments ORDER BY id").fetchall() == before
    # Nothing but the table's own b-tree is written per payment: no index, no sqlite_sequence row.
    indexes = conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'payments' AND type = 'index'").fetchall()
    assert indexes == []
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'payments_old%'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM sqlite_sequence WHERE name LIKE 'payments%'").fetchone()[0] == 0
    # A new row continues after the highest id.
    cur = conn.execute("INSERT INTO payments (payment_hash, partid, groupid, status, amount_sent_msat, total_msat, "
                       "created_at, cltv_expiry) VALUES (?, 0, 0, 0, 1, 1, 1, 1)", (b"\x09" * 32,))
    assert cur.lastrowid == 4
    conn.close()
