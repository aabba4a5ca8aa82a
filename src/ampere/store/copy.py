"""Copy a stopped node's database between backends (SQLite <-> PostgreSQL), then compare every table.

Both databases are opened through the store (so both are at the same schema version); the destination must
be empty; the copy is one transaction; serial keys keep their values and PostgreSQL's sequences are moved
past them.  The source is opened as an owner: on PostgreSQL that takes the node's lock, so a node still
running on it makes the copy fail rather than copy a moving database.
"""

from __future__ import annotations

from typing import Any

from .migrations import schema_tables
from .store import Store

# Per-file identity of a sqlite3 main:backup pair, not node state.
_LOCAL_VARS = ("db_id", "db_commits")


def table_columns(store: Store, db: Any, table: str) -> list[str]:
    from .postgres import PostgresStore

    if isinstance(store, PostgresStore):
        return [r[0] for r in db.query("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                       "current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))]
    return [r[1] for r in db.query(f"PRAGMA table_info({table})")]


def _rows(db: Any, table: str, columns: list[str]) -> list[tuple]:
    where = " WHERE name NOT IN ('db_id', 'db_commits')" if table == "vars" else ""
    rows = [tuple(_norm(v) for v in r) for r in db.query(f"SELECT {', '.join(columns)} FROM {table}{where}")]
    # Sorted here, not by the database: PostgreSQL's text collation need not be SQLite's byte order.
    return sorted(rows, key=lambda r: tuple((0, 0) if v is None else (1, v) for v in r))


def _norm(v: Any) -> Any:
    if isinstance(v, memoryview):
        return bytes(v)
    return v


async def dump(store: Store) -> dict[str, list[tuple]]:
    """Every table's rows (columns in the schema's order, sorted): what two copies must agree on."""
    def read(db: Any) -> dict[str, list[tuple]]:
        return {t: _rows(db, t, table_columns(store, db, t)) for t in schema_tables()}

    return await store.read(read)


async def copy_database(src: Store, dst: Store) -> dict[str, int]:
    """Copy every table of `src` into the empty `dst`; returns rows per table.  Raises if `dst` has node
    state already or if the copy does not compare equal."""
    from .postgres import PostgresStore

    data = await dump(src)
    columns = await src.read(lambda db: {t: table_columns(src, db, t) for t in schema_tables()})
    existing = await dump(dst)
    busy = [t for t, rows in existing.items() if rows]
    if busy:
        raise RuntimeError(f"the destination database is not empty (tables {', '.join(busy)}): refusing to copy")

    def write(db: Any) -> None:
        for table in schema_tables():
            cols = columns[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for row in data[table]:
                db.execute(sql, row)
        if isinstance(dst, PostgresStore):
            for table, col in dst.rewriter.serial.items():
                db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                           f"COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)")

    await dst.write(write)
    copied = await dump(dst)
    for table in schema_tables():
        if copied[table] != data[table]:
            raise RuntimeError(f"table {table} differs after the copy")
    return {t: len(rows) for t, rows in data.items()}
